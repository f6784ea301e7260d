"""A background event loop that lets synchronous code call the async core.

Sync callers (a Django view, a script) get ``enqueue`` / ``refresh`` / ``wait``
without an event loop of their own: the coroutine runs on this loop's thread
and the caller blocks on its result. One portal per process, started lazily (in a
forked child, again: the parent's thread is not there; see conveyor.forks).
"""

from __future__ import annotations

import asyncio
import atexit
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from conveyor.forks import ForkGuard, keep_from_parent

T = TypeVar("T")


class Portal:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._fork = ForkGuard()

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="conveyor-portal", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
                atexit.register(self.stop)
            return self._loop

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the portal loop and wait for its result."""
        self._fork.check(self._forget_parent)
        loop = self._start()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            coro.close()
            raise RuntimeError("a synchronous conveyor call was made on the portal's own loop")
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    def _forget_parent(self) -> None:
        """In a forked child: the parent's loop runs on a thread the fork did not copy."""
        keep_from_parent(self._loop, self._thread)
        self._loop = self._thread = None
        self._lock = threading.Lock()

    def stop(self) -> None:
        self._fork.check(self._forget_parent)
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)


portal = Portal()
