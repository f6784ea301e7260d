"""Hand-offs on Redis: a job enqueued while a worker blocks in its wait comes to that
worker claimed, in the answer to its BLPOP, instead of as a wake-up token it must then
claim with a second round trip. A handed job is never only in the worker's hands
before it got there: every way a wait can end without taking it (a later claim, a
cancelled wait, the worker unregistering, the worker dying) gives it back, and no
attempt is counted for a run that never began."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import redis

from conveyor.backends import create_backend
from conveyor.backends.redis import RedisBackend
from conveyor.job import Job, Outcome, State
from conveyor.testing import BackendFactory
from conveyor.testing.harness import make_job
from tests.rd import client_url
from tests.redis.indexes import check_indexes


@pytest.fixture
def factory(redis_url: str) -> Iterator[BackendFactory]:
    with BackendFactory(lambda: create_backend(redis_url)) as made:
        yield made


@pytest.fixture
def backend(factory: BackendFactory) -> RedisBackend:
    assert isinstance(factory.backend, RedisBackend)
    return factory.backend


@pytest.fixture
def client(backend: RedisBackend) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(client_url(backend.url), decode_responses=True) as made:
        yield made


def _register(
    factory: BackendFactory,
    worker: str,
    queues: list[str],
    lease: float = 30.0,
    seconds: float = 10.0,
) -> None:
    """What a worker's wait does before it blocks: look for ready jobs and, finding
    none, register for hand-offs (here without blocking, as a worker that died then)."""
    backend = factory.backend
    assert isinstance(backend, RedisBackend)
    ready, _, _ = factory.run(backend._call("ready", worker, repr(lease), repr(seconds), *queues))
    assert ready == 0


def _nothing_left_of_the_wait(backend: RedisBackend, client: redis.Redis, worker: str) -> None:
    """The worker is registered for no hand-off, its hand-off list is gone, and the
    indexes agree with the jobs."""
    assert client.exists(f"{backend.prefix}handoff:{worker}") == 0
    assert client.hexists(f"{backend.prefix}waiters", worker) == 0
    check_indexes(client, backend.settings.namespace)


def test_a_job_enqueued_while_a_worker_waits_comes_to_it_claimed(
    factory: BackendFactory, backend: RedisBackend, client: redis.Redis
) -> None:
    async def run() -> tuple[tuple[bool, list[Job]], Job, Job, list[Job]]:
        # Given a worker blocked in its wait on an empty queue
        waiting = asyncio.create_task(backend.wait_for_jobs(["q"], "w1", 30.0, 10.0))
        await asyncio.sleep(0.2)

        # When a job is enqueued, then a second one
        [first] = await backend.enqueue([make_job("q")])
        answer = await asyncio.wait_for(waiting, 5.0)
        [second] = await backend.enqueue([make_job("q")])
        return answer, first, second, await backend.claim(["q"], "w2", 10, 30.0)

    (woke, handed), first, second, claimed_by_other = factory.run(run())

    # Then the wait answers the first job, running under the worker's lease, as the
    # store has it; the second, with nobody waiting, was queued and another claims it
    assert woke is True
    assert first.state is State.QUEUED  # as stored, before the hand-off
    [job] = handed
    assert job.id == first.id
    assert (job.state, job.worker_id, job.attempts) == (State.RUNNING, "w1", 1)
    stored = factory.run(backend.get(job.id))
    assert (stored.state, stored.worker_id, stored.attempts) == (State.RUNNING, "w1", 1)
    assert (stored.version, stored.lease_until) == (job.version, job.lease_until)
    assert stored.started_at == job.started_at
    assert second.state is State.QUEUED
    assert [j.id for j in claimed_by_other] == [second.id]
    check_indexes(client, backend.settings.namespace)

    # And the handed job's outcome is recorded as a claimed job's would be
    assert factory.run(backend.finish([(job, Outcome.succeeded())])) == [True]
    assert factory.run(backend.get(job.id)).state is State.SUCCEEDED
    assert client.exists(f"{backend.prefix}handoff:w1") == 0


def test_no_hand_off_past_a_ready_job_of_the_workers_queues_nor_to_a_paused_queue(
    factory: BackendFactory, backend: RedisBackend, client: redis.Redis
) -> None:
    run = factory.run
    run(backend.create_queue("high"))
    run(backend.create_queue("low"))
    # Given a worker registered on high then low, and high paused
    _register(factory, "w", ["high", "low"])
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
    check_indexes(client, backend.settings.namespace)


def test_a_job_handed_over_after_the_wait_ended_is_claimed_with_one_attempt(
    factory: BackendFactory, backend: RedisBackend, client: redis.Redis
) -> None:
    run = factory.run
    # Given a job handed to a worker whose wait ended before it could take it
    _register(factory, "w", ["q"])
    [job] = run(backend.enqueue([make_job("q")]))
    assert run(backend.get(job.id)).state is State.RUNNING
    assert client.llen(f"{backend.prefix}handoff:w") == 1

    # When the worker claims, as it does after every wait
    claimed = run(backend.claim(["q"], "w", 10, 30.0))

    # Then the claim gives the job back and takes it again: one attempt, not two
    assert [j.id for j in claimed] == [job.id]
    assert claimed[0].attempts == 1
    stored = run(backend.get(job.id))
    assert (stored.state, stored.attempts, stored.version) == (
        State.RUNNING,
        1,
        claimed[0].version,
    )
    _nothing_left_of_the_wait(backend, client, "w")


def test_a_job_handed_to_a_worker_that_died_waiting_runs_later_without_a_lost_attempt(
    factory: BackendFactory, backend: RedisBackend, client: redis.Redis
) -> None:
    run = factory.run
    # Given a job handed to a worker with a 0.2 s lease that died waiting (killed
    # while blocked: its BLPOP never took the job)
    _register(factory, "dead", ["q"], lease=0.2)
    [job] = run(backend.enqueue([make_job("q", max_attempts=1)]))
    assert run(backend.get(job.id)).state is State.RUNNING

    # When its lease runs out and a live worker recovers expired leases
    run(asyncio.sleep(0.3))
    recovered = run(backend.recover_expired())

    # Then the job waits again, attempt and counters untouched, no error recorded,
    # and another worker runs it on its one attempt
    assert recovered == []
    stored = run(backend.get(job.id))
    assert (stored.state, stored.attempts, stored.errors) == (State.QUEUED, 0, [])
    stats = run(backend.stats())
    assert (stats.processed, stats.failed) == (0, 0)
    assert client.exists(f"{backend.prefix}handoff:dead") == 0
    check_indexes(client, backend.settings.namespace)
    [claimed] = run(backend.claim(["q"], "live", 10, 30.0))
    assert (claimed.id, claimed.attempts) == (job.id, 1)


def test_a_handed_job_cancelled_after_its_worker_died_is_answered_by_the_recovery(
    factory: BackendFactory, backend: RedisBackend, client: redis.Redis
) -> None:
    run = factory.run
    # Given a job handed to a worker with a 0.2 s lease that died waiting, and a cancel
    # asked since (the job is running as far as the store knows: it waits for its worker)
    _register(factory, "dead", ["q"], lease=0.2)
    [job] = run(backend.enqueue([make_job("q")]))
    assert run(backend.cancel(job.id)).state is State.CANCELLING

    # When its lease runs out and a live worker recovers expired leases
    run(asyncio.sleep(0.3))
    recovered = run(backend.recover_expired())

    # Then it ends cancelled, no attempt spent and not counted as a failed run, and the
    # recovery answers it, as it answers every job it finishes (the worker calls back
    # for those)
    [answered] = recovered
    stored = run(backend.get(job.id))
    assert answered == stored
    assert (stored.state, stored.attempts, stored.worker_id) == (State.CANCELLED, 0, None)
    assert stored.finished_at is not None
    stats = run(backend.stats())
    assert (stats.processed, stats.failed) == (0, 0)
    assert client.exists(f"{backend.prefix}handoff:dead") == 0
    check_indexes(client, backend.settings.namespace)


def test_an_unregistering_worker_gives_back_what_was_handed_to_it(
    factory: BackendFactory, backend: RedisBackend, client: redis.Redis
) -> None:
    run = factory.run
    # Given a job handed to a worker after its last wait
    _register(factory, "w", ["q"])
    [job] = run(backend.enqueue([make_job("q")]))

    # When the worker unregisters, as it does last when it stops
    run(backend.unregister_worker("w"))

    # Then the job waits again with no attempt spent, and the worker's keys are gone
    stored = run(backend.get(job.id))
    assert (stored.state, stored.attempts, stored.worker_id) == (State.QUEUED, 0, None)
    _nothing_left_of_the_wait(backend, client, "w")


def test_a_registration_lapses_with_its_wait(
    factory: BackendFactory, backend: RedisBackend
) -> None:
    run = factory.run
    # Given a worker registered for a 0.05 s wait that ended 0.15 s ago
    _register(factory, "w", ["q"], seconds=0.05)
    run(asyncio.sleep(0.2))

    # When a job is enqueued
    [job] = run(backend.enqueue([make_job("q")]))

    # Then nobody was handed it: it waits, for any worker
    assert run(backend.get(job.id)).state is State.QUEUED


def test_a_batch_hands_one_job_to_each_waiting_worker_and_queues_the_rest(
    factory: BackendFactory, backend: RedisBackend, client: redis.Redis
) -> None:
    run = factory.run
    # Given two workers waiting on the queue
    _register(factory, "w1", ["q"])
    _register(factory, "w2", ["q"])

    # When three jobs are enqueued in one call
    jobs = run(backend.enqueue([make_job("q") for _ in range(3)]))

    # Then the first went to the worker waiting longest, the second to the other, the
    # third waits with a wake-up token for whoever claims next
    stored = [run(backend.get(j.id)) for j in jobs]
    assert [(j.state, j.worker_id) for j in stored] == [
        (State.RUNNING, "w1"),
        (State.RUNNING, "w2"),
        (State.QUEUED, None),
    ]
    assert client.llen(f"{backend.prefix}wake:q") == 1
    check_indexes(client, backend.settings.namespace)


def test_a_wait_cancelled_with_a_handed_job_on_its_way_gives_the_job_back(
    factory: BackendFactory, backend: RedisBackend, client: redis.Redis
) -> None:
    async def run() -> tuple[bool, Job]:
        # Given a worker blocked in its wait
        waiting = asyncio.create_task(backend.wait_for_jobs(["q"], "w", 30.0, 10.0))
        await asyncio.sleep(0.2)

        # When a job is handed to it while its event loop is busy (a sync enqueue
        # blocks the loop: the BLPOP's answer is on the socket, not read), and the
        # wait is cancelled before the loop reads it, as at a worker's stop
        [job] = backend.enqueue_blocking([make_job("q")]) or []
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        return waiting.cancelled(), job

    cancelled, job = factory.run(run())

    # Then the wait ends cancelled and the job it popped is back in the queue, with no
    # attempt spent; nothing is left of the worker's wait
    assert cancelled
    stored = factory.run(backend.get(job.id))
    assert (stored.state, stored.attempts, stored.worker_id) == (State.QUEUED, 0, None)
    _nothing_left_of_the_wait(backend, client, "w")


def test_a_cancelled_wait_leaves_no_registration(
    factory: BackendFactory, backend: RedisBackend, client: redis.Redis
) -> None:
    async def run() -> Job:
        # Given a worker's wait, cancelled while blocked
        waiting = asyncio.create_task(backend.wait_for_jobs(["q"], "w", 30.0, 10.0))
        await asyncio.sleep(0.2)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)

        # When a job is enqueued afterwards
        [job] = await backend.enqueue([make_job("q")])
        return job

    job = factory.run(run())

    # Then it was handed to nobody
    assert factory.run(backend.get(job.id)).state is State.QUEUED
    assert client.exists(f"{backend.prefix}handoff:w") == 0


def test_a_socket_timeout_shorter_than_a_blpop_step_still_waits_and_hands_off(
    redis_url: str,
) -> None:
    # Given a backend whose calls time out after 0.5 s (the URL's socket_timeout),
    # shorter than the 2 s a wait blocks at a time otherwise
    backend = create_backend(f"{redis_url}&socket_timeout=0.5")
    assert isinstance(backend, RedisBackend)

    async def run() -> tuple[tuple[bool, list[Job]], tuple[bool, list[Job]], Job]:
        await backend.open()
        try:
            # When a worker waits 1.5 s with nothing to do
            idle = await backend.wait_for_jobs(["q"], "w1", 30.0, 1.5)
            # And waits again while a job is enqueued 1 s into the wait
            waiting = asyncio.create_task(backend.wait_for_jobs(["q"], "w1", 30.0, 5.0))
            await asyncio.sleep(1.0)
            [job] = await backend.enqueue([make_job("q")])
            return idle, await waiting, job
        finally:
            await backend.close()

    idle, woken, job = asyncio.run(run())
    # Then the first wait ends as a wait that found nothing (not cut short by a timeout
    # of its socket, which reads as Redis gone and a wake-up)
    assert idle == (False, [])
    # And the job is handed to the waiting worker, claimed, on its first attempt
    assert woken[0] is True
    assert [(j.id, j.state, j.attempts) for j in woken[1]] == [(job.id, State.RUNNING, 1)]
