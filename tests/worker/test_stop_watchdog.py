"""The stop watchdog: a stop that waits for ever ends anyway, saying where it waited
(a real event loop, stuck in a real await, in a thread of the test)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conveyor import Conveyor
from conveyor.worker.watchdog import StopWatchdog
from tests.redis.server import free_port


async def _waits_for_ever(watchdog: StopWatchdog, started: threading.Event) -> None:
    """A worker's stop that never ends: the watchdog is armed, then an await that no
    one will ever answer."""
    watchdog.arm()
    started.set()
    await asyncio.Event().wait()


def _run(loop: asyncio.AbstractEventLoop, task: asyncio.Task[None]) -> None:
    with contextlib.suppress(asyncio.CancelledError):  # the test's end cancels it
        loop.run_until_complete(task)


def test_a_stop_that_never_ends_is_ended_and_says_where_it_waited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given an event loop whose stop waits for ever, with a watchdog of 0.2 s armed at
    # the stop's start
    expired = threading.Event()
    codes: list[int] = []

    def on_expiry(code: int) -> None:
        codes.append(code)
        expired.set()

    watchdog = StopWatchdog(0.2, on_expiry)
    started = threading.Event()
    loop = asyncio.new_event_loop()
    task = loop.create_task(_waits_for_ever(watchdog, started), name="stuck-shutdown")
    runner = threading.Thread(target=_run, args=(loop, task), daemon=True)
    caplog.set_level(logging.ERROR, logger="conveyor.worker")
    runner.start()
    try:
        # When the limit passes
        assert started.wait(10)
        assert expired.wait(10)

        # Then the process would end with code 1, and the log names the stop's task
        # and the line it waits on
        assert codes == [1]
        message = "\n".join(r.getMessage() for r in caplog.records)
        assert "not stopped 0.2s after its stop began" in message
        assert "task stuck-shutdown" in message
        assert "await asyncio.Event().wait()" in message
    finally:
        loop.call_soon_threadsafe(task.cancel)
        runner.join(10)
        loop.close()


def test_a_stop_that_ends_in_time_is_left_alone() -> None:
    # Given a watchdog armed at a stop's start, twice (every stop request arms it)
    codes: list[int] = []
    watchdog = StopWatchdog(0.3, codes.append)
    watchdog.arm()
    watchdog.arm()

    # When the stop ends before the limit
    watchdog.disarm()

    # Then nothing happens at the limit, nor after
    threading.Event().wait(0.6)
    assert codes == []
    assert watchdog._thread is not None
    watchdog._thread.join(5)
    assert not watchdog._thread.is_alive()


def test_a_blocked_event_loop_is_said_to_be_blocked(caplog: pytest.LogCaptureFixture) -> None:
    # Given a stop whose event loop is blocked in a call that never returns
    expired = threading.Event()
    release = threading.Event()
    watchdog = StopWatchdog(0.2, lambda code: expired.set())
    loop = asyncio.new_event_loop()

    async def blocks() -> None:
        watchdog.arm()
        release.wait()  # a blocking call on the loop: it answers nothing meanwhile

    runner = threading.Thread(target=loop.run_until_complete, args=(blocks(),), daemon=True)
    caplog.set_level(logging.ERROR, logger="conveyor.worker")
    runner.start()
    try:
        # When the limit passes
        assert expired.wait(10)

        # Then the log says the loop is blocked, and shows the blocking line
        message = "\n".join(r.getMessage() for r in caplog.records)
        assert "the event loop did not answer: blocked" in message
        assert "release.wait()" in message
    finally:
        release.set()
        runner.join(10)
        loop.close()


_STUBBORN_TASKS = """
import asyncio
from conveyor import Conveyor

app = Conveyor()
left = []


async def _stubborn():
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            pass  # swallows every cancellation: only the end of the process ends it


@app.task(name="leave")
async def leave():
    left.append(asyncio.get_running_loop().create_task(_stubborn(), name="stubborn"))
    return "left"
"""

#: ``conveyor`` with the watchdog's time after the shutdown timeout cut to 1 s.
_CONVEYOR_QUICK_WATCHDOG = (
    "import sys, conveyor.worker.watchdog as w; w.STOP_WATCHDOG_S = 1.0; "
    "from conveyor.cli import main; sys.argv[0] = 'conveyor'; main()"
)


def _leave() -> None: ...


def test_a_serve_process_whose_loop_does_not_close_ends_anyway(tmp_path: Path) -> None:
    # Given `conveyor serve` (the API and a worker in one process) whose task left an
    # asyncio task that swallows its cancellation, so that the event loop never closes
    (tmp_path / "stubborn_tasks.py").write_text(_STUBBORN_TASKS)
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    log = tmp_path / "serve.log"
    argv = ["serve", "-i", "stubborn_tasks.py", "--url", url, "--port", str(free_port())]
    with open(log, "wb") as err:
        serve = subprocess.Popen(
            [sys.executable, "-c", _CONVEYOR_QUICK_WATCHDOG, *argv, "--shutdown-timeout", "1"],
            cwd=tmp_path,
            stdout=err,
            stderr=err,
        )
    try:
        app = Conveyor(url)
        try:
            leave = app.task(name="leave")(_leave)
            assert leave.enqueue().wait(timeout=30) == "left", log.read_text()
        finally:
            app.close()

        # When it gets one SIGTERM
        serve.send_signal(signal.SIGTERM)

        # Then it ends by itself once the watchdog's time has passed (it waited for
        # ever), saying where it waited
        assert serve.wait(60) == 1, log.read_text()
        text = log.read_text()
        assert "not stopped 2s after its stop began: exiting now" in text, text
        assert "task stubborn" in text, text
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
