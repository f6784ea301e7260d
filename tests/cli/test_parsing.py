"""Command-line values: durations, times, JSON arguments, lists."""

from __future__ import annotations

import datetime as dt

import pytest

from conveyor.cli.parsing import parse_args, parse_duration, parse_time, split_list
from conveyor.exceptions import InvalidJob


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0),
        ("90", 90),
        ("1.5", 1.5),
        ("500ms", 0.5),
        ("30s", 30),
        ("5m", 300),
        ("2h", 7200),
        ("1d", 86400),
        ("1w", 604800),
        ("1h30m", 5400),
        (" 2H ", 7200),
        ("-5m", -300),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text, "delay") == seconds


@pytest.mark.parametrize("text", ["", "soon", "5x", "m5", "1.2.3s", "inf", "nan", "5 m"])
def test_bad_durations_name_the_field(text: str) -> None:
    with pytest.raises(InvalidJob) as caught:
        parse_duration(text, "delay")
    assert caught.value.field == "delay"


def test_times_need_a_timezone() -> None:
    assert parse_time("2030-01-02T03:04:05Z") == dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    for text in ("2030-01-02T03:04:05", "2030-01-02", "yesterday"):
        with pytest.raises(InvalidJob, match="run_at"):
            parse_time(text)


def test_args_are_an_array_or_one_value() -> None:
    assert parse_args(None) == []
    assert parse_args("[1, [2]]") == [1, [2]]
    assert parse_args('{"a": 1}') == [{"a": 1}]
    assert parse_args("null") == [None]


def test_lists_come_repeated_or_comma_separated() -> None:
    assert split_list(["high,default", " low ", "high", ""]) == ["high", "default", "low"]
