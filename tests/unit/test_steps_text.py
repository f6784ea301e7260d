"""``rows.steps_text``: the steps column's JSON, the same text as encoding each step's
``to_storage()``, whether or not the steps take the short way of a new task job."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.backends.rows import dumps, steps_text
from conveyor.job import Step

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)
names = st.text(max_size=10)  # quotes, backslashes, control and non-ASCII characters too


#: A value other than the default for each field ``Step.to_storage`` may leave out.
SET = {
    "kind": st.just("http"),
    "task": st.none(),
    "kwargs": st.dictionaries(names, json_values, min_size=1, max_size=2),
    "request": st.dictionaries(names, json_values, max_size=2),
    "state": st.sampled_from(["running", "succeeded", "failed"]),
    "attempts": st.integers(1, 3),
    "result": json_values.filter(lambda v: v is not None),
    "response": st.dictionaries(names, json_values, max_size=2),
    "last_error": names,
    "started_at": st.floats(0, 2e9),
    "finished_at": st.floats(0, 2e9),
}


@st.composite
def steps(draw: st.DrawFn) -> Step:
    """A new task job's step (name, task, args), with none, one or several of its other
    fields set."""
    fields = draw(st.sets(st.sampled_from(sorted(SET)), max_size=3))
    args = draw(st.lists(json_values, min_size=1, max_size=3) | st.just([]))
    step = Step(name=draw(names), task=draw(names), args=args)
    for name in fields:
        setattr(step, name, draw(SET[name]))
    return step


def _storage_text(steps: list[Step]) -> str:
    return dumps([s.to_storage() for s in steps])


@given(st.lists(steps(), max_size=3))
def test_the_text_is_what_encoding_each_steps_storage_gives(drawn: list[Step]) -> None:
    assert steps_text(drawn) == _storage_text(drawn)


#: One value other than the default per field, for the example with only it set.
ONE = {
    "kind": "http",
    "task": None,
    "kwargs": {"a": 1},
    "request": {},
    "state": "running",
    "attempts": 1,
    "result": 0,
    "response": {},
    "last_error": "",
    "started_at": 0.0,
    "finished_at": 0.0,
}


@pytest.mark.parametrize("field", sorted(ONE))
def test_a_step_with_one_more_field_set_keeps_it(field: str) -> None:
    # Given a new task job's step with one more field set (falsy values too: to_storage
    # keeps a result of 0 and an empty last error)
    step = Step(name="t", task="t", args=[1])
    setattr(step, field, ONE[field])
    # Then its text is what encoding its storage gives
    assert steps_text([step]) == _storage_text([step])


def test_a_new_task_jobs_step_takes_the_short_way_and_gives_the_same_text() -> None:
    # Given the step of a new task job, twice: the text around its args is made once
    first = [Step(name='sen"d', task="mail.send", args=[1, "é", {"a": None}])]
    second = [Step(name='sen"d', task="mail.send", args=[2])]
    # Then each gives the text encoding it gives
    assert steps_text(first) == _storage_text(first)
    assert steps_text(second) == '[{"name":"sen\\"d","task":"mail.send","args":[2]}]'


class _FalsyInt(int):
    def __bool__(self) -> bool:
        return False


class _TruthyZero(int):
    def __bool__(self) -> bool:
        return True


@pytest.mark.parametrize(
    "step",
    [
        Step(name=1, task="t", args=[1]),  # type: ignore[arg-type]
        Step(name=True, task="t", args=[1]),  # type: ignore[arg-type]
        Step(name=1.0, task="t", args=[1]),  # type: ignore[arg-type]
        Step(name="t", task="t", args=[1], attempts=_TruthyZero(0)),
        Step(name="t", task="t", args=[1], attempts=_FalsyInt(2)),
    ],
    ids=["int name", "bool name", "float name", "truthy zero attempts", "falsy attempts"],
)
def test_odd_values_are_written_as_their_storage_says(step: Step) -> None:
    # Given steps one after the other whose names compare equal (1, True, 1.0) or whose
    # attempts say another thing as a number and as a truth value
    # Then each is written as encoding its storage writes it
    assert steps_text([step]) == _storage_text([step])


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_args_that_are_not_json_are_refused_either_way(bad: float) -> None:
    new = [Step(name="t", task="t", args=[bad])]
    ran = [Step(name="t", task="t", args=[bad], state="running")]
    for drawn in (new, ran):
        with pytest.raises(ValueError):
            steps_text(drawn)
