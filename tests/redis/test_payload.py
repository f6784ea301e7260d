"""The Redis URL's ``max_payload``: a job whose arguments and metadata are bigger is
refused by the public API with InvalidJob naming the limit, and nothing of its batch
reaches the store; a job under the limit is stored. (Redis holds every job in memory,
so an accidental megabyte argument costs every worker's claim, not only its own.)"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from conveyor import Conveyor
from conveyor.exceptions import InvalidJob
from conveyor.job import Job
from conveyor.task import Task

LIMIT = 1000
BIG = "x" * 2000  # the JSON of a job with this argument is over LIMIT on its own


@pytest.fixture
def app(redis_url: str) -> Iterator[Conveyor]:
    app = Conveyor(f"{redis_url}&max_payload={LIMIT}")
    try:
        yield app
    finally:
        app.close()


@pytest.fixture
def echo(app: Conveyor) -> Task:
    @app.task(name="echo")
    def echo(data: str) -> int:
        return len(data)

    return echo


def listed(app: Conveyor) -> list[Job]:
    async def look() -> list[Job]:
        return (await (await app.backend()).list_jobs(None, None, 2000)).jobs

    return app.portal_call(look())


def stored(app: Conveyor) -> tuple[int, int]:
    """Jobs the store lists, and jobs its stats count (both must say the same)."""

    async def counted() -> int:
        return sum((await (await app.backend()).stats()).counts.values())

    return len(listed(app)), app.portal_call(counted())


def assert_refused_naming_the_limit(refused: pytest.ExceptionInfo[InvalidJob]) -> None:
    assert refused.value.field == "payload"
    assert f"over the limit of {LIMIT} bytes" in str(refused.value)
    assert "max_payload" in str(refused.value)


def test_enqueue_of_a_job_over_the_limit_is_refused_and_stores_nothing(
    app: Conveyor, echo: Task
) -> None:
    with pytest.raises(InvalidJob) as refused:
        echo.enqueue(BIG)
    assert_refused_naming_the_limit(refused)
    assert stored(app) == (0, 0)


def test_metadata_counts_toward_the_limit(app: Conveyor, echo: Task) -> None:
    with pytest.raises(InvalidJob) as refused:
        echo.with_options(metadata={"note": BIG}).enqueue("small")
    assert_refused_naming_the_limit(refused)
    assert stored(app) == (0, 0)


def test_the_limit_is_in_bytes_not_characters(app: Conveyor, echo: Task) -> None:
    # 600 characters, 1,200 bytes of UTF-8 (what Redis keeps): over a 1,000-byte limit
    with pytest.raises(InvalidJob) as refused:
        echo.enqueue("é" * 600)
    assert_refused_naming_the_limit(refused)
    assert stored(app) == (0, 0)


@pytest.mark.parametrize("size", [3, 1001], ids=["small-batch", "batch-over-one-script-call"])
def test_a_batch_with_one_job_over_the_limit_stores_none_of_it(
    app: Conveyor, echo: Task, size: int
) -> None:
    # The last job is the big one: the ones before it must not have been stored either.
    # (A batch over 1,000 jobs takes the path that sends several script calls at once.)
    calls = [[f"job {i}"] for i in range(size - 1)] + [[BIG]]
    with pytest.raises(InvalidJob) as refused:
        echo.enqueue_many(calls)
    assert_refused_naming_the_limit(refused)
    assert stored(app) == (0, 0)


def test_enqueue_async_refuses_the_same_way(app: Conveyor, echo: Task) -> None:
    async def scenario() -> None:
        try:
            with pytest.raises(InvalidJob) as refused:
                await echo.enqueue_async(BIG)
            assert_refused_naming_the_limit(refused)
        finally:
            await app.aclose()

    asyncio.run(scenario())
    assert stored(app) == (0, 0)


def test_jobs_under_the_limit_are_stored(app: Conveyor, echo: Task) -> None:
    handle = echo.enqueue("y" * 500)
    handles = echo.enqueue_many([["a"], ["b"]])
    assert stored(app) == (3, 3)
    assert handle.refresh().job.steps[0].args == ["y" * 500]
    assert {h.id for h in handles} | {handle.id} == {j.id for j in listed(app)}
