"""The worker when things go wrong: shutdown with long jobs, tasks that exit the
interpreter, bad retry delays, bad progress, store errors in the background tasks."""

from __future__ import annotations

import asyncio
import contextlib
import math
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from conveyor import Conveyor, InvalidJob, JobFailed, Retry, RetryPolicy, State, current_context
from conveyor.backends.sqlite import SQLiteBackend
from conveyor.context import TaskContext
from conveyor.job import Job, new_job_id
from conveyor.testing.harness import make_job
from conveyor.worker.config import WorkerConfig
from conveyor.worker.running import Running
from conveyor.worker.runtime import Worker

from .test_runtime import FAST_RETRY, run_with_worker


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


def test_a_cancelled_error_of_the_tasks_own_making_fails_its_attempt(app: Conveyor) -> None:
    runs: list[str] = []

    # Given tasks whose own code cancels them: an async task cancelling itself, an
    # error hook raising CancelledError, and a task cancelling itself as it returns
    @app.task(name="cancels_itself", max_attempts=2, retry=FAST_RETRY)
    async def cancels_itself() -> None:
        runs.append("cancels_itself")
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        await asyncio.sleep(1)

    async def raise_cancelled(ctx: TaskContext, exc: BaseException) -> None:
        raise asyncio.CancelledError

    @app.task(name="hook_cancels", max_attempts=2, retry=FAST_RETRY, error=raise_cancelled)
    def hook_cancels() -> None:
        runs.append("hook_cancels")
        raise ValueError("task boom")

    @app.task(name="cancels_on_return", max_attempts=2, retry=FAST_RETRY)
    async def cancels_on_return() -> str:
        runs.append("cancels_on_return")
        task = asyncio.current_task()
        assert task is not None
        task.cancel()  # delivered to the worker's code after the task returned
        return "done"

    async def scenario(worker: Worker) -> list[Job]:
        # When they run
        handles = [
            await cancels_itself.enqueue_async(),
            await hook_cancels.enqueue_async(),
            await cancels_on_return.enqueue_async(),
        ]
        for handle in handles:
            with contextlib.suppress(JobFailed):
                await handle.wait_async(15)
        return [(await h.refresh_async()).job for h in handles]

    own, hooked, on_return = run_with_worker(app, scenario)

    # Then each failed attempt counted (none was given back as if the worker had
    # stopped it): poisoned after two runs, each run's error in the history
    assert (own.state, own.attempts) == (State.POISONED, 2)
    assert [e["type"] for e in own.errors] == ["CancelledError", "CancelledError"]
    assert (hooked.state, hooked.attempts) == (State.POISONED, 2)
    assert [e["type"] for e in hooked.errors] == ["ValueError", "ValueError"]
    # And the run cancelled as it returned lost its outcome, not its step: the attempt
    # failed, saying why, and the retry went on after the finished step
    assert (on_return.state, on_return.attempts, on_return.result) == (State.SUCCEEDED, 2, "done")
    assert [e["message"] for e in on_return.errors] == [
        "the run was cancelled by its own code, not the worker"
    ]
    assert sorted(runs) == sorted(["cancels_itself", "hook_cancels"] * 2 + ["cancels_on_return"])


class Unprintable(Exception):
    def __str__(self) -> str:
        raise ValueError("no text for this one")


def test_an_exception_whose_str_raises_fails_its_attempt_like_any_other(app: Conveyor) -> None:
    seen: list[str] = []

    @app.task(name="odd", max_attempts=1)
    async def odd() -> None:
        raise Unprintable

    @odd.on("error")
    def on_error(ctx: TaskContext, exc: BaseException) -> None:
        seen.append(type(exc).__name__)

    async def scenario(worker: Worker) -> Job:
        handle = await odd.enqueue_async()
        with pytest.raises(JobFailed):
            await handle.wait_async(10)
        return (await handle.refresh_async()).job

    # Given a task whose exception cannot be turned into text; When it runs
    job = run_with_worker(app, scenario)

    # Then its attempt failed as a task error: hooks ran, the step failed, the error
    # names the exception's type and says its text could not be had
    assert job.state is State.POISONED
    assert seen == ["Unprintable"]
    assert job.steps[0].state == "failed"
    assert job.errors[-1]["type"] == "Unprintable"
    assert job.last_error == "Unprintable: <str() failed: ValueError>"
    assert "Unprintable" in job.errors[-1]["traceback"]


class Verbose(Exception):
    def __str__(self) -> str:
        return "too much to say " * 125_000  # 2,000,000 characters


