"""conveyor's own sessions run at READ COMMITTED whatever isolation level the role or
the database makes the default: its statements are written for it (a statement sees
what committed before it began; SKIP LOCKED and compare-and-set do the rest)."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import psycopg
import pytest

from conveyor.backends.postgres import PostgresBackend, queries_for
from conveyor.testing.harness import make_job
from tests.pg import libpq_url

APPLICATION = "conveyor-isolation"


@pytest.mark.parametrize("level", ["repeatable read", "serializable"])
def test_a_key_waited_for_finds_the_job_its_holder_stored_whatever_the_default_level(
    pg_url: str, level: str
) -> None:
    # Given a store whose sessions start at another isolation level (as a role or a
    # database with default_transaction_isolation set makes them)
    options = quote("-c default_transaction_isolation=" + level.replace(" ", "\\ "))
    url = f"{pg_url}&options={options}&application_name={APPLICATION}"
    schema = PostgresBackend(pg_url).schema

    async def scenario() -> tuple[str, str, int]:
        backend = PostgresBackend(url)
        await backend.open()
        try:
            async with await psycopg.AsyncConnection.connect(libpq_url(pg_url)) as holder:
                # and another producer's transaction holding a unique key's turn
                lock = queries_for(schema)["lock_unique_key"]
                await holder.execute(lock, {"key": "k"})
                # When an enqueue of that key waits for its turn
                waiting = asyncio.ensure_future(backend.enqueue_once(make_job(unique_key="k")))
                while not await _waits_on_a_lock(holder):
                    await asyncio.sleep(0.01)
                # and the holder stores its own job of the key and commits
                (first,) = await backend.enqueue_in_async(holder, [make_job(unique_key="k")])
                await holder.commit()
                found = await waiting
            return first.id, found.id, await _stored(pg_url, schema)
        finally:
            await backend.close()

    first, found, stored = asyncio.run(scenario())
    # Then the waiting enqueue finds the holder's job, as at the default level
    assert found == first
    assert stored == 1


async def _waits_on_a_lock(conn: psycopg.AsyncConnection) -> bool:
    cur = await conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
        "AND wait_event_type = 'Lock'",
        [APPLICATION],
    )
    row = await cur.fetchone()
    return bool(row and row[0])


async def _stored(pg_url: str, schema: str) -> int:
    async with await psycopg.AsyncConnection.connect(libpq_url(pg_url)) as conn:
        cur = await conn.execute(f'SELECT count(*) FROM "{schema}".jobs')
        row = await cur.fetchone()
        return int(row[0]) if row else 0
