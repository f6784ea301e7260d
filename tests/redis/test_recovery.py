"""Jobs whose stored JSON a reader cannot take whole (nested deeper than Redis' Lua or
this Python's json goes): the recovery of expired leases must put them back all the
same, not leave them running with no lease (their only index), where nothing would
ever find them again; a claim must not lose the rest of its batch over one."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest
import redis

from conveyor import State
from conveyor.backends.base import JobFilter
from conveyor.backends.redis import RedisBackend
from conveyor.testing.harness import make_job
from tests.rd import client_url


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def test_a_job_nested_deeper_than_lua_reads_is_recovered_with_the_others(redis_url: str) -> None:
    backend = RedisBackend(redis_url)
    # A job may nest deeper than Redis' Lua parses JSON (1,000 levels): Python 3.12 and
    # later write such JSON at their default limits; here the limit is raised for it.
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 5000))

    async def scenario() -> None:
        await backend.open()
        try:
            # Given a job whose argument nests 1,000 lists deep and a plain one, both
            # claimed by a worker that dies (its leases run out)
            deep, plain = await backend.enqueue(
                [make_job(task="deep", args=[_nested(1000)]), make_job(task="plain")]
            )
            claimed = await backend.claim(["default"], "dead-worker", 2, 0.05)
            assert len(claimed) == 2
            await asyncio.sleep(0.15)

            # When another worker recovers the expired leases
            recovered = await backend.recover_expired()

            # Then both jobs are waiting again, the lost run counted and said
            assert sorted(job.id for job in recovered) == sorted([deep.id, plain.id])
            for job_id in (deep.id, plain.id):
                job = await backend.get(job_id)
                assert (job.state, job.attempts) == (State.QUEUED, 1)
                assert job.errors[-1]["type"] == "LeaseExpired"
            # And the deep one is listed and claimed again, its argument whole
            listed = await backend.list_jobs(JobFilter(states=[State.QUEUED]))
            assert deep.id in {job.id for job in listed.jobs}
            again = await backend.claim(["default"], "live-worker", 2, 30.0)
            assert {job.id for job in again} == {deep.id, plain.id}
            (taken,) = [job for job in again if job.id == deep.id]
            assert taken.steps[0].args == [_nested(1000)]
        finally:
            await backend.close()

    try:
        asyncio.run(scenario())
    finally:
        sys.setrecursionlimit(limit)


def test_a_claimed_job_this_python_cannot_read_spoils_neither_the_batch_nor_the_worker(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    backend = RedisBackend(redis_url)

    async def scenario() -> None:
        await backend.open()
        try:
            # Given three waiting jobs, the second with arguments nested deeper than this
            # Python's json reads (as Python 3.13 writes them: 9,997 levels at its
            # defaults, where 3.11 reads fewer than 1,000)
            first, deep, last = await backend.enqueue(
                [make_job(task="first"), make_job(task="deep"), make_job(task="last")]
            )
            with redis.Redis.from_url(client_url(redis_url)) as client:
                steps = '[{"name": "deep", "args": [' + "[" * 100_000 + "]" * 100_000 + "]}]"
                client.hset(f"{backend.prefix}job:{deep.id}", "steps", steps)

            # When a worker claims all three
            claimed = await backend.claim(["default"], "w1", 3, 0.05)

            # Then it gets the two it can read, and the third is named in an error
            assert [job.id for job in claimed] == [first.id, last.id]
            assert any(deep.id in r.getMessage() for r in caplog.records if r.levelname == "ERROR")
            # And that one runs out its lease: then it is waiting again, the attempt
            # counted (so that a job nobody can read ends poisoned, not claimed for ever)
            await asyncio.sleep(0.15)
            await backend.recover_expired()
            with redis.Redis.from_url(client_url(redis_url), decode_responses=True) as client:
                key = f"{backend.prefix}job:{deep.id}"
                assert client.hmget(key, "state", "attempts") == ["queued", "1"]
        finally:
            await backend.close()

    asyncio.run(scenario())
