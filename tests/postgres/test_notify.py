"""Wake-ups on PostgreSQL: one NOTIFY per queue per statement, never one per job."""

from __future__ import annotations

import asyncio
import time

import psycopg

from conveyor.backends.postgres import PostgresBackend
from conveyor.job import Outcome
from conveyor.testing.harness import make_job
from tests.pg import libpq_url


def _heard(conn: psycopg.Connection, seconds: float = 0.5) -> list[str]:
    """The payloads (queue names) of the notifications that arrive within ``seconds``."""
    return [n.payload for n in conn.notifies(timeout=seconds)]


def test_one_notify_per_queue_per_batch_and_none_for_scheduled_jobs(pg_url: str) -> None:
    backend = PostgresBackend(pg_url)
    with psycopg.connect(libpq_url(pg_url), autocommit=True) as listener:
        listener.execute(f'LISTEN "{backend.channel}"')

        async def scenario() -> list[list[str]]:
            await backend.open()
            heard: list[list[str]] = []
            try:
                # A batch of 10 (one statement) and one of 200 (COPY) in two queues
                await backend.enqueue([make_job("a" if i % 2 else "b") for i in range(10)])
                heard.append(sorted(await asyncio.to_thread(_heard, listener)))
                await backend.enqueue([make_job("a") for _ in range(200)])
                heard.append(sorted(await asyncio.to_thread(_heard, listener)))
                # Scheduled jobs are not ready: nobody is woken
                later = time.time() + 3600
                await backend.enqueue([make_job("a", run_at=later) for _ in range(5)])
                heard.append(sorted(await asyncio.to_thread(_heard, listener)))
                # 50 outcomes that queue their jobs again: one wake-up for the batch
                claimed = await backend.claim(["a"], "w", 50, 60)
                await backend.finish([(j, Outcome.retry_in(0.0, None)) for j in claimed])
                heard.append(sorted(await asyncio.to_thread(_heard, listener)))
            finally:
                await backend.close()
            return heard

        heard = asyncio.run(scenario())
    assert heard == [["a", "b"], ["a"], [], ["a"]]
