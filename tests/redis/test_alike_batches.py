"""Batches of alike jobs (one task, the same options: what ``enqueue_many`` makes) go to
enqueue.lua as the first job's fields once and then an id and steps per job. Each job
is stored with every field as if it had been sent whole; a batch that is not alike goes
job by job, whole; a batch sent again stores nothing twice."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from conveyor.backends import create_backend
from conveyor.backends.redis import RedisBackend
from conveyor.backends.redis_rows import ALIKE_WIDTH, ENQUEUE_WIDTH, enqueue_calls, resending
from conveyor.job import Job, RetryPolicy, State
from conveyor.testing import BackendFactory
from conveyor.testing.harness import make_job
from tests.rd import client_url
from tests.redis.indexes import check_indexes

OPTIONS = {
    "priority": 3,
    "max_attempts": 7,
    "retry": RetryPolicy(exponent=3.0, base=2.0, max_delay=60.0, jitter=0.0),
    "timeout": 12.5,
    "metadata": {"origin": "import", "batch": 17},
    "tenant": "acme",
}


@pytest.fixture
def factory(redis_url: str) -> Iterator[BackendFactory]:
    with BackendFactory(lambda: create_backend(redis_url)) as made:
        yield made


def _alike(count: int, **options: Any) -> list[Job]:
    return [
        make_job("mail", task="send", args=[i, f"to-{i}@example.com"], **options)
        for i in range(count)
    ]


def _layout(jobs: list[Job]) -> str:
    (call,) = enqueue_calls(jobs, 10**6, 1000)
    return call[0]


def _fields(job: Job) -> tuple[object, ...]:
    return (
        job.id,
        job.queue,
        job.task,
        job.priority,
        job.max_attempts,
        job.retry,
        job.timeout,
        [s.to_storage() for s in job.steps],
        job.unique_key,
        job.metadata,
        job.tenant,
        job.attempts,
        job.current_step,
        job.version,
    )


def test_alike_jobs_are_stored_with_every_field_of_their_options(
    factory: BackendFactory,
) -> None:
    # Given 300 jobs of one task with every option set, ready now, and 300 due later
    backend = factory.backend
    run = factory.run
    now_jobs = _alike(300, **OPTIONS)
    later = run(backend.now()) + 3600.0
    later_jobs = _alike(300, run_at=later, **OPTIONS)
    assert _layout(now_jobs) == _layout(later_jobs) == str(ALIKE_WIDTH)

    # When each batch is enqueued
    stored = run(backend.enqueue(now_jobs)) + run(backend.enqueue(later_jobs))

    # Then every job reads back as it was sent, in the state its run_at gives
    for sent, answered in zip(now_jobs + later_jobs, stored, strict=True):
        read = run(backend.get(sent.id))
        assert _fields(read) == _fields(sent) == _fields(answered)
        assert read.state is (State.QUEUED if sent in now_jobs else State.SCHEDULED)
        assert read.run_at == answered.run_at
        assert read.created_at == answered.created_at
    assert all(run(backend.get(j.id)).run_at == later for j in later_jobs)
    assert isinstance(backend, RedisBackend)
    assert check_indexes(_client(backend), backend.settings.namespace) == 600


def test_jobs_that_differ_go_whole_and_are_stored_as_they_are(factory: BackendFactory) -> None:
    # Given batches that are not alike: another priority, another task, a unique key
    backend = factory.backend
    run = factory.run
    batches = [
        [*_alike(3), make_job("mail", task="send", args=[9], priority=5)],
        [*_alike(3), make_job("mail", task="other", args=[9])],
        [*_alike(3), make_job("mail", task="send", args=[9], unique_key="once")],
        _alike(1),
    ]
    assert [_layout(b) for b in batches] == [str(ENQUEUE_WIDTH)] * 4

    # When they are enqueued, then each job reads back as it was sent
    for batch in batches:
        run(backend.enqueue(batch))
        for sent in batch:
            assert _fields(run(backend.get(sent.id))) == _fields(sent)


def test_jobs_whose_options_are_equal_but_written_differently_keep_their_own_text(
    factory: BackendFactory,
) -> None:
    # Given jobs whose metadata or retry policies are equal in Python but are not the
    # same JSON (1 and True, another key order, 3 and 3.0)
    backend = factory.backend
    run = factory.run
    metadata = [{"flag": 1, "n": 2}, {"flag": True, "n": 2}, {"n": 2, "flag": 1.0}]
    retries = [RetryPolicy(exponent=3), RetryPolicy(exponent=3.0)]
    batches = [
        [make_job("mail", task="send", args=[i], metadata=m) for i, m in enumerate(metadata)],
        [make_job("mail", task="send", args=[i], retry=r) for i, r in enumerate(retries)],
    ]

    # When each batch is enqueued
    for batch in batches:
        run(backend.enqueue(batch))

    # Then each job reads back with its own metadata and policy, as it was written
    for sent in batches[0]:
        assert repr(run(backend.get(sent.id)).metadata) == repr(sent.metadata)
    for sent in batches[1]:
        assert repr(run(backend.get(sent.id)).retry) == repr(sent.retry)


def test_an_alike_batch_sent_again_stores_nothing_twice(factory: BackendFactory) -> None:
    # Given an alike batch stored, one of its jobs claimed since
    backend = factory.backend
    run = factory.run
    batch = _alike(50)
    run(backend.enqueue(batch))
    [claimed] = run(backend.claim(["mail"], "w", 1, 60.0))

    # When the same batch is sent again (its answer was lost)
    assert isinstance(backend, RedisBackend)
    calls = enqueue_calls(batch, backend.settings.max_payload, 1000)
    again = run(backend._enqueue(batch, resending(calls)))

    # Then each job comes back as it is now, and no job is stored or listed twice
    assert [j.id for j in again] == [j.id for j in batch]
    states = {j.id: j.state for j in again}
    assert states.pop(claimed.id) is State.RUNNING
    assert set(states.values()) == {State.QUEUED}
    counts = {q.name: q.counts for q in run(backend.list_queues())}["mail"]
    assert (counts["queued"], counts["running"]) == (49, 1)
    check_indexes(_client(backend), backend.settings.namespace)


def _client(backend: RedisBackend) -> redis.Redis:
    return redis.Redis.from_url(client_url(backend.url), decode_responses=True)