def test_an_exception_with_a_huge_message_is_recorded_cut_short(
    app_on_each_store: Conveyor,
) -> None:
    app = app_on_each_store

    @app.task(name="verbose", max_attempts=2, retry=FAST_RETRY)
    def verbose() -> None:
        raise Verbose

    async def scenario(worker: Worker) -> Job:
        handle = await verbose.enqueue_async()
        with pytest.raises(JobFailed):
            await handle.wait_async(20)
        return (await handle.refresh_async()).job

    # Given a task whose exception's text is 2,000,000 characters; When it runs twice
    job = run_with_worker(app, scenario)

    # Then each attempt's error keeps the head of the text and says how much was cut,
    # as does the step's last error: every attempt used to store all of it, twice (a
    # job of 100 MB messages went past PostgreSQL's limit for a jsonb value at its
    # third attempt, and its outcome was retried for ever as if the store were away)
    assert job.state is State.POISONED
    assert [e["type"] for e in job.errors] == ["Verbose", "Verbose"]
    for text in (job.errors[0]["message"], job.errors[1]["message"], job.last_error):
        assert text.startswith("Verbose: too much to say too much")
        assert len(text) <= 10_000  # the note included: the dashboard shows 10,000
        assert text.endswith("more characters)")
    assert all(len(e["traceback"]) <= 20_000 for e in job.errors)


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


@pytest.mark.parametrize("stop", ["shutdown", "cancel"])
def test_a_middleware_that_swallows_the_workers_stop_does_not_make_the_job_succeed(
    app: Conveyor, stop: str
) -> None:
    # Given a middleware that catches everything, the worker's own cancellation included
    @app.middleware
    async def swallows(ctx: TaskContext, call_next: Any) -> Any:
        try:
            return await call_next()
        except BaseException:
            return "swallowed"

    @app.task(name="long")
    async def long() -> str:
        await asyncio.sleep(30)
        return "finished"

    async def scenario() -> Job:
        worker = Worker(app, WorkerConfig(lease=5, interval=0.1, shutdown_timeout=0))
        running = asyncio.create_task(worker.run())
        handle = await long.enqueue_async()
        while (await handle.refresh_async()).state is not State.RUNNING:
            await asyncio.sleep(0.02)
        if stop == "cancel":
            await handle.cancel_async()
            while not (await handle.refresh_async()).state.is_final:
                await asyncio.sleep(0.05)
        worker.request_stop()
        await running
        job = (await handle.refresh_async()).job
        await app.aclose()
        return job

    # When the worker stops the run (a shutdown past its grace, or a cancel request)
    job = asyncio.run(scenario())

    # Then the job is given back, or cancelled, as without the middleware: its task did
    # not finish, and it had ended succeeded with the middleware's "swallowed"
    if stop == "shutdown":
        assert (job.state, job.attempts, job.result) == (State.QUEUED, 0, None)
    else:
        assert (job.state, job.result) == (State.CANCELLED, None)
    assert job.steps[0].state != "succeeded"


@pytest.mark.parametrize(
    ("hook", "max_attempts", "ends"),
    [("error", 3, State.RETRYING), ("failure", 1, State.POISONED)],
)
def test_a_hook_that_hangs_as_the_worker_stops_loses_no_failed_attempt(
    app: Conveyor, hook: str, max_attempts: int, ends: State
) -> None:
    # Given a task that fails, with an error or failure hook that never returns
    hung = asyncio.Event()

    async def hangs(ctx: TaskContext, exc: BaseException) -> None:
        hung.set()
        await asyncio.sleep(3600)

    @app.task(name="fails_and_hangs", max_attempts=max_attempts, retry=FAST_RETRY)
    def fails_and_hangs() -> None:
        raise ValueError("the task's own failure")

    fails_and_hangs.on(hook)(hangs)

    async def scenario() -> Job:
        worker = Worker(app, WorkerConfig(lease=5, interval=0.1, shutdown_timeout=0))
        running = asyncio.create_task(worker.run())
        handle = await fails_and_hangs.enqueue_async()
        await asyncio.wait_for(hung.wait(), 10)
        # When the worker stops while the hook hangs (its grace is over at once)
        worker.request_stop()
        await running
        job = (await handle.refresh_async()).job
        await app.aclose()
        return job

    job = asyncio.run(scenario())

    # Then the failed attempt is recorded as decided, retried or poisoned, with its
    # error: it had been given back as if it had not run, its error lost, and a job
    # whose failure hook always hangs was never poisoned
    assert (job.state, job.attempts) == (ends, 1)
    assert [e["message"] for e in job.errors] == ["ValueError: the task's own failure"]


