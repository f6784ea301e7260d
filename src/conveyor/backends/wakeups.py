"""Wake-ups of waiting workers from a message channel, counted per queue.

A store's listener (PostgreSQL's LISTEN) runs in a task and calls
:meth:`Wakeups._wake` with a queue's name for each message, and with None each
time it (re)connects. A waiter compares the counts with the ones it saw when it
last looked for work (:meth:`Wakeups.mark`), so a message that arrived in between
wakes it at once.

Messages are a hint, never the only path: while the listener is down, waits are
cut to ``fallback`` seconds so that callers poll, and the backend checks the store
itself whenever what a waiter saw predates the current connection (the epoch).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence


class Wakeups(abc.ABC):
    """Counts of wake-up messages per queue, and waits on them."""

    def __init__(self, name: str, fallback: float = 1.0) -> None:
        self.name = name
        self.fallback = fallback
        self._counts: dict[str, int] = {}
        #: bumped on every (re)connection: anything may have happened while deaf
        self._epoch = 0
        self._changed = asyncio.Event()
        self._listening = False
        self._task: asyncio.Task[None] | None = None

    @abc.abstractmethod
    async def _listen(self) -> None:
        """Connect, set ``_listening``, call ``_wake`` per message; reconnect for ever."""

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._listen(), name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._listening = False

    @property
    def listening(self) -> bool:
        return self._listening

    @property
    def epoch(self) -> int:
        """How many times the listener has been (re)connected."""
        return self._epoch

    async def connected(self, timeout: float) -> bool:
        """Wait until the listener listens (True), at most ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._listening:
            left = deadline - loop.time()
            if left <= 0:
                return False
            await _until(self._changed, left)
        return True

    def _wake(self, queue: str | None) -> None:
        if queue is None:
            self._epoch += 1
        else:
            self._counts[queue] = self._counts.get(queue, 0) + 1
        self._changed.set()
        self._changed = asyncio.Event()

    # -- waiting -----------------------------------------------------------------
    def mark(self, queues: Sequence[str]) -> tuple[int, ...]:
        """What has been seen of ``queues`` so far (take it before looking for work)."""
        return (self._epoch, *(self._counts.get(q, 0) for q in queues))

    async def wait(
        self,
        queues: Sequence[str],
        seen: tuple[int, ...],
        timeout: float,
        until: Callable[[], bool] | None = None,
    ) -> bool:
        """Until a message for ``queues`` arrives after ``seen`` or ``until()`` holds
        (True), or ``timeout`` passes (False). While not listening, True after
        ``fallback``."""
        deadline = time.monotonic() + timeout
        while True:
            if self.mark(queues) != seen or (until is not None and until()):
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            changed = self._changed
            if not self._listening:
                await _until(changed, min(left, self.fallback))
                return True
            await _until(changed, left)


async def _until(event: asyncio.Event, seconds: float) -> None:
    """Until ``event`` is set or ``seconds`` pass. ``asyncio.timeout``, not
    ``asyncio.wait_for``: wait_for runs the wait in a task of its own (Python 3.11),
    a task and two more turns of the loop between a notification and the waiter."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
