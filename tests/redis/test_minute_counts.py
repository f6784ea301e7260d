"""Redis' counts per minute: one hash per minute under the namespace's hash tag, which
expires keep_counts after the minute starts, so memory stays bounded without a sweeper
(the conformance suite covers the behaviour)."""

from __future__ import annotations

import asyncio

import redis

from conveyor.backends.redis import RedisBackend
from conveyor.job import Outcome
from conveyor.testing.harness import make_job
from tests.rd import client_url


def test_a_minute_is_one_hash_that_expires_keep_counts_after_the_minute(redis_url: str) -> None:
    backend = RedisBackend(redis_url)

    async def run() -> float:
        await backend.open()
        try:
            # Given two queues with runs ended, and a depth sampled, in one minute
            await backend.enqueue([make_job("a"), make_job("a"), make_job("b"), make_job("b")])
            jobs = await backend.claim(["a", "b"], "w", 3, 60.0)
            await backend.finish(
                [(jobs[0], Outcome.succeeded()), (jobs[1], Outcome.poisoned(None))]
                + [(job, Outcome.succeeded()) for job in jobs[2:]]
            )
            await backend.sample_depth()
            (row, _) = await backend.minute_counts(0.0)
            return row.minute
        finally:
            await backend.close()

    minute = asyncio.run(run())

    # Then they are one hash of the namespace, a field per queue and figure, expiring
    # 25 hours after the minute's start
    with redis.Redis.from_url(client_url(redis_url), decode_responses=True) as client:
        key = f"{backend.prefix}minute:{int(minute)}"
        assert key.startswith("{")  # the namespace's hash tag: one cluster slot
        assert client.hgetall(key) == {"p:a": "2", "f:a": "1", "d:a": "0", "p:b": "1", "d:b": "1"}
        assert client.expiretime(key) == int(minute + backend.keep_counts)
        assert [k for k in client.scan_iter(match=f"{backend.prefix}minute:*")] == [key]
