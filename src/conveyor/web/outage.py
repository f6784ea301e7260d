"""What the API's log says while its store is unavailable: one line, not one per request.

Every request that meets an unavailable store is answered ``503``; a log line for each
would be thousands of lines a second from a busy API during an outage, burying
everything else. So the first refusal is logged with the store's error, and the others
are counted into the next line, at most one every :data:`REMIND_S` seconds while the
refusals go on (the workers log the outage's end: they keep asking the store).
"""

from __future__ import annotations

import logging
import time

logger = logging.getLogger("conveyor.api")

#: Seconds at least between two "store unavailable" lines of one API process.
REMIND_S = 10.0


class StoreTrouble:
    """Logs the requests answered ``503`` for an unavailable store, a line at a time."""

    def __init__(self) -> None:
        self._said_at: float | None = None
        self._untold = 0  # refusals since the last line

    def refused(self, exc: BaseException) -> None:
        """A request was answered ``503`` because of ``exc``."""
        now = time.monotonic()
        if self._said_at is not None and now - self._said_at < REMIND_S:
            self._untold += 1
            return
        if self._untold:
            logger.warning(
                "store unavailable: %s (and %d more request(s) answered 503 in the last %.0fs)",
                exc,
                self._untold,
                now - (self._said_at or now),
            )
        else:
            logger.warning("store unavailable: %s", exc)
        self._said_at, self._untold = now, 0
