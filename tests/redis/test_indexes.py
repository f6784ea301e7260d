"""The Redis indexes agree with the jobs after every kind of change (tests/redis/indexes.py
says what agreeing means): under the conformance model's random operations, and
through the paths the model does not take (schedule, retry later, recover, retry by
hand, delete, prune, empty and drop, unique keys, retention)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
import redis
from hypothesis.stateful import invariant, run_state_machine_as_test

from conveyor.backends import create_backend
from conveyor.backends.redis import RedisBackend
from conveyor.backends.redis_rows import enqueue_calls, resending
from conveyor.exceptions import InvalidJob
from conveyor.job import Job, Outcome, State
from conveyor.testing import BackendFactory
from conveyor.testing.harness import error, make_job
from conveyor.testing.model import MODEL_SETTINGS, BackendModel
from tests.rd import client_url, delete_namespace, fresh_namespace, with_prefix
from tests.redis.indexes import check_indexes


@pytest.fixture
def factory(redis_url: str) -> Iterator[BackendFactory]:
    with BackendFactory(lambda: create_backend(redis_url)) as made:
        yield made


def _client(backend: RedisBackend) -> redis.Redis:
    return redis.Redis.from_url(client_url(backend.url), decode_responses=True)


def test_indexes_hold_under_the_models_random_operations(factory: BackendFactory) -> None:
    backend = factory.backend
    assert isinstance(backend, RedisBackend)
    client = _client(backend)

    class Model(BackendModel):
        @invariant()
        def indexes_match_the_jobs(self) -> None:
            check_indexes(client, backend.settings.namespace)

    Model.factory = factory
    run_state_machine_as_test(Model, settings=MODEL_SETTINGS)


def test_indexes_hold_through_every_other_path(factory: BackendFactory) -> None:
    backend = factory.backend
    assert isinstance(backend, RedisBackend)
    client = _client(backend)
    ns = backend.settings.namespace
    run = factory.run

    def check() -> None:
        check_indexes(client, ns)

    now = run(backend.now())
    later = make_job("q", run_at=now + 3600)
    soon = make_job("q", run_at=now + 0.2)
    keyed = make_job("q", unique_key="k")
    plain = [make_job("q") for _ in range(4)]
    run(backend.enqueue([later, soon, keyed, *plain]))
    check()
    time.sleep(0.25)
    claimed = run(backend.claim(["q"], "w", 10, 0.1))  # soon is due: made ready, claimed
    assert soon.id in {j.id for j in claimed}
    check()
    by_id = {j.id: j for j in claimed}
    run(
        backend.finish(
            [
                (by_id[keyed.id], Outcome.succeeded()),
                (by_id[plain[0].id], Outcome.retry_in(3600, error("later"))),
                (by_id[plain[1].id], Outcome.poisoned(error("bad"))),
            ]
        )
    )
    check()
    assert run(backend.cancel(plain[2].id)).state is State.CANCELLING
    check()
    time.sleep(0.15)  # the 0.1 s leases of the rest run out
    recovered = run(backend.recover_expired())
    assert {j.state for j in recovered} <= {State.QUEUED, State.CANCELLED}
    check()
    assert run(backend.retry(plain[1].id)).state is State.QUEUED
    check()
    assert run(backend.delete(later.id))
    check()
    run(backend.enqueue([make_job("q", unique_key="k")]))  # the key is free again
    check()
    assert run(backend.prune(run(backend.now()) + 1)) >= 1
    check()
    assert run(backend.empty_queue("q")) >= 1
    check()
    run(backend.drop_queue("q"))
    check()
    assert check_indexes(client, ns) == 0


def test_a_batch_sent_again_after_a_lost_answer_stores_each_job_once(
    factory: BackendFactory,
) -> None:
    """A batch is sent again when its answer was lost (``resending``); the script finds
    its jobs stored (one EXISTS for a new batch, then job by job) and answers them as
    they are. A batch sent anew with stored ids, or naming a job twice, is refused."""
    backend = factory.backend
    assert isinstance(backend, RedisBackend)
    run = factory.run
    first = [make_job("q", priority=i % 3) for i in range(5)]
    run(backend.enqueue(first))
    [claimed] = run(backend.claim(["q"], "w", 1, 60.0))

    # When the same batch is sent again with one new job, after a lost answer
    new = make_job("q")
    again = run(send_again(backend, [*first, new]))

    # Then the stored jobs come back as stored (the claimed one running), the new one is
    # queued, and the indexes agree with the jobs
    assert [j.id for j in again] == [*(j.id for j in first), new.id]
    states = {j.id: j.state for j in again}
    assert states[claimed.id] is State.RUNNING
    assert [states[j.id] for j in first if j.id != claimed.id] == [State.QUEUED] * 4
    assert states[new.id] is State.QUEUED
    counts = {q.name: q.counts for q in run(backend.list_queues())}["q"]
    assert (counts["queued"], counts["running"]) == (5, 1)
    check_indexes(_client(backend), backend.settings.namespace)

    # When the same jobs are enqueued anew, or a new batch names a job twice
    # Then each is refused and stores nothing
    twice = make_job("q")
    for batch in ([*first, make_job("q")], [twice, twice]):
        with pytest.raises(InvalidJob):
            run(backend.enqueue(batch))
    counts = {q.name: q.counts for q in run(backend.list_queues())}["q"]
    assert (counts["queued"], counts["running"]) == (5, 1)
    check_indexes(_client(backend), backend.settings.namespace)


async def send_again(backend: RedisBackend, jobs: list[Job]) -> list[Job]:
    """What ``enqueue`` sends after a lost answer (its retry on a new connection)."""
    calls = enqueue_calls(jobs, backend.settings.max_payload, 1000)
    return await backend._enqueue(jobs, resending(calls))


def test_wake_up_tokens_stay_bounded_however_many_jobs_are_made_ready(
    factory: BackendFactory,
) -> None:
    """One token per job made ready wakes one blocked worker; the list keeps at most 64
    (more would wake nobody more), trimmed only when a push goes over."""
    backend = factory.backend
    assert isinstance(backend, RedisBackend)
    run = factory.run
    client = _client(backend)
    wake = f"{{{backend.settings.namespace}}}:wake:q"

    # Given jobs enqueued one at a time with no worker to take the tokens
    for _ in range(3):
        run(backend.enqueue([make_job("q")]))
    few = client.llen(wake)

    # When a batch of 100 and then single jobs follow
    run(backend.enqueue([make_job("q") for _ in range(100)]))
    after_batch = client.llen(wake)
    for _ in range(3):
        run(backend.enqueue([make_job("q")]))

    # Then there is a token per job up to 64, and never more; a claim that empties
    # the queue removes them
    assert (few, after_batch, client.llen(wake)) == (3, 64, 64)
    run(backend.claim(["q"], "w", 200, 60.0))
    assert client.exists(wake) == 0


def test_finished_jobs_past_their_keeping_time_go_when_others_finish() -> None:
    """keep_succeeded bounds the store without a sweeper: a finish removes the
    succeeded jobs older than the keeping time; a keep of 0 keeps them."""
    with fresh_namespace() as url:
        for keep, left in (("0.5", 1), ("0", 2)):
            prefix = f"keep{keep.replace('.', '')}"
            backend = create_backend(f"{with_prefix(url, prefix)}&keep_succeeded={keep}")
            assert isinstance(backend, RedisBackend)

            async def scenario(backend: RedisBackend = backend) -> int:
                await backend.open()
                try:
                    for pause in (1.0, 0.0):  # the first one is then 1 s old
                        await backend.enqueue([make_job("q")])
                        [job] = await backend.claim(["q"], "w", 1, 30)
                        await backend.finish([(job, Outcome.succeeded())])
                        await asyncio.sleep(pause)
                    page = await backend.list_jobs(None, None, 10)
                    return len(page.jobs)
                finally:
                    await backend.close()

            try:
                assert asyncio.run(scenario()) == left, keep
                check_indexes(_client(backend), backend.settings.namespace)
            finally:
                delete_namespace(url, backend.settings.namespace)
