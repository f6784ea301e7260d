"""Hand-offs on PostgreSQL (0006_hand_offs.sql): a job enqueued while a worker waits
comes to that worker claimed, in a notification on the worker's own channel, instead
of as a wake-up for every waiting worker to race for with a claim each. A handed job
is answered exactly once: by the notification while the wait lasts, otherwise by the
worker's next claim; a wait that ends without claiming gives it back, no attempt spent.

A producer tries hand-offs while its last single enqueue saw a worker waiting (the
statement costs more): tests that hand off first enqueue a job elsewhere to see them.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg

from conveyor.backends.postgres import PostgresBackend
from conveyor.backends.rows import dumps
from conveyor.job import Job, Outcome, State
from conveyor.testing import BackendFactory
from conveyor.testing.harness import make_job
from tests.pg import libpq_url


async def _register(
    backend: PostgresBackend,
    worker: str,
    queues: list[str],
    lease: float = 30.0,
    seconds: float = 10.0,
) -> None:
    """What a worker's wait does before it blocks: look for ready jobs and, finding
    none, register for hand-offs (here without waiting, as a worker that died then)."""
    hand_offs = backend._hand_offs
    params = {
        "worker": worker,
        "queues": queues,
        "channel": hand_offs.channel(worker),
        "token": hand_offs.new_wait(worker),
        "lease": lease,
        "seconds": seconds,
    }
    row = await backend._fetchone("register_waiter", params)
    assert row is not None and row[0] is False


def _see_waiters(factory: BackendFactory) -> None:
    """A single enqueue elsewhere: the producer then knows that workers wait."""
    factory.run(factory.backend.enqueue([make_job("elsewhere")]))


def _handed(
    factory: BackendFactory, backend: PostgresBackend, worker: str, lease: float = 30.0, **job: Any
) -> Job:
    """A job of queue q handed to ``worker``, registered (and seen by the producer)
    without taking it since, as after a wait that ended or a notification lost."""
    factory.run(_register(backend, worker, ["q"], lease=lease))
    _see_waiters(factory)
    [new] = factory.run(backend.enqueue([make_job("q", **job)]))
    stored = factory.run(backend.get(new.id))
    assert (stored.state, stored.worker_id) == (State.RUNNING, worker)
    return new


async def _waiting_seen(
    backend: PostgresBackend, worker: str, lease: float = 30.0
) -> asyncio.Task[tuple[bool, list[Job]]]:
    """A worker's wait on queue q, under way, and a producer that has seen it wait (a
    single enqueue elsewhere)."""
    waiting = asyncio.create_task(backend.wait_for_jobs(["q"], worker, lease, 10.0))
    await asyncio.sleep(0.2)
    await backend.enqueue([make_job("elsewhere")])
    return waiting


def _registrations(backend: PostgresBackend) -> list[tuple[str, str | None]]:
    with psycopg.connect(libpq_url(backend.url)) as conn:
        rows = conn.execute(
            f'SELECT worker_id, job_id FROM "{backend.schema}".waiters ORDER BY worker_id'
        ).fetchall()
    return [(w, j) for w, j in rows]


def test_a_job_enqueued_while_a_worker_waits_comes_to_it_claimed(
    factory: BackendFactory, backend: PostgresBackend
) -> None:
    registrations: list[tuple[str, str | None]] = []

    async def run() -> tuple[tuple[bool, list[Job]], Job, Job, list[Job], list[Job]]:
        # Given a worker waiting on an empty queue, and a producer that saw it wait
        waiting = await _waiting_seen(backend, "w1")

        # When a job is enqueued (due since a minute), then a second one
        [first] = await backend.enqueue([make_job("q", run_at=time.time() - 60)])
        answer = await asyncio.wait_for(waiting, 5.0)
        [second] = await backend.enqueue([make_job("q")])
        by_other = await backend.claim(["q"], "w2", 10, 30.0)
        # (the worker claims after its wait, as always)
        by_worker = await backend.claim(["q"], "w1", 10, 30.0)
        registrations.extend(await asyncio.to_thread(_registrations, backend))
        return answer, first, second, by_other, by_worker

    (woke, handed), first, second, by_other, by_worker = factory.run(run())

    # Then the wait answers the first job, running under the worker's lease, as the
    # store has it; the second, with nobody waiting, was queued and another claims it
    assert woke is True
    assert first.state is State.QUEUED  # as stored, before the hand-off
    [job] = handed
    assert job.id == first.id
    assert (job.state, job.worker_id, job.attempts) == (State.RUNNING, "w1", 1)
    stored = factory.run(backend.get(job.id))
    assert stored == job
    assert [j.id for j in by_other] == [second.id]
    # And the worker's claim answers it no second time, and ends its registration
    assert by_worker == []
    assert registrations == []

    # And the handed job's outcome is recorded as a claimed job's would be
    assert factory.run(backend.finish([(job, Outcome.succeeded())])) == [True]
    assert factory.run(backend.get(job.id)).state is State.SUCCEEDED


def test_no_hand_off_past_a_ready_job_of_the_workers_queues_nor_to_a_paused_queue(
    factory: BackendFactory, backend: PostgresBackend
) -> None:
    run = factory.run
    run(backend.create_queue("high"))
    run(backend.create_queue("low"))
    # Given a worker registered on high then low, and high paused
    run(_register(backend, "w", ["high", "low"]))
    _see_waiters(factory)
    run(backend.pause_queue("high"))

    # When a job is enqueued to the paused queue, the queue resumes, and a job is
    # enqueued to low
    [urgent] = run(backend.enqueue([make_job("high")]))
    run(backend.resume_queue("high"))
    [later] = run(backend.enqueue([make_job("low")]))

    # Then neither was handed over: both wait, and the worker's claim takes them in
    # its queues' order
    assert run(backend.get(urgent.id)).state is State.QUEUED
    assert run(backend.get(later.id)).state is State.QUEUED
    claimed = run(backend.claim(["high", "low"], "w", 10, 30.0))
    assert [j.id for j in claimed] == [urgent.id, later.id]
    assert [j.attempts for j in claimed] == [1, 1]


def test_a_job_handed_over_after_the_wait_ended_is_claimed_with_one_attempt(
    factory: BackendFactory, backend: PostgresBackend
) -> None:
    run = factory.run
    # Given a job handed to a worker whose wait ended before its notification came
    # (or whose listening connection dropped)
    job = _handed(factory, backend, "w")

    # When the worker claims, as it does after every wait
    claimed = run(backend.claim(["q"], "w", 10, 30.0))

    # Then the claim answers the job, one attempt, as the store has it
    assert [j.id for j in claimed] == [job.id]
    assert claimed[0] == run(backend.get(job.id))
    assert (claimed[0].state, claimed[0].attempts) == (State.RUNNING, 1)
    assert _registrations(backend) == []


def test_a_late_notification_of_an_earlier_wait_is_not_answered_again(
    factory: BackendFactory, backend: PostgresBackend
) -> None:
    async def run() -> tuple[list[Job], tuple[bool, list[Job]]]:
        # Given a job handed to a worker whose wait ended before its notification came,
        # and the claim after the wait, which answered the job
        await _register(backend, "w", ["q"])
        stale_token = backend._hand_offs.new_wait("w")
        await backend.enqueue([make_job("elsewhere")])
        [job] = await backend.enqueue([make_job("q")])
        claimed = await backend.claim(["q"], "w", 10, 30.0)

        # When the worker waits again and that notification arrives only now
        waiting = asyncio.create_task(backend.wait_for_jobs(["q"], "w", 30.0, 0.5))
        await asyncio.sleep(0.2)
        notes = backend._notes
        assert notes is not None
        notes._hand(backend._hand_offs.channel("w"), dumps([stale_token, job.id]))
        return claimed, await waiting

    claimed, (woke, handed) = factory.run(run())

    # Then the claim had the job, and the wait does not answer it a second time
    assert len(claimed) == 1
    assert (woke, handed) == (False, [])


def test_an_unregistering_worker_gives_back_what_was_handed_to_it(
    factory: BackendFactory, backend: PostgresBackend
) -> None:
    run = factory.run
    # Given a job handed to a worker after its last wait
    job = _handed(factory, backend, "w")

    # When the worker unregisters, as it does last when it stops
    run(backend.unregister_worker("w"))

    # Then the job waits again as it was, no attempt spent, and the registration is gone
    stored = run(backend.get(job.id))
    assert (stored.state, stored.attempts, stored.worker_id) == (State.QUEUED, 0, None)
    assert (stored.started_at, stored.lease_until) == (None, None)
    assert _registrations(backend) == []
    [claimed] = run(backend.claim(["q"], "other", 10, 30.0))
    assert (claimed.id, claimed.attempts) == (job.id, 1)


def test_a_registration_lapses_with_its_wait(
    factory: BackendFactory, backend: PostgresBackend
) -> None:
    run = factory.run
    # Given a worker registered for a 0.05 s wait that ended 0.15 s ago
    run(_register(backend, "w", ["q"], seconds=0.05))
    run(asyncio.sleep(0.2))

    # When a job is enqueued
    [job] = run(backend.enqueue([make_job("q")]))

    # Then nobody was handed it: it waits, for any worker
    assert run(backend.get(job.id)).state is State.QUEUED


def test_batches_and_enqueues_in_a_callers_transaction_are_not_handed_over(
    factory: BackendFactory, backend: PostgresBackend
) -> None:
    run = factory.run
    # Given a worker waiting, seen by the producer
    run(_register(backend, "w", ["q"]))
    _see_waiters(factory)

    # When three jobs come in one call, and one in a caller's transaction
    batch = run(backend.enqueue([make_job("q") for _ in range(3)]))
    with psycopg.connect(libpq_url(backend.url)) as conn:
        [own] = backend.enqueue_in(conn, [make_job("q")])

    # Then all wait, for any worker, and the registration is still unused
    for job in [*batch, own]:
        assert run(backend.get(job.id)).state is State.QUEUED
    assert _registrations(backend) == [("w", None)]


def test_a_job_too_long_for_a_notification_is_handed_by_its_id(
    factory: BackendFactory, backend: PostgresBackend
) -> None:
    async def run() -> tuple[bool, list[Job]]:
        # Given a worker waiting, seen by the producer
        waiting = await _waiting_seen(backend, "w")
        # When a job whose row is longer than a notification may be is enqueued
        await backend.enqueue([make_job("q", args=["x" * 10_000])])
        return await asyncio.wait_for(waiting, 5.0)

    woke, handed = factory.run(run())

    # Then the wait read it and answers it, as stored
    assert woke is True
    [job] = handed
    assert job.steps[0].args == ["x" * 10_000]
    assert (job.state, job.worker_id) == (State.RUNNING, "w")
    assert factory.run(backend.get(job.id)) == job


def test_a_wait_cancelled_with_a_handed_job_on_its_way_gives_the_job_back(
    factory: BackendFactory, backend: PostgresBackend
) -> None:
    async def run() -> tuple[bool, Job]:
        # Given a worker waiting, seen by the producer
        waiting = await _waiting_seen(backend, "w")

        # When a job is handed to it while its event loop is busy (a sync enqueue
        # blocks the loop: the notification is on the socket, not read), and the
        # wait is cancelled before the loop reads it, as at a worker's stop
        [job] = backend.enqueue_blocking([make_job("q")]) or []
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        return waiting.cancelled(), job

    cancelled, job = factory.run(run())

    # Then the wait ends cancelled and the job waits again, no attempt spent; the
    # registration is gone
    assert cancelled
    stored = factory.run(backend.get(job.id))
    assert (stored.state, stored.attempts, stored.worker_id) == (State.QUEUED, 0, None)
    assert _registrations(backend) == []


def test_a_cancelled_wait_leaves_no_registration(
    factory: BackendFactory, backend: PostgresBackend
) -> None:
    async def run() -> Job:
        # Given a worker's wait, cancelled while it waited
        waiting = asyncio.create_task(backend.wait_for_jobs(["q"], "w", 30.0, 10.0))
        await asyncio.sleep(0.2)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)

        # When a job is enqueued afterwards
        await backend.enqueue([make_job("elsewhere")])
        [job] = await backend.enqueue([make_job("q")])
        return job

    job = factory.run(run())

    # Then it was handed to nobody
    assert factory.run(backend.get(job.id)).state is State.QUEUED
    assert _registrations(backend) == []


def test_a_job_handed_to_a_worker_that_died_waiting_runs_later_without_a_lost_attempt(
    factory: BackendFactory, backend: PostgresBackend
) -> None:
    run = factory.run
    # Given a job handed to a worker with a 0.2 s lease that died waiting (its
    # registration still holds the job: it never took it)
    job = _handed(factory, backend, "dead", lease=0.2, max_attempts=1)

    # When its lease runs out and a live worker recovers expired leases
    run(asyncio.sleep(0.3))
    recovered = run(backend.recover_expired())

    # Then the job waits again, attempt and counters untouched, no error recorded, the
    # registration gone; another worker runs it on its one attempt
    assert recovered == []
    stored = run(backend.get(job.id))
    assert (stored.state, stored.attempts, stored.errors) == (State.QUEUED, 0, [])
    stats = run(backend.stats())
    assert (stats.processed, stats.failed) == (0, 0)
    assert _registrations(backend) == []
    [claimed] = run(backend.claim(["q"], "live", 10, 30.0))
    assert (claimed.id, claimed.attempts) == (job.id, 1)


def test_a_handed_job_cancelled_after_its_worker_died_is_answered_by_the_recovery(
    factory: BackendFactory, backend: PostgresBackend
) -> None:
    run = factory.run
    # Given a job handed to a worker with a 0.2 s lease that died waiting, and a cancel
    # asked since (the job is running as far as the store knows: it waits for its worker)
    job = _handed(factory, backend, "dead", lease=0.2)
    assert run(backend.cancel(job.id)).state is State.CANCELLING

    # When its lease runs out and a live worker recovers expired leases
    run(asyncio.sleep(0.3))
    recovered = run(backend.recover_expired())

    # Then it ends cancelled, no attempt spent, and the recovery answers it, as it
    # answers every job it finishes (the worker calls back for those)
    [answered] = recovered
    stored = run(backend.get(job.id))
    assert answered == stored
    assert (stored.state, stored.attempts, stored.worker_id) == (State.CANCELLED, 0, None)
    assert stored.finished_at is not None
    assert _registrations(backend) == []


def test_a_job_is_given_back_without_an_attempt_once_at_most(
    factory: BackendFactory, backend: PostgresBackend
) -> None:
    async def run() -> tuple[Job, list[Job], Job, list[Job]]:
        # Given a job handed to a worker with a 0.2 s lease, whose wait brought it,
        # and which died before its next claim (the store cannot tell it from a
        # worker that died waiting)
        waiting = await _waiting_seen(backend, "w1", lease=0.2)
        await backend.enqueue([make_job("q", max_attempts=3)])
        _, [handed] = await asyncio.wait_for(waiting, 5.0)
        await asyncio.sleep(0.3)

        # When recovery runs, then the job is claimed by a worker that dies too
        first = await backend.recover_expired()
        given_back = await backend.get(handed.id)
        await backend.claim(["q"], "w2", 10, 0.2)
        await asyncio.sleep(0.3)
        second = await backend.recover_expired()
        return handed, first, given_back, second

    handed, first, given_back, second = factory.run(run())

    # Then the first loss costs no attempt: the job waits again as it was
    assert first == []
    assert (given_back.state, given_back.attempts, given_back.errors) == (State.QUEUED, 0, [])
    # And the second, a claimed job's, counts as any run lost with its worker: a job is
    # handed over only when new
    [lost] = second
    assert (lost.id, lost.state, lost.attempts) == (handed.id, State.QUEUED, 1)
    assert lost.errors[-1]["type"] == "LeaseExpired"


def test_two_workers_of_one_process_each_get_their_own_hand_offs(
    factory: BackendFactory, backend: PostgresBackend
) -> None:
    async def run() -> tuple[tuple[bool, list[Job]], list[Job], tuple[bool, list[Job]], Job]:
        # Given a worker waiting, and a second worker of the same process that starts
        # waiting too (the listening connection starts over to listen on its channel:
        # the first worker's wait ends, as after any reconnection, and it claims)
        first = asyncio.create_task(backend.wait_for_jobs(["q"], "w1", 30.0, 10.0))
        await asyncio.sleep(0.2)
        second = asyncio.create_task(backend.wait_for_jobs(["q"], "w2", 30.0, 10.0))
        first_ended = await asyncio.wait_for(first, 5.0)
        first_claimed = await backend.claim(["q"], "w1", 10, 30.0)
        await asyncio.sleep(0.2)

        # When a job is enqueued
        await backend.enqueue([make_job("elsewhere")])
        [job] = await backend.enqueue([make_job("q")])
        return first_ended, first_claimed, await asyncio.wait_for(second, 5.0), job

    first_ended, first_claimed, (woke, handed), job = factory.run(run())

    # Then the second worker is handed the job on its own channel
    assert first_ended == (True, [])
    assert first_claimed == []
    assert woke is True
    assert [(j.id, j.worker_id) for j in handed] == [(job.id, "w2")]
