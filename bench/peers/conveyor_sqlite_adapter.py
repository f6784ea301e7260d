"""conveyor on SQLite, for the peer benchmark (``PEERS_EXTRA_PATH=bench/peers``).

The store is ``$BENCH_SCRATCH/conveyor-bench.db`` (WAL, ``synchronous=NORMAL``:
survives any process crash; ``CONVEYOR_BENCH_SYNCHRONOUS=full`` also survives
power loss), deleted before every run.

Producer:  ``task.enqueue(i)`` (sync); bulk: ``task.enqueue_many([[i] ...])``
           (one transaction per call).
Worker:    ``conveyor worker -i conveyor_sqlite_adapter:app -q default -c 50
           --fetch 300 --prefetch 600 --processes 2``: two worker processes under
           one supervisor, each one asyncio loop with 50 slots and up to 600 jobs
           claimed ahead, 300 a claim (larger batches than the other stores'
           adapters: each is one write transaction of the file); the job bodies
           are the async ones of ``peers.common``.
"""

from __future__ import annotations

import contextlib
import os

from conveyor_shared import BATCH_WORKER_FLAGS, ConveyorCalls, register_tasks
from peers import common

from conveyor import Conveyor

DB_PATH = os.path.join(common.SCRATCH, "conveyor-bench.db")
SYNCHRONOUS = os.environ.get("CONVEYOR_BENCH_SYNCHRONOUS", "normal")
URL = f"sqlite:///{DB_PATH}?synchronous={SYNCHRONOUS}"
os.makedirs(common.SCRATCH, exist_ok=True)

app = Conveyor(URL)
TASKS = register_tasks(app, common)


class Adapter(ConveyorCalls, common.Adapter):
    peer = "conveyor_sqlite"
    backend = "sqlite"
    app = app
    tasks = TASKS
    module = "conveyor_sqlite_adapter"
    worker_flags = BATCH_WORKER_FLAGS

    def reset(self):
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(DB_PATH + suffix)
