"""A running worker feeds the dashboard's chart: its runs are counted per minute, and its
lease keeper samples the depth of every queue (Backend.sample_depth)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from conveyor import Conveyor
from conveyor.backends.base import MinuteCount
from conveyor.worker.config import WorkerConfig
from conveyor.worker.runtime import Worker


def test_a_worker_counts_its_runs_and_samples_the_depth_of_every_queue(tmp_path: Path) -> None:
    app = Conveyor(f"sqlite:///{tmp_path}/jobs.db")

    @app.task(name="noop")
    def noop(i: int) -> int:
        return i

    async def main() -> list[MinuteCount]:
        # Given three jobs for the worker, and two waiting in a queue it does not serve
        backend = await app.backend()
        for i in range(3):
            await noop.enqueue_async(i)
        for i in range(2):
            await noop.with_options(queue="elsewhere").enqueue_async(i)
        start = await backend.now()

        # When a worker runs (its lease keeper looks every 0.1 s with this lease)
        worker = Worker(app, WorkerConfig(queues=["default"], lease=0.3, interval=0.1))
        running = asyncio.create_task(worker.run())
        try:
            for _ in range(100):
                rows = await backend.minute_counts(start - 60)
                if sum(r.processed for r in rows) == 3 and any(r.depth for r in rows):
                    break
                await asyncio.sleep(0.05)
        finally:
            worker.request_stop()
            await running
            await app.aclose()
        return rows

    # Then its runs are counted, and each queue has a depth: the waiting jobs of the
    # one it does not serve
    rows = asyncio.run(main())
    assert sum(r.processed for r in rows if r.queue == "default") == 3
    depths = {r.queue: r.depth for r in rows if r.depth is not None}
    assert depths["elsewhere"] == 2
    assert depths["default"] in (0, 1, 2, 3)  # sampled while the worker drained it
