"""The stop watchdog: a stop that waits for ever ends anyway, saying where it waited
(a real event loop, stuck in a real await, in a thread of the test)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading

import pytest

from conveyor.worker.watchdog import StopWatchdog


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
