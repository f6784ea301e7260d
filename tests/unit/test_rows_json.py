"""The JSON text of stored rows (rows.dumps, a C encoder built once) is the standard
library's compact JSON, with its errors for what JSON cannot hold."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given

from conveyor.backends.rows import dumps
from tests.strategies import json_values


@given(json_values)
def test_the_text_is_the_standard_librarys_compact_json(value: Any) -> None:
    # Given any JSON value; When it is encoded
    text = dumps(value)

    # Then it is what json.dumps writes, compact and with non-ASCII kept, and reads back
    assert text == json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    assert json.loads(text) == value


def _contains_itself() -> list[Any]:
    value: list[Any] = []
    value.append({"again": value})
    return value


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (math.nan, ValueError, "Out of range float"),
        ({"a": [math.inf]}, ValueError, "Out of range float"),
        ({"a": object()}, TypeError, "object is not JSON serializable"),
        ({(1, 2): 1}, TypeError, "keys must be"),
        (_contains_itself(), ValueError, "Circular reference"),
    ],
)
def test_what_json_cannot_hold_is_refused_as_the_standard_library_refuses_it(
    value: Any, error: type[Exception], message: str
) -> None:
    # Given a value JSON cannot hold; When it is encoded; Then the error says why
    with pytest.raises(error, match=message):
        dumps(value)

    # and the next value is encoded as usual (no state is left behind)
    assert dumps([1, {"b": "é"}]) == '[1,{"b":"é"}]'
