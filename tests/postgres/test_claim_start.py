"""Claims that start past the last job taken (PostgreSQL under a long transaction)."""

from __future__ import annotations

import asyncio

import psycopg

from conveyor.backends.postgres import PostgresBackend
from conveyor.backends.postgres_claims import (
    FRONT_EVERY_MAX_S,
    FRONT_EVERY_S,
    FRONT_PAUSE_FACTOR,
    SLOW_CLAIM_S,
    ClaimStart,
)
from conveyor.job import Outcome
from conveyor.testing.harness import make_job
from tests.pg import libpq_url


def test_claims_from_the_front_until_one_is_slow_then_past_the_last_key() -> None:
    start = ClaimStart()
    jobs = [make_job("q"), make_job("q")]
    front = start.params(["q", "r"], now=0.0)
    assert front == {"after_priority": None, "after_run_at": None, "after_id": None}

    # A fast claim from the front: still from the front.
    start.record(front, jobs[:1], elapsed=SLOW_CLAIM_S / 2, now=1.0)
    assert start.params(["q", "r"], now=1.1)["after_id"] is None

    # A slow one: past the last key taken, per queue (none yet for r).
    start.record(front, jobs, elapsed=SLOW_CLAIM_S * 1.2, now=2.0)
    after = start.params(["q", "r"], now=2.1)
    assert after["after_id"] == [jobs[1].id, None]
    assert after["after_priority"] == [jobs[1].priority, None]

    # Now and then from the front again; a fast one there ends the skipping.
    front_again = start.params(["q", "r"], now=2.0 + FRONT_EVERY_S)
    assert front_again["after_id"] is None
    start.record(front_again, [], elapsed=SLOW_CLAIM_S / 2, now=2.0 + FRONT_EVERY_S)
    assert start.params(["q", "r"], now=2.1 + FRONT_EVERY_S)["after_id"] is None


def _next_front(took: float, expected: float) -> tuple[bool, bool]:
    """After a claim from the front that took ``took`` seconds: whether the claims just
    before ``expected`` seconds skip ahead, and whether the one at ``expected`` does."""
    start = ClaimStart()
    start.record(start.params(["q"], now=100.0), [make_job("q")], elapsed=took, now=100.0)
    before = start.params(["q"], now=100.0 + expected - 0.01)["after_id"] is not None
    at = start.params(["q"], now=100.0 + expected)["after_id"] is not None
    return before, at


def test_a_slow_claim_from_the_front_puts_the_next_one_off_in_proportion_up_to_a_cap() -> None:
    # Given claims from the front slow enough to skip ahead, and slower still,
    # Then the next claim from the front comes after the usual half second, after 20
    # times as long as a slow one took (a twentieth of the time at most goes to
    # them), and never later than the cap: until then the claims skip ahead.
    assert _next_front(SLOW_CLAIM_S * 1.2, FRONT_EVERY_S) == (True, False)
    assert _next_front(0.1, FRONT_PAUSE_FACTOR * 0.1) == (True, False)
    assert _next_front(2.0, FRONT_EVERY_MAX_S) == (True, False)


def test_a_claim_past_a_key_takes_only_later_jobs_and_the_front_gets_the_rest(
    pg_url: str,
) -> None:
    async def scenario() -> None:
        backend = PostgresBackend(pg_url)
        await backend.open()
        try:
            first = await backend.enqueue([make_job("q") for _ in range(3)])
            taken = await backend.claim(["q"], "w", 2, 60)
            assert [j.id for j in taken] == [j.id for j in first[:2]]

            # Skipping from here on; a high-priority job arrives ahead of the key.
            backend._claim_start.skipping = True
            backend._claim_start._front_due = float("inf")
            urgent = (await backend.enqueue([make_job("q", priority=-10)]))[0]
            later = await backend.claim(["q"], "w", 10, 60)
            assert [j.id for j in later] == [first[2].id]

            # The next claim from the front finds it.
            backend._claim_start._front_due = 0.0
            front = await backend.claim(["q"], "w", 10, 60)
            assert [j.id for j in front] == [urgent.id]
        finally:
            await backend.close()

    asyncio.run(scenario())


def test_under_a_long_transaction_every_job_is_claimed_once(pg_url: str) -> None:
    backend = PostgresBackend(pg_url)
    schema = backend.schema

    async def drain() -> list[str]:
        await backend.open()
        try:
            await backend.enqueue([make_job("q") for _ in range(2000)])
            seen: list[str] = []
            backend._claim_start.skipping = True  # as after a slow claim
            while jobs := await backend.claim(["q"], "w", 100, 60):
                seen.extend(j.id for j in jobs)
                await backend.finish([(j, Outcome.succeeded()) for j in jobs])
                # Half the time the next claim starts at the front.
                backend._claim_start._front_due = 0.0 if len(seen) % 200 else float("inf")
            return seen
        finally:
            await backend.close()

    with psycopg.connect(libpq_url(pg_url)) as held:
        held.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        held.execute(f'SELECT count(*) FROM "{schema}".jobs').fetchone()
        seen = asyncio.run(drain())
        held.rollback()
    assert len(seen) == 2000
    assert len(set(seen)) == 2000
