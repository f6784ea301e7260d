"""The bound on a process's stop: ``conveyor worker`` (and ``serve``) ends at the latest
``STOP_WATCHDOG_S`` after its shutdown timeout, whatever it was waiting for; ``conveyor
api`` that long after its stop began.

A stop waits for the running jobs (up to ``--shutdown-timeout``), then for the store to
take their outcomes and releases; a second signal cuts those waits short. A worker
process that nobody sends a second signal to (one whose supervisor was killed with
``kill -9``: it stops by itself, see ``watch_parent``) would wait for as long as its
store, a driver or a task's leftover code holds it: for hours, once. The watchdog, a
thread that does not need the event loop, ends the process then: the jobs whose
outcomes or releases were not written come back when their leases expire, as after a
crash. Before it does, it writes where every thread and asyncio task was waiting, so
that the cause can be found.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import math
import os
import sys
import threading
import traceback
from collections.abc import Callable

logger = logging.getLogger("conveyor.worker")

#: How long after its shutdown timeout a stopping worker process ends in any case (s);
#: an API process alone, this long after its stop began.
STOP_WATCHDOG_S = 30.0
#: How long the watchdog waits for the event loop to list its tasks (s).
_TASKS_TIMEOUT_S = 1.0
#: How long it waits for its log line to be written before the process ends (s).
_SAY_TIMEOUT_S = 5.0


def stop_watchdog(shutdown_timeout: float = 0.0) -> StopWatchdog:
    """The watchdog of a ``conveyor`` process that ends with ``os._exit``."""
    return StopWatchdog(shutdown_timeout + STOP_WATCHDOG_S, os._exit)


class StopWatchdog:
    """``arm()`` at the start of a stop (any thread, any number of times); ``limit``
    seconds later ``on_expiry(1)`` runs unless ``disarm()`` came first: it ends the
    process (``os._exit``: nothing that could wait for what holds the process)."""

    def __init__(self, limit: float, on_expiry: Callable[[int], object]) -> None:
        self.limit = limit
        self.on_expiry = on_expiry
        self._loop: asyncio.AbstractEventLoop | None = None
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def arm(self) -> None:
        if not math.isfinite(self.limit):  # a shutdown timeout without end: none either
            return
        with self._lock:
            if self._thread is not None or self._done.is_set():
                return
            try:
                self._loop = asyncio.get_running_loop()
            except RuntimeError:
                self._loop = None
            self._thread = threading.Thread(
                target=self._watch, name="conveyor-stop-watchdog", daemon=True
            )
            self._thread.start()

    def disarm(self) -> None:
        self._done.set()

    def _watch(self) -> None:
        if self._done.wait(self.limit):
            return
        where = where_waiting(self._loop)
        # Said from a thread of its own, given a few seconds: what holds the process
        # may be the log itself (a write to a full pipe holds the handler's lock).
        saying = threading.Thread(target=_say, args=(self.limit, where), daemon=True)
        saying.start()
        saying.join(_SAY_TIMEOUT_S)
        if not self._done.is_set():
            self.on_expiry(1)


def _say(limit: float, where: str) -> None:
    logger.error(
        "process %d: not stopped %gs after its stop began: exiting now; jobs not "
        "released run again when their leases expire. Where it was waiting:\n%s",
        os.getpid(),
        limit,
        where,
    )
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):  # a stream closed meanwhile: nothing to do
            handler.flush()


def where_waiting(loop: asyncio.AbstractEventLoop | None) -> str:
    """The stacks of this process's threads and of ``loop``'s tasks, as text."""
    out = io.StringIO()
    names = {t.ident: t.name for t in threading.enumerate()}
    for ident, frame in sys._current_frames().items():
        if ident == threading.get_ident():
            continue
        out.write(f"thread {names.get(ident, ident)}:\n")
        out.write("".join(traceback.format_stack(frame)))
    out.write(_task_stacks(loop))
    return out.getvalue()


def _task_stacks(loop: asyncio.AbstractEventLoop | None) -> str:
    """The loop's tasks' stacks, listed on the loop itself (asyncio is not thread-safe):
    a loop that does not answer is said to be blocked (its thread's stack shows where)."""
    if loop is None or loop.is_closed():
        return ""
    listed = threading.Event()
    text: list[str] = []

    def list_tasks() -> None:
        out = io.StringIO()
        for task in asyncio.all_tasks(loop):
            out.write(f"task {task.get_name()}:\n")
            out.write("".join(traceback.format_list(_awaiting(task.get_coro()))))
        text.append(out.getvalue())
        listed.set()

    try:
        loop.call_soon_threadsafe(list_tasks)
    except RuntimeError:  # closed meanwhile
        return ""
    if not listed.wait(_TASKS_TIMEOUT_S):
        return "the event loop did not answer: blocked (see its thread above)\n"
    return text[0]


def _awaiting(coro: object) -> traceback.StackSummary:
    """The frames of a suspended coroutine and of those it awaits, outermost first (a
    task's own ``get_stack`` gives only the outermost)."""
    frames = []
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            frame = getattr(coro, "ag_frame", None)
        if frame is not None:
            frames.append((frame, frame.f_lineno))
        coro = (
            getattr(coro, "cr_await", None)
            or getattr(coro, "gi_yieldfrom", None)
            or getattr(coro, "ag_await", None)
        )
    return traceback.StackSummary.extract(frames)
