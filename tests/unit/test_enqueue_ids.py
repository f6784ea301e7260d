"""Enqueue with an id that names another job: InvalidJob("id") and nothing stored, on
every store (jobs changed by hand or by enqueue middleware; see also the conformance
suite's _job_ids for the stores' own paths)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor import Conveyor, InvalidJob, Job, Task


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Conveyor]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/jobs.db"
    else:
        url = request.getfixturevalue("pg_url" if request.param == "postgres" else "redis_url")
    app = Conveyor(url)
    yield app
    app.close()


@pytest.fixture
def add(app: Conveyor) -> Task:
    @app.task(name="add")
    def add(x: int) -> int:
        return x

    return add


def stored_args(app: Conveyor) -> list[list[object]]:
    """The args of every stored job, oldest first."""

    async def jobs() -> list[Job]:
        backend = await app.backend()
        found: list[Job] = []
        cursor = None
        while True:
            page = await backend.list_jobs(None, cursor, 200)
            found += page.jobs
            cursor = page.next_cursor
            if cursor is None:
                return found

    return [job.steps[0].args for job in sorted(app.portal_call(jobs()), key=lambda j: j.id)]


def test_two_jobs_of_a_batch_with_one_id_are_refused_and_none_stored(
    app: Conveyor, add: Task
) -> None:
    # Given two prepared jobs, the second given the first's id
    j1, j2 = add.prepare(1), add.prepare(2)
    j2.id = j1.id

    # When they are enqueued together
    with pytest.raises(InvalidJob) as refused:
        app.enqueue_many([j1, j2])

    # Then the error names the id field and the repetition, and nothing is stored
    assert refused.value.field == "id"
    assert "two jobs of the batch" in str(refused.value)
    assert stored_args(app) == []


def test_the_async_enqueue_many_refuses_a_repeated_id_too(app: Conveyor, add: Task) -> None:
    # Given a batch of 100 in which the last job repeats the first one's id
    jobs = [add.prepare(i) for i in range(100)]
    jobs[-1].id = jobs[0].id

    # When it is enqueued through the async API
    with pytest.raises(InvalidJob) as refused:
        app.portal_call(app.enqueue_many_async(jobs))

    # Then it is refused whole
    assert refused.value.field == "id"
    assert stored_args(app) == []


@pytest.mark.parametrize("size", [1, 2, 100])
def test_middleware_that_gives_a_job_a_stored_jobs_id_gets_invalid_job(
    app: Conveyor, add: Task, size: int
) -> None:
    # Given a stored job, and enqueue middleware that gives the last job of every batch
    # that job's id
    stored = add.enqueue(0)

    @app.before_enqueue
    def reuse(job: Job) -> Job:
        if job.steps[0].args == [size]:
            job.id = stored.id
        return job

    # When one job, or a batch, goes through it
    with pytest.raises(InvalidJob) as refused:
        if size == 1:
            add.enqueue(1)
        else:
            add.enqueue_many([[i + 1] for i in range(size)])

    # Then the enqueue is refused, no handle on a job never stored is returned, and
    # the stored job is all there is, unchanged
    assert refused.value.field == "id"
    assert stored_args(app) == [[0]]
    assert app.job(stored.id).refresh().job.steps[0].args == [0]


def test_middleware_that_gives_two_jobs_one_id_gets_invalid_job(app: Conveyor, add: Task) -> None:
    # Given enqueue middleware that gives every job the same id
    first = add.prepare(0)

    @app.before_enqueue
    def same(job: Job) -> Job:
        job.id = first.id
        return job

    # When a batch of three goes through it
    with pytest.raises(InvalidJob) as refused:
        add.enqueue_many([[1], [2], [3]])

    # Then it is refused before the store is asked, and nothing is stored
    assert refused.value.field == "id"
    assert "two jobs of the batch" in str(refused.value)
    assert stored_args(app) == []
