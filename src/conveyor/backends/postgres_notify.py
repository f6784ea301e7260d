"""Wake-ups for the PostgreSQL backend: LISTEN on one connection, polling when it is down.

Statements that make jobs ready send ``NOTIFY <channel>, '<queue>'`` (one per queue
per statement). A :class:`Notifications` keeps one dedicated connection listening
and counts the notifications per queue. A waiter compares those counts with the
ones it saw when it last looked for work: a notification that arrived in between
wakes it at once, so none is missed between a claim that found nothing and the
wait that follows.

The same connection listens on the channel of each worker of this process that waits
for hand-offs (``listen_for``): an enqueue hands such a worker its job, claimed, in a
notification on that channel (0006_hand_offs.sql). Those payloads are kept per
channel until the worker's wait takes them (``take``).

Notifications are a hint, never the only path: when the listening connection
drops, it is reconnected with backoff, every waiter is woken (work may have come
meanwhile) and, until it is back, waits are cut to ``fallback`` seconds so that
callers poll. The backend checks the store itself whenever what a waiter saw
predates the current connection; a job handed over while the connection was down
is answered by the worker's next claim.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import psycopg
from psycopg import sql

from conveyor.backends.postgres_url import one_line
from conveyor.backends.wakeups import Wakeups

logger = logging.getLogger("conveyor.backends.postgres")


class Notifications(Wakeups):
    """Counts of ``NOTIFY`` per queue on one channel, and waits on them."""

    def __init__(
        self,
        conninfo: str,
        connect_kwargs: dict[str, Any],
        channel: str,
        where: str,
        fallback: float = 1.0,
    ) -> None:
        super().__init__(f"conveyor-listen-{channel}", fallback)
        self._conninfo = conninfo
        self._connect_kwargs = connect_kwargs
        self.channel = channel
        self._where = where  # the redacted URL, for log lines
        #: hand-off channels listened on, each with the payloads not taken yet
        self._handed: dict[str, list[str]] = {}

    def listen_for(self, channel: str) -> None:
        """Listen on a worker's hand-off channel too. A new channel while the listener
        runs restarts it (its connection LISTENs once, as it connects): a waiter then
        checks the store, as after any reconnection."""
        if channel in self._handed:
            return
        self._handed[channel] = []
        if self._task is not None:
            self._task.cancel()
            self._task = None
            self._listening = False
            self.start()

    def take(self, channel: str) -> list[str]:
        """The payloads that came on ``channel`` since the last take."""
        payloads = self._handed.get(channel)
        if not payloads:
            return []
        self._handed[channel] = []
        return payloads

    def handed(self, channel: str) -> bool:
        return bool(self._handed.get(channel))

    def _hand(self, channel: str, payload: str) -> None:
        payloads = self._handed.get(channel)
        if payloads is not None:
            payloads.append(payload)
            self._changed.set()
            self._changed = asyncio.Event()

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
            me = asyncio.current_task()
            try:
                async with conn:
                    for channel in (self.channel, *self._handed):
                        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    if backoff > 0.1:
                        logger.warning("listening for new jobs on %s again", self._where)
                    backoff = 0.1
                    failures = 0
                    self._listening = True
                    self._wake(None)
                    async for note in conn.notifies():
                        if note.channel == self.channel:
                            self._wake(note.payload)
                        else:
                            self._hand(note.channel, note.payload)
            except psycopg.Error as exc:
                logger.warning(
                    "lost the notification connection to %s (%s); polling until it is back",
                    self._where,
                    one_line(exc),
                )
            finally:
                if self._task is me:  # not a listener replaced by listen_for
                    self._listening = False
            self._wake(None)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)
