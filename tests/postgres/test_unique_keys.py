"""PostgreSQL's find_unique: one read of jobs_by_unique_key however many jobs are stored,
and the upgrade of a version-2 schema (the conformance suite covers the behaviour)."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from conveyor.backends import postgres as postgres_module
from conveyor.backends.postgres import SCHEMA_VERSION, PostgresBackend, queries_for
from conveyor.exceptions import ConfigError
from conveyor.job import Job, Outcome, State
from conveyor.testing.harness import make_job
from tests.migrations import run_migrate, schema_stopped_at
from tests.pg import fresh_schema, libpq_url


def test_find_unique_reads_its_index_beside_many_finished_jobs(pg_url: str) -> None:
    # Given 100,000 finished jobs, one in ten with a unique key, and statistics
    schema = PostgresBackend(pg_url).schema
    with psycopg.connect(libpq_url(pg_url), autocommit=True) as conn:
        conn.execute(
            f'INSERT INTO "{schema}".jobs (id, queue, state, run_at, max_attempts, steps, '
            "unique_key, created_at, updated_at, finished_at) "
            "SELECT lpad(to_hex(i), 36, '0'), 'q', 'succeeded', 0, 1, '[]', "
            "CASE WHEN i % 10 = 0 THEN 'key-' || i END, 0, 0, 0 "
            "FROM generate_series(1, 100000) AS i"
        )
        conn.execute(f'ANALYZE "{schema}".jobs')

        # When the lookup is planned, for one key and as the generic plan that
        # prepared statements come to
        query = queries_for(schema)["newest_by_unique_key"]
        custom = conn.execute(f"EXPLAIN {query}", {"key": "key-50000"}).fetchall()
        conn.execute("SET plan_cache_mode = force_generic_plan")
        conn.execute(f"PREPARE newest(text) AS {query.replace('%(key)s', '$1')}")
        generic = conn.execute("EXPLAIN EXECUTE newest('key-50000')").fetchall()

    # Then both read jobs_by_unique_key from the key's newest end, and scan nothing
    for plan in (custom, generic):
        text = "\n".join(row[0] for row in plan)
        assert "Index Scan Backward using jobs_by_unique_key" in text, text
        assert "Seq Scan" not in text and "Sort" not in text, text

    async def find() -> Job | None:
        backend = PostgresBackend(pg_url)
        await backend.open()
        try:
            return await backend.find_unique("key-50000")
        finally:
            await backend.close()

    found = asyncio.run(find())
    assert found is not None and found.state is State.SUCCEEDED


def test_a_version_2_schema_is_upgraded_and_its_finished_jobs_are_found_by_key() -> None:
    with fresh_schema(migrate=False) as url:
        # Given a schema made by a conveyor whose schema stopped at version 2, with a
        # job of a unique key that succeeded
        with schema_stopped_at(postgres_module, 2):

            async def fill() -> Job:
                backend = PostgresBackend(url)
                assert await backend.migrate() == (0, 2)
                await backend.open()
                try:
                    # Two jobs: a batch's statement is the same at version 2, a single
                    # job's reads the waiters table of version 6.
                    job, other = await backend.enqueue([make_job(unique_key="order-7"), make_job()])
                    claimed = await backend.claim(["default"], "w", 2, 60.0)
                    assert {j.id for j in claimed} == {job.id, other.id}
                    done = [(j, Outcome.succeeded()) for j in claimed]
                    assert await backend.finish(done) == [True, True]
                    return job
                finally:
                    await backend.close()

            done_job = asyncio.run(fill())

        # When this conveyor opens it, and after `conveyor migrate`
        with pytest.raises(ConfigError, match=r"is at version 2.*conveyor migrate"):
            asyncio.run(PostgresBackend(url).open())
        done = run_migrate(url)

        # Then the schema is at this version and the finished job is found by its key
        assert done.returncode == 0, done.stderr
        assert f"from version 2 to {SCHEMA_VERSION}" in done.stdout

        async def find() -> Job | None:
            backend = PostgresBackend(url)
            await backend.open()
            try:
                return await backend.find_unique("order-7")
            finally:
                await backend.close()

        found = asyncio.run(find())
        assert found is not None
        assert (found.id, found.state) == (done_job.id, State.SUCCEEDED)
