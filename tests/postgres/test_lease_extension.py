"""A lease extension never waits for a row lock (PostgreSQL).

A worker's lease keeper and its outcome writer lock rows of the same jobs on two
connections; if each could wait for the other they could deadlock, and a deadlock
stalls both statements for the server's deadlock_timeout before one fails.
"""

from __future__ import annotations

import asyncio

import psycopg

from conveyor.backends.postgres import PostgresBackend
from conveyor.testing.harness import make_job
from tests.pg import libpq_url


def test_a_row_locked_elsewhere_is_skipped_not_waited_for_and_extended_next_time(
    pg_url: str,
) -> None:
    async def scenario() -> None:
        backend = PostgresBackend(pg_url)
        await backend.open()
        try:
            # Given a worker holding two jobs, one of whose rows another connection
            # has locked (as the worker's own outcome write does while it runs),
            await backend.enqueue([make_job("q"), make_job("q")])
            busy, free = await backend.claim(["q"], "w", 2, 30)
            with psycopg.connect(libpq_url(pg_url)) as other:
                other.execute(
                    f'SELECT 1 FROM "{backend.schema}".jobs WHERE id = %s FOR UPDATE',
                    (busy.id,),
                )

                # When the worker extends both leases,
                status = await asyncio.wait_for(backend.extend([busy.id, free.id], "w", 600), 10)

                # Then the answer comes at once: the free job's lease is extended, the
                # locked one's is not, and it is not reported lost either.
                assert status.extended == [free.id]
                assert status.lost == []
                assert (await backend.get(free.id)).lease_until > (
                    await backend.get(busy.id)
                ).lease_until + 300
                other.rollback()

            # And once the lock is gone, the next extension extends it too.
            again = await backend.extend([busy.id, free.id], "w", 600)
            assert sorted(again.extended) == sorted([busy.id, free.id])
            assert again.lost == []
        finally:
            await backend.close()

    asyncio.run(scenario())


def test_a_job_asked_to_cancel_is_told_even_when_its_row_is_busy(pg_url: str) -> None:
    async def scenario() -> None:
        backend = PostgresBackend(pg_url)
        await backend.open()
        try:
            # Given a running job asked to cancel, whose row is locked elsewhere,
            await backend.enqueue([make_job("q")])
            (job,) = await backend.claim(["q"], "w", 1, 30)
            await backend.cancel(job.id)
            with psycopg.connect(libpq_url(pg_url)) as other:
                other.execute(
                    f'SELECT 1 FROM "{backend.schema}".jobs WHERE id = %s FOR UPDATE', (job.id,)
                )

                # When the worker extends its lease,
                status = await asyncio.wait_for(backend.extend([job.id], "w", 30), 10)

                # Then it learns of the cancel request all the same.
                assert status.cancelling == [job.id]
                assert status.lost == []
                other.rollback()
        finally:
            await backend.close()

    asyncio.run(scenario())
