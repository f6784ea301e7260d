"""conveyor on Redis, for the peer benchmark (``PEERS_EXTRA_PATH=bench/peers``).

The store is the harness's Redis (``REDIS_URL``, the same server and database as the
Redis peers) under the namespace ``bench_conveyor`` (``?prefix=bench_conveyor``: every
key is ``{bench_conveyor}:...``). The harness empties that database (FLUSHDB) before
every run; ``reset()`` also deletes every key of the namespace (SCAN + UNLINK, nothing
else). The reference server runs without persistence (``--save "" --appendonly no``),
like for the other Redis peers: a restart of Redis loses every job.

Producer:  ``task.enqueue(i)`` (sync: one EVALSHA of the enqueue script on a blocking
           connection of its own, no event loop); bulk: ``task.enqueue_many([[i] ...])``
           (one EVALSHA per call of up to 1,000 jobs).
Worker:    ``conveyor worker -i conveyor_redis_adapter:app -q default -c 50
           --fetch 100 --prefetch 100 --processes 2``: two worker processes under
           one supervisor, each one asyncio loop with 50 slots and up to 100 jobs
           claimed ahead (one claim script call per fetch, outcomes one finish script
           call per batch), woken by BLPOP on wake-up lists (an idle worker is
           handed a new job in that BLPOP's answer); the job bodies are the async ones of
           ``peers.common``.
"""

from __future__ import annotations

from conveyor_shared import ConveyorCalls, delete_namespace, register_tasks
from peers import common

from conveyor import Conveyor

PREFIX = "bench_conveyor"
URL = f"{common.REDIS_URL}{'&' if '?' in common.REDIS_URL else '?'}prefix={PREFIX}"

app = Conveyor(URL)
TASKS = register_tasks(app, common)


def reset_namespace(url=common.REDIS_URL, prefix=PREFIX):
    """Delete every key of the namespace (``{prefix}:*``), and only those."""
    delete_namespace(url, prefix)


class Adapter(ConveyorCalls, common.Adapter):
    peer = "conveyor_redis"
    backend = "redis"
    app = app
    tasks = TASKS
    module = "conveyor_redis_adapter"

    def reset(self):
        reset_namespace()
