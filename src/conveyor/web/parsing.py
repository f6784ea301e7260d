"""What the API reads from a request — its JSON body, its ``Idempotency-Key``, the
``state`` and ``cursor`` of a list — or a :class:`~conveyor.web.problems.Problem`
naming the part that is wrong."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from conveyor.job import State
from conveyor.storable import MAX_DEPTH, too_deep
from conveyor.web.cursors import decode_cursor
from conveyor.web.inputs import count, finite_float, refuse_constant
from conveyor.web.problems import Problem

JSON = "application/json"


async def json_body(request: Request, limit: int) -> Any:
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    if media != JSON and not media.endswith("+json"):
        raise Problem(
            415,
            f"send the job as application/json, not {media or 'no Content-Type'}",
            [{"header": "Content-Type", "detail": "expected application/json"}],
        )
    declared = count(request.headers.get("content-length"))
    if declared is not None and declared > limit:
        raise _too_large(limit)
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        data = _parse(_utf8(raw))
    except (UnicodeDecodeError, ValueError) as exc:
        raise Problem(
            400, f"the body is not JSON: {exc}", [{"pointer": "", "detail": f"not JSON: {exc}"}]
        ) from None
    except RecursionError:  # deeper than the parser goes
        raise _too_deep_body() from None
    if too_deep(data, MAX_DEPTH):
        raise _too_deep_body()
    if not isinstance(data, dict):
        raise Problem(
            422, "the body must be a JSON object", [{"pointer": "", "detail": "expected an object"}]
        )
    return data


_BOM = b"\xef\xbb\xbf"


def _utf8(raw: bytes) -> str:
    """The body as text. JSON between systems is UTF-8 (RFC 8259); ``json.loads`` would
    read bytes in UTF-16 or UTF-32 too, guessing from the first bytes. A UTF-8 byte
    order mark, which the RFC lets a parser ignore, is skipped."""
    if b"\x00" in raw:  # valid UTF-8, but in no JSON text; UTF-16 and UTF-32 are full of it
        raise ValueError("a NUL byte, which no JSON text in UTF-8 holds (UTF-16 or UTF-32?)")
    try:
        return raw.removeprefix(_BOM).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object, refused when it holds a key twice: JSON leaves the meaning of that open,
    and Python keeps the last value silently (``"method": "GET", "method": "DELETE"``
    stored a DELETE that a proxy reading the first one let through)."""
    value = dict(pairs)
    if len(value) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"the key {key[:80]!r} appears twice in one object")
            seen.add(key)
    return value


_parse = json.JSONDecoder(
    object_pairs_hook=_unique_keys, parse_constant=refuse_constant, parse_float=finite_float
).decode


def _too_large(limit: int) -> Problem:
    return Problem(
        413,
        f"the body is larger than {limit} bytes",
        [{"pointer": "", "detail": f"at most {limit} bytes (CONVEYOR_API_MAX_BODY)"}],
    )


def _too_deep_body() -> Problem:
    return Problem(
        422,
        f"the body is nested deeper than {MAX_DEPTH} levels",
        [{"pointer": "", "detail": f"at most {MAX_DEPTH} levels of arrays and objects"}],
    )


#: What idempotency_key accepts, as the schema says it: printable characters (a header is
#: Latin-1), not only spaces (HTTP strips those around a value, and an empty key is refused).
_PRINTABLE = " -~\u00a1-\u00ac\u00ae-\u00ff"
IDEMPOTENCY_KEY = f"^[{_PRINTABLE}]*[!-~\u00a1-\u00ac\u00ae-\u00ff][{_PRINTABLE}]*$"


def idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not key.isprintable():
        raise Problem(
            422,
            "Idempotency-Key: 1 to 255 printable characters",
            [{"header": "Idempotency-Key", "detail": "1 to 255 printable characters"}],
        )
    return key


#: ``?state=`` as the schema says it (checked by states, with its own problem): states,
#: comma-separated, spaces allowed around them.
_STATE = "(?:" + "|".join(s.value for s in State) + ")"
STATES = rf"^\s*(?:{_STATE}\s*)?(?:,\s*(?:{_STATE}\s*)?)*$"


def states(text: str | None) -> frozenset[State] | None:
    if not text:
        return None
    try:
        states = frozenset(State(part.strip()) for part in text.split(",") if part.strip())
    except ValueError:
        raise Problem(
            422,
            "state: unknown state",
            [
                {
                    "parameter": "state",
                    "detail": "one or more of " + ", ".join(s.value for s in State),
                }
            ],
        ) from None
    return states or None  # "state=," names no state: every state, as "state=" does


def after_cursor(cursor: str | None) -> str | None:
    """The job id a ``cursor`` names (None: the first page); 422 for a cursor the API
    did not make (see :mod:`conveyor.web.cursors`)."""
    if not cursor:  # "cursor=" names no page: the first one, as no cursor does
        return None
    after = decode_cursor(cursor)
    if after is None:
        raise Problem(
            422,
            "cursor: not a cursor of this API",
            [{"parameter": "cursor", "detail": "pass back a page's next_cursor as it is"}],
        )
    return after
