"""Conformance: what operators do: cancel, delete, retry, list, prune, queues, workers."""

from __future__ import annotations

import asyncio

import pytest

from conveyor.backends.base import Backend, JobFilter, RetriedAll, WorkerInfo
from conveyor.exceptions import JobNotFound, JobStateError, QueueNotFound, UniqueKeyHeld
from conveyor.job import Outcome, State
from conveyor.testing.harness import (
    all_jobs,
    async_test,
    claim_one,
    enqueue_one,
    error,
    finish_one,
    make_job,
    task_step,
)


class AdminConformance:
    """Operator actions and the views behind the dashboard and CLI."""

    # -- cancel ------------------------------------------------------------------
    @async_test
    async def test_cancel_of_a_waiting_job_ends_it(self, backend: Backend) -> None:
        # Given a queued and a scheduled job
        queued = await enqueue_one(backend, make_job())
        scheduled = await enqueue_one(backend, make_job(run_at=await backend.now() + 0.2))

        # When both are cancelled
        cancelled = [await backend.cancel(queued.id), await backend.cancel(scheduled.id)]

        # Then both are finished, cancelled, and never run
        for job in cancelled:
            assert job.state is State.CANCELLED
            assert job.finished_at is not None
        await asyncio.sleep(0.3)
        assert await backend.claim(["default"], "worker-1", 10, 60.0) == []

    @async_test
    async def test_cancel_of_a_running_job_asks_its_worker(self, backend: Backend) -> None:
        # Given a running job
        await enqueue_one(backend, make_job())
        job = await claim_one(backend)

        # When it is cancelled
        returned = await backend.cancel(job.id)

        # Then it is cancelling, still held by its worker
        assert returned.state is State.CANCELLING
        got = await backend.get(job.id)
        assert (got.state, got.worker_id) == (State.CANCELLING, "worker-1")

    @async_test
    async def test_cancel_of_a_finished_job_changes_nothing(self, backend: Backend) -> None:
        # Given a succeeded job
        job = await enqueue_one(backend, make_job())
        await finish_one(backend, await claim_one(backend), Outcome.succeeded())
        before = await backend.get(job.id)

        # When it is cancelled
        returned = await backend.cancel(before.id)

        # Then it stays as it was
        assert returned.state is State.SUCCEEDED
        after = await backend.get(before.id)
        assert (after.state, after.version) == (State.SUCCEEDED, before.version)

    @async_test
    async def test_cancel_of_an_unknown_job_raises_job_not_found(self, backend: Backend) -> None:
        with pytest.raises(JobNotFound):
            await backend.cancel(make_job().id)

    # -- delete ------------------------------------------------------------------
    @async_test
    async def test_delete_removes_waiting_and_finished_jobs(self, backend: Backend) -> None:
        # Given a queued job and a succeeded one
        await enqueue_one(backend, make_job())
        done = await claim_one(backend)
        await finish_one(backend, done, Outcome.succeeded())
        waiting = await enqueue_one(backend, make_job())

        # When both are deleted
        deleted = [await backend.delete(waiting.id), await backend.delete(done.id)]

        # Then both are gone
        assert deleted == [True, True]
        for job_id in (waiting.id, done.id):
            with pytest.raises(JobNotFound):
                await backend.get(job_id)

    @async_test
    async def test_delete_refuses_a_running_job(self, backend: Backend) -> None:
        # Given a running job
        await enqueue_one(backend, make_job())
        job = await claim_one(backend)

        # When / Then deleting it is refused, and it keeps running
        with pytest.raises(JobStateError):
            await backend.delete(job.id)
        assert (await backend.get(job.id)).state is State.RUNNING

    @async_test
    async def test_delete_with_states_removes_only_a_job_in_one_of_them(
        self, backend: Backend
    ) -> None:
        # Given a poisoned job that was retried (queued now), and a poisoned one
        for _ in range(2):
            await enqueue_one(backend, make_job())
            job = await claim_one(backend)
            await finish_one(backend, job, Outcome.poisoned(error("boom")))
        page = await backend.list_jobs(JobFilter(states=frozenset({State.POISONED})))
        retried, poisoned = page.jobs
        await backend.retry(retried.id)

        # When both are deleted as poisoned jobs (what a caller saw them as)
        with pytest.raises(JobStateError) as refused:
            await backend.delete(retried.id, [State.POISONED])
        removed = await backend.delete(poisoned.id, [State.POISONED])

        # Then the retried one is left queued, named in the refusal; the other is gone
        assert refused.value.state == "queued"
        assert "only a job that is poisoned" in str(refused.value)
        assert (await backend.get(retried.id)).state is State.QUEUED
        assert removed is True
        with pytest.raises(JobNotFound):
            await backend.get(poisoned.id)
        # and an unknown job is still no job
        assert await backend.delete(make_job().id, [State.POISONED]) is False

    @async_test
    async def test_delete_of_an_unknown_job_returns_false(self, backend: Backend) -> None:
        assert await backend.delete(make_job().id) is False

    # -- retry -------------------------------------------------------------------
    @async_test
    async def test_retry_of_a_poisoned_job_resumes_at_the_failed_step(
        self, backend: Backend
    ) -> None:
        # Given a two-step job whose second step failed until it was poisoned
        await enqueue_one(backend, make_job(steps=[task_step("fetch"), task_step("store")]))
        job = await claim_one(backend)
        job.steps[0].state, job.steps[0].result = "succeeded", {"rows": 3}
        job.steps[0].attempts = 1
        job.steps[1].state, job.steps[1].last_error = "failed", "disk full"
        job.steps[1].attempts = 5  # a step with a retry policy of its own spent them all
        job.current_step = 1
        await finish_one(backend, job, Outcome.poisoned(error("disk full", step="store")))

        # When an operator retries it
        retried = await backend.retry(job.id)

        # Then it is queued now with fresh attempts, and resumes at "store"
        got = await backend.get(job.id)
        for seen in (retried, got):
            assert seen.state is State.QUEUED
            assert seen.attempts == 0
            assert seen.current_step == 1
            assert seen.steps[0].state == "succeeded"
            assert seen.steps[0].result == {"rows": 3}
            assert [s.attempts for s in seen.steps] == [1, 0]  # the failed step's all again
            assert seen.finished_at is None
        again = await claim_one(backend)
        assert (again.id, again.current_step, again.attempts) == (job.id, 1, 1)

    @async_test
    async def test_retry_refuses_a_job_that_is_not_poisoned(self, backend: Backend) -> None:
        # Given a queued job and a succeeded one
        await enqueue_one(backend, make_job())
        done = await claim_one(backend)
        await finish_one(backend, done, Outcome.succeeded())
        queued = await enqueue_one(backend, make_job())

        # When / Then retrying either is refused, and neither changes
        for job_id, state in ((done.id, State.SUCCEEDED), (queued.id, State.QUEUED)):
            with pytest.raises(JobStateError):
                await backend.retry(job_id)
            assert (await backend.get(job_id)).state is state

    @async_test
    async def test_retry_all_requeues_the_poisoned_jobs_of_a_queue(self, backend: Backend) -> None:
        # Given two poisoned jobs in "mail", one in "reports" and a succeeded one in "mail"
        await backend.enqueue([make_job("mail") for _ in range(3)] + [make_job("reports")])
        mail = await backend.claim(["mail"], "worker-1", 3, 60.0)
        reports = await backend.claim(["reports"], "worker-1", 1, 60.0)
        await backend.finish(
            [
                (mail[0], Outcome.poisoned(error("x"))),
                (mail[1], Outcome.poisoned(error("x"))),
                (mail[2], Outcome.succeeded()),
                (reports[0], Outcome.poisoned(error("x"))),
            ]
        )

        # When every poisoned job of "mail" is retried
        done = await backend.retry_all(JobFilter(states=frozenset({State.POISONED}), queue="mail"))

        # Then exactly those two are queued again, with fresh attempts
        assert done == RetriedAll(retried=2, held=0)
        for job in mail[:2]:
            got = await backend.get(job.id)
            assert (got.state, got.attempts) == (State.QUEUED, 0)
        assert (await backend.get(mail[2].id)).state is State.SUCCEEDED
        assert (await backend.get(reports[0].id)).state is State.POISONED

    @async_test
    async def test_retry_all_counts_the_jobs_whose_unique_key_another_job_holds(
        self, backend: Backend
    ) -> None:
        # Given two poisoned jobs of keys "a" and "b", and a new job of key "a" waiting
        await backend.enqueue([make_job("keys", unique_key="a"), make_job("keys", unique_key="b")])
        first = await backend.claim(["keys"], "worker-1", 2, 60.0)
        await backend.finish([(job, Outcome.poisoned(error("x"))) for job in first])
        (holder,) = await backend.enqueue([make_job("keys", unique_key="a")])
        by_key = {job.unique_key: job for job in first}

        # When every poisoned job of the queue is retried
        done = await backend.retry_all(JobFilter(states=frozenset({State.POISONED}), queue="keys"))

        # Then the one of key "b" is queued again, and the one of key "a" stays poisoned
        # (its key is held), counted apart; a retry of it alone says why
        assert done == RetriedAll(retried=1, held=1)
        assert (await backend.get(by_key["b"].id)).state is State.QUEUED
        assert (await backend.get(by_key["a"].id)).state is State.POISONED
        with pytest.raises(UniqueKeyHeld, match="unique key 'a' is held"):
            await backend.retry(by_key["a"].id)
        assert (await backend.get(holder.id)).state is State.QUEUED

    # -- list_jobs ---------------------------------------------------------------
    @async_test
    async def test_list_jobs_filters_by_state_queue_and_task(self, backend: Backend) -> None:
        # Given jobs in two queues, of two tasks, some running
        mail = [await enqueue_one(backend, make_job("mail", task="send")) for _ in range(3)]
        other = await enqueue_one(backend, make_job("mail", task="bounce"))
        reports = [await enqueue_one(backend, make_job("reports", task="build")) for _ in range(2)]
        running = await backend.claim(["mail"], "worker-1", 2, 60.0)

        async def ids(filter: JobFilter) -> list[str]:
            return [j.id for j in await all_jobs(backend, filter)]

        # When / Then each filter returns exactly its jobs, newest first
        assert await ids(JobFilter(queue="reports")) == [j.id for j in reversed(reports)]
        assert await ids(JobFilter(task="send")) == [j.id for j in reversed(mail)]
        assert await ids(JobFilter(task="bounce")) == [other.id]
        assert await ids(JobFilter(states=frozenset({State.RUNNING}))) == [
            j.id for j in sorted(running, key=lambda j: j.id, reverse=True)
        ]
        assert await ids(JobFilter(states=frozenset({State.QUEUED}), queue="mail")) == [
            j.id for j in reversed([*mail, other]) if j.id not in {r.id for r in running}
        ]
        everything = [*mail, other, *reports]
        assert await ids(JobFilter()) == [j.id for j in reversed(everything)]

    @async_test
    async def test_list_jobs_pages_cover_every_job_once(self, backend: Backend) -> None:
        # Given ten jobs
        jobs = [await enqueue_one(backend, make_job()) for _ in range(10)]

        # When they are listed three at a time, following the cursor
        pages = []
        cursor: str | None = None
        for _ in range(10):
            page = await backend.list_jobs(None, cursor, 3)
            pages.append([j.id for j in page.jobs])
            cursor = page.next_cursor
            if cursor is None:
                break

        # Then the pages hold every job exactly once, newest first
        assert [len(p) for p in pages] == [3, 3, 3, 1]
        assert [i for p in pages for i in p] == [j.id for j in reversed(jobs)]

    # -- prune -------------------------------------------------------------------
    @async_test
    async def test_prune_deletes_only_jobs_finished_before_the_time(self, backend: Backend) -> None:
        # Given a job finished earlier, a job finished later, a waiting and a running job
        await backend.enqueue([make_job() for _ in range(3)])
        early, late, running = await backend.claim(["default"], "worker-1", 3, 60.0)
        await finish_one(backend, early, Outcome.succeeded())
        await asyncio.sleep(0.05)
        cutoff = await backend.now()
        await asyncio.sleep(0.05)
        await finish_one(backend, late, Outcome.poisoned(error("x")))
        waiting = await enqueue_one(backend, make_job())

        # When jobs finished before the cutoff are pruned
        pruned = await backend.prune(cutoff)

        # Then only the early one is gone
        assert pruned == 1
        with pytest.raises(JobNotFound):
            await backend.get(early.id)
        for job in (late, running, waiting):
            await backend.get(job.id)

        # And even with a cutoff in the future, waiting and running jobs stay
        assert await backend.prune(await backend.now() + 3600) == 1
        assert {j.id for j in await all_jobs(backend)} == {running.id, waiting.id}

    @async_test
    async def test_prune_deletes_finished_jobs_whatever_their_ids(self, backend: Backend) -> None:
        # Given finished jobs whose ids were given by hand (sorting above and below the
        # ids conveyor makes, which are in time order), and one that is still waiting
        ids = ["order-42", "Z-9", "7-late", "000-early"]
        jobs = []
        for job_id in ids:
            job = make_job("hand")
            job.id = job_id
            jobs.append(job)
        await backend.enqueue(jobs)
        for job in await backend.claim(["hand"], "worker-1", len(ids), 60.0):
            await finish_one(backend, job, Outcome.succeeded())
        waiting = make_job("hand")
        waiting.id = "order-43"
        await backend.enqueue([waiting])

        # When jobs finished before a time after they finished are pruned
        pruned = await backend.prune(await backend.now() + 1.0)

        # Then every finished one is gone, whatever its id; the waiting one stays
        assert pruned == len(ids), pruned
        assert [j.id for j in await all_jobs(backend)] == ["order-43"]

    # -- queues ------------------------------------------------------------------
    @async_test
    async def test_create_queue_lists_it_with_zero_counts(self, backend: Backend) -> None:
        # When a queue is created twice
        await backend.create_queue("reports")
        await backend.create_queue("reports")

        # Then it is listed once, not paused, with a count of 0 for every state
        queues = [q for q in await backend.list_queues() if q.name == "reports"]
        assert len(queues) == 1
        assert queues[0].paused is False
        assert queues[0].counts == {s.value: 0 for s in State}

    @async_test
    async def test_enqueue_into_a_new_queue_lists_the_queue(self, backend: Backend) -> None:
        # When jobs are enqueued into a queue nobody created
        await backend.enqueue([make_job("fresh"), make_job("fresh")])
        await claim_one(backend, "fresh")

        # Then the queue is listed with its counts by state
        (info,) = [q for q in await backend.list_queues() if q.name == "fresh"]
        assert info.counts[State.QUEUED.value] == 1
        assert info.counts[State.RUNNING.value] == 1
        assert set(info.counts) == {s.value for s in State}

    @async_test
    async def test_pause_and_resume_show_in_list_queues(self, backend: Backend) -> None:
        # Given a queue
        await backend.create_queue("mail")

        # When it is paused, then resumed
        await backend.pause_queue("mail")
        paused = {q.name: q.paused for q in await backend.list_queues()}
        await backend.resume_queue("mail")
        resumed = {q.name: q.paused for q in await backend.list_queues()}

        # Then list_queues shows each state
        assert paused["mail"] is True
        assert resumed["mail"] is False

    @async_test
    async def test_empty_queue_removes_only_waiting_jobs(self, backend: Backend) -> None:
        # Given a queue with queued, scheduled, running and succeeded jobs
        await backend.enqueue([make_job("mail") for _ in range(4)])
        running, done = await backend.claim(["mail"], "worker-1", 2, 60.0)
        await finish_one(backend, done, Outcome.succeeded())
        await enqueue_one(backend, make_job("mail", run_at=await backend.now() + 3600))
        untouched = await enqueue_one(backend, make_job("other"))

        # When the queue is emptied
        removed = await backend.empty_queue("mail")

        # Then the three waiting jobs are gone; running, finished and other queues stay
        assert removed == 3
        left = {j.id for j in await all_jobs(backend)}
        assert left == {running.id, done.id, untouched.id}

    @async_test
    async def test_drop_queue_removes_the_queue_and_its_jobs(self, backend: Backend) -> None:
        # Given a queue with two jobs
        jobs = await backend.enqueue([make_job("old"), make_job("old")])

        # When it is dropped
        removed = await backend.drop_queue("old")

        # Then the queue and its jobs are gone
        assert removed == 2
        assert "old" not in {q.name for q in await backend.list_queues()}
        for job in jobs:
            with pytest.raises(JobNotFound):
                await backend.get(job.id)

    @async_test
    async def test_a_queue_dropped_under_a_running_job_is_listed_when_the_job_waits_again(
        self, backend: Backend
    ) -> None:
        # Given a queue dropped while one of its jobs runs (the running job stays)
        await backend.enqueue([make_job("dropped"), make_job("dropped")])
        (running,) = await backend.claim(["dropped"], "worker-1", 1, 60.0)
        assert await backend.drop_queue("dropped") == 1

        # When its worker gives the job back (a shutdown)
        assert await backend.release([running]) == 1

        # Then the job waits in its queue, and the queue is listed with it, so that an
        # operator sees the job and can pause, empty or drop the queue again
        queues = {q.name: q for q in await backend.list_queues()}
        assert queues["dropped"].counts["queued"] == 1
        await backend.pause_queue("dropped")
        assert await backend.claim(["dropped"], "worker-2", 1, 60.0) == []
        await backend.resume_queue("dropped")
        assert [j.id for j in await backend.claim(["dropped"], "worker-2", 1, 60.0)] == [running.id]

    @async_test
    async def test_a_queue_dropped_under_a_running_job_is_listed_while_the_job_runs(
        self, backend: Backend
    ) -> None:
        # Given a queue dropped while one of its jobs runs and another is asked to cancel
        await backend.enqueue([make_job("dropped") for _ in range(3)])
        running, cancelling = await backend.claim(["dropped"], "worker-1", 2, 60.0)
        await backend.cancel(cancelling.id)
        assert await backend.drop_queue("dropped") == 1

        # When an operator lists the queues
        queues = {q.name: q for q in await backend.list_queues()}

        # Then the queue is listed by its held jobs, not paused
        assert queues["dropped"].paused is False
        counts = {s: n for s, n in queues["dropped"].counts.items() if n}
        assert counts == {"running": 1, "cancelling": 1}

        # And it can be emptied, paused, resumed and dropped again, the held jobs staying
        assert await backend.empty_queue("dropped") == 0
        await backend.pause_queue("dropped")
        assert {q.name: q.paused for q in await backend.list_queues()}["dropped"] is True
        await backend.resume_queue("dropped")
        assert await backend.drop_queue("dropped") == 0
        assert await backend.drop_queue("dropped") == 0
        assert (await backend.get(running.id)).state is State.RUNNING

        # And once its jobs are finished and pruned, the queue is gone
        assert await finish_one(backend, running, Outcome.succeeded())
        assert await finish_one(backend, cancelling, Outcome.cancelled(error("stopped")))
        assert "dropped" in {q.name for q in await backend.list_queues()}
        assert await backend.prune(await backend.now() + 1) == 2
        assert "dropped" not in {q.name for q in await backend.list_queues()}
        with pytest.raises(QueueNotFound):
            await backend.pause_queue("dropped")

    @async_test
    async def test_queue_operations_on_an_unknown_queue_raise_queue_not_found(
        self, backend: Backend
    ) -> None:
        for operation in (
            backend.pause_queue,
            backend.resume_queue,
            backend.empty_queue,
            backend.drop_queue,
        ):
            with pytest.raises(QueueNotFound):
                await operation("nowhere")
        assert "nowhere" not in {q.name for q in await backend.list_queues()}

    # -- workers -----------------------------------------------------------------
    @async_test
    async def test_workers_register_heartbeat_and_unregister(self, backend: Backend) -> None:
        # Given two registered workers
        one = WorkerInfo(id="w-1", host="box-1", pid=101, queues=["mail", "default"], concurrency=4)
        two = WorkerInfo(id="w-2", host="box-2", pid=202, queues=["reports"], concurrency=1)
        await backend.register_worker(one)
        await backend.register_worker(two)
        listed = {w.id: w for w in await backend.list_workers()}
        assert set(listed) == {"w-1", "w-2"}
        first_beat = listed["w-1"].heartbeat_at
        assert (listed["w-1"].host, listed["w-1"].pid) == ("box-1", 101)
        assert listed["w-1"].queues == ["mail", "default"]
        assert listed["w-1"].concurrency == 4
        assert listed["w-1"].started_at > 0

        # When one reports its figures
        await asyncio.sleep(0.02)
        one.processed, one.failed, one.running = 7, 2, ["job-a"]
        await backend.heartbeat_worker(one)

        # Then they are listed with a newer heartbeat
        beat = {w.id: w for w in await backend.list_workers()}["w-1"]
        assert (beat.processed, beat.failed, beat.running) == (7, 2, ["job-a"])
        assert beat.heartbeat_at > first_beat

        # And once unregistered, it is no longer listed
        await backend.unregister_worker("w-1")
        assert [w.id for w in await backend.list_workers()] == ["w-2"]

    @async_test
    async def test_forget_worker_removes_only_a_worker_still_silent(self, backend: Backend) -> None:
        # Given a worker whose last heartbeat is at ``beat`` (the store's clock)
        worker = WorkerInfo(id="w-old", host="box", pid=1, queues=["default"], concurrency=1)
        await backend.register_worker(worker)
        (listed,) = await backend.list_workers()
        beat = listed.heartbeat_at

        # When it is forgotten if silent since before its beat (it is not), then if silent
        # since a moment after it (it is)
        kept = await backend.forget_worker("w-old", beat)
        forgotten = await backend.forget_worker("w-old", beat + 1.0)

        # Then only the second removes it, and forgetting it again, or a worker nobody
        # registered, does nothing
        assert (kept, forgotten) == (False, True)
        assert await backend.list_workers() == []
        assert await backend.forget_worker("w-old", beat + 1.0) is False
        assert await backend.forget_worker("nobody", beat + 1.0) is False
