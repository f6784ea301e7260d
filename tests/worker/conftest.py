"""Real worker processes on a real store (a SQLite file, a PostgreSQL schema, a Redis
namespace): helpers to start, watch and stop them."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conveyor import Conveyor
from tests.stores import STORES, store_url

TASKS = """
import os, time
from conveyor import Conveyor, current_context

app = Conveyor(os.environ["CONVEYOR_URL"])
RUNS = os.environ["RUNS_DIR"]


def _mark(kind, value):
    # One O_APPEND write per line is atomic, so processes can share a file.
    fd = os.open(os.path.join(RUNS, f"{kind}-{os.getpid()}.txt"),
                 os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.write(fd, f"{value}\\n".encode())
    os.close(fd)


@app.task(name="record")
def record(i):
    _mark("runs", i)
    time.sleep(0.005)
    return i


@app.task(name="hang_once")
def hang_once(seconds):
    _mark("started", current_context().attempt)
    if current_context().attempt == 1:
        time.sleep(seconds)
    return "done"


@app.task(name="sleep")
def sleep(seconds):
    _mark("started", seconds)
    time.sleep(seconds)
    _mark("finished", seconds)
    return seconds


@app.task(name="timed")
def timed(i, seconds):
    _mark("runs", i)
    time.sleep(seconds)
    return i


@app.task(name="wait_for_file")
def wait_for_file(i, path):
    _mark("runs", i)
    while not os.path.exists(path):
        time.sleep(0.01)
    return i


@app.task(name="always_fails", max_attempts=3, retry={"exponent": 1, "base": 0, "jitter": 0})
def always_fails():
    raise RuntimeError("this task always fails")


def _interrupts(ctx, *rest):
    raise KeyboardInterrupt("from a hook")


def _exits(ctx, *rest):
    raise SystemExit("from a hook")


@app.task(name="success_interrupts", success=_interrupts, after=_exits)
def success_interrupts(i):
    _mark("runs", i)
    return i


@app.task(name="error_interrupts", max_attempts=2, retry={"exponent": 0, "base": 0, "jitter": 0},
          error=_interrupts, failure=_exits)
def error_interrupts(i):
    _mark("runs", i)
    raise ValueError("task boom")


if os.environ.get("REPORTER_EXITS"):
    def _reporter(exc, ctx):
        raise SystemExit("from the reporter")

    app.reporter = _reporter
"""


class WorkerEnv:
    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str) -> None:
        self.dir = tmp_path
        self.runs = tmp_path / "runs"
        self.runs.mkdir()
        self.url = url
        (tmp_path / "e2e_tasks.py").write_text(textwrap.dedent(TASKS))
        # The tasks' folder first, then the caller's path: a tree under test put first
        # on PYTHONPATH is the one the worker processes run too.
        path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH")) if p)
        self.env = dict(os.environ, CONVEYOR_URL=self.url, RUNS_DIR=str(self.runs), PYTHONPATH=path)
        monkeypatch.setenv("RUNS_DIR", str(self.runs))
        monkeypatch.setenv("CONVEYOR_URL", self.url)
        monkeypatch.syspath_prepend(str(tmp_path))
        sys.modules.pop("e2e_tasks", None)
        import e2e_tasks  # type: ignore[import-not-found]

        self.tasks = e2e_tasks
        self.app: Conveyor = e2e_tasks.app
        self.procs: list[subprocess.Popen[bytes]] = []

    def start_worker(self, *args: str, url: str | None = None) -> subprocess.Popen[bytes]:
        """A `conveyor worker -v` process, on ``url`` if given (else the env's store)."""
        env = self.env if url is None else dict(self.env, CONVEYOR_URL=url)
        with open(self.dir / f"worker-{len(self.procs)}.log", "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "conveyor", "worker", "-i", "e2e_tasks:app", "-v", *args],
                cwd=self.dir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def lines(self, kind: str) -> list[str]:
        out: list[str] = []
        for path in self.runs.glob(f"{kind}-*.txt"):
            out.extend(path.read_text().split())
        return out

    def files(self, kind: str) -> list[Path]:
        return sorted(self.runs.glob(f"{kind}-*.txt"))

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.dir.glob("*.log")))

    def wait_until(self, what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}\n--- worker logs ---\n{self.logs()}")

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture(params=STORES)
def worker_env(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[WorkerEnv]:
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(store_url(request.param, tmp_path))
        env = WorkerEnv(tmp_path, monkeypatch, url)
        try:
            yield env
        finally:
            env.stop_all()
            env.app.close()
            sys.modules.pop("e2e_tasks", None)
