"""Turning command-line text into values: JSON, durations, times, states, lists.

Every function raises :class:`~conveyor.exceptions.InvalidJob` naming the field,
so the CLI reports bad input the same way the library does.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Iterable
from typing import Any

from conveyor.exceptions import InvalidJob
from conveyor.job import State

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
DURATION_HELP = "seconds, or a duration such as 30s, 5m, 2h, 1d, 1h30m"


def parse_duration(text: str, field: str) -> float:
    """``"90"`` / ``"1.5"`` (seconds) or ``"30s"``, ``"5m"``, ``"2h"``, ``"1d"``, ``"1w"``,
    ``"1h30m"``, ``"500ms"`` → seconds. A leading ``-`` gives a negative value, which
    callers reject with their own words."""
    raw = text.strip().lower()
    sign = 1.0
    if raw.startswith("-"):
        sign, raw = -1.0, raw[1:].strip()
    try:
        value = float(raw)
    except ValueError:
        if not _DURATION.fullmatch(raw):
            raise InvalidJob(field, f"expected {DURATION_HELP}; got {text!r}") from None
        value = sum(float(n) * _UNITS[unit] for n, unit in _DURATION_PART.findall(raw))
    if not math.isfinite(value):
        raise InvalidJob(field, f"expected a finite number of seconds, got {text!r}")
    return sign * value


def parse_time(text: str, field: str = "run_at") -> dt.datetime:
    """An ISO 8601 time **with** a timezone (``Z`` or ``+02:00``).

    A time without one is refused rather than guessed: the worker's clock, the
    caller's and the store's may sit in different zones, and a wrong guess
    silently runs the job hours early or late.
    """
    example = "e.g. 2030-01-02T03:04:05Z or 2030-01-02T05:04:05+02:00"
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidJob(
            field, f"expected an ISO 8601 time with a timezone ({example}); got {text!r}"
        ) from None
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidJob(field, f"{text!r} has no timezone: add Z for UTC or an offset ({example})")
    return value


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(text: str, field: str) -> Any:
    """Strict JSON (no NaN / Infinity)."""
    try:
        return json.loads(text, parse_constant=_no_constants)
    except RecursionError:
        raise InvalidJob(field, "not valid JSON here: nested too deeply") from None
    except ValueError as exc:
        hint = ""
        if text and text.strip()[:1] not in '[{"-0123456789tfn':
            hint = f"; to pass a string, quote it as JSON: '\"{text}\"'"
        raise InvalidJob(field, f"not valid JSON ({exc}){hint}") from None


def parse_args(text: str | None) -> list[Any]:
    """ARGS_JSON: a JSON array is the argument list; any other JSON value is one argument."""
    if text is None:
        return []
    value = parse_json(text, "args")
    return value if isinstance(value, list) else [value]


def parse_object(text: str | None, field: str) -> dict[str, Any] | None:
    """A JSON object (``--kwargs``, ``--metadata``)."""
    if text is None:
        return None
    value = parse_json(text, field)
    if not isinstance(value, dict):
        raise InvalidJob(field, f"expected a JSON object such as '{{\"key\": 1}}', got {text!r}")
    return value


def split_list(values: Iterable[str] | None) -> list[str]:
    """Repeated options and comma lists alike: ``-q a,b -q c`` → ``["a", "b", "c"]``."""
    out: list[str] = []
    for value in values or ():
        out.extend(part.strip() for part in value.split(",") if part.strip())
    return list(dict.fromkeys(out))


def parse_states(
    values: Iterable[str] | None, allowed: Iterable[State] = tuple(State)
) -> frozenset[State] | None:
    """``--state`` values (repeatable, comma lists) → states; None when none were given.

    ``--state ''`` (a script's unset variable) names no state: refused, not taken for
    no ``--state`` at all, which means every state (every finished one for prune)."""
    names = split_list(values)
    if not names:
        if values:
            given = ", ".join(repr(v) for v in values)
            raise InvalidJob("state", f"no state named in {given}")
        return None
    allowed = tuple(allowed)
    states: set[State] = set()
    for name in names:
        try:
            state = State(name.lower())
        except ValueError:
            known = ", ".join(s.value for s in State)
            raise InvalidJob("state", f"unknown state {name!r}; known: {known}") from None
        if state not in allowed:
            expected = ", ".join(s.value for s in allowed)
            raise InvalidJob("state", f"{name!r} is not allowed here; expected one of {expected}")
        states.add(state)
    return frozenset(states)
