"""Task code that changes what the worker writes back about its job: its arguments,
its own step. The job's stored arguments stay as enqueued, and what no store keeps
fails that job saying why, never the worker. The same on every store."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from conveyor import Conveyor, JobFailed, State, current_context
from conveyor.job import Job
from conveyor.worker.runtime import Worker

from .test_runtime import run_with_worker


@pytest.fixture
def app(app_on_each_store: Conveyor) -> Conveyor:
    return app_on_each_store


async def _progress_of(handle: Any, completed: float) -> None:
    """Until the store has the job's progress at ``completed`` (saved while it runs)."""
    deadline = asyncio.get_running_loop().time() + 20
    while (await handle.refresh_async()).job.progress.completed != completed:
        assert asyncio.get_running_loop().time() < deadline, "progress never saved"
        await asyncio.sleep(0.05)


def test_a_task_that_changes_its_arguments_changes_nothing_stored(app: Conveyor) -> None:
    release = asyncio.Event()

    # Given tasks that put a set (not JSON) into the dict they were given: an async one
    # that reports progress and runs on, and a sync one that returns at once
    @app.task(name="reports", max_attempts=1)
    async def reports(d: dict[str, Any]) -> str:
        d["seen"] = {1, 2}
        current_context().progress(1, 2, "half")
        await release.wait()
        return "reported"

    @app.task(name="returns", max_attempts=1)
    def returns(d: dict[str, Any], *, more: list[Any]) -> str:
        d["seen"] = {1, 2}
        more.append({3})
        return "returned"

    async def scenario(worker: Worker) -> list[Job]:
        long = await reports.enqueue_async({"n": 1})
        short = await returns.enqueue_async({"n": 2}, more=[[]])
        # When the worker saves the first one's progress while it runs
        await _progress_of(long, 1)
        release.set()
        results = [await long.wait_async(20), await short.wait_async(20)]
        assert results == ["reported", "returned"]
        return [(await h.refresh_async()).job for h in (long, short)]

    long, short = run_with_worker(app, scenario)

    # Then both succeeded, their arguments stored as enqueued
    assert (long.state, long.steps[0].args) == (State.SUCCEEDED, [{"n": 1}])
    assert (short.state, short.steps[0].args) == (State.SUCCEEDED, [{"n": 2}])
    assert short.steps[0].kwargs == {"more": [[]]}


def test_a_job_whose_progress_the_store_refuses_ends_poisoned_saying_why(
    app: Conveyor,
) -> None:
    # Given a task that puts what no store keeps into its own step's arguments (not
    # its copy of them), reports progress and runs on
    @app.task(name="spoils", max_attempts=3)
    async def spoils(d: dict[str, Any]) -> None:
        current_context().step.args[0]["seen"] = {1, 2}
        current_context().progress(1, 2)
        await asyncio.sleep(60)

    @app.task(name="fine")
    async def fine(i: int) -> int:
        return i

    async def scenario(worker: Worker) -> tuple[Job, int]:
        # When the worker tries to save its progress
        spoiled = await spoils.enqueue_async({"n": 1})
        with pytest.raises(JobFailed):
            await spoiled.wait_async(20)
        # And goes on with other jobs
        after = await fine.enqueue_async(7)
        return (await spoiled.refresh_async()).job, await after.wait_async(20)

    job, after = run_with_worker(app, scenario)

    # Then the job is poisoned at once (no retry can store it), the store's refusal as
    # its error, its arguments as enqueued; the worker ran the next job
    assert (job.state, job.attempts) == (State.POISONED, 1)
    assert [e["type"] for e in job.errors] == ["TypeError"]
    assert (job.last_error or "").startswith("the outcome could not be stored: ")
    assert "set" in (job.last_error or "")
    assert job.steps[0].args == [{"n": 1}]
    assert after == 7


def test_a_spoiled_job_given_back_at_shutdown_stops_no_shutdown(app: Conveyor) -> None:
    started = asyncio.Event()

    # Given a running task that spoiled its own step's arguments (no progress saved)
    @app.task(name="spoils_and_waits")
    async def spoils_and_waits() -> None:
        current_context().step.args.append({1, 2})
        started.set()
        await asyncio.sleep(60)

    @app.task(name="waits_its_turn")
    async def waits_its_turn() -> None: ...

    async def scenario(worker: Worker) -> Any:
        handle = await spoils_and_waits.enqueue_async()
        await started.wait()
        behind = await waits_its_turn.enqueue_async()
        while not worker._held:  # claimed ahead (prefetch), not started: one slot
            await asyncio.sleep(0.01)
        return handle, behind

    # When the worker stops at once and gives both back (the store refuses to write
    # the first)
    handle, behind = run_with_worker(app, scenario, shutdown_timeout=0, concurrency=1, prefetch=1)

    # Then the shutdown ran to its end: the worker unregistered; the spoiled job is left
    # to its lease (still running in the store), not lost; the other is given back
    # without an attempt spent, as if the spoiled one were not there
    async def after() -> tuple[list[Any], Job, Job]:
        backend = await app.backend()
        return (
            await backend.list_workers(),
            await backend.get(handle.id),
            await backend.get(behind.id),
        )

    workers, job, other = app.portal_call(after())
    assert workers == []
    assert job.state is State.RUNNING
    assert (other.state, other.attempts) == (State.QUEUED, 0)
