"""The JSON text of stored rows (rows.dumps, a C encoder built once) is the standard
library's compact JSON, with its errors for what JSON cannot hold."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.backends.rows import dumps, loads
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


@given(json_values, st.sampled_from(["", " ", "\n  "]))
def test_stored_text_reads_back_as_the_standard_library_reads_it(value: Any, space: str) -> None:
    # Given the JSON text of a value, with or without whitespace around it
    text = f"{space}{json.dumps(value)}{space}"

    # When it is read; Then it is what json.loads reads
    assert loads(text) == json.loads(text)


@pytest.mark.parametrize("text", ["", "[1,", '{"a" 1}', "[1] x", "nope"])
def test_text_that_is_not_json_is_refused_as_the_standard_library_refuses_it(text: str) -> None:
    # Given text that is not JSON; When it is read; Then json.loads's error says where
    with pytest.raises(json.JSONDecodeError) as ours:
        loads(text)
    with pytest.raises(json.JSONDecodeError) as theirs:
        json.loads(text)
    assert str(ours.value) == str(theirs.value)
