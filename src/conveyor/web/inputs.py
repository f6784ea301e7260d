"""Numbers and JSON documents from requests, read without letting odd input through as
a 500.

``str.isdigit`` is true of ``"²"``, which ``int`` refuses, and of ten thousand digits,
which ``int`` refuses too (Python's limit on its text of ints); a JSON body nested
thousands deep makes the parser, pydantic or our own checks recurse past Python's
limit. Both are refused here with the field named.
"""

from __future__ import annotations

import math
from typing import Any

#: Digits of the largest count a header or parameter may carry (versions, lengths).
_MAX_DIGITS = 18


def count(text: str | None) -> int | None:
    """``text`` as a non-negative integer of ASCII digits, or None."""
    if text is None or not text.isascii() or not text.isdigit() or len(text) > _MAX_DIGITS:
        return None
    return int(text)


def refuse_constant(name: str) -> Any:
    """For ``json``'s ``parse_constant``: Python reads NaN, Infinity and -Infinity, which
    are not JSON, and no store keeps them."""
    raise ValueError(f"{name} is not a JSON value")


def finite_float(text: str) -> float:
    """For ``json``'s ``parse_float``: a number beyond a double (``1e999``) is JSON, but
    Python reads it as infinity, which no store keeps."""
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text} is too large for a number")
    return value
