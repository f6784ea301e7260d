"""Text every store can keep.

PostgreSQL's ``text`` and ``jsonb`` hold no NUL character (a JSON ``"\\u0000"``
included), and no store takes a lone surrogate (``"\\ud800"``: Python strings may hold
one, UTF-8 cannot). A job carrying either would be stored on one store and refused by
another, or, coming from a task's result or error, could not be recorded at all. So:

- what a caller gives (arguments, metadata, keys, names, a task's result) is refused
  with the reason, naming the field: :func:`problem`, :func:`json_problem` (which also
  refuses a dict key that is not a string: JSON would give it back as text);
- what conveyor writes about a run (error messages, tracebacks) is kept readable with
  those characters replaced by U+FFFD: :func:`storable`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

#: Arrays and objects a job's values (arguments, metadata, results, a request body) may
#: nest: enough for any job, far below what a store's JSON functions (SQLite's, Redis'
#: Lua: 1,000 levels) and Python's parser in a worker (its recursion limit) read back.
MAX_DEPTH = 100
_NUL = "contains a NUL character (\\u0000), which PostgreSQL cannot store"
_SURROGATE = "contains a lone surrogate (U+D800 to U+DFFF), which is not UTF-8"
_TOO_DEEP = (
    f"nests arrays and objects more than {MAX_DEPTH} levels deep (the most a job's values may)"
)
_SURROGATES = re.compile("[\ud800-\udfff]")
# An escaped NUL in JSON text: \u0000 after an even number of backslashes (an odd one
# escapes the backslash, as in the text "\\u0000" of the string '\u0000' written out).
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def _not_json(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} {value!r:.80}")


_encode = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_not_json
).encode


def problem(text: str) -> str | None:
    """Why the stores cannot keep ``text``, or None."""
    if "\x00" in text:
        return _NUL
    if not text.isascii() and _SURROGATES.search(text):
        return _SURROGATE
    return None


def is_utf8(text: str) -> bool:
    """Whether ``text`` encodes as UTF-8: bytes that are not (from argv, the environment,
    a header) come into Python as lone surrogates (``surrogateescape``)."""
    return text.isascii() or _SURROGATES.search(text) is None


def json_problem(value: Any) -> str | None:
    """Why the stores cannot keep the JSON of ``value`` (any string in it, keys
    included), or None. TypeError or ValueError when ``value`` is not JSON at all."""
    text = _encode(value)
    if "\\u0000" in text and _NUL_ESCAPE.search(text):
        return _NUL
    if not text.isascii() and _SURROGATES.search(text):
        return _SURROGATE
    # A dict's key that is not text (1, None, 1.5, True) is written as text: the value
    # would come back changed ({1: "a"} as {"1": "a"}), or lose an entry ({1: "a",
    # "1": "b"}). Only a value with an object in it has keys to look at.
    if "{" in text:
        key = key_not_text(value)
        if key is not _NO_KEY:
            return f"has a dict key that is not a string: {key!r:.80} ({type(key).__name__})"
    # Each level opens a bracket: a text with no more of them (strings' own counted
    # too) cannot nest that deep, and the walk, several times the encoding's cost, is
    # for the rare value that has more.
    if text.count("[") + text.count("{") > MAX_DEPTH and too_deep(value, MAX_DEPTH):
        return _TOO_DEEP
    return None


#: What JSON makes arrays and objects of (a tuple, not a union made anew per item).
_CONTAINERS = (dict, list, tuple)


def too_deep(value: Any, limit: int) -> bool:
    """Whether ``value`` (JSON: lists and tuples are arrays) nests arrays and objects
    more than ``limit`` deep (``[]`` is one level, ``[[]]`` two)."""
    return any(depth > limit for depth, _ in enumerate(_levels(value), 1))


_NO_KEY = object()


def key_not_text(value: Any) -> Any:
    """The first key of a dict in ``value`` that is not a string, or ``_NO_KEY``."""
    for level in _levels(value):
        for item in level:
            if isinstance(item, dict):
                for key in item:
                    if not isinstance(key, str):
                        return key
    return _NO_KEY


def _levels(value: Any) -> Iterator[list[Any]]:
    """The arrays and objects of ``value`` (JSON: lists and tuples are arrays), level by
    level, without recursion: the point is a value too deep to recurse into."""
    level = [value] if isinstance(value, _CONTAINERS) else []
    while level:
        yield level
        level = [
            child
            for item in level
            for child in (item.values() if isinstance(item, dict) else item)
            if isinstance(child, _CONTAINERS)
        ]


def storable(text: str) -> str:
    """``text`` with NUL characters and lone surrogates replaced by U+FFFD."""
    if text.isascii() and "\x00" not in text:
        return text
    return _SURROGATES.sub("\ufffd", text).replace("\x00", "\ufffd")
