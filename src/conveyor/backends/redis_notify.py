"""Wake-ups for the Redis backend: one pub/sub connection, polling while it is down.

Scripts that make jobs ready publish the queue's name on ``<prefix>ready`` (once
per queue per script call, not per job). :class:`Subscription` keeps one
connection subscribed; counting and waiting are :mod:`conveyor.backends.wakeups`'.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from redis.exceptions import RedisError

from conveyor.backends.wakeups import Wakeups

logger = logging.getLogger("conveyor.backends.redis")


class Subscription(Wakeups):
    """Counts of messages per queue on one channel, and waits on them."""

    def __init__(self, client: Any, channel: str, where: str, fallback: float = 1.0) -> None:
        super().__init__(f"conveyor-subscribe-{channel}", fallback)
        self._client = client
        self.channel = channel
        self._where = where  # the redacted URL, for log lines

    async def _listen(self) -> None:
        backoff = 0.1
        failures = 0
        while True:
            pubsub = self._client.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                while True:
                    # A timeout, so that the client's health check (a PING) runs
                    # and a silently dead connection is noticed.
                    message = await pubsub.get_message(timeout=5.0)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        if failures:
                            logger.warning("listening for new jobs on %s again", self._where)
                        backoff, failures = 0.1, 0
                        self._listening = True
                        self._wake(None)
                    elif message["type"] == "message":
                        self._wake(message["data"])
            except (RedisError, OSError) as exc:
                failures += 1
                # The first failure of a streak is a warning, the retries only with -vv:
                # the worker's own error lines already say the store is unreachable.
                logger.log(
                    logging.WARNING if failures == 1 else logging.DEBUG,
                    "lost the wake-up subscription to %s (%s); polling, retry in %.1f s",
                    self._where,
                    exc,
                    backoff,
                )
            finally:
                self._listening = False
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            self._wake(None)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)
