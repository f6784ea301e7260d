"""Conformance: finding the job of a unique key in any state (``find_unique``), and
storing a job only if no stored job carries its key (``enqueue_once``)."""

from __future__ import annotations

import asyncio

import pytest

from conveyor.backends.base import Backend
from conveyor.job import Outcome, State
from conveyor.testing.harness import (
    all_jobs,
    async_test,
    claim_one,
    enqueue_one,
    error,
    finish_one,
    make_job,
)


class UniqueConformance:
    """A unique key names its newest stored job for as long as that job is kept."""

    @async_test
    async def test_find_unique_finds_an_active_job(self, backend: Backend) -> None:
        # Given a queued job and a running one, each with a unique key
        queued = await enqueue_one(backend, make_job("other", unique_key="queued-key"))
        running = await enqueue_one(backend, make_job(unique_key="running-key"))
        await claim_one(backend)

        # When their keys are looked up
        found = [await backend.find_unique("queued-key"), await backend.find_unique("running-key")]

        # Then each key names its job, as it is now
        assert [(j.id, j.state) for j in found if j is not None] == [
            (queued.id, State.QUEUED),
            (running.id, State.RUNNING),
        ]
        assert found[0] is not None and found[0].unique_key == "queued-key"

    @async_test
    async def test_find_unique_finds_a_finished_job(self, backend: Backend) -> None:
        # Given jobs that succeeded, were poisoned and were cancelled, each with a key
        # (a finished job no longer holds its key for enqueue)
        succeeded = await enqueue_one(backend, make_job(unique_key="k-succeeded"))
        poisoned = await enqueue_one(backend, make_job(unique_key="k-poisoned"))
        cancelled = await enqueue_one(backend, make_job(unique_key="k-cancelled"))
        assert await finish_one(backend, await claim_one(backend), Outcome.succeeded())
        assert await finish_one(backend, await claim_one(backend), Outcome.poisoned(error("no")))
        await backend.cancel(cancelled.id)

        # When their keys are looked up
        found = {
            key: await backend.find_unique(key)
            for key in ("k-succeeded", "k-poisoned", "k-cancelled")
        }

        # Then each finished job is still found, in its final state
        assert {k: (j.id, j.state) for k, j in found.items() if j is not None} == {
            "k-succeeded": (succeeded.id, State.SUCCEEDED),
            "k-poisoned": (poisoned.id, State.POISONED),
            "k-cancelled": (cancelled.id, State.CANCELLED),
        }

    @async_test
    async def test_find_unique_finds_the_newest_of_two_jobs_of_a_key(
        self, backend: Backend
    ) -> None:
        # Given a job with a key that succeeded, then a second job with that key
        first = await enqueue_one(backend, make_job(unique_key="nightly"))
        assert await finish_one(backend, await claim_one(backend), Outcome.succeeded())
        second = await enqueue_one(backend, make_job(unique_key="nightly"))
        assert second.id != first.id

        # When the key is looked up, while the second waits and once it has finished
        waiting = await backend.find_unique("nightly")
        assert await finish_one(backend, await claim_one(backend), Outcome.succeeded())
        finished = await backend.find_unique("nightly")

        # Then it names the second job both times
        assert waiting is not None and (waiting.id, waiting.state) == (second.id, State.QUEUED)
        assert finished is not None and (finished.id, finished.state) == (
            second.id,
            State.SUCCEEDED,
        )

        # And once the second is deleted, the first again
        assert await backend.delete(second.id)
        again = await backend.find_unique("nightly")
        assert again is not None and again.id == first.id

    @async_test
    async def test_find_unique_does_not_find_a_deleted_or_pruned_job(
        self, backend: Backend
    ) -> None:
        # Given a waiting job and two succeeded ones, each with a key
        waiting = await enqueue_one(backend, make_job(unique_key="k-deleted-waiting"))
        done = await enqueue_one(backend, make_job("done", unique_key="k-deleted-done"))
        await enqueue_one(backend, make_job("done", unique_key="k-pruned"))
        for _ in range(2):
            job = await claim_one(backend, "done")
            assert await finish_one(backend, job, Outcome.succeeded())

        # When the waiting job and one succeeded job are deleted, and the other pruned
        assert await backend.delete(waiting.id)
        assert await backend.delete(done.id)
        assert await backend.prune(await backend.now() + 1) == 1

        # Then none of their keys names a job
        for key in ("k-deleted-waiting", "k-deleted-done", "k-pruned"):
            assert await backend.find_unique(key) is None, key

    @async_test
    async def test_find_unique_of_another_key_finds_nothing(self, backend: Backend) -> None:
        # Given a job with the key "order:1", and a job without a key
        await enqueue_one(backend, make_job(unique_key="order:1"))
        await enqueue_one(backend, make_job())

        # When keys that are not exactly its key are looked up
        # Then no job is found: a key matches whole, never as a prefix or a pattern
        for key in ("order:10", "order:", "order:*", "ORDER:1", "order:1 ", ""):
            assert await backend.find_unique(key) is None, repr(key)
        found = await backend.find_unique("order:1")
        assert found is not None and found.unique_key == "order:1"

    @async_test
    async def test_enqueue_once_stores_a_job_whose_key_no_stored_job_carries(
        self, backend: Backend
    ) -> None:
        # Given a job whose key no job carries, and one whose key only a deleted job had
        gone = await enqueue_one(backend, make_job(unique_key="k-gone"))
        assert await backend.delete(gone.id)
        new, again = make_job(unique_key="k-new"), make_job(unique_key="k-gone")

        # When each is enqueued once
        stored = [await backend.enqueue_once(new), await backend.enqueue_once(again)]

        # Then each is stored, waiting, and its key names it
        assert [(j.id, j.state) for j in stored] == [
            (new.id, State.QUEUED),
            (again.id, State.QUEUED),
        ]
        for job in stored:
            found = await backend.find_unique(job.unique_key or "")
            assert found is not None and found.id == job.id

    @async_test
    async def test_enqueue_once_answers_the_stored_job_of_its_key_in_any_state(
        self, backend: Backend
    ) -> None:
        # Given a waiting job and a succeeded one, each with a key
        waiting = await enqueue_one(backend, make_job("other", unique_key="k-waiting"))
        done = await enqueue_one(backend, make_job(unique_key="k-done"))
        assert await finish_one(backend, await claim_one(backend), Outcome.succeeded())

        # When new jobs with those keys are enqueued once
        answers = [
            await backend.enqueue_once(make_job("other", unique_key="k-waiting")),
            await backend.enqueue_once(make_job(unique_key="k-done")),
        ]

        # Then each answer is the stored job, as it is (the succeeded one too: a finished
        # job frees its key for enqueue, not for enqueue_once), and nothing is stored
        assert [(j.id, j.state) for j in answers] == [
            (waiting.id, State.QUEUED),
            (done.id, State.SUCCEEDED),
        ]
        assert len(await all_jobs(backend)) == 2

    @async_test
    async def test_enqueue_once_refuses_a_job_without_a_unique_key(self, backend: Backend) -> None:
        with pytest.raises(ValueError, match="unique key"):
            await backend.enqueue_once(make_job())
        assert await all_jobs(backend) == []

    @async_test
    async def test_enqueue_once_racing_with_runs_that_finish_at_once_stores_one_job(
        self, backend: Backend
    ) -> None:
        # Given a worker that claims and finishes every job the moment it can
        done = asyncio.Event()

        async def finish_everything() -> None:
            while not done.is_set():
                claimed = await backend.claim(["default"], "eager-worker", 10, 60.0)
                if claimed:
                    await backend.finish([(job, Outcome.succeeded()) for job in claimed])
                else:
                    await asyncio.sleep(0)

        finisher = asyncio.create_task(finish_everything())
        try:
            for round_ in range(30):
                # When eight callers enqueue one key's job at once
                key = f"race-{round_}"
                answers = await asyncio.gather(
                    *(backend.enqueue_once(make_job(unique_key=key)) for _ in range(8))
                )

                # Then they all get one and the same job, however fast it ran
                assert len({job.id for job in answers}) == 1, f"round {round_}"
        finally:
            done.set()
            await finisher
        assert len(await all_jobs(backend)) == 30
