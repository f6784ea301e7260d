"""The retry rules of HTTP steps: how many attempts, how long between them, and what a
target's ``Retry-After`` asks. Pure functions, without aiohttp: the executor judges a
failed step with them, and tests drive them with their own clock and rng."""

from __future__ import annotations

import email.utils
import math
import random
import time
from datetime import UTC
from typing import Any

from conveyor.job import fits_a_float

#: The longest wait between two attempts of an HTTP step, whatever the target asks.
MAX_RETRY_DELAY_S = 3600.0
#: Retry delays grow by up to this fraction, so that failures of many jobs spread out.
RETRY_JITTER = 0.1
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_RETRY_EXPONENT = 2.0


def retry_delay(
    attempt: int,
    exponent: float,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait after the ``attempt``-th (1-based) failed attempt of an HTTP step.

    ``attempt ** exponent`` plus a jitter of up to 10 % (only upwards: the documented
    schedule is a floor), at least ``retry_after`` when the target asked for it, at most an
    hour. With 5 attempts an always-failing step is poisoned after about 30 s at exponent 2,
    a minute at 2.5 and 100 s at 3.
    """
    try:
        delay = math.pow(attempt, exponent)
    except OverflowError:
        delay = MAX_RETRY_DELAY_S
    delay += (rng or random).uniform(0.0, delay * RETRY_JITTER)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return min(delay, MAX_RETRY_DELAY_S)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """A ``Retry-After`` value (seconds, or an HTTP date) as seconds from ``now``; None
    when absent or unreadable (then the step's own schedule applies)."""
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


def retry_settings(request: dict[str, Any] | None) -> tuple[int, float]:
    """The step's ``(max_attempts, retry_exponent)``, defaults filled in."""
    request = request or {}
    max_attempts = request.get("max_attempts", DEFAULT_MAX_ATTEMPTS)
    exponent = request.get("retry_exponent", DEFAULT_RETRY_EXPONENT)
    if not is_number(max_attempts) or max_attempts < 1:
        max_attempts = DEFAULT_MAX_ATTEMPTS
    if not is_number(exponent) or exponent < 0:
        exponent = DEFAULT_RETRY_EXPONENT
    return int(max_attempts), float(exponent)


def is_number(value: Any) -> bool:
    """Whether ``value`` is an int or float a float holds (finite), not a bool. An int
    past a float's range is not one: ``math.isfinite`` raises OverflowError for it."""
    return isinstance(value, int | float) and not isinstance(value, bool) and fits_a_float(value)
