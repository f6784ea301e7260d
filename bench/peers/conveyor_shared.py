"""What conveyor's adapters share: the harness's job bodies as conveyor tasks, the
producer calls, the worker command (``bench/own.py`` runs the same flags), and how a
Redis namespace is emptied.

Worker: ``conveyor worker -i <adapter>:app -q default -c 50 --fetch 100 --prefetch
100 --processes 2``: two worker processes under one supervisor, each one asyncio
loop with 50 slots and up to 100 jobs claimed ahead. The SQLite adapter claims in
larger batches (``BATCH_WORKER_FLAGS``). ``CONVEYOR_BENCH_WORKER_FLAGS`` replaces an
adapter's flags, to compare others in the harness's own workloads.

The client library the job bodies call is imported here, at the top, as a tasks module
imports what its tasks use: the supervisor loads this module once and forks its worker
processes from it, so they do not import it on their first job (the harness's job bodies
import it lazily). The import (50-70 ms) then runs once, before the fork, instead of in
both processes at once: about 10 ms less W2 start-up on SQLite in one comparison, none
on PostgreSQL or Redis (whose backend imports redis-py anyway).
"""

from __future__ import annotations

import os
import shlex

import redis.asyncio  # noqa: F401  (see above)

WORKER_FLAGS = [
    "-q",
    "default",
    "-c",
    "50",
    "--fetch",
    "100",
    "--prefetch",
    "100",
    "--processes",
    "2",
]
# What SQLite's claims and outcome writes gain from (docs/benchmarks.md, 2026-12-06 night):
# each batch is one write transaction of the file, for both worker processes.
BATCH_WORKER_FLAGS = [
    "-q",
    "default",
    "-c",
    "50",
    "--fetch",
    "300",
    "--prefetch",
    "600",
    "--processes",
    "2",
]


def register_tasks(app, common):
    """The harness's async job bodies as tasks of ``app``, by their harness names."""

    @app.task(name="noop")
    async def noop(i):
        return await common.ajob_noop(i)

    @app.task(name="incr")
    async def incr(i):
        return await common.ajob_incr(i)

    @app.task(name="latency")
    async def latency(enqueued_at):
        return await common.ajob_latency(enqueued_at)

    return {"noop": noop, "incr": incr, "latency": latency}


class ConveyorCalls:
    """The producer calls and worker command of a conveyor adapter; mixed into the
    harness's ``common.Adapter`` with ``app``, ``tasks`` and ``module`` set."""

    distribution = "conveyor"
    enqueue_api = "task.enqueue(i)"
    bulk_api = "task.enqueue_many([[i] ...])"

    def enqueue(self, task, arg):
        self.tasks[task].enqueue(arg)

    def enqueue_bulk(self, task, args):
        self.tasks[task].enqueue_many([[a] for a in args])

    def close(self):
        self.app.close()

    worker_flags = WORKER_FLAGS

    def worker_argv(self):
        from peers import common

        flags = shlex.split(os.environ.get("CONVEYOR_BENCH_WORKER_FLAGS", "")) or self.worker_flags
        return [common.venv_bin("conveyor"), "worker", "-i", f"{self.module}:app", *flags]


def delete_namespace(url, prefix):
    """Delete every key of the Redis namespace ``prefix`` (``{prefix}:*``), and only
    those (the server may hold other data: never FLUSHDB)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        batch = []
        for key in client.scan_iter(match=f"{{{prefix}}}:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                client.unlink(*batch)
                batch = []
        if batch:
            client.unlink(*batch)
    finally:
        client.close()
