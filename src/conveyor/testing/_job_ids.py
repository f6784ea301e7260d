"""Conformance: a job id names one stored job; a batch that reuses one stores nothing.

Each store checks ids in its own write, so each path is tried: one job, a small
batch, a batch large enough for the stores' bulk paths (COPY on PostgreSQL from 64
jobs, multi-row INSERTs on SQLite from 100), and one of several script calls on Redis
(more than 1,000 jobs), with the offending id first or last.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import pytest

from conveyor.backends.base import Backend
from conveyor.exceptions import InvalidJob
from conveyor.job import Job, Outcome, State
from conveyor.testing.harness import (
    all_jobs,
    async_test,
    claim_one,
    enqueue_one,
    finish_one,
    make_job,
)

#: (jobs in the batch, index of the job given a taken or repeated id)
_CASES = [(1, 0), (3, 2), (100, 99), (2500, 0), (2500, 2499)]

Enqueue = Callable[[Sequence[Job]], Awaitable[object]]


class JobIdConformance:
    """Bad ids get InvalidJob("id") and change nothing, on every path of enqueue."""

    @async_test
    async def test_an_id_taken_by_a_stored_job_refuses_the_whole_batch(
        self, backend: Backend
    ) -> None:
        # Given a job that ran and succeeded, and one waiting in its queue
        done = await enqueue_one(backend, make_job("old", args=["done"]))
        assert await finish_one(backend, await claim_one(backend, "old"), Outcome.succeeded())
        waiting = await enqueue_one(backend, make_job("old", args=["waiting"]))

        for taken in (done, waiting):
            for size, at in _CASES:
                for enqueue in _paths(backend):
                    # When a batch into a new queue gives one job the id of a stored job
                    batch = [make_job("fresh", args=[i]) for i in range(size)]
                    batch[at].id = taken.id

                    # Then it is refused, naming the id
                    with pytest.raises(InvalidJob) as refused:
                        await enqueue(batch)
                    assert refused.value.field == "id", (size, at)

                    # And nothing of it was stored: no job, no queue, the stored job as it was
                    await _assert_unchanged(backend, done, waiting)

    @async_test
    async def test_an_id_given_twice_in_a_batch_stores_nothing(self, backend: Backend) -> None:
        # Given a stored job
        done = await enqueue_one(backend, make_job("old", args=["done"]))
        assert await finish_one(backend, await claim_one(backend, "old"), Outcome.succeeded())
        waiting = await enqueue_one(backend, make_job("old", args=["waiting"]))

        for size, at in _CASES[1:]:
            for enqueue in _paths(backend):
                # When a batch gives two of its jobs the same new id
                batch = [make_job("fresh", args=[i]) for i in range(size)]
                twin = 1 if at == 0 else 0
                batch[at].id = batch[twin].id

                # Then it is refused, naming the id, and nothing of it was stored
                with pytest.raises(InvalidJob) as refused:
                    await enqueue(batch)
                assert refused.value.field == "id", (size, at)
                await _assert_unchanged(backend, done, waiting)


def _paths(backend: Backend) -> list[Enqueue]:
    """``enqueue``, and ``enqueue_blocking`` where the backend offers it for a batch."""

    async def blocking(jobs: Sequence[Job]) -> object:
        stored = backend.enqueue_blocking(jobs)
        if stored is None:  # not offered for this batch: the async path does it
            return await backend.enqueue(jobs)
        return stored

    return [backend.enqueue, blocking]


async def _assert_unchanged(backend: Backend, done: Job, waiting: Job) -> None:
    jobs = {job.id: job for job in await all_jobs(backend)}
    assert set(jobs) == {done.id, waiting.id}
    assert (jobs[done.id].state, jobs[done.id].steps[0].args) == (State.SUCCEEDED, ["done"])
    assert (jobs[waiting.id].state, jobs[waiting.id].steps[0].args) == (State.QUEUED, ["waiting"])
    assert "fresh" not in {queue.name for queue in await backend.list_queues()}
