"""A value past one of PostgreSQL's own limits (a jsonb value over 256 MB) is refused
for good: the job it belongs to ends poisoned, saying why, instead of its write being
tried again for ever as if the server were away (docs/guide.md, Store trouble)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from conveyor import Conveyor, JobFailed, State
from conveyor.job import Job
from conveyor.worker.config import WorkerConfig
from conveyor.worker.runtime import Worker


def test_a_result_past_the_servers_limit_poisons_its_job_and_no_other(pg_url: str) -> None:
    app = Conveyor(pg_url)

    @app.task(name="huge_result", max_attempts=3)
    def huge_result() -> str:
        # Kept twice in the outcome (the step's result and the job's): 280 MB of jsonb.
        return "x" * 140_000_000

    @app.task(name="plain")
    def plain(i: int) -> int:
        return i

    async def scenario(worker: Worker) -> tuple[Job, list[Job]]:
        huge = await huge_result.enqueue_async()
        others = [await plain.enqueue_async(i) for i in range(5)]
        with pytest.raises(JobFailed):
            await huge.wait_async(60)
        for other in others:
            await other.wait_async(60)
        return (await huge.refresh_async()).job, [(await o.refresh_async()).job for o in others]

    # Given a task whose result the server cannot keep, and plain jobs beside it
    # When one worker runs them all
    huge, others = asyncio.run(_with_worker(app, scenario))

    # Then the job ends poisoned at once (a retry could not be stored either), with the
    # server's reason as its error, and the plain jobs succeeded
    assert huge.state is State.POISONED
    assert huge.attempts == 1
    assert huge.errors[-1]["message"].startswith("the outcome could not be stored: ")
    assert "268435455" in huge.errors[-1]["message"]
    assert [o.state for o in others] == [State.SUCCEEDED] * 5


async def _with_worker(app: Conveyor, scenario: Callable[[Worker], Awaitable[Any]]) -> Any:
    """Run ``scenario`` beside a worker, then stop the worker now: an outcome it still
    tries to write must not hold up the test (the defect this file is about did)."""
    worker = Worker(app, WorkerConfig(lease=2.0, interval=0.1, concurrency=6))
    running = asyncio.create_task(worker.run())
    try:
        return await asyncio.wait_for(scenario(worker), 90)
    finally:
        worker.request_stop()
        worker.request_stop()
        await running
        await app.aclose()
