"""conveyor on PostgreSQL, for the peer benchmark (``PEERS_EXTRA_PATH=bench/peers``).

The store is the schema ``bench_conveyor`` of the harness's database (``PG_DSN``,
``?schema=bench_conveyor``): dropped and created again by ``conveyor``'s own
migration before every run, and ANALYZEd after the W2 preload like the other
PostgreSQL peers. The server runs with its defaults (``fsync`` and
``synchronous_commit`` on): every acknowledged enqueue and outcome survives a crash.

Producer:  ``task.enqueue(i)`` (sync); bulk: ``task.enqueue_many([[i] ...])``
           (COPY in one transaction per call of 64 jobs or more).
Worker:    ``conveyor worker -i conveyor_pg_adapter:app -q default -c 50
           --fetch 100 --prefetch 100 --processes 2``: two worker processes under
           one supervisor, each one asyncio loop with 50 slots and up to 100 jobs
           claimed ahead, woken by LISTEN/NOTIFY; the job bodies are the async ones
           of ``peers.common``.
"""

from __future__ import annotations

import asyncio

from conveyor_shared import ConveyorCalls, register_tasks
from peers import common

from conveyor import Conveyor
from conveyor.backends.postgres import PostgresBackend

SCHEMA = "bench_conveyor"
URL = f"{common.PG_DSN}{'&' if '?' in common.PG_DSN else '?'}schema={SCHEMA}"

app = Conveyor(URL)
TASKS = register_tasks(app, common)


def reset_schema(url=URL, schema=SCHEMA):
    """Drop the schema and create it again with conveyor's migration."""
    import psycopg

    with psycopg.connect(common.PG_DSN, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    asyncio.run(PostgresBackend(url).migrate())


class Adapter(ConveyorCalls, common.Adapter):
    peer = "conveyor_pg"
    backend = "postgresql"
    app = app
    tasks = TASKS
    module = "conveyor_pg_adapter"

    def reset(self):
        reset_schema()

    def before_drain(self):
        common.analyze_schema(SCHEMA)
