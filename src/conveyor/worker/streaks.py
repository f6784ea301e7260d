"""Failures in a row, and when to say so: when they start, then at most every
``TELL_EVERY_S`` while they last, and when they end.

A worker whose store is away tries again and again (claims with a growing pause up to
5 s, the lease keeper every period, the outcome writer every second): a log line per
try is thousands over an outage of an hour, and buries everything else.
"""

from __future__ import annotations

import time

#: Seconds at least between two lines saying that the failures go on.
TELL_EVERY_S = 10.0


class Streak:
    """One kind of failure in a row (``fail``) until a success (``end``)."""

    __slots__ = ("_since", "_told_at")

    def __init__(self) -> None:
        self._since: float | None = None
        self._told_at = 0.0

    def fail(self) -> float | None:
        """Count a failure: the seconds since the streak began when it should be said
        (0.0 for the first), else None."""
        now = time.monotonic()
        if self._since is None:
            self._since = self._told_at = now
            return 0.0
        if now - self._told_at >= TELL_EVERY_S:
            self._told_at = now
            return now - self._since
        return None

    def end(self) -> float | None:
        """A success: how long the streak lasted (None when there was none)."""
        if self._since is None:
            return None
        lasted = time.monotonic() - self._since
        self._since = None
        return lasted
