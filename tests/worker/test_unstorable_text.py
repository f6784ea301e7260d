"""Text some store cannot keep (a NUL character: PostgreSQL; a lone surrogate: every
store, as UTF-8 has none) coming out of a task: the attempt fails saying why, error
messages keep what they can, and no other job's outcome waits on it. The same on
every store (see conveyor.storable)."""

from __future__ import annotations

import contextlib

import pytest

from conveyor import Conveyor, State, Task, current_context
from conveyor.job import Job
from conveyor.worker.runtime import Worker

from .test_runtime import run_with_worker

NUL, SURROGATE = "a\x00b", "a\ud800b"
BAD = [NUL, SURROGATE]  # by index: the text could not be enqueued as an argument


@pytest.fixture
def app(app_on_each_store: Conveyor) -> Conveyor:
    return app_on_each_store


def test_results_and_errors_no_store_keeps_fail_the_attempt_not_the_others(
    app: Conveyor,
) -> None:
    @app.task(name="returns", max_attempts=1)
    async def returns(bad: int) -> object:
        return {"kept": [BAD[bad]]}

    @app.task(name="raises", max_attempts=1)
    def raises(bad: int) -> None:
        raise ValueError(f"bad {BAD[bad]} input")

    @app.task(name="reports", max_attempts=1)
    async def reports(bad: int) -> None:
        current_context().progress(1, 2, BAD[bad])

    @app.task(name="fine")
    async def fine(i: int) -> int:
        return i

    async def scenario(worker: Worker) -> list[Job]:
        # Given good jobs around tasks that return, raise and report bad text
        good = await fine.enqueue_many_async([[i] for i in range(10)])
        bad = [await task.enqueue_async(i) for task in (returns, raises, reports) for i in range(2)]
        more = await fine.enqueue_many_async([[i] for i in range(10, 20)])
        handles = [*good, *bad, *more]
        for handle in handles:
            with contextlib.suppress(Exception):
                await handle.wait_async(20)
        return [(await h.refresh_async()).job for h in handles]

    jobs = run_with_worker(app, scenario, concurrency=8)

    # Then every good job succeeded; each bad one is poisoned, saying why
    by_task: dict[str, list[Job]] = {}
    for job in jobs:
        by_task.setdefault(job.task or "", []).append(job)
    assert [j.state for j in by_task["fine"]] == [State.SUCCEEDED] * 20
    assert [j.result for j in by_task["fine"]] == list(range(20))
    for job in by_task["returns"]:
        assert job.state is State.POISONED
        assert "returned a result that cannot be stored" in (job.last_error or "")
        assert job.result is None
    nul, surrogate = by_task["raises"]
    assert (nul.state, surrogate.state) == (State.POISONED, State.POISONED)
    assert nul.last_error == "ValueError: bad a\ufffdb input"
    assert surrogate.last_error == "ValueError: bad a\ufffdb input"
    for job in by_task["reports"]:
        assert job.state is State.POISONED
        assert (job.last_error or "").startswith("ValueError: progress.message: contains a")


def test_a_run_whose_outcome_no_store_keeps_ends_poisoned_saying_why_and_the_rest_recorded(
    app: Conveyor,
) -> None:
    @app.task(name="spoils", max_attempts=3)
    async def spoils() -> None:
        # Task code that changes what conveyor writes back: its own step's arguments
        current_context().step.args.append(SURROGATE)

    @app.task(name="fine")
    async def fine(i: int) -> int:
        return i

    async def scenario(worker: Worker) -> list[Job]:
        # Given a job whose outcome the store refuses, among others
        good = await fine.enqueue_many_async([[i] for i in range(5)])
        spoiled = await spoils.enqueue_async()
        more = await fine.enqueue_many_async([[i] for i in range(5, 10)])
        for handle in [*good, *more]:
            await handle.wait_async(20)
        # When the worker has recorded them all
        with contextlib.suppress(Exception):
            await spoiled.wait_async(20)
        # Then it goes on recording outcomes
        after = await fine.enqueue_async(99)
        assert await after.wait_async(20) == 99
        return [(await h.refresh_async()).job for h in [*good, spoiled, *more]]

    jobs = run_with_worker(app, scenario)

    # And the others succeeded; the spoiled job ended poisoned at its first attempt
    # (a retry could not be stored either), saying why, with its arguments as stored
    spoiled = jobs[5]
    assert [j.state for j in jobs[:5] + jobs[6:]] == [State.SUCCEEDED] * 10
    assert (spoiled.state, spoiled.attempts) == (State.POISONED, 1)
    assert (spoiled.last_error or "").startswith("the outcome could not be stored: ")
    assert spoiled.steps[0].args == []


def test_a_result_nested_past_the_limit_fails_the_attempt_saying_why(app: Conveyor) -> None:
    # Given a task that returns a value nested 150 levels deep (a job's values may nest
    # 100), and one that returns a value as deep as may be
    def nested(depth: int) -> list[object]:
        value: list[object] = []
        for _ in range(depth - 1):
            value = [value]
        return value

    @app.task(name="too_deep", max_attempts=1)
    async def too_deep() -> object:
        return nested(150)

    @app.task(name="deep_enough")
    async def deep_enough() -> object:
        return nested(100)

    # When a worker runs them
    refused, kept = run_each(app, too_deep, deep_enough)

    # Then the first is poisoned, saying why (it would not have read back on every
    # store, or in every worker); the second succeeded with its result
    assert refused.state is State.POISONED
    assert "more than 100 levels deep" in refused.errors[-1]["message"]
    assert kept.state is State.SUCCEEDED
    assert kept.result == nested(100)


def test_a_result_with_a_dict_key_that_is_not_text_fails_the_attempt_saying_why(
    app: Conveyor,
) -> None:
    # Given a task that returns a dict keyed by ints (JSON would give them back as
    # text, and {1: "a", "1": "b"} would lose a value), and one keyed by text
    @app.task(name="int_keys", max_attempts=1)
    async def int_keys() -> object:
        return {"counts": {1: "a", "1": "b"}}

    @app.task(name="text_keys")
    async def text_keys() -> object:
        return {"counts": {"1": "a"}}

    # When a worker runs them
    refused, kept = run_each(app, int_keys, text_keys)

    # Then the first is poisoned, saying which key, and keeps no result; the second
    # succeeded with its result
    assert refused.state is State.POISONED
    assert "returned a result that cannot be stored" in (refused.last_error or "")
    assert "key that is not a string: 1 (int)" in (refused.last_error or "")
    assert refused.result is None
    assert kept.state is State.SUCCEEDED
    assert kept.result == {"counts": {"1": "a"}}


def run_each(app: Conveyor, *tasks: Task) -> list[Job]:
    """Enqueue each task once, run them in a worker until they end; the jobs as stored."""

    async def scenario(worker: Worker) -> list[Job]:
        handles = [await task.enqueue_async() for task in tasks]
        for handle in handles:
            with contextlib.suppress(Exception):
                await handle.wait_async(20)
        return [(await h.refresh_async()).job for h in handles]

    return run_with_worker(app, scenario)
