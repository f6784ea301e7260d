"""The recovery of expired leases on Redis (recover.lua) with jobs whose stored JSON
its Lua cannot read whole: it must put them back all the same, not leave them running
with no lease (their only index), where nothing would ever find them again."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from conveyor import State
from conveyor.backends.base import JobFilter
from conveyor.backends.redis import RedisBackend
from conveyor.testing.harness import make_job


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