@pytest.mark.parametrize("hook", ["after", "success"])
def test_a_hook_that_hangs_after_the_work_was_done_does_not_have_it_done_again(
    app: Conveyor, hook: str
) -> None:
    # Given a task that does its work and returns, with a hook after it that never returns
    runs: list[int] = []
    hung = asyncio.Event()

    async def hangs(ctx: TaskContext, *rest: Any) -> None:
        hung.set()
        await asyncio.sleep(3600)

    @app.task(name="works_then_hangs")
    def works_then_hangs(i: int) -> int:
        runs.append(i)
        return i * 2

    works_then_hangs.on(hook)(hangs)

    async def scenario() -> Job:
        worker = Worker(app, WorkerConfig(lease=5, interval=0.1, shutdown_timeout=0))
        running = asyncio.create_task(worker.run())
        handle = await works_then_hangs.enqueue_async(21)
        await asyncio.wait_for(hung.wait(), 10)
        # When the worker stops while the hook hangs (its grace is over at once)
        worker.request_stop()
        await running
        job = (await handle.refresh_async()).job
        await app.aclose()
        return job

    job = asyncio.run(scenario())

    # Then the job succeeded with the task's result, having run once: it had been given
    # back as if nothing had run, to run (and do its work) again elsewhere
    assert (job.state, job.result, job.attempts) == (State.SUCCEEDED, 42, 1)
    assert job.steps[0].state == "succeeded"
    assert runs == [21]


def test_a_process_task_may_print_to_stdout(app: Conveyor) -> None:
    # (registered with its executor: the worker runs a task as its app registered it)
    printer = app.task(executor="process")(print)
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


def test_a_late_answer_about_a_lost_lease_spares_a_newer_claim_of_the_job(
    app: Conveyor,
) -> None:
    """A lease extension asks about the runs of the moment; on a slow or returning store
    the answer may come after the job, its lease lost, was claimed again here. That
    newer run, and a newer held claim, hold another lease: the answer is not about them."""

    async def scenario() -> tuple[list[str], bool, bool, bool]:
        worker = Worker(app, WorkerConfig(lease=30.0))
        backend = await app.backend()
        await backend.enqueue([make_job(), make_job()])
        try:
            # Given a run and a held claim of this worker, with a short lease
            claimed = await backend.claim(["default"], worker.id, 2, 0.05)
            old_run, old_held = claimed

            def run_of(job: Job) -> Running:
                ctx = TaskContext(job=job, step=job.steps[0], worker_id=worker.id)
                task = asyncio.create_task(asyncio.sleep(30))
                return Running(job, ctx, task, time.monotonic())

            worker._running[old_run.id] = run_of(old_run)
            worker._held.append(old_held)
            # And a lease extension asking about them, whose answer comes late: both
            # leases ran out and were taken back meanwhile
            asked = worker._asked()
            await asyncio.sleep(0.1)
            assert len(await backend.recover_expired()) == 2
            status = await backend.extend([old_run.id, old_held.id], worker.id, 30.0)

            # When the answer arrives after the worker claimed both jobs again
            newer = run_of(replace(old_run, attempts=old_run.attempts + 1))
            worker._running[old_run.id] = newer
            worker._held.clear()
            worker._held.append(replace(old_held, attempts=old_held.attempts + 1))
            worker._drop_held(set(status.cancelling), set(status.lost), asked)
            worker._stop_running(status, asked)
            await asyncio.sleep(0)
            spared = not newer.task.cancelled() and len(worker._held) == 1

            # And (for contrast) an answer about the newer run itself
            worker._stop_running(status, worker._asked())
            await asyncio.sleep(0)
            newer_stopped = newer.task.cancelled()
            worker._drop_held(set(status.cancelling), set(status.lost), worker._asked())
            return status.lost, spared, newer_stopped, not worker._held
        finally:
            for running in worker._running.values():
                running.task.cancel()
            await app.aclose()

    lost, spared, newer_stopped, held_dropped = asyncio.run(scenario())

    # Then the late answer said both leases were lost, and stopped neither newer claim;
    # the same answer about the newer ones stops them
    assert len(lost) == 2
    assert spared
    assert newer_stopped and held_dropped


def test_the_first_stop_request_during_a_max_jobs_recycle_is_the_graceful_one(
    app: Conveyor,
) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    @app.task(name="long")
    async def long() -> str:
        started.set()
        await release.wait()
        return "finished"

    async def scenario() -> Job:
        # Given a worker recycling after its one job (--max-jobs 1), the job still running
        worker = Worker(app, WorkerConfig(lease=2.0, interval=0.1, max_jobs=1))
        running = asyncio.create_task(worker.run())
        handle = await long.enqueue_async()
        await started.wait()
        while not worker.stopping:
            await asyncio.sleep(0.01)
        # When the first stop request (a SIGTERM's) arrives, then the job can finish
        worker.request_stop()
        release.set()
        await running
        job = (await handle.refresh_async()).job
        await app.aclose()
        return job

    job = asyncio.run(asyncio.wait_for(scenario(), 30))

    # Then the request was the graceful one: the job finished, not cancelled and given back
    assert (job.state, job.result, job.attempts) == (State.SUCCEEDED, "finished", 1)
