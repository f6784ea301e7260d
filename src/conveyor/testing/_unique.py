"""Conformance: finding the job of a unique key in any state (``find_unique``)."""

from __future__ import annotations

from conveyor.backends.base import Backend
from conveyor.job import Outcome, State
from conveyor.testing.harness import (
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
