"""Wake-ups for the PostgreSQL backend: LISTEN on one connection, polling when it is down.

Statements that make jobs ready send ``NOTIFY <channel>, '<queue>'`` (one per queue
per statement). A :class:`Notifications` keeps one dedicated connection listening
and counts the notifications per queue. A waiter compares those counts with the
ones it saw when it last looked for work: a notification that arrived in between
wakes it at once, so none is missed between a claim that found nothing and the
wait that follows.

Notifications are a hint, never the only path: when the listening connection
drops, it is reconnected with backoff, every waiter is woken (work may have come
meanwhile) and, until it is back, waits are cut to ``fallback`` seconds so that
callers poll. The backend checks the store itself whenever what a waiter saw
predates the current connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from conveyor.backends.postgres_url import one_line

logger = logging.getLogger("conveyor.backends.postgres")


class Notifications:
    """Counts of ``NOTIFY`` per queue on one channel, and waits on them."""

    def __init__(
        self,
        conninfo: str,
        connect_kwargs: dict[str, Any],
        channel: str,
        where: str,
        fallback: float = 1.0,
    ) -> None:
        self._conninfo = conninfo
        self._connect_kwargs = connect_kwargs
        self.channel = channel
        self._where = where  # the redacted URL, for log lines
        self.fallback = fallback
        self._counts: dict[str, int] = {}
        #: bumped on every (re)connection: anything may have happened while deaf
        self._epoch = 0
        self._changed = asyncio.Event()
        self._listening = False
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._listen(), name=f"conveyor-listen-{self.channel}"
            )

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
        """How many times the listening connection has been (re)established."""
        return self._epoch

    async def connected(self, timeout: float) -> bool:
        """Wait until the connection listens (True), at most ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._listening:
            left = deadline - loop.time()
            if left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
        return True

    async def _listen(self) -> None:
        backoff = 0.1
        failures = 0  # connection attempts failed in a row
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True, **self._connect_kwargs
                )
            except psycopg.Error as exc:
                # The first failure of a streak is a warning, the retries (every 10 s at
                # most, for as long as the store is away) only with -vv: the worker's
                # own error lines already say the store is unreachable.
                failures += 1
                logger.log(
                    logging.WARNING if failures == 1 else logging.DEBUG,
                    "cannot listen for new jobs on %s (%s); polling, retry in %.1f s",
                    self._where,
                    one_line(exc),
                    backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            try:
                async with conn:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                    if backoff > 0.1:
                        logger.warning("listening for new jobs on %s again", self._where)
                    backoff = 0.1
                    failures = 0
                    self._listening = True
                    self._wake(None)
                    async for note in conn.notifies():
                        self._wake(note.payload)
            except psycopg.Error as exc:
                logger.warning(
                    "lost the notification connection to %s (%s); polling until it is back",
                    self._where,
                    one_line(exc),
                )
            finally:
                self._listening = False
            self._wake(None)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)

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

    async def wait(self, queues: Sequence[str], seen: tuple[int, ...], timeout: float) -> bool:
        """Until a notification for ``queues`` arrives after ``seen`` (True) or
        ``timeout`` passes (False). While not listening, True after ``fallback``."""
        deadline = time.monotonic() + timeout
        while True:
            if self.mark(queues) != seen:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            changed = self._changed
            if not self._listening:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), min(left, self.fallback))
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), left)
