"""Conformance: enqueue, get, claim order and leases, unique keys."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from conveyor.backends.base import Backend, JobFilter, JobHead
from conveyor.exceptions import JobNotFound, QueueNotFound
from conveyor.job import Outcome, RetryPolicy, State, Step
from conveyor.testing.harness import (
    all_jobs,
    async_test,
    claim_one,
    enqueue_one,
    finish_one,
    make_job,
    task_step,
)


class EnqueueConformance:
    """Storing jobs and handing them out."""

    # -- enqueue and get ---------------------------------------------------------
    @async_test
    async def test_enqueue_returns_the_job_as_stored(self, backend: Backend) -> None:
        # Given a new job
        job = make_job("mail", task="send", args=["ada@example.com"])
        before = await backend.now()

        # When it is enqueued
        stored = await enqueue_one(backend, job)

        # Then it comes back queued, versioned and stamped by the store's clock
        after = await backend.now()
        assert stored.id == job.id
        assert stored.state is State.QUEUED
        assert stored.version >= 1
        assert before <= stored.created_at <= after
        assert before <= stored.run_at <= after, "run_at 0 means now"
        assert stored.attempts == 0
        assert stored.worker_id is None

    @async_test
    async def test_enqueue_with_a_future_run_at_schedules_the_job(self, backend: Backend) -> None:
        # Given a job due in an hour
        run_at = await backend.now() + 3600

        # When it is enqueued
        stored = await enqueue_one(backend, make_job(run_at=run_at))

        # Then it is scheduled for that time
        assert stored.state is State.SCHEDULED
        assert stored.run_at == pytest.approx(run_at)
        assert (await backend.get(stored.id)).state is State.SCHEDULED

    @async_test
    async def test_enqueue_stores_several_jobs_in_one_call(self, backend: Backend) -> None:
        # Given three jobs for two queues
        jobs = [make_job("a"), make_job("b"), make_job("a")]

        # When they are enqueued together
        stored = await backend.enqueue(jobs)

        # Then all three are stored, in the order given
        assert [j.id for j in stored] == [j.id for j in jobs]
        for job in jobs:
            assert (await backend.get(job.id)).state is State.QUEUED

    @async_test
    async def test_a_large_batch_is_stored_whole_and_as_given(self, backend: Backend) -> None:
        # Given 350 jobs (stores may take another path for large batches, or insert
        # them in chunks and the rest): every field set on some, a third due in an
        # hour, two queues
        now = await backend.now()
        retry = RetryPolicy(exponent=2.0, base=1.0, max_delay=30.0, jitter=0.0)
        jobs = [
            make_job(
                "bulk-a" if i % 2 else "bulk-b",
                args=[i, "x" * (i % 5)],
                priority=i % 3,
                run_at=now + 3600 if i % 3 == 0 else 0.0,
                retry=retry if i % 4 == 0 else make_job().retry,
                timeout=1.5 if i % 5 == 0 else None,
                metadata={"i": i} if i % 2 else None,
                tenant="acme" if i % 7 == 0 else None,
            )
            for i in range(350)
        ]

        # When they are enqueued in one call, and 300 more through the blocking path
        stored = await backend.enqueue(jobs)
        more = [make_job("bulk-a", args=[i]) for i in range(300)]
        blocking = backend.enqueue_blocking(more)

        # Then every one reads back as given, scheduled or queued by its run_at
        assert [j.id for j in stored] == [j.id for j in jobs]
        for i, job in enumerate(jobs):
            got = await backend.get(job.id)
            assert got.state is (State.SCHEDULED if i % 3 == 0 else State.QUEUED)
            assert got.created_at == pytest.approx(stored[i].created_at)
            assert now - 1 <= got.created_at <= await backend.now()
            assert got.steps[0].args == [i, "x" * (i % 5)]
            assert (got.priority, got.retry, got.timeout, got.tenant) == (
                job.priority,
                job.retry,
                job.timeout,
                job.tenant,
            )
            assert got.metadata == ({"i": i} if i % 2 else {})
        if blocking is not None:
            assert [j.id for j in blocking] == [j.id for j in more]
        queues = {q.name: q.counts for q in await backend.list_queues()}
        waiting = [i for i in range(350) if i % 3]
        expected_a = sum(i % 2 for i in waiting) + (300 if blocking is not None else 0)
        assert queues["bulk-a"]["queued"] == expected_a
        assert queues["bulk-b"]["scheduled"] == sum(i % 6 == 0 for i in range(350))
        claimed = await backend.claim(["bulk-b"], "w", 500, 60.0)
        assert len(claimed) == sum(1 - i % 2 for i in waiting)
        assert [j.priority for j in claimed] == sorted(j.priority for j in claimed)

    @async_test
    async def test_get_returns_what_was_enqueued(self, backend: Backend) -> None:
        # Given a job that uses every field an application can set
        steps = [
            task_step("fetch", 1, "two", flag=True),
            Step(
                name="post",
                kind="http",
                request={"method": "POST", "url": "https://example.com/x", "body": {"a": [1]}},
            ),
        ]
        retry = RetryPolicy(exponent=3.0, base=1.0, max_delay=60.0, jitter=0.0)
        job = make_job(
            "reports",
            steps=steps,
            priority=7,
            max_attempts=9,
            retry=retry,
            timeout=12.5,
            unique_key="report-42",
            metadata={"user": 42, "tags": ["x", "y"]},
            tenant="acme",
        )
        expected_steps = [s.to_dict() for s in steps]

        # When it is stored and read back
        await enqueue_one(backend, job)
        got = await backend.get(job.id)

        # Then every field reads back equal
        assert got.id == job.id
        assert got.queue == "reports"
        assert [s.to_dict() for s in got.steps] == expected_steps
        assert got.task == "fetch"
        assert got.priority == 7
        assert got.max_attempts == 9
        assert got.retry == retry
        assert got.timeout == 12.5
        assert got.unique_key == "report-42"
        assert got.metadata == {"user": 42, "tags": ["x", "y"]}
        assert got.tenant == "acme"
        assert got.current_step == 0
        assert got.errors == []
        assert got.result is None

    @async_test
    async def test_get_of_an_unknown_id_raises_job_not_found(self, backend: Backend) -> None:
        # Given a job id that was never stored
        missing = make_job().id

        # When / Then it is looked up
        with pytest.raises(JobNotFound):
            await backend.get(missing)

    @async_test
    async def test_an_id_no_store_holds_is_not_found_by_every_method(
        self, backend: Backend
    ) -> None:
        # Given ids that no job can have (from a URL or a command line): with a NUL, with
        # a lone surrogate, not a string
        await enqueue_one(backend, make_job())
        missing: Any
        for missing in ("nul\x00id", "lone\ud800", 42):
            # When each method that takes an id is asked about one; Then the answer is
            # that there is no such job, as for any other unknown id
            for ask in (
                backend.get(missing),
                backend.head(missing),
                backend.cancel(missing),
                backend.retry(missing),
                backend.watch(missing, 1, 0.01),
            ):
                with pytest.raises(JobNotFound):
                    await ask
            assert await backend.delete(missing) is False

    @async_test
    async def test_names_no_store_holds_find_no_queue_and_list_no_jobs(
        self, backend: Backend
    ) -> None:
        # Given a stored job, and names no queue or job can have (from a URL, a form)
        await enqueue_one(backend, make_job())
        for odd in ("nul\x00q", "lone\ud800"):
            # When queues of that name are acted on; Then there is no such queue
            for act in (
                backend.pause_queue(odd),
                backend.resume_queue(odd),
                backend.empty_queue(odd),
                backend.drop_queue(odd),
            ):
                with pytest.raises(QueueNotFound):
                    await act
            # And listings filtered by it, or continued from it, hold no job
            for filter, cursor in (
                (JobFilter(queue=odd), None),
                (JobFilter(task=odd), None),
                (JobFilter(tenant=odd), None),
                (None, odd),
            ):
                page = await backend.list_jobs(filter, cursor)
                assert (page.jobs, page.next_cursor) == ([], None)

    @async_test
    async def test_head_is_the_jobs_version_state_tenant_and_metadata(
        self, backend: Backend
    ) -> None:
        # Given a job with a tenant and metadata, and one without either
        job = await enqueue_one(
            backend, make_job(metadata={"conveyor.http": {"read": "t0k"}, "n": 1}, tenant="acme")
        )
        bare = await enqueue_one(backend, make_job())

        # When their heads are read, before and after the first is claimed and finished
        queued = await backend.head(job.id)
        await claim_one(backend)
        running = await backend.head(job.id)
        await finish_one(backend, await backend.get(job.id), Outcome.succeeded())
        done = await backend.get(job.id)

        # Then each head says what the whole job says at that moment
        assert queued == JobHead(job.id, job.version, State.QUEUED, "acme", job.metadata)
        assert running.state is State.RUNNING and running.version > queued.version
        assert await backend.head(job.id) == JobHead(
            done.id,
            done.version,
            State.SUCCEEDED,
            "acme",
            {"conveyor.http": {"read": "t0k"}, "n": 1},
        )
        assert await backend.head(bare.id) == JobHead(bare.id, bare.version, State.QUEUED, None, {})

    @async_test
    async def test_head_of_an_unknown_id_raises_job_not_found(self, backend: Backend) -> None:
        # Given a job id that was never stored
        missing = make_job().id

        # When / Then its head is looked up
        with pytest.raises(JobNotFound):
            await backend.head(missing)

    @async_test
    async def test_enqueue_blocking_stores_like_enqueue(self, backend: Backend) -> None:
        # Given a backend that offers the synchronous fast path
        job = make_job("mail")
        stored = backend.enqueue_blocking([job])
        if stored is None:
            pytest.skip("this backend has no enqueue_blocking fast path")

        # Then the job is stored as by enqueue
        assert [j.id for j in stored] == [job.id]
        assert (await backend.get(job.id)).state is State.QUEUED

    # -- claim -------------------------------------------------------------------
    @async_test
    async def test_claim_takes_lower_priority_numbers_first_then_fifo(
        self, backend: Backend
    ) -> None:
        # Given jobs of mixed priorities, enqueued one at a time
        low = await enqueue_one(backend, make_job(priority=10))
        normal_1 = await enqueue_one(backend, make_job(priority=0))
        high = await enqueue_one(backend, make_job(priority=-10))
        normal_2 = await enqueue_one(backend, make_job(priority=0))

        # When a worker claims them all
        claimed = await backend.claim(["default"], "worker-1", 10, 60.0)

        # Then high priority comes first, and equal priorities keep their order
        assert [j.id for j in claimed] == [high.id, normal_1.id, normal_2.id, low.id]

    @async_test
    async def test_claim_takes_an_earlier_run_at_before_an_older_id(self, backend: Backend) -> None:
        # Given a job enqueued now, then one whose run_at is a minute ago
        now = await backend.now()
        first = await enqueue_one(backend, make_job())
        overdue = await enqueue_one(backend, make_job(run_at=now - 60))

        # When a worker claims one
        claimed = await claim_one(backend)

        # Then the overdue job goes first
        assert claimed.id == overdue.id
        assert (await claim_one(backend)).id == first.id

    @async_test
    async def test_claim_empties_queues_in_the_order_given(self, backend: Backend) -> None:
        # Given two ready jobs in "high" and two more urgent ones in "low"
        high = await backend.enqueue([make_job("high"), make_job("high")])
        low = await backend.enqueue([make_job("low", priority=-10), make_job("low", priority=-10)])

        # When a worker claims three from ["high", "low"]
        claimed = await backend.claim(["high", "low"], "worker-1", 3, 60.0)

        # Then "high" is emptied first, then "low" fills the rest
        assert [j.id for j in claimed] == [high[0].id, high[1].id, low[0].id]

    @async_test
    async def test_claim_respects_the_limit(self, backend: Backend) -> None:
        # Given five ready jobs
        await backend.enqueue([make_job() for _ in range(5)])

        # When a worker claims two
        claimed = await backend.claim(["default"], "worker-1", 2, 60.0)

        # Then it gets two, and three are left for the next claim
        assert len(claimed) == 2
        assert len(await backend.claim(["default"], "worker-2", 10, 60.0)) == 3

    @async_test
    async def test_claim_leases_the_job_to_the_worker(self, backend: Backend) -> None:
        # Given a queued job
        job = await enqueue_one(backend, make_job())
        before = await backend.now()

        # When a worker claims it for 30 seconds
        claimed = await claim_one(backend, worker_id="worker-7", lease=30.0)

        # Then it is running, held by that worker, and the attempt is counted
        after = await backend.now()
        stored = await backend.get(job.id)
        for seen in (claimed, stored):
            assert seen.state is State.RUNNING
            assert seen.worker_id == "worker-7"
            assert seen.attempts == 1
            assert seen.lease_until is not None
            assert before + 30 - 1 <= seen.lease_until <= after + 30 + 1
            assert seen.started_at is not None
            assert seen.version > job.version

    @async_test
    async def test_a_claimed_job_is_not_claimed_again(self, backend: Backend) -> None:
        # Given a job claimed by one worker
        await enqueue_one(backend, make_job())
        await claim_one(backend, worker_id="worker-1")

        # When another worker claims
        claimed = await backend.claim(["default"], "worker-2", 10, 60.0)

        # Then there is nothing for it
        assert claimed == []

    @async_test
    async def test_a_scheduled_job_is_claimed_only_once_due(self, backend: Backend) -> None:
        # Given a job due in 0.3 seconds
        job = await enqueue_one(backend, make_job(run_at=await backend.now() + 0.3))

        # When a worker claims at once
        early = await backend.claim(["default"], "worker-1", 10, 60.0)

        # Then it gets nothing, but once the time has come it gets the job
        assert early == []
        await asyncio.sleep(0.4)
        claimed = await backend.claim(["default"], "worker-1", 10, 60.0)
        assert [j.id for j in claimed] == [job.id]

    @async_test
    async def test_a_paused_queue_is_skipped_until_resumed(self, backend: Backend) -> None:
        # Given a ready job in a paused queue, and one in another queue
        paused_job = await enqueue_one(backend, make_job("reports"))
        other = await enqueue_one(backend, make_job("mail"))
        await backend.pause_queue("reports")

        # When a worker claims from both
        claimed = await backend.claim(["reports", "mail"], "worker-1", 10, 60.0)

        # Then only the other queue's job is taken, until the queue is resumed
        assert [j.id for j in claimed] == [other.id]
        await backend.resume_queue("reports")
        claimed = await backend.claim(["reports", "mail"], "worker-1", 10, 60.0)
        assert [j.id for j in claimed] == [paused_job.id]

    # -- unique keys -------------------------------------------------------------
    @async_test
    async def test_a_unique_key_held_by_a_queued_job_returns_that_job(
        self, backend: Backend
    ) -> None:
        # Given a queued job with a unique key
        first = await enqueue_one(backend, make_job(unique_key="invoice-1"))

        # When another job with that key is enqueued
        second = make_job(unique_key="invoice-1")
        returned = await enqueue_one(backend, second)

        # Then the first job is returned and nothing new is stored
        assert returned.id == first.id
        with pytest.raises(JobNotFound):
            await backend.get(second.id)
        assert [j.id for j in await all_jobs(backend)] == [first.id]

    @async_test
    async def test_a_unique_key_held_by_a_scheduled_or_running_job_returns_that_job(
        self, backend: Backend
    ) -> None:
        # Given a scheduled job and a running job, each with a unique key
        scheduled = await enqueue_one(
            backend, make_job(unique_key="later", run_at=await backend.now() + 3600)
        )
        running = await enqueue_one(backend, make_job(unique_key="now"))
        await claim_one(backend)

        # When jobs with the same keys are enqueued
        returned = await backend.enqueue([make_job(unique_key="later"), make_job(unique_key="now")])

        # Then the active jobs are returned in their place
        assert [j.id for j in returned] == [scheduled.id, running.id]
        assert len(await all_jobs(backend)) == 2

    @async_test
    async def test_a_unique_key_repeated_in_one_batch_stores_one_job(
        self, backend: Backend
    ) -> None:
        # Given two new jobs with the same key
        jobs = [make_job(unique_key="k"), make_job(unique_key="k")]

        # When they are enqueued together
        returned = await backend.enqueue(jobs)

        # Then the first is stored and returned for both
        assert [j.id for j in returned] == [jobs[0].id, jobs[0].id]
        assert len(await all_jobs(backend)) == 1

    @async_test
    async def test_a_job_not_stored_for_its_unique_key_makes_no_queue(
        self, backend: Backend
    ) -> None:
        # Given a queued job of "mail" with a unique key
        first = await enqueue_one(backend, make_job("mail", unique_key="welcome-7"))

        # When a job with that key is enqueued into a queue no job was ever stored in,
        # alone and in a batch
        alone = await enqueue_one(backend, make_job("reports", unique_key="welcome-7"))
        batch = await backend.enqueue(
            [make_job("reports", unique_key="welcome-7"), make_job("mail")]
        )

        # Then the first job comes back each time, and no queue "reports" appears
        assert alone.id == batch[0].id == first.id
        assert [q.name for q in await backend.list_queues()] == ["mail"]
        with pytest.raises(QueueNotFound):
            await backend.pause_queue("reports")
        # and a job stored there later makes the queue as usual
        await enqueue_one(backend, make_job("reports"))
        queues = await backend.list_queues()
        assert [q.name for q in queues] == ["mail", "reports"]
        assert all(q.created_at > 0 for q in queues)

    @async_test
    async def test_a_unique_key_is_free_again_once_its_job_succeeded(
        self, backend: Backend
    ) -> None:
        # Given a job with a unique key that ran and succeeded
        first = await enqueue_one(backend, make_job(unique_key="nightly"))
        assert await finish_one(backend, await claim_one(backend), Outcome.succeeded())

        # When a new job with that key is enqueued
        again = make_job(unique_key="nightly")
        returned = await enqueue_one(backend, again)

        # Then it is stored as a new job
        assert returned.id == again.id != first.id
        assert (await backend.get(again.id)).state is State.QUEUED
