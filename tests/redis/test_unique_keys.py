"""Redis' unique keys in any state: one sorted set per key, whose entries go with their
jobs, so that retention bounds it as it bounds the jobs (the conformance suite covers
find_unique; tests/redis/test_indexes.py checks the sets after every kind of change)."""

from __future__ import annotations

import asyncio

import redis

from conveyor.backends.redis import RedisBackend
from conveyor.job import Job, Outcome, State
from conveyor.testing.harness import make_job
from tests.rd import client_url


def test_a_key_is_found_until_retention_removes_its_job_and_leaves_no_key(
    redis_url: str,
) -> None:
    backend = RedisBackend(f"{redis_url}&keep_succeeded=0.5")
    namespace = backend.settings.namespace

    async def run() -> tuple[Job | None, Job | None]:
        await backend.open()
        try:
            # Given a job of a unique key that succeeded
            await backend.enqueue([make_job(unique_key="order-7")])
            (job,) = await backend.claim(["default"], "w", 1, 60.0)
            await backend.finish([(job, Outcome.succeeded())])
            kept = await backend.find_unique("order-7")

            # When it is older than keep_succeeded and another job finishes
            await asyncio.sleep(1.0)
            await backend.enqueue([make_job()])
            (other,) = await backend.claim(["default"], "w", 1, 60.0)
            await backend.finish([(other, Outcome.succeeded())])
            return kept, await backend.find_unique("order-7")
        finally:
            await backend.close()

    kept, gone = asyncio.run(run())

    # Then the key named the job while it was kept, names nothing once it is removed,
    # and its set is gone with it
    assert kept is not None and kept.state is State.SUCCEEDED
    assert gone is None
    with redis.Redis.from_url(client_url(redis_url), decode_responses=True) as client:
        assert client.exists(f"{{{namespace}}}:unique:order-7") == 0
        assert client.hlen(f"{{{namespace}}}:unique") == 0


def test_a_job_an_older_conveyor_enqueued_is_found_while_it_holds_its_key(
    redis_url: str,
) -> None:
    # Given a waiting job whose key is only in the map of active holders, as an
    # older conveyor enqueued it (without the key's set)
    backend = RedisBackend(redis_url)
    namespace = backend.settings.namespace

    async def enqueue() -> Job:
        await backend.open()
        try:
            (job,) = await backend.enqueue([make_job(unique_key="order-8")])
            return job
        finally:
            await backend.close()

    job = asyncio.run(enqueue())
    with redis.Redis.from_url(client_url(redis_url), decode_responses=True) as client:
        assert client.delete(f"{{{namespace}}}:unique:order-8") == 1

    async def find() -> Job | None:
        await backend.open()
        try:
            return await backend.find_unique("order-8")
        finally:
            await backend.close()

    # When its key is looked up
    found = asyncio.run(find())

    # Then the job is found
    assert found is not None and found.id == job.id
