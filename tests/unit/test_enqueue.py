"""Enqueue from the library: options, validation at the call, nothing stored on bad input."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import gc
import math
import os
import secrets
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from conveyor import (
    ConfigError,
    Conveyor,
    InvalidJob,
    JobCancelled,
    JobNotFound,
    Priority,
    State,
    TaskNotFound,
)


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.fixture
def app(tmp_path: Path) -> Conveyor:
    app = Conveyor(f"sqlite:///{tmp_path}/jobs.db")
    yield app
    app.close()


def stored_count(app: Conveyor) -> int:
    async def count() -> int:
        stats = await (await app.backend()).stats()
        return sum(stats.counts.values())

    return app.portal_call(count())


def test_enqueue_returns_a_handle_on_the_stored_job(app: Conveyor) -> None:
    @app.task(queue="mail", priority="high", max_attempts=3)
    def send(to: str, subject: str = "hi") -> None: ...

    handle = send.enqueue("ada@example.com", subject="welcome")

    job = handle.refresh().job
    assert handle.state is State.QUEUED
    assert job.queue == "mail"
    assert job.priority == Priority.HIGH == -10
    assert job.max_attempts == 3
    assert (
        job.steps[0].task
        == send.name
        == "tests.unit.test_enqueue:test_enqueue_returns_a_handle_on_the_stored_job.<locals>.send"
    )
    assert job.steps[0].args == ["ada@example.com"]
    assert job.steps[0].kwargs == {"subject": "welcome"}


def test_options_per_call_override_task_defaults(app: Conveyor) -> None:
    @app.task(name="work", queue="default")
    def work(n: int) -> int:
        return n

    handle = work.with_options(
        queue="bulk", priority="bulk", metadata={"origin": "test"}, timeout=5
    ).enqueue(1)

    job = handle.job
    assert (job.queue, job.priority, job.metadata, job.timeout) == (
        "bulk",
        20,
        {"origin": "test"},
        5,
    )


def test_delay_and_run_at_store_a_scheduled_job(app: Conveyor) -> None:
    @app.task(name="later")
    def later() -> None: ...

    delayed = later.with_options(delay=60).enqueue()
    at = later.with_options(run_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).enqueue()

    assert delayed.state is State.SCHEDULED
    assert delayed.job.run_at == pytest.approx(time.time() + 60, abs=5)
    assert at.state is State.SCHEDULED


def test_unique_key_returns_the_waiting_job(app: Conveyor) -> None:
    @app.task(name="report")
    def report(day: str) -> None: ...

    first = report.with_options(unique_key="report:2026-11-23").enqueue("2026-11-23")
    second = report.with_options(unique_key="report:2026-11-23").enqueue("2026-11-23")

    assert second.id == first.id
    assert stored_count(app) == 1


def test_enqueue_many_stores_every_job_in_one_call(app: Conveyor) -> None:
    @app.task(name="square")
    def square(n: int) -> int:
        return n * n

    handles = square.enqueue_many([[i] for i in range(100)] + [{"n": 100}])

    assert len({h.id for h in handles}) == 101
    assert stored_count(app) == 101
    assert handles[-1].job.steps[0].kwargs == {"n": 100}


def test_enqueue_by_import_path(app: Conveyor) -> None:
    handle = app.enqueue("json:dumps", {"a": 1})

    assert handle.job.task == "json:dumps"
    assert app.job(handle.id).job.steps[0].args == [{"a": 1}]


def test_async_forms(app: Conveyor) -> None:
    @app.task(name="hello")
    async def hello(name: str) -> str:
        return f"hello {name}"

    async def scenario() -> State:
        handle = await hello.enqueue_async("ada")
        again = await (await app.job_async(handle.id)).refresh_async()
        await app.aclose()
        return again.state

    assert asyncio.run(scenario()) is State.QUEUED


@pytest.mark.parametrize(
    ("options", "args", "field"),
    [
        ({"delay": -1}, [1], "delay"),
        ({"delay": "soon"}, [1], "delay"),
        ({"priority": "urgent"}, [1], "priority"),
        ({"queue": ""}, [1], "queue"),
        ({"queue": "a b"}, [1], "queue"),
        ({"max_attempts": 0}, [1], "max_attempts"),
        ({"timeout": -5}, [1], "timeout"),
        ({"timeout": math.nan}, [1], "timeout"),
        ({"timeout": math.inf}, [1], "timeout"),
        ({"run_at": dt.datetime(2030, 1, 1)}, [1], "run_at"),
        ({"retry": {"exponent": -1}}, [1], "retry"),
        ({"retry": {"bogus": 1}}, [1], "retry"),
        ({}, [object()], "args"),
        ({}, [math.nan], "args"),
        ({}, [], "args"),
        ({}, [1, 2], "args"),
        ({"metadata": {"when": dt.date(2026, 1, 1)}}, [1], "metadata"),
        ({"metadata": 5}, [1], "metadata"),
        ({"metadata": ["a", "b"]}, [1], "metadata"),
        ({"retry": 5}, [1], "retry"),
        # Text some store cannot keep: a NUL (PostgreSQL), a lone surrogate (UTF-8)
        ({}, ["a\x00b"], "args"),
        ({}, ["é\ud800"], "args"),
        ({}, [{"deep": ["\x00"]}], "args"),
        ({}, [{"key\udfff": 1}], "args"),
        ({"metadata": {"who": "\x00"}}, [1], "metadata"),
        # Objects keyed by what is not text: JSON would turn the key into text
        ({}, [{1: "a"}], "args"),
        ({}, [[{"ok": {None: 1}}]], "args"),
        ({"metadata": {"m": {1.5: "x"}}}, [1], "metadata"),
        # A key of blanks alone, like an empty one: a script's unset variable, not a key
        ({"unique_key": ""}, [1], "unique_key"),
        ({"unique_key": "   "}, [1], "unique_key"),
        ({"unique_key": "\t\n\u3000"}, [1], "unique_key"),
        ({"unique_key": "k\x00"}, [1], "unique_key"),
        ({"unique_key": "k\ud800"}, [1], "unique_key"),
        ({"queue": "q\x00"}, [1], "queue"),
        # Times no date type shows, and values with no JSON text
        ({"run_at": 1e300}, [1], "run_at"),
        ({"run_at": -1e300}, [1], "run_at"),
        (
            {
                "run_at": dt.datetime(
                    9999, 12, 31, 23, 59, 59, tzinfo=dt.timezone(dt.timedelta(hours=-14))
                )
            },
            [1],
            "run_at",
        ),
        ({"delay": 1e300}, [1], "delay"),
        ({"delay": dt.timedelta.max}, [1], "delay"),
        ({}, [10**5000], "args"),
        ({}, [_nested(5000)], "args"),
        ({"metadata": {"a": _nested(5000)}}, [1], "metadata"),
        # Deeper than a job's values may be (100 levels), though Python writes it: some
        # stores' JSON functions and a worker's parser read no deeper than about 1,000
        ({}, [_nested(100)], "args"),
        ({}, [(_nested(500),)], "args"),
        ({"metadata": {"a": _nested(100)}}, [1], "metadata"),
        # Ints past a float's range (they raised OverflowError), or past 64 bits where a
        # store keeps the number as an integer (SQLite raised OverflowError at the insert)
        ({"delay": 10**400}, [1], "delay"),
        ({"run_at": 10**400}, [1], "run_at"),
        ({"run_at": -(10**400)}, [1], "run_at"),
        ({"timeout": 10**400}, [1], "timeout"),
        ({"timeout": 2**63}, [1], "timeout"),
        ({"retry": {"exponent": 10**400}}, [1], "retry"),
        ({"retry": {"max_delay": 10**400}}, [1], "retry"),
        # Ints too long for Python to write out (past 4,300 digits): the message that
        # showed one raised a bare ValueError ("Exceeds the limit ...") naming nothing
        ({"delay": 10**5000}, [1], "delay"),
        ({"delay": -(10**5000)}, [1], "delay"),
        ({"run_at": 10**5000}, [1], "run_at"),
        ({"timeout": 10**5000}, [1], "timeout"),
        ({"timeout": -(10**5000)}, [1], "timeout"),
        ({"priority": 10**5000}, [1], "priority"),
        ({"max_attempts": 10**5000}, [1], "max_attempts"),
    ],
)
def test_bad_input_names_the_field_and_stores_nothing(
    app: Conveyor, options: dict, args: list, field: str
) -> None:
    @app.task(name="one")
    def one(n: object) -> None: ...

    with pytest.raises(InvalidJob) as info:
        one.with_options(**options).enqueue(*args)

    assert info.value.field == field
    assert field in str(info.value)
    assert stored_count(app) == 0


def test_values_nested_up_to_the_limit_are_stored_as_they_are(app: Conveyor) -> None:
    # Given a task, an argument that makes the arguments 100 levels deep (the list of
    # arguments is the first, _nested(98) the 99 others) and metadata as deep
    @app.task(name="deep")
    def deep(value: object) -> None: ...

    # When it is enqueued
    handle = deep.with_options(metadata={"a": _nested(98)}).enqueue(_nested(98))

    # Then it is stored, and read back the same
    job = handle.refresh().job
    assert job.steps[0].args == [_nested(98)]
    assert job.metadata == {"a": _nested(98)}


def test_brackets_inside_strings_are_not_levels_of_nesting(app: Conveyor) -> None:
    # Given a task, and shallow arguments whose texts hold hundreds of brackets
    @app.task(name="brackets")
    def brackets(text: str, rows: object) -> None: ...

    rows = [{"text": "[{" * 150, "n": i} for i in range(150)]

    # When it is enqueued
    handle = brackets.enqueue("[[[" * 200, rows)

    # Then it is stored, and read back the same
    assert handle.refresh().job.steps[0].args == ["[[[" * 200, rows]


@pytest.mark.parametrize("form", ["enqueue", "enqueue_many", "prepare", "async"])
def test_a_dict_key_that_is_not_text_is_refused_naming_the_field_and_the_key(
    app: Conveyor, form: str
) -> None:
    @app.task(name="keyed")
    def keyed(value: object = None, *, more: object = None) -> None: ...

    # Given a dict whose keys JSON would change: 1 and "1" would both come back as "1"
    value = {"rows": [{1: "a", "1": "b"}]}

    # When it is enqueued as an argument in each form
    with pytest.raises(InvalidJob) as info:
        if form == "enqueue":
            keyed.enqueue(more=value)
        elif form == "enqueue_many":
            keyed.enqueue_many([[i] for i in range(5)] + [{"more": value}])
        elif form == "prepare":
            job = keyed.prepare()
            job.steps[0].kwargs["more"] = value  # changed by hand, or by middleware
            app.enqueue_many([job])
        else:
            asyncio.run(keyed.enqueue_async(more=value))

    # Then the refusal names the field and the key, and nothing is stored
    assert info.value.field == "kwargs"
    assert "key that is not a string: 1 (int)" in str(info.value)
    assert stored_count(app) == 0


def test_dicts_keyed_by_text_are_stored_as_they_are(app: Conveyor) -> None:
    # Given a task, and arguments and metadata of dicts keyed by text, nested
    @app.task(name="keyed")
    def keyed(value: object, *, more: object = None) -> None: ...

    value = [{"a": {"b": [{"1": None}]}, "": ({"é": 1},)}]

    # When it is enqueued
    handle = keyed.with_options(metadata={"m": {"k": {}}}).enqueue(value, more={"x": value})

    # Then it is stored, and read back the same (tuples as lists)
    job = handle.refresh().job
    assert job.steps[0].args == [[{"a": {"b": [{"1": None}]}, "": [{"é": 1}]}]]
    assert job.steps[0].kwargs == {"more": {"x": job.steps[0].args[0]}}
    assert job.metadata == {"m": {"k": {}}}


def test_a_timeout_int_past_64_bits_is_refused_saying_why(app: Conveyor) -> None:
    @app.task(name="one")
    def one() -> None: ...

    # When a timeout is an int of 64 bits or more (finite, and > 0)
    with pytest.raises(InvalidJob) as info:
        one.with_options(timeout=2**63).enqueue()

    # Then the refusal names the field and says what is wrong with it (it said "must be
    # a finite number of seconds > 0", which the number is), and nothing is stored
    assert info.value.field == "timeout"
    assert "below 2**63" in info.value.problem
    assert stored_count(app) == 0

    # And the same number as a float is taken
    assert one.with_options(timeout=float(2**63)).enqueue().job.timeout == 2.0**63


@pytest.mark.parametrize(
    ("bad_item", "field"),
    [
        ([1, 2], "args"),  # one positional too many
        ([], "args"),  # one too few
        ({"m": 1}, "args"),  # a keyword the task does not take
        ([object()], "args"),
        ([math.inf], "args"),
        ({"n": {1, 2}}, "kwargs"),
        ("12", "calls"),  # a string is not a sequence of args here
        (12, "calls"),
        (None, "calls"),
    ],
)
@pytest.mark.parametrize("form", ["sync", "async"])
def test_one_bad_item_refuses_the_whole_batch_naming_the_field(
    app: Conveyor, bad_item: object, field: str, form: str
) -> None:
    @app.task(name="one")
    def one(n: object) -> None: ...

    # Given a batch (as a generator) whose 501st item is bad
    calls = (bad_item if i == 500 else [i] for i in range(1_000))

    # When it is enqueued; Then InvalidJob names the field, and none of the batch is stored
    with pytest.raises(InvalidJob) as info:
        if form == "sync":
            one.enqueue_many(calls)
        else:
            asyncio.run(one.enqueue_many_async(calls))
    assert info.value.field == field
    assert stored_count(app) == 0


@pytest.mark.parametrize("calls", [None, 5, object()])
def test_a_batch_that_is_not_iterable_is_refused_naming_the_field(
    app: Conveyor, calls: object
) -> None:
    @app.task(name="one")
    def one(n: object) -> None: ...

    with pytest.raises(InvalidJob) as info:
        one.enqueue_many(calls)  # type: ignore[arg-type]
    assert info.value.field == "calls"
    with pytest.raises(InvalidJob) as info:
        app.enqueue_many(calls)  # type: ignore[arg-type]
    assert info.value.field == "jobs"
    with pytest.raises(InvalidJob) as info:
        asyncio.run(app.enqueue_many_async(calls))  # type: ignore[arg-type]
    assert info.value.field == "jobs"
    assert stored_count(app) == 0


def test_a_batch_keeps_the_order_and_arguments_of_its_items(app: Conveyor) -> None:
    @app.task(name="pair", queue="pairs")
    def pair(a: object, b: object = None) -> None: ...

    # Given items of every form: lists, tuples, mappings, other sequences
    calls = [[1], (2, "x"), {"a": 3, "b": [4]}, range(5, 7), ["é", {"k": 1.5}]]

    # When they are enqueued in one call
    handles = pair.enqueue_many(calls)

    # Then each stored job calls the task with its item's arguments, in the items' order,
    # with ids that increase in that order
    stored = [app.job(h.id).job for h in handles]
    assert [(j.steps[0].args, j.steps[0].kwargs) for j in stored] == [
        ([1], {}),
        ([2, "x"], {}),
        ([], {"a": 3, "b": [4]}),
        ([5, 6], {}),
        (["é", {"k": 1.5}], {}),
    ]
    assert [h.id for h in handles] == sorted(h.id for h in handles)
    assert {j.queue for j in stored} == {"pairs"}


def test_text_every_store_keeps_is_taken_as_it_is(app: Conveyor) -> None:
    @app.task(name="echo")
    def echo(*args: object, **kwargs: object) -> None: ...

    # Given text with escapes that look like the refused characters, and astral ones
    values = ["\\u0000", "\\\\u0000x", "🚀 é ✓", "\\ud800"]

    # When enqueued as arguments, keyword arguments and metadata; Then all are stored
    handle = echo.with_options(metadata={"m": values}).enqueue(*values, k=values)
    job = app.job(handle.id).job
    assert job.steps[0].args == values
    assert job.steps[0].kwargs == {"k": values}
    assert job.metadata == {"m": values}


@pytest.mark.parametrize("name", ["nul\x00name", "lone\ud800"])
def test_a_task_name_no_store_keeps_is_refused_at_registration(app: Conveyor, name: str) -> None:
    with pytest.raises(InvalidJob) as info:

        @app.task(name=name)
        def task() -> None: ...

    assert info.value.field == "name"
    assert name not in app.tasks


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"timeout": math.nan}, "timeout"),
        ({"timeout": math.inf}, "timeout"),
        ({"max_attempts": math.nan}, "max_attempts"),
        ({"max_attempts": 2.5}, "max_attempts"),
        ({"max_attempts": True}, "max_attempts"),
        ({"priority": 2**40}, "priority"),
        ({"priority": "urgent"}, "priority"),
        ({"retry": {"exponent": -1}}, "retry"),
        ({"retry": "x"}, "retry"),
        ({"before": 5}, "before"),
        ({"failure": "x"}, "failure"),
        ({"queue": ""}, "queue"),
        ({"queue": "two words"}, "queue"),
        ({"queue": "red\x1b[31m"}, "queue"),
        ({"executor": "fibre"}, "executor"),
        ({"timeout": 10**400}, "timeout"),
        ({"retry": {"base": 10**400}}, "retry"),
    ],
)
def test_bad_task_defaults_are_refused_at_registration(
    app: Conveyor, options: dict[str, Any], field: str
) -> None:
    # (they were accepted, and every enqueue of the task failed)
    with pytest.raises(InvalidJob) as info:

        @app.task(name="bad", **options)
        def bad() -> None: ...

    assert info.value.field == field
    assert not info.value.problem.startswith(f"{field}:")  # said once: "executor: executor: ..."
    assert "bad" not in app.tasks


@pytest.mark.parametrize("name", ["", " ", "\t\n", 5])
def test_a_name_that_is_not_a_non_blank_string_is_refused(app: Conveyor, name: object) -> None:
    # (an empty one fell back to the default name; 5 was a TypeError; " " was taken)
    with pytest.raises(InvalidJob) as info:

        @app.task(name=name)  # type: ignore[arg-type]
        def task() -> None: ...

    assert info.value.field == "name"
    assert app.tasks == {}


def test_registering_what_is_not_a_function_is_refused(app: Conveyor) -> None:
    with pytest.raises(InvalidJob) as info:
        app.task(5)  # type: ignore[call-overload]
    assert info.value.field == "task"


def test_middleware_and_hooks_that_are_not_functions_are_refused_when_added(
    app: Conveyor,
) -> None:
    # Given a task
    @app.task(name="one")
    def one() -> None: ...

    # When what is added as execution or enqueue middleware, or as a hook, is not a
    # function (it was accepted: every job then failed in the worker with "'str' object
    # is not callable", or every enqueue raised that TypeError)
    # Then it is refused at once, naming what it was given as
    with pytest.raises(ConfigError) as config:
        app.middleware("timing")  # type: ignore[arg-type]
    assert config.value.field == "middleware"
    with pytest.raises(ConfigError) as config:
        app.before_enqueue(5)  # type: ignore[arg-type]
    assert config.value.field == "before_enqueue"
    with pytest.raises(InvalidJob) as invalid:
        one.on("success")(5)
    assert invalid.value.field == "success"
    with pytest.raises(InvalidJob) as invalid:
        one.on("finished")
    assert invalid.value.field == "event"
    with pytest.raises(ConfigError) as config:
        Conveyor(app.url, reporter="sentry")  # type: ignore[arg-type]
    assert config.value.field == "reporter"

    # and nothing of it was kept: the task's jobs are enqueued as before
    assert (app.execution_middleware, app.enqueue_middleware, one.hooks) == ([], [], {})
    one.enqueue()
    assert stored_count(app) == 1


def test_a_callable_without_an_import_path_needs_a_name(app: Conveyor) -> None:
    # Given callables that have no module:qualname path (a partial, an instance with
    # __call__): registering or enqueueing one raised AttributeError '__qualname__'
    def add(a: int, b: int) -> int:
        return a + b

    class Doubler:
        def __call__(self, n: int) -> int:
            return 2 * n

    for fn in (functools.partial(add, 1), Doubler()):
        # When one is registered without a name; Then InvalidJob asks for one
        with pytest.raises(InvalidJob) as invalid:
            app.task(fn)
        assert invalid.value.field == "name"
        assert "name=" in invalid.value.problem

        # When one is enqueued unregistered; Then it is not found, and nothing is stored
        with pytest.raises(TaskNotFound) as missing:
            app.enqueue(fn, 1)
        assert missing.value.field == "task"
    assert (app.tasks, stored_count(app)) == ({}, 0)

    # And with a name it is a task like any other
    plus_one = app.task(name="plus_one")(functools.partial(add, 1))
    assert plus_one.enqueue(2).job.steps[0].task == "plus_one"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda job: setattr(job, "tenant", "\x00"), "tenant"),
        (lambda job: setattr(job, "tenant", ""), "tenant"),
        (lambda job: setattr(job, "unique_key", "  "), "unique_key"),
        (lambda job: setattr(job, "retry", {"exponent": 2}), "retry"),
    ],
)
def test_a_hand_changed_job_is_checked_field_by_field(
    app: Conveyor, change: Any, field: str
) -> None:
    # Given a prepared job changed by hand (or by enqueue middleware)
    @app.task(name="one")
    def one(n: int) -> None: ...

    job = one.prepare(1)
    change(job)
    # Then enqueueing it names the field, and stores nothing, on every store alike
    with pytest.raises(InvalidJob) as info:
        app.enqueue_many([job])
    assert info.value.field == field
    assert stored_count(app) == 0


@pytest.mark.parametrize(
    "change",
    [
        lambda step: setattr(step, "result", {1, 2}),  # a TypeError out of the store
        lambda step: setattr(step, "result", "nul\x00"),  # psycopg's UntranslatableCharacter
        lambda step: setattr(step, "last_error", "lone\ud800"),  # a UnicodeEncodeError
        lambda step: setattr(step, "state", "bogus"),  # stored as it was
        lambda step: setattr(step, "attempts", 3),  # stored as it was
        lambda step: setattr(step, "response", {"status": 200}),
        lambda step: setattr(step, "finished_at", 1e300),
    ],
)
def test_a_hand_built_step_that_has_already_run_is_refused(
    app_on_each_store: Conveyor, change: Any
) -> None:
    app = app_on_each_store

    @app.task(name="one")
    def one(n: int) -> None: ...

    # Given a prepared job whose step carries what only a run of it sets
    job = one.prepare(1)
    change(job.steps[0])

    # When it is enqueued; Then InvalidJob names the steps, and nothing is stored
    with pytest.raises(InvalidJob) as info:
        app.enqueue_many([job])
    assert info.value.field == "steps"
    assert "has not run" in info.value.problem
    stats = app.portal_call(_stats(app))
    assert sum(stats.counts.values()) == 0


def test_keys_longer_than_a_store_indexes_are_refused_on_every_store(
    app_on_each_store: Conveyor,
) -> None:
    app = app_on_each_store

    @app.task(name="one")
    def one(n: int) -> None: ...

    # Given keys of random text (PostgreSQL's index cannot compress them): a unique key
    # and a job id of 1,000 bytes as UTF-8, and others one byte longer ("é" is two)
    longest = secrets.token_hex(500)
    too_long = longest[:-1] + "é"

    # When they are enqueued; Then the longest are kept on every store, and the longer
    # ones refused naming the field (PostgreSQL's btree index refused keys past 2,704
    # bytes with BackendUnavailable, exit 1 in the CLI, while SQLite and Redis kept them)
    assert one.with_options(unique_key=longest).enqueue(1).job.unique_key == longest
    with pytest.raises(InvalidJob) as info:
        one.with_options(unique_key=too_long + secrets.token_hex(2000)).enqueue(1)
    assert info.value.field == "unique_key"
    with pytest.raises(InvalidJob) as info:
        one.with_options(unique_key=too_long).enqueue(1)
    assert info.value.field == "unique_key"
    job = one.prepare(1)
    job.id = longest
    assert app.enqueue_many([job])[0].id == longest
    job = one.prepare(1)
    job.id = too_long + secrets.token_hex(2000)
    with pytest.raises(InvalidJob) as info:
        app.enqueue_many([job])
    assert info.value.field == "id"
    # and an id of blanks alone: the CLI could not name it (jobs delete ' ' is refused)
    job = one.prepare(1)
    job.id = "  "
    with pytest.raises(InvalidJob) as info:
        app.enqueue_many([job])
    assert info.value.field == "id"
    stats = app.portal_call(_stats(app))
    assert sum(stats.counts.values()) == 2


async def _stats(app: Conveyor) -> Any:
    return await (await app.backend()).stats()


def test_unknown_options_are_refused(app: Conveyor) -> None:
    @app.task(name="one")
    def one() -> None: ...

    with pytest.raises(InvalidJob, match="unknown option"):
        one.with_options(queeu="x")


@pytest.mark.parametrize(
    "name",
    [
        "no_such_task",
        "no.such.module:func",
        "json:no_such_function",
        # relative module names (a TypeError from importlib)
        ".tasks:send",
        "..tasks:send",
    ],
)
def test_unknown_task_is_refused_at_the_call(app: Conveyor, name: str) -> None:
    with pytest.raises(TaskNotFound) as info:
        app.enqueue(name, 1)

    assert info.value.field == "task"
    assert stored_count(app) == 0


def test_a_function_of_the_running_script_is_enqueued_without_running_the_script_again(
    tmp_path: Path,
) -> None:
    # Given a script (no __main__ guard) that enqueues one of its own functions, not
    # registered as a task
    script = tmp_path / "nightly.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from conveyor import Conveyor
            print("top level runs")
            app = Conveyor("sqlite:///{tmp_path}/jobs.db")

            def plain(n):
                return n

            print(app.enqueue(plain, 1).job.steps[0].task)
            """
        )
    )

    # When it runs
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True
    )

    # Then its top level ran once (the check of the import path imported the script
    # again as module "nightly": its top level ran twice, the second run stored a job,
    # and the first then raised TaskNotFound), and one job names the function by the
    # path a worker started in that folder imports
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["top level runs", "nightly:plain"]
    app = Conveyor(f"sqlite:///{tmp_path}/jobs.db")
    try:
        assert stored_count(app) == 1
    finally:
        app.close()


