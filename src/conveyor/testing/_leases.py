"""Conformance: what a worker does with a held job: extend, save, finish, release,
and what happens when its lease runs out."""

from __future__ import annotations

import asyncio

import pytest

from conveyor.backends.base import Backend
from conveyor.job import Outcome, Progress, State
from conveyor.testing.harness import (
    async_test,
    claim_one,
    enqueue_one,
    error,
    finish_one,
    make_job,
    task_step,
)


class LeaseConformance:
    """Holding a job: every write is a compare-and-set on the lease."""

    # -- extend ------------------------------------------------------------------
    @async_test
    async def test_extend_renews_only_the_leases_the_worker_holds(self, backend: Backend) -> None:
        # Given two jobs held by worker-1 and one held by worker-2
        await backend.enqueue([make_job() for _ in range(3)])
        mine = await backend.claim(["default"], "worker-1", 2, 5.0)
        theirs = await claim_one(backend, worker_id="worker-2", lease=5.0)
        unknown = make_job().id
        before = await backend.now()

        # When worker-1 extends all of them for a minute
        ids = [mine[0].id, mine[1].id, theirs.id, unknown]
        status = await backend.extend(ids, "worker-1", 60.0)

        # Then its own leases move, the others are reported lost and left alone
        assert sorted(status.extended) == sorted(j.id for j in mine)
        assert sorted(status.lost) == sorted([theirs.id, unknown])
        assert status.cancelling == []
        for job in mine:
            lease_until = (await backend.get(job.id)).lease_until
            assert lease_until is not None and lease_until >= before + 59
        assert (await backend.get(theirs.id)).lease_until == pytest.approx(theirs.lease_until)

    @async_test
    async def test_extend_reports_a_job_cancelled_while_running(self, backend: Backend) -> None:
        # Given a running job that a user cancels
        await enqueue_one(backend, make_job())
        job = await claim_one(backend)
        await backend.cancel(job.id)

        # When its worker extends the lease
        status = await backend.extend([job.id], "worker-1", 60.0)

        # Then the worker learns that the job is to be cancelled, and still holds it
        assert status.cancelling == [job.id]
        assert status.extended == [job.id]
        assert status.lost == []

    # -- save --------------------------------------------------------------------
    @async_test
    async def test_save_writes_progress_and_step_results(self, backend: Backend) -> None:
        # Given a running two-step job whose first step is done
        await enqueue_one(backend, make_job(steps=[task_step("fetch"), task_step("store")]))
        job = await claim_one(backend)
        claimed_version = job.version
        job.steps[0].state = "succeeded"
        job.steps[0].result = {"rows": 3}
        job.current_step = 1
        job.progress = Progress(completed=1, total=2, message="fetched")

        # When the worker saves it
        saved = await backend.save(job)

        # Then the progress is visible to everyone, under a new version
        assert saved is True
        got = await backend.get(job.id)
        assert got.steps[0].state == "succeeded"
        assert got.steps[0].result == {"rows": 3}
        assert got.current_step == 1
        assert (got.progress.completed, got.progress.total) == (1, 2)
        assert got.progress.message == "fetched"
        assert got.progress.percent == 50.0
        assert got.version > claimed_version
        assert got.state is State.RUNNING

    @async_test
    async def test_save_by_a_worker_that_lost_the_lease_writes_nothing(
        self, backend: Backend
    ) -> None:
        # Given a job whose lease ran out and that another worker took over
        await enqueue_one(backend, make_job())
        stale = await claim_one(backend, worker_id="worker-1", lease=0.05)
        await asyncio.sleep(0.15)
        await backend.recover_expired()
        await claim_one(backend, worker_id="worker-2")
        before = await backend.get(stale.id)

        # When the first worker saves its progress
        stale.progress = Progress(completed=5, total=10, message="stale")
        saved = await backend.save(stale)

        # Then nothing is written
        assert saved is False
        after = await backend.get(stale.id)
        assert after.version == before.version
        assert after.progress.message is None
        assert after.worker_id == "worker-2"

    # -- finish ------------------------------------------------------------------
    @async_test
    async def test_finish_succeeded_keeps_the_result_and_frees_the_job(
        self, backend: Backend
    ) -> None:
        # Given a running job whose step produced a result
        await enqueue_one(backend, make_job())
        job = await claim_one(backend)
        job.steps[0].state = "succeeded"
        job.steps[0].result = 42
        job.result = {"answer": 42}

        # When the worker records success
        written = await finish_one(backend, job, Outcome.succeeded())

        # Then the job is succeeded, with its result, and no longer held
        assert written is True
        got = await backend.get(job.id)
        assert got.state is State.SUCCEEDED
        assert got.finished_at is not None
        assert got.result == {"answer": 42}
        assert got.steps[0].result == 42
        assert got.steps[0].state == "succeeded"
        assert got.worker_id is None
        assert got.lease_until is None
        assert got.attempts == 1
        assert got.version > job.version

    @async_test
    async def test_finish_retry_waits_for_the_backoff(self, backend: Backend) -> None:
        # Given a running job
        await enqueue_one(backend, make_job())
        job = await claim_one(backend)
        failure = error("connection refused", step="t", attempt=1)

        # When the worker records a failure to retry in 30 seconds
        before = await backend.now()
        written = await finish_one(backend, job, Outcome.retry_in(30.0, failure))

        # Then the job waits, retrying, with the error in its history
        assert written is True
        got = await backend.get(job.id)
        assert got.state is State.RETRYING
        assert got.run_at >= before + 29
        assert got.errors[-1] == failure
        assert got.last_error == "connection refused"
        assert got.worker_id is None
        assert got.finished_at is None
        assert await backend.claim(["default"], "worker-1", 10, 60.0) == []

    @async_test
    async def test_a_retried_job_is_claimable_again_once_due(self, backend: Backend) -> None:
        # Given a job that failed once and retries in 0.3 seconds
        await enqueue_one(backend, make_job())
        job = await claim_one(backend)
        await finish_one(backend, job, Outcome.retry_in(0.3, error("flaky")))

        # When the backoff has passed
        assert await backend.claim(["default"], "worker-1", 10, 60.0) == []
        await asyncio.sleep(0.4)

        # Then a worker takes it up again for its second attempt
        again = await claim_one(backend)
        assert again.id == job.id
        assert again.attempts == 2
        assert [e["message"] for e in again.errors] == ["flaky"]

    @async_test
    async def test_finish_poisoned_ends_the_job(self, backend: Backend) -> None:
        # Given a running job
        await enqueue_one(backend, make_job())
        job = await claim_one(backend)

        # When the worker records that it is poisoned
        written = await finish_one(backend, job, Outcome.poisoned(error("bad input")))

        # Then the job is finished, poisoned, with the error
        assert written is True
        got = await backend.get(job.id)
        assert got.state is State.POISONED
        assert got.finished_at is not None
        assert got.last_error == "bad input"
        assert got.worker_id is None
        assert await backend.claim(["default"], "worker-1", 10, 60.0) == []

    @async_test
    async def test_finish_cancelled_ends_a_cancelling_job(self, backend: Backend) -> None:
        # Given a running job that a user cancels
        await enqueue_one(backend, make_job())
        job = await claim_one(backend)
        await backend.cancel(job.id, "no longer needed")

        # When the worker stops it and records it
        written = await finish_one(backend, job, Outcome.cancelled(error("cancel requested")))

        # Then the job is cancelled
        assert written is True
        got = await backend.get(job.id)
        assert got.state is State.CANCELLED
        assert got.finished_at is not None
        assert got.worker_id is None

    @async_test
    async def test_finish_by_a_worker_that_lost_the_lease_changes_nothing(
        self, backend: Backend
    ) -> None:
        # Given a job whose lease ran out and that another worker took over
        await enqueue_one(backend, make_job())
        stale = await claim_one(backend, worker_id="worker-1", lease=0.05)
        await asyncio.sleep(0.15)
        await backend.recover_expired()
        current = await claim_one(backend, worker_id="worker-2")
        before = await backend.get(stale.id)

        # When the first worker records an outcome, of any kind
        outcomes = [Outcome.succeeded(), Outcome.retry_in(0, error("x")), Outcome.poisoned(None)]
        written = await backend.finish([(stale, outcome) for outcome in outcomes])

        # Then none is written: the job is still the second worker's
        assert written == [False, False, False]
        after = await backend.get(stale.id)
        assert after.state is State.RUNNING
        assert after.worker_id == "worker-2"
        assert after.attempts == current.attempts == 2
        assert after.version == before.version

    @async_test
    async def test_finish_of_an_earlier_attempt_by_the_same_worker_changes_nothing(
        self, backend: Backend
    ) -> None:
        # Given a worker whose lease ran out, and which claimed the same job again
        await enqueue_one(backend, make_job())
        first_attempt = await claim_one(backend, worker_id="worker-1", lease=0.05)
        await asyncio.sleep(0.15)
        await backend.recover_expired()
        second_attempt = await claim_one(backend, worker_id="worker-1")

        # When the outcome of the first attempt arrives late
        written = await finish_one(backend, first_attempt, Outcome.succeeded())

        # Then it is refused: the lease is (id, worker, attempt)
        assert written is False
        got = await backend.get(first_attempt.id)
        assert got.state is State.RUNNING
        assert got.attempts == second_attempt.attempts == 2

    @async_test
    async def test_a_large_batch_of_outcomes_is_written_whole(self, backend: Backend) -> None:
        # Given 300 jobs run by worker-1 (stores may write a large batch in parts), and
        # one more that worker-1 takes for its own while worker-2 holds its lease
        await backend.enqueue([make_job("big", args=[i]) for i in range(300)])
        running = await backend.claim(["big"], "worker-1", 300, 60.0)
        await backend.enqueue([make_job("big")])
        [other] = await backend.claim(["big"], "worker-2", 1, 60.0)
        other.worker_id = "worker-1"
        before = await backend.stats()

        # When they end in one batch, every third in a retry, the other's run among them
        for i, job in enumerate(running):
            job.result = {"i": i}
        outcomes = [
            (job, Outcome.retry_in(60.0, error("again")) if i % 3 == 0 else Outcome.succeeded())
            for i, job in enumerate(running)
        ]
        written = await backend.finish(
            [*outcomes[:150], (other, Outcome.succeeded()), *outcomes[150:]]
        )

        # Then each run of worker-1 is written as told, and the other's is not
        assert written == [True] * 150 + [False] + [True] * 150
        for i, job in enumerate(running):
            got = await backend.get(job.id)
            assert got.state is (State.RETRYING if i % 3 == 0 else State.SUCCEEDED)
            assert got.result == {"i": i}
        assert (await backend.get(other.id)).state is State.RUNNING
        after = await backend.stats()
        assert after.processed - before.processed == 300
        assert after.failed - before.failed == 100

    @async_test
    async def test_stats_count_processed_and_failed_runs(self, backend: Backend) -> None:
        # Given three running jobs
        await backend.enqueue([make_job() for _ in range(3)])
        ok, flaky, broken = await backend.claim(["default"], "worker-1", 3, 60.0)
        before = await backend.stats()

        # When one succeeds, one fails to be retried and one is poisoned
        written = await backend.finish(
            [
                (ok, Outcome.succeeded()),
                (flaky, Outcome.retry_in(60.0, error("flaky"))),
                (broken, Outcome.poisoned(error("broken"))),
            ]
        )

        # Then every run counts as processed, and the two that raised as failed
        assert written == [True, True, True]
        after = await backend.stats()
        assert after.processed - before.processed == 3
        assert after.failed - before.failed == 2
        assert after.counts[State.SUCCEEDED.value] >= 1
        assert after.processed >= after.counts[State.SUCCEEDED.value]
        assert set(after.counts) == {s.value for s in State}
        assert after.counts[State.RETRYING.value] - before.counts[State.RETRYING.value] == 1
        assert after.counts[State.POISONED.value] - before.counts[State.POISONED.value] == 1

    @async_test
    async def test_a_run_poisoned_by_recovery_counts_as_processed_and_failed(
        self, backend: Backend
    ) -> None:
        # Given a job on its last attempt whose worker died
        await enqueue_one(backend, make_job(max_attempts=1))
        await claim_one(backend, lease=0.05)
        await asyncio.sleep(0.15)
        before = await backend.stats()

        # When the expired lease is recovered
        await backend.recover_expired()

        # Then the run counts as failed, and failed runs are among the processed ones
        after = await backend.stats()
        assert after.failed - before.failed == 1
        assert after.processed - before.processed >= after.failed - before.failed, (
            f"failed counts a subset of processed runs (as in Resque): processed moved by "
            f"{after.processed - before.processed}, failed by {after.failed - before.failed}"
        )

    # -- release -----------------------------------------------------------------
    @async_test
    async def test_release_gives_the_job_back_without_spending_an_attempt(
        self, backend: Backend
    ) -> None:
        # Given a job that already failed once and is running again
        await enqueue_one(backend, make_job())
        await finish_one(backend, await claim_one(backend), Outcome.retry_in(0, error("x")))
        job = await claim_one(backend)
        assert job.attempts == 2

        # When its worker shuts down and releases it
        released = await backend.release([job])

        # Then it is queued again with its attempts as before the claim
        assert released == 1
        got = await backend.get(job.id)
        assert got.state is State.QUEUED
        assert got.attempts == 1
        assert got.worker_id is None
        again = await claim_one(backend, worker_id="worker-2")
        assert (again.id, again.attempts) == (job.id, 2)

    @async_test
    async def test_release_by_a_worker_that_lost_the_lease_changes_nothing(
        self, backend: Backend
    ) -> None:
        # Given a job whose lease ran out and that another worker took over
        await enqueue_one(backend, make_job())
        stale = await claim_one(backend, worker_id="worker-1", lease=0.05)
        await asyncio.sleep(0.15)
        await backend.recover_expired()
        await claim_one(backend, worker_id="worker-2")

        # When the first worker releases it
        released = await backend.release([stale])

        # Then the second worker still holds it
        assert released == 0
        got = await backend.get(stale.id)
        assert (got.state, got.worker_id, got.attempts) == (State.RUNNING, "worker-2", 2)

    @async_test
    async def test_release_of_a_job_cancelled_while_running_does_not_run_it_again(
        self, backend: Backend
    ) -> None:
        # Given a running job that a user cancels before its worker noticed
        await enqueue_one(backend, make_job())
        job = await claim_one(backend)
        await backend.cancel(job.id)

        # When the worker shuts down and releases it
        await backend.release([job])

        # Then the cancel is not lost: the job ends cancelled, not queued again
        got = await backend.get(job.id)
        assert got.state is State.CANCELLED, f"cancelling → cancelled, got {got.state}"
        assert await backend.claim(["default"], "worker-2", 10, 60.0) == []

    @async_test
    async def test_a_failure_of_a_job_cancelled_while_running_does_not_run_it_again(
        self, backend: Backend
    ) -> None:
        # Given a running job that a user cancels before its worker noticed
        await enqueue_one(backend, make_job())
        job = await claim_one(backend)
        await backend.cancel(job.id)

        # When the run fails and the worker records a retry
        written = await finish_one(backend, job, Outcome.retry_in(0, error("boom")))

        # Then the cancel is not lost: the job ends cancelled instead of running again
        assert written is True
        got = await backend.get(job.id)
        assert got.state is State.CANCELLED, f"cancelling → cancelled, got {got.state}"
        assert await backend.claim(["default"], "worker-2", 10, 60.0) == []

    # -- recover_expired ---------------------------------------------------------
    @async_test
    async def test_recover_expired_puts_an_orphan_back(self, backend: Backend) -> None:
        # Given a job whose worker died: its short lease ran out
        await enqueue_one(backend, make_job())
        orphan = await claim_one(backend, worker_id="dead-worker", lease=0.05)
        await asyncio.sleep(0.15)

        # When expired leases are recovered
        recovered = await backend.recover_expired()

        # Then the job waits again, with the attempt it spent counted
        assert orphan.id in [j.id for j in recovered]
        got = await backend.get(orphan.id)
        assert got.state.is_waiting
        assert got.worker_id is None
        assert got.attempts == 1
        again = await claim_one(backend, worker_id="worker-2")
        assert (again.id, again.attempts) == (orphan.id, 2)

    @async_test
    async def test_recover_expired_leaves_live_leases_alone(self, backend: Backend) -> None:
        # Given a job with a long lease
        await enqueue_one(backend, make_job())
        job = await claim_one(backend, lease=60.0)

        # When expired leases are recovered
        recovered = await backend.recover_expired()

        # Then the job is still running for its worker
        assert job.id not in [j.id for j in recovered]
        got = await backend.get(job.id)
        assert (got.state, got.worker_id) == (State.RUNNING, "worker-1")

    @async_test
    async def test_recover_expired_poisons_a_job_out_of_attempts(self, backend: Backend) -> None:
        # Given a job on its last attempt whose worker died
        await enqueue_one(backend, make_job(max_attempts=2))
        await finish_one(backend, await claim_one(backend), Outcome.retry_in(0, error("x")))
        orphan = await claim_one(backend, lease=0.05)
        assert orphan.attempts == 2
        await asyncio.sleep(0.15)

        # When expired leases are recovered
        await backend.recover_expired()

        # Then the job is poisoned, and its last error says why
        got = await backend.get(orphan.id)
        assert got.state is State.POISONED
        assert got.finished_at is not None
        message = (got.last_error or "").lower()
        assert "lease" in message and "expired" in message, got.errors
