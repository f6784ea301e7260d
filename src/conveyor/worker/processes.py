"""Tasks with ``executor="process"``: each call runs in a fresh child process.

A thread cannot be killed, so a sync task that must be stopped at its timeout
(or on cancel) runs here: the child is killed outright. Arguments and the
result cross the process boundary as JSON text (never pickle). The price is
the child's start-up (an interpreter plus the task's imports, tens of
milliseconds), so this is for long or CPU-heavy tasks.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from conveyor.exceptions import Cancel, Poison, Retry, TaskControl

#: How often a child looks whether its worker is still there (seconds).
WORKER_CHECK_S = 0.2


class ChildFailed(Exception):
    """The task raised in its child process (the message carries its traceback)."""


class ProcessRunner:
    def __init__(self, includes: Sequence[str], url: str) -> None:
        self.includes = list(includes)
        self.url = url
        # The worker's, as it started: its includes and a SQLite URL may be relative to
        # it, and task code may change the process's working directory (os.chdir).
        self.cwd = os.getcwd()

    async def call(
        self, task_name: str, args: list[Any], kwargs: dict[str, Any], timeout: float | None
    ) -> Any:
        payload = json.dumps(
            {
                "includes": self.includes,
                "url": self.url,
                "worker": os.getpid(),
                "task": task_name,
                "args": args,
                "kwargs": kwargs,
            }
        ).encode()
        env = dict(os.environ, CONVEYOR_URL=self.url)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "conveyor.worker.processes",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=None,  # the task's own output goes to the worker's log
            env=env,
            cwd=self.cwd,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(payload), timeout)
        except BaseException:
            # Timeout, cancel or shutdown: the child must not outlive its job.
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        if proc.returncode != 0 or not out:
            raise ChildFailed(
                f"child process exited with {proc.returncode} without an answer "
                "(its output is in the worker's log)"
            )
        answer = json.loads(out)
        if "control" in answer:
            raise _control(answer["control"])
        if "error" in answer:
            raise ChildFailed(answer["error"])
        return answer["result"]


def _control(sent: dict[str, Any]) -> TaskControl:
    """The Retry, Poison or Cancel the task raised in its child, raised again here: they
    are instructions to the worker, not failures (a Poison is not retried)."""
    kind, reason = sent["kind"], sent["reason"]
    if kind == "Retry":
        return Retry(sent["delay"], reason, count_attempt=sent["count_attempt"])
    return Poison(reason) if kind == "Poison" else Cancel(reason)


def _child_main() -> int:
    import signal
    import traceback

    from conveyor.loader import load_app

    # A stop is the worker's to handle: one sent to the whole group (systemd's
    # KillMode=control-group, pkill, Ctrl-C in a terminal) reaches this process too,
    # and killed the task the graceful stop would let finish, at the cost of an
    # attempt. The worker kills this process itself when it must (timeout, cancel,
    # the end of the grace period).
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)

    # The answer travels on the real stdout; whatever the task prints goes to stderr.
    answer = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    request = json.loads(sys.stdin.buffer.read())
    threading.Thread(
        target=_end_with_worker, args=(request["worker"],), name="conveyor-worker", daemon=True
    ).start()
    try:
        app = load_app(request["includes"], request["url"])
        task = app.get_task(request["task"])
        result = task.fn(*request["args"], **request["kwargs"])
        text = json.dumps({"result": result}, allow_nan=False)
    except (Retry, Poison, Cancel) as control:
        # The kind it is (a subclass of Retry is a Retry), not its class's name.
        kind = next(k for k in (Retry, Poison, Cancel) if isinstance(control, k)).__name__
        sent: dict[str, Any] = {"kind": kind, "reason": control.reason}
        if isinstance(control, Retry):
            sent.update(delay=control.delay, count_attempt=control.count_attempt)
        text = json.dumps({"control": sent})
    except BaseException as exc:  # SystemExit and KeyboardInterrupt too, as in a thread
        from conveyor.worker.executor import describe  # also when its __str__ raises

        text = json.dumps(
            {"error": f"{describe(exc)}\n" + "".join(traceback.format_exception(exc))}
        )
    answer.write(text)
    answer.flush()
    return 0


def _end_with_worker(worker: int) -> None:
    """End this process as soon as its worker is gone (killed with -9, by the kernel's
    out-of-memory killer): the job runs again wherever it is claimed once its lease
    expires, and this run must not go on beside that one, its work done twice."""
    while os.getppid() == worker:
        time.sleep(WORKER_CHECK_S)
    os._exit(1)


if __name__ == "__main__":
    raise SystemExit(_child_main())
