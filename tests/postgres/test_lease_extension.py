"""A lease extension never waits for a row lock (PostgreSQL).

A worker's lease keeper and its outcome writer lock rows of the same jobs on two
connections; if each could wait for the other they could deadlock, and a deadlock
stalls both statements for the server's deadlock_timeout before one fails.
"""

from __future__ import annotations

import asyncio

import psycopg

from conveyor.backends.postgres import PostgresBackend
from conveyor.testing import BackendFactory
from conveyor.testing.harness import make_job
from tests.pg import libpq_url


def _lock_row(other: psycopg.Connection, backend: PostgresBackend, job_id: str) -> None:
    """Lock a job's row on another connection, as a worker's outcome write does."""
    other.execute(f'SELECT 1 FROM "{backend.schema}".jobs WHERE id = %s FOR UPDATE', (job_id,))


def test_a_row_locked_elsewhere_is_skipped_not_waited_for_and_extended_next_time(
    factory: BackendFactory, backend: PostgresBackend, pg_url: str
) -> None:
    run = factory.run
    # Given a worker holding two jobs, one of whose rows another connection has locked
    # (as the worker's own outcome write does while it runs),
    run(backend.enqueue([make_job("q"), make_job("q")]))
    busy, free = run(backend.claim(["q"], "w", 2, 30))
    with psycopg.connect(libpq_url(pg_url)) as other:
        _lock_row(other, backend, busy.id)

        # When the worker extends both leases,
        status = run(asyncio.wait_for(backend.extend([busy.id, free.id], "w", 600), 10))

        # Then the answer comes at once: the free job's lease is extended, the locked
        # one's is not, and it is not reported lost either.
        assert status.extended == [free.id]
        assert status.lost == []
        free_until = run(backend.get(free.id)).lease_until
        busy_until = run(backend.get(busy.id)).lease_until
        assert free_until is not None and busy_until is not None
        assert free_until > busy_until + 300
        other.rollback()

    # And once the lock is gone, the next extension extends it too.
    again = run(backend.extend([busy.id, free.id], "w", 600))
    assert sorted(again.extended) == sorted([busy.id, free.id])
    assert again.lost == []


def test_a_job_asked_to_cancel_is_told_even_when_its_row_is_busy(
    factory: BackendFactory, backend: PostgresBackend, pg_url: str
) -> None:
    run = factory.run
    # Given a running job asked to cancel, whose row is locked elsewhere,
    run(backend.enqueue([make_job("q")]))
    (job,) = run(backend.claim(["q"], "w", 1, 30))
    run(backend.cancel(job.id))
    with psycopg.connect(libpq_url(pg_url)) as other:
        _lock_row(other, backend, job.id)

        # When the worker extends its lease,
        status = run(asyncio.wait_for(backend.extend([job.id], "w", 30), 10))

        # Then it learns of the cancel request all the same.
        assert status.cancelling == [job.id]
        assert status.lost == []
        other.rollback()
