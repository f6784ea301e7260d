"""PostgreSQL's counts per minute: the upgrade of a version-1 schema by `conveyor migrate`,
sharded rows that add up, and old minutes swept (the conformance suite covers the rest)."""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest

from conveyor.backends import postgres as postgres_module
from conveyor.backends.postgres import SCHEMA_VERSION, PostgresBackend, _shard
from conveyor.exceptions import ConfigError
from conveyor.job import Job, Outcome, State
from conveyor.testing.harness import make_job
from tests.migrations import run_migrate, schema_stopped_at
from tests.pg import fresh_schema, libpq_url


def test_a_version_1_schema_is_refused_until_migrate_upgrades_it_with_its_jobs() -> None:
    with fresh_schema(migrate=False) as url:
        # Given a schema made by a conveyor whose schema stopped at version 1, with a
        # queued job and a running one
        with schema_stopped_at(postgres_module, 1):

            async def fill() -> Job:
                backend = PostgresBackend(url)
                assert await backend.migrate() == (0, 1)
                await backend.open()
                try:
                    await backend.enqueue([make_job(), make_job()])
                    (running,) = await backend.claim(["default"], "w", 1, 60.0)
                    return running
                finally:
                    await backend.close()

            running = asyncio.run(fill())

        # When this conveyor opens it, and after `conveyor migrate`
        with pytest.raises(ConfigError, match=r"is at version 1.*conveyor migrate"):
            asyncio.run(PostgresBackend(url).open())
        done = run_migrate(url)

        # Then the upgrade keeps the jobs, and the outcome of the run that was going on
        # is counted in the new table
        assert done.returncode == 0, done.stderr
        assert f"from version 1 to {SCHEMA_VERSION}" in done.stdout

        async def read() -> None:
            backend = PostgresBackend(url)
            await backend.open()
            try:
                jobs = (await backend.list_jobs()).jobs
                assert sorted(j.state for j in jobs) == sorted([State.QUEUED, State.RUNNING])
                assert await backend.finish([(running, Outcome.succeeded())]) == [True]
                (row,) = await backend.minute_counts(0.0)
                assert (row.queue, row.processed, row.failed) == ("default", 1, 0)
            finally:
                await backend.close()

        asyncio.run(read())


def test_workers_of_different_shards_write_rows_that_add_up(pg_url: str) -> None:
    # Given two workers whose counters live in different shards
    first = "worker-a"
    second = next(f"worker-{i}" for i in range(100) if _shard(f"worker-{i}") != _shard(first))
    backend = PostgresBackend(pg_url)

    async def run() -> list[tuple[int, int]]:
        await backend.open()
        try:
            await backend.enqueue([make_job() for _ in range(5)])
            # When each finishes jobs of the same queue in the same minute
            for worker, count in ((first, 2), (second, 3)):
                jobs = await backend.claim(["default"], worker, count, 60.0)
                await backend.finish([(job, Outcome.poisoned(None)) for job in jobs])
            (row,) = await backend.minute_counts(0.0)
            assert (row.processed, row.failed, row.depth) == (5, 5, None)
        finally:
            await backend.close()
        with psycopg.connect(libpq_url(pg_url)) as conn:
            return [
                (r[0], r[1])
                for r in conn.execute(
                    f'SELECT shard, processed FROM "{backend.schema}".minute_counts ORDER BY shard'
                )
            ]

    # Then each wrote its own shard's row, and the read sums them
    assert asyncio.run(run()) == sorted([(_shard(first), 2), (_shard(second), 3)])


@pytest.mark.parametrize("sweep", ["sample_depth", "prune"])
def test_minutes_past_keep_counts_are_swept(pg_url: str, sweep: str) -> None:
    # Given minutes counted 26 hours ago, 24 hours ago and now
    backend = PostgresBackend(pg_url)
    now = time.time()
    minutes = [int((now - ago) // 60) * 60 for ago in (26 * 3600, 24 * 3600, 0)]

    async def run() -> list[float]:
        await backend.open()
        try:
            await backend.create_queue("q")
            with psycopg.connect(libpq_url(pg_url), autocommit=True) as conn:
                for minute in minutes:
                    conn.execute(
                        f'INSERT INTO "{backend.schema}".minute_counts '
                        "(minute, queue, shard, processed) VALUES (%s, 'q', 1, 1)",
                        [minute],
                    )

            # When a worker samples the depth, or an operator prunes
            if sweep == "sample_depth":
                await backend.sample_depth()
            else:
                await backend.prune(now - 3600)

            # Then the minutes older than keep_counts (25 hours) are gone
            return [row.minute for row in await backend.minute_counts(0.0)]
        finally:
            await backend.close()

    assert asyncio.run(run()) == minutes[1:]
