"""The worker when things go wrong: shutdown with long jobs, tasks that exit the
interpreter, bad retry delays, bad progress, store errors in the background tasks."""

from __future__ import annotations

import asyncio
import math
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conveyor import Conveyor, InvalidJob, JobFailed, Retry, RetryPolicy, State, current_context
from conveyor.backends.sqlite import SQLiteBackend
from conveyor.job import Job, new_job_id
from conveyor.worker.runtime import Worker, WorkerConfig

from .test_runtime import run_with_worker


@pytest.fixture
def app(tmp_path: Path) -> Conveyor:
    return Conveyor(f"sqlite:///{tmp_path}/jobs.db")


def test_leases_are_kept_while_shutdown_waits_for_running_jobs(app: Conveyor) -> None:
    # Given a job that runs longer than its lease, on a worker asked to stop meanwhile
    runs: list[int] = []

    @app.task(name="long")
    async def long() -> str:
        runs.append(current_context().attempt)
        await asyncio.sleep(1.5)
        return "done"

    async def scenario() -> Job:
        worker = Worker(app, WorkerConfig(lease=0.6, interval=0.1, shutdown_timeout=5))
        running = asyncio.create_task(worker.run())
        handle = await long.enqueue_async()
        while not runs:
            await asyncio.sleep(0.01)
        worker.request_stop()
        # When another worker looks for expired leases during the shutdown
        other = SQLiteBackend(app.url)
        await other.open()
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            assert await other.recover_expired() == []
            await asyncio.sleep(0.1)
        await running
        job = await other.get(handle.id)
        await other.close()
        await app.aclose()
        return job

    # Then the job was never taken from it, and it finished once
    job = asyncio.run(scenario())
    assert job.state is State.SUCCEEDED
    assert (job.attempts, runs) == (1, [1])


def test_a_task_that_exits_the_interpreter_fails_its_attempt_not_the_worker(
    app: Conveyor,
) -> None:
    @app.task(name="exits", max_attempts=1)
    def exits() -> None:
        sys.exit(3)

    @app.task(name="interrupts", max_attempts=1)
    async def interrupts() -> None:
        raise KeyboardInterrupt

    @app.task(name="fine")
    def fine() -> str:
        return "still working"

    async def scenario(worker: Worker) -> str:
        with pytest.raises(JobFailed, match="SystemExit"):
            await (await exits.enqueue_async()).wait_async(10)
        with pytest.raises(JobFailed, match="KeyboardInterrupt"):
            await (await interrupts.enqueue_async()).wait_async(10)
        return str(await (await fine.enqueue_async()).wait_async(10))

    assert run_with_worker(app, scenario) == "still working"


@pytest.mark.parametrize("delay", [math.inf, math.nan, -1])
def test_retry_refuses_a_delay_that_is_not_a_finite_number(delay: float) -> None:
    with pytest.raises(ValueError, match="delay"):
        Retry(delay=delay)


@pytest.mark.parametrize("field", ["exponent", "base", "max_delay", "jitter"])
def test_retry_policy_refuses_non_finite_numbers(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        RetryPolicy(**{field: math.nan})
    with pytest.raises(ValueError, match=field):
        RetryPolicy(**{field: math.inf})


@pytest.mark.parametrize(
    "options", [{"delay": math.inf}, {"run_at": math.nan}, {"delay": math.nan}]
)
def test_enqueue_refuses_non_finite_times(app: Conveyor, options: dict[str, Any]) -> None:
    @app.task(name="t")
    def t() -> None: ...

    with pytest.raises(InvalidJob) as info:
        t.with_options(**options).enqueue()
    assert info.value.field in ("delay", "run_at")


@pytest.mark.parametrize("args", [(object(),), ("three", 10), (1, 10, object()), (math.nan, 10)])
def test_progress_refuses_values_that_are_not_json_at_the_call(
    app: Conveyor, args: tuple[Any, ...]
) -> None:
    @app.task(name="bad_progress", max_attempts=1)
    def bad_progress() -> None:
        current_context().progress(*args)

    async def scenario(worker: Worker) -> None:
        with pytest.raises(JobFailed, match="progress"):
            await (await bad_progress.enqueue_async()).wait_async(10)

    run_with_worker(app, scenario)


def test_shutdown_timeout_zero_releases_running_jobs_at_once(app: Conveyor) -> None:
    @app.task(name="sleepy")
    async def sleepy() -> None:
        await asyncio.sleep(30)

    async def scenario() -> tuple[float, Job]:
        worker = Worker(app, WorkerConfig(lease=5, interval=0.1, shutdown_timeout=0))
        running = asyncio.create_task(worker.run())
        handle = await sleepy.enqueue_async()
        while (await handle.refresh_async()).state is not State.RUNNING:
            await asyncio.sleep(0.02)
        started = time.monotonic()
        worker.request_stop()
        await running
        took = time.monotonic() - started
        job = (await handle.refresh_async()).job
        await app.aclose()
        return took, job

    took, job = asyncio.run(scenario())
    assert took < 2
    assert (job.state, job.attempts) == (State.QUEUED, 0)


def test_a_process_task_may_print_to_stdout(app: Conveyor) -> None:
    from dataclasses import replace

    printer = replace(app.get_task("builtins:print"), executor="process")
    handle = printer.enqueue("this line goes to the worker's output, not into the result")

    async def scenario(worker: Worker) -> Any:
        return await handle.wait_async(20)

    assert run_with_worker(app, scenario) is None


def test_enqueue_many_validates_prepared_jobs(app: Conveyor) -> None:
    broken = Job(id=new_job_id(), queue="default", steps=[])

    with pytest.raises(InvalidJob, match="steps"):
        app.enqueue_many([broken])


def test_a_timed_out_sync_task_holds_its_slot_until_its_thread_returns(app: Conveyor) -> None:
    # Given one slot, a sync task that outlives its timeout, and a quick job behind it
    @app.task(name="stuck", timeout=0.2, max_attempts=1)
    def stuck() -> None:
        time.sleep(1.0)

    @app.task(name="quick", timeout=0.5)
    def quick() -> str:
        return "ran"

    async def scenario(worker: Worker) -> str:
        first = await stuck.enqueue_async()
        with pytest.raises(JobFailed, match="timed out"):
            await first.wait_async(10)
        second = await quick.enqueue_async()
        # Then the quick job waits for the thread instead of timing out behind it
        return str(await second.wait_async(10))

    assert run_with_worker(app, scenario, concurrency=1) == "ran"