def test_a_function_of_a_script_run_as_a_module_is_refused_when_its_path_does_not_import(
    tmp_path: Path,
) -> None:
    # Given a script of a package, run with `python -m tools.nightly` from the project's
    # folder, that enqueues one of its own functions, not registered as a task: its
    # default name, "nightly:plain", is no import path there (the module is
    # tools.nightly)
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "__init__.py").write_text("")
    (tmp_path / "tools" / "nightly.py").write_text(
        textwrap.dedent(
            f"""
            from conveyor import Conveyor, TaskNotFound
            app = Conveyor("sqlite:///{tmp_path}/jobs.db")

            def plain(n):
                return n

            if __name__ == "__main__":
                try:
                    app.enqueue(plain, 1)
                except TaskNotFound as exc:
                    print("refused:", exc)
                else:
                    print("stored")
            """
        )
    )

    # When it runs
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run(
        [sys.executable, "-m", "tools.nightly"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )

    # Then the call is refused with TaskNotFound naming the path, and nothing is stored
    # (the job was stored naming "nightly:plain", which no worker started there imports:
    # it failed on every attempt until poisoned)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("refused: task: 'nightly:plain'"), done.stdout
    app = Conveyor(f"sqlite:///{tmp_path}/jobs.db")
    try:
        assert stored_count(app) == 0
    finally:
        app.close()


def test_a_task_module_that_fails_to_import_is_refused_at_the_call(
    app: Conveyor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a module that raises as it is imported
    (tmp_path / "broken_tasks_module.py").write_text(
        "def send(n):\n    return n\n\nraise RuntimeError('no config')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    # When a job names a function of it by import path (the RuntimeError came out as it was)
    with pytest.raises(TaskNotFound) as info:
        app.enqueue("broken_tasks_module:send", 1)

    # Then TaskNotFound says why, and nothing is stored
    assert info.value.field == "task"
    assert "RuntimeError: no config" in str(info.value)
    assert stored_count(app) == 0


@pytest.mark.parametrize(
    ("source", "said"),
    [
        ("raise RuntimeError('no config here')\n", "RuntimeError: no config here"),
        ("import sys\nsys.exit(0)\n", "SystemExit: 0"),
    ],
)
def test_a_task_whose_module_fails_as_it_is_imported_is_refused_at_the_call(
    app: Conveyor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, said: str
) -> None:
    # Given a module that raises, or ends the program, as it is imported
    name = f"broken_{tmp_path.name}"
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))

    # When a job names a function of it by its import path
    with pytest.raises(TaskNotFound) as info:
        app.enqueue(f"{name}:func", 1)

    # Then the call is refused as for any task that cannot be found, naming what went
    # wrong (the module's own exception had come out of enqueue, and its sys.exit() had
    # ended the enqueuing program), and nothing is stored
    assert info.value.field == "task"
    assert said in str(info.value)
    assert stored_count(app) == 0


@pytest.mark.parametrize(
    "url",
    [
        "",
        "mysql://localhost/x",
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite://host/x.db",
        "sqlite:///x.db?synchronous=sometimes",
        "sqlite:///x.db?bogus=1",
        "sqlite:///x.db?busy_timeout=nan",
        "sqlite:///x.db?poll=inf",
        # bytes that are not UTF-8, as Python reads them from argv or the environment
        # (PostgreSQL's driver raised UnicodeEncodeError; Redis' failed as if down)
        "postgresql://user@db\udcff/jobs",
        "postgresql://user:p\udcffw@db/jobs",
        "redis://cache\udcff:6379/0",
    ],
)
def test_bad_urls_are_refused_at_construction(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONVEYOR_URL", raising=False)
    with pytest.raises(ConfigError) as info:
        Conveyor(url)

    assert info.value.field.startswith("url")


@pytest.mark.parametrize("queue", ["", "two words", 5])
def test_a_bad_default_queue_is_refused_naming_the_setting(tmp_path: Path, queue: object) -> None:
    # When an app is made with a default queue no job could have
    # Then ConfigError names default_queue (it said "queue", as if a job's were wrong)
    with pytest.raises(ConfigError) as info:
        Conveyor(f"sqlite:///{tmp_path}/jobs.db", default_queue=queue)  # type: ignore[arg-type]
    assert info.value.field == "default_queue"


def test_url_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_URL", f"sqlite:///{tmp_path}/env.db")

    app = Conveyor()

    assert app.url.endswith("env.db")


def test_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    app = Conveyor(f"sqlite:///{tmp_path}/missing/jobs.db")

    @app.task(name="t")
    def t() -> None: ...

    with pytest.raises(ConfigError, match="does not exist"):
        t.enqueue()


def test_unknown_job_id(app: Conveyor) -> None:
    with pytest.raises(JobNotFound):
        app.job("0190a1b2-0000-7000-8000-000000000000")


@pytest.mark.parametrize("job_id", ["", "   ", "a\x00b", "a\udcff", "x" * 1001, 42, None])
def test_an_id_no_job_can_have_is_invalid_not_unknown(app: Conveyor, job_id: Any) -> None:
    # Given an id that is not one (a blank from an unset variable, a NUL, bytes that
    # are not UTF-8, a wrong type); When a handle is asked for; Then InvalidJob names
    # the id at the call, as the CLI's exit 2 does, rather than "no job"
    with pytest.raises(InvalidJob) as refused:
        app.job(job_id)
    assert refused.value.field == "id"


def test_enqueue_middleware_sees_every_job(app: Conveyor) -> None:
    @app.before_enqueue
    def stamp(job):
        job.metadata["stamped"] = True
        return job

    @app.task(name="t")
    def t() -> None: ...

    assert t.enqueue().job.metadata == {"stamped": True}


def test_a_bulk_enqueue_pauses_the_cyclic_collector_and_restores_it(app: Conveyor) -> None:
    # Given a middleware that notes whether the collector runs while a batch is stored
    seen: list[bool] = []

    @app.before_enqueue
    def note(job):
        seen.append(gc.isenabled())
        return job

    @app.task(name="t")
    def t(i: int) -> None: ...

    # When batches are enqueued with the collector on (by the task and by the app), and
    # then with it turned off
    t.enqueue_many([[1], [2]])
    app.enqueue_many([t.prepare(4)])
    on_after = gc.isenabled()
    gc.disable()
    try:
        t.enqueue_many([[3]])
        off_after = gc.isenabled()
    finally:
        gc.enable()

    # Then the collector was off while each batch was made and stored, came back on
    # after the first two, and stayed off after the last (not turned on by conveyor)
    assert seen == [False, False, False, False]
    assert (on_after, off_after) == (True, False)
    assert stored_count(app) == 4


def test_an_import_path_finds_the_registered_task_with_its_options(
    app: Conveyor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a module that registers a task under a custom name, with its own options
    (tmp_path / "custom_tasks.py").write_text(
        "from conveyor import Conveyor\n"
        f"app = Conveyor('sqlite:///{tmp_path}/jobs.db')\n"
        "@app.task(name='mail.send', queue='mail', max_attempts=9)\n"
        "def send(to):\n"
        "    return to\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    # When it is enqueued by its import path
    handle = app.enqueue("custom_tasks:send", "ada@example.com")

    # Then the registered task's name and options apply
    assert handle.job.task == "mail.send"
    assert (handle.job.queue, handle.job.max_attempts) == ("mail", 9)


def test_a_step_survives_its_compact_storage_form() -> None:
    from conveyor import Step

    full = Step(
        name="b",
        kind="http",
        request={"url": "x"},
        state="failed",
        attempts=2,
        result=[1],
        response={"status": 500},
        last_error="boom",
        started_at=1.0,
        finished_at=2.0,
    )
    bare = Step(name="a", task="t")

    assert Step.from_dict(full.to_storage()) == full
    assert Step.from_dict(bare.to_storage()) == bare
    assert bare.to_storage() == {"name": "a", "task": "t"}


def test_ids_sort_by_creation_time_around_their_floor() -> None:
    from conveyor.job import id_floor, new_job_id

    earlier = new_job_id(now=1_800_000_000.0)
    later = new_job_id(now=1_800_000_001.0)

    assert earlier < id_floor(1_800_000_000.5) < later
    assert sorted([later, earlier]) == [earlier, later]


@pytest.mark.parametrize("timeout", [math.inf, 10**400])
def test_wait_takes_a_timeout_of_any_size(app: Conveyor, timeout: float) -> None:
    @app.task(name="one")
    def one() -> None: ...

    # Given a job that ended (cancelled)
    handle = one.enqueue()
    handle.cancel()

    # When waited on with a timeout past a float's range (it raised OverflowError)
    # Then the wait answers as for any other timeout
    with pytest.raises(JobCancelled):
        handle.wait(timeout)

    async def wait_async() -> None:
        try:
            await handle.wait_async(timeout)
        finally:
            await app.aclose()

    with pytest.raises(JobCancelled):
        asyncio.run(wait_async())


@pytest.mark.parametrize(
    ("timeout", "error"),
    [(math.nan, ValueError), (-1, ValueError), ("5", TypeError), (True, TypeError)],
)
def test_wait_refuses_a_timeout_that_is_not_seconds(
    app: Conveyor, timeout: object, error: type[Exception]
) -> None:
    @app.task(name="one")
    def one() -> None: ...

    # Given a waiting job (no worker); When waited on with a bad timeout
    handle = one.enqueue()

    # Then the call says so at once (NaN waited for ever: no comparison with it is true)
    with pytest.raises(error, match="timeout"):
        handle.wait(timeout)  # type: ignore[arg-type]
    with pytest.raises(error, match="timeout"):
        asyncio.run(handle.wait_async(timeout))  # type: ignore[arg-type]


def test_a_bad_retry_setting_is_named_once(app: Conveyor) -> None:
    # Given a task registered with a negative retry base
    # When it is refused
    with pytest.raises(InvalidJob) as info:

        @app.task(name="bad", retry={"base": -1})
        def bad() -> None: ...

    # Then the message names the setting once (it read "retry: retry.base: ...")
    assert info.value.field == "retry"
    assert str(info.value) == "retry: base: must be a finite number >= 0, got -1"


@pytest.mark.parametrize(
    "queue", ["dev\u200d\U0001f4bb", "rtl\u202eeman", "caf\u00e9", "soft\u00adhyphen"]
)
def test_a_queue_name_with_format_characters_is_taken_as_text(app: Conveyor, queue: str) -> None:
    # Given a task, and a queue name holding no control character (C0, C1) but format
    # characters (a zero-width joiner, a right-to-left override, a soft hyphen)
    @app.task(name="ok")
    def ok() -> None: ...

    # When a job is enqueued to it, Then it is stored there
    assert app.job(ok.with_options(queue=queue).enqueue().id).job.queue == queue
