"""The worker runtime in-process, on a real SQLite file: outcomes, hooks, middleware,
timeouts, cancellation, progress, multi-step resume."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from conveyor import (
    Cancel,
    Conveyor,
    JobCancelled,
    JobFailed,
    Poison,
    Retry,
    State,
    Step,
    current_context,
)
from conveyor.job import MAX_DELAY_S, Job, RetryPolicy, new_job_id
from conveyor.worker.config import WorkerConfig
from conveyor.worker.runtime import Worker
from tests.worker import process_tasks

FAST_RETRY = {"exponent": 0, "base": 0, "jitter": 0}  # retry after 1 s ** 0 = 1 s


@pytest.fixture
def app(tmp_path: Path) -> Conveyor:
    return Conveyor(f"sqlite:///{tmp_path}/jobs.db")


def run_with_worker(
    app: Conveyor, scenario: Callable[[Worker], Awaitable[Any]], **config: Any
) -> Any:
    """Run ``scenario`` while a worker runs in the same loop; stop the worker after."""

    async def main() -> Any:
        worker = Worker(app, WorkerConfig(**{"lease": 2.0, "interval": 0.1, **config}))
        running = asyncio.create_task(worker.run())
        try:
            return await asyncio.wait_for(scenario(worker), 30)
        finally:
            worker.request_stop()
            await running
            await app.aclose()

    return asyncio.run(main())


def test_result_of_a_sync_and_an_async_task(app: Conveyor) -> None:
    @app.task(name="add")
    def add(a: int, b: int) -> int:
        return a + b

    @app.task(name="mul")
    async def mul(a: int, b: int) -> int:
        return a * b

    async def scenario(worker: Worker) -> tuple[int, int]:
        one = await add.enqueue_async(2, 3)
        two = await mul.enqueue_async(2, 3)
        return await one.wait_async(10), await two.wait_async(10)

    assert run_with_worker(app, scenario) == (5, 6)


def test_priority_then_fifo(app: Conveyor) -> None:
    order: list[str] = []

    @app.task(name="note")
    def note(tag: str) -> None:
        order.append(tag)

    note.with_options(priority="low").enqueue("low")
    note.enqueue("normal-1")
    note.with_options(priority="high").enqueue("high")
    note.enqueue("normal-2")
    last = note.with_options(priority="bulk").enqueue("bulk")

    run_with_worker(app, lambda w: last.wait_async(10), concurrency=1)
    assert order == ["high", "normal-1", "normal-2", "low", "bulk"]


def test_hooks_run_in_order(app: Conveyor) -> None:
    events: list[str] = []

    def hook(name: str) -> Callable[..., None]:
        return lambda ctx, *rest: events.append(name)

    @app.task(name="ok", before=hook("before"), after=hook("after"), success=hook("success"))
    def ok() -> str:
        events.append("run")
        return "fine"

    @app.task(
        name="bad", max_attempts=2, retry=FAST_RETRY, error=hook("error"), failure=hook("failure")
    )
    def bad() -> None:
        raise ValueError("bad")

    async def scenario(worker: Worker) -> None:
        await (await ok.enqueue_async()).wait_async(10)
        with pytest.raises(JobFailed, match="ValueError: bad"):
            await (await bad.enqueue_async()).wait_async(10)

    run_with_worker(app, scenario)
    assert events == ["before", "run", "after", "success", "error", "error", "failure"]


def test_middleware_wraps_every_run_and_reporter_sees_failures(app: Conveyor) -> None:
    seen: list[str] = []
    reported: list[str] = []

    @app.middleware
    async def outer(ctx: Any, call_next: Callable[[], Awaitable[Any]]) -> Any:
        seen.append(f"outer>{ctx.job.task}")
        result = await call_next()
        seen.append("outer<")
        return result

    @app.middleware
    async def inner(ctx: Any, call_next: Callable[[], Awaitable[Any]]) -> Any:
        seen.append("inner>")
        return await call_next()

    app.reporter = lambda exc, ctx: reported.append(str(exc))

    @app.task(name="fine")
    def fine() -> int:
        return 1

    @app.task(name="broken", max_attempts=1)
    def broken() -> None:
        raise KeyError("missing")

    async def scenario(worker: Worker) -> None:
        assert await (await fine.enqueue_async()).wait_async(10) == 1
        with pytest.raises(JobFailed):
            await (await broken.enqueue_async()).wait_async(10)

    run_with_worker(app, scenario)
    assert seen[:3] == ["outer>fine", "inner>", "outer<"]
    assert reported == ["'missing'"]


def test_retry_poison_and_cancel_raised_by_task_code(app: Conveyor) -> None:
    @app.task(name="snooze")
    def snooze() -> str:
        if current_context().attempt < 3:
            raise Retry(delay=0.1)
        return f"attempt {current_context().attempt}"

    @app.task(name="poison", max_attempts=10)
    def poison() -> None:
        raise Poison("bad input, do not retry")

    @app.task(name="cancel")
    def cancel() -> None:
        raise Cancel("not needed any more")

    async def scenario(worker: Worker) -> None:
        assert await (await snooze.enqueue_async()).wait_async(10) == "attempt 3"
        poisoned = await poison.enqueue_async()
        with pytest.raises(JobFailed, match="do not retry"):
            await poisoned.wait_async(10)
        assert poisoned.job.attempts == 1
        with pytest.raises(JobCancelled, match="not needed"):
            await (await cancel.enqueue_async()).wait_async(10)

    run_with_worker(app, scenario)


def test_timeouts_async_and_thread(app: Conveyor) -> None:
    @app.task(name="slow_async", timeout=0.2, max_attempts=1)
    async def slow_async() -> None:
        await asyncio.sleep(10)

    @app.task(name="slow_sync", timeout=0.2, max_attempts=1)
    def slow_sync() -> None:
        time.sleep(1)

    async def scenario(worker: Worker) -> None:
        started = time.monotonic()
        with pytest.raises(JobFailed, match=r"timed out after 0\.2 s"):
            await (await slow_async.enqueue_async()).wait_async(10)
        with pytest.raises(JobFailed, match=r"timed out after 0\.2 s"):
            await (await slow_sync.enqueue_async()).wait_async(10)
        assert time.monotonic() - started < 3

    run_with_worker(app, scenario)


def test_an_async_task_that_blocks_the_loop_is_named_in_a_warning(
    app: Conveyor, caplog: pytest.LogCaptureFixture
) -> None:
    # Given an async task that calls blocking code (its timeout cannot stop it: the loop
    # that would cancel it is the one blocked), and a well-behaved one
    @app.task(name="blocks_the_loop", timeout=0.2, max_attempts=1)
    async def blocks_the_loop() -> None:
        time.sleep(2)

    @app.task(name="behaves")
    async def behaves() -> None:
        await asyncio.sleep(0)

    async def scenario(worker: Worker) -> str:
        await (await behaves.enqueue_async()).wait_async(10)
        job = await blocks_the_loop.enqueue_async()
        with contextlib.suppress(JobFailed):
            await job.wait_async(10)
        return job.id

    # When a worker runs them
    with caplog.at_level(logging.WARNING, logger="conveyor.worker"):
        job_id = run_with_worker(app, scenario)

    # Then the worker says its loop stood still, and which job was running on it
    blocked = [r.getMessage() for r in caplog.records if "event loop was blocked" in r.getMessage()]
    assert blocked, [r.getMessage() for r in caplog.records]
    assert f"{job_id} (blocks_the_loop)" in blocked[0]
    assert "behaves" not in blocked[0]


def test_process_executor_runs_in_a_child_and_kills_it_at_the_timeout(app: Conveyor) -> None:
    # Given tasks registered to run in a child process (which finds them by import path)
    dumps = app.task(executor="process")(json.dumps)
    sleep = app.task(executor="process")(time.sleep)
    pid = app.task(executor="process")(process_tasks.pid)
    ok = dumps.enqueue([1, 2])
    child = pid.enqueue()
    slow = sleep.with_options(timeout=0.5, max_attempts=1).enqueue(30)

    async def scenario(worker: Worker) -> None:
        # Then the result comes back from the child as JSON
        assert await ok.wait_async(10) == "[1, 2]"
        assert await child.wait_async(10) != os.getpid()
        # And a child past its timeout is killed: the job fails at once
        started = time.monotonic()
        with pytest.raises(JobFailed, match=r"timed out after 0\.5 s"):
            await slow.wait_async(10)
        assert time.monotonic() - started < 5

    run_with_worker(app, scenario)


def test_a_process_task_steers_its_job_with_retry_poison_and_cancel(app: Conveyor) -> None:
    # Given process tasks that raise conveyor's instructions in their child
    def in_a_child(fn: Callable[[], None]) -> Any:
        return app.task(executor="process", max_attempts=3)(fn)

    poisoned = in_a_child(process_tasks.poison).enqueue()
    snoozed = in_a_child(process_tasks.snooze).enqueue()
    cancelled = in_a_child(process_tasks.cancel).enqueue()

    async def scenario(worker: Worker) -> None:
        # Then each is obeyed as from any task: poisoned after one attempt,
        with pytest.raises(JobFailed, match="invalid address"):
            await poisoned.wait_async(10)
        job = (await poisoned.refresh_async()).job
        assert (job.state, job.attempts) == (State.POISONED, 1)  # (an app's own Poison)
        # cancelled,
        with pytest.raises(JobCancelled):
            await cancelled.wait_async(10)
        # and retried after the delay it asked for (not the policy's second)
        while (job := (await snoozed.refresh_async()).job).state is not State.RETRYING:
            await asyncio.sleep(0.05)
        assert job.run_at > time.time() + 500
        assert job.last_error is not None and "not yet" in str(job.last_error)

    run_with_worker(app, scenario)


@pytest.mark.parametrize(
    ("task", "said"),
    [
        (process_tasks.unprintable, "Unprintable: <str() failed: RuntimeError>"),
        # SystemExit and KeyboardInterrupt too, as from a thread: the child had ended
        # with the exception's code, and the error said only "exited with 1 (or 2)"
        (process_tasks.exits, "SystemExit: bye from the child"),
    ],
)
def test_a_process_task_whose_exception_has_no_text_reports_its_type(
    app: Conveyor, task: Callable[[], None], said: str
) -> None:
    # Given a process task that raises an exception whose __str__ raises, or
    # SystemExit, in its child
    odd = app.task(executor="process", max_attempts=1)(task)
    handle = odd.enqueue()

    async def scenario(worker: Worker) -> Any:
        with pytest.raises(JobFailed):
            await handle.wait_async(10)
        return (await handle.refresh_async()).job

    # When it runs
    job = run_with_worker(app, scenario)

    # Then its error names the exception and where it was raised, as from a thread (the
    # child had died describing the first, and its error said only "exited with 1")
    assert job.last_error is not None
    assert said in job.last_error
    assert "process_tasks.py" in job.last_error


def test_arguments_nested_as_deep_as_a_job_may_reach_the_task(app: Conveyor) -> None:
    # Given a job whose arguments nest lists 100 levels deep, the most a job's values
    # may (the list of arguments, then 99 in the argument)
    value: list[Any] = []
    for _ in range(98):
        value = [value]

    @app.task(name="depth")
    def depth(nested: list[Any]) -> int:
        levels = 0
        while nested:
            nested, levels = nested[0], levels + 1
        return levels

    handle = depth.enqueue(value)

    # Then the task gets its own copy of it (the worker copies list arguments)
    async def scenario(worker: Worker) -> Any:
        return await handle.wait_async(10)

    assert run_with_worker(app, scenario) == 98


def test_cancel_a_running_job(app: Conveyor) -> None:
    started = asyncio.Event()

    @app.task(name="forever")
    async def forever() -> None:
        started.set()
        await asyncio.sleep(60)

    async def scenario(worker: Worker) -> None:
        handle = await forever.enqueue_async()
        await started.wait()
        assert await handle.cancel_async() is State.CANCELLING
        t = time.monotonic()
        with pytest.raises(JobCancelled):
            await handle.wait_async(10)
        assert time.monotonic() - t < 2.5

    run_with_worker(app, scenario, lease=1.5)


def test_progress_is_written_while_the_job_runs(app: Conveyor) -> None:
    release = asyncio.Event()

    @app.task(name="long")
    async def long() -> str:
        current_context().progress(3, 10, "resizing")
        await release.wait()
        return "ok"

    async def scenario(worker: Worker) -> Any:
        handle = await long.enqueue_async()
        for _ in range(100):
            await handle.refresh_async()
            if handle.job.progress.completed == 3:
                break
            await asyncio.sleep(0.1)
        release.set()
        await handle.wait_async(10)
        return handle.job.progress

    progress = run_with_worker(app, scenario, lease=1.5)
    assert (progress.completed, progress.total, progress.percent, progress.message) == (
        3,
        10,
        30.0,
        "resizing",
    )


def test_a_finished_step_is_written_while_the_next_one_runs(app: Conveyor) -> None:
    release = asyncio.Event()

    @app.task(name="first")
    def first() -> str:
        return "first-done"

    @app.task(name="second")
    async def second() -> str:
        await release.wait()
        return "second-done"

    # Given a two-step job whose second step waits, and a worker whose lease keeper
    # runs only every 5 s (lease 30 s)
    job = Job(
        id=new_job_id(),
        queue="default",
        steps=[Step(name="a", task="first"), Step(name="b", task="second")],
    )

    async def scenario(worker: Worker) -> tuple[Job, float]:
        (handle,) = await app.enqueue_jobs_async([job])
        t = time.monotonic()
        # When the first step is done
        while handle.job.steps[0].state != "succeeded" and time.monotonic() - t < 10:
            await asyncio.sleep(0.05)
            await handle.refresh_async()
        seen = time.monotonic() - t
        running = handle.job
        release.set()
        await handle.wait_async(10)
        return running, seen

    running, seen = run_with_worker(app, scenario, lease=30.0)
    # Then the store shows it done, with its result, within about a second, and the
    # second step running
    assert seen < 2.5
    assert running.state is State.RUNNING
    assert running.current_step == 1
    assert [(s.state, s.result) for s in running.steps] == [
        ("succeeded", "first-done"),
        ("running", None),
    ]


def test_a_retry_resumes_at_the_failed_step(app: Conveyor) -> None:
    calls: list[str] = []

    @app.task(name="step_a")
    def step_a() -> str:
        calls.append("a")
        return "a-done"

    @app.task(name="step_b")
    def step_b() -> str:
        calls.append("b")
        if calls.count("b") == 1:
            raise RuntimeError("b failed once")
        return "b-done"

    job = Job(
        id=new_job_id(),
        queue="default",
        max_attempts=3,
        retry=RetryPolicy(**FAST_RETRY),
        steps=[Step(name="a", task="step_a"), Step(name="b", task="step_b")],
    )

    async def scenario(worker: Worker) -> Any:
        (handle,) = await app.enqueue_jobs_async([job])
        result = await handle.wait_async(15)
        return result, handle.job

    result, done = run_with_worker(app, scenario)
    assert result == "b-done"
    assert calls == ["a", "b", "b"]
    assert [s.result for s in done.steps] == ["a-done", "b-done"]
    assert [s.attempts for s in done.steps] == [1, 2]
    assert done.errors[0]["step"] == "b"


def test_a_retry_delay_past_a_floats_range_is_capped_at_max_delay(app: Conveyor) -> None:
    # Given a task whose backoff grows past a float's range from the second failure
    # (2 ** 1e308), capped at 60 s
    @app.task(name="steep", max_attempts=3, retry={"exponent": 1e308, "max_delay": 60, "jitter": 0})
    def steep() -> None:
        raise RuntimeError("fails every time")

    async def scenario(worker: Worker) -> Job:
        handle = await steep.enqueue_async()
        while handle.job.attempts < 2 or handle.job.state is not State.RETRYING:
            await asyncio.sleep(0.05)
            await handle.refresh_async()
        return handle.job

    # When a worker runs it twice (the first backoff is 1 ** 1e308 = 1 s)
    job = run_with_worker(app, scenario)

    # Then the second failure is recorded like any other: retrying, due in max_delay
    # (it raised OverflowError in the worker, and the job stayed running)
    assert [e["message"] for e in job.errors] == ["RuntimeError: fails every time"] * 2
    assert job.run_at - job.updated_at == pytest.approx(60, abs=1)


def test_a_retry_asked_past_a_floats_range_waits_the_longest_delay(app: Conveyor) -> None:
    # Given a task that asks to be retried in 10 ** 400 seconds (Retry raised
    # OverflowError in the task: the attempt failed as an error, not as that retry)
    @app.task(name="much_later")
    def much_later() -> None:
        raise Retry(delay=10**400, reason="not before the heat death")

    async def scenario(worker: Worker) -> Job:
        handle = await much_later.enqueue_async()
        while handle.job.state is not State.RETRYING:
            await asyncio.sleep(0.05)
            await handle.refresh_async()
        return handle.job

    # When a worker runs it
    job = run_with_worker(app, scenario)

    # Then it waits the longest delay an outcome may ask for (one year), like any
    # other delay past it
    assert job.errors[-1]["message"] == "not before the heat death"
    assert job.run_at - job.updated_at == pytest.approx(MAX_DELAY_S, abs=5)


def test_a_retry_asked_in_an_int_too_long_to_write_out_waits_the_longest_delay(
    app: Conveyor,
) -> None:
    # Given a task that asks, without a reason, to be retried in 10 ** 5000 seconds (an
    # int past the 4,300 digits Python writes out: Retry's own message raised
    # ValueError in the task, and the attempt failed as that error, retried in 1 s)
    @app.task(name="much_much_later")
    def much_much_later() -> None:
        raise Retry(delay=10**5000)

    async def scenario(worker: Worker) -> Job:
        handle = await much_much_later.enqueue_async()
        while handle.job.state is not State.RETRYING:
            await asyncio.sleep(0.05)
            await handle.refresh_async()
        return handle.job

    # When a worker runs it
    job = run_with_worker(app, scenario)

    # Then it is the retry asked for: the longest delay an outcome may ask for
    assert job.errors[-1]["type"] == "Retry"
    assert job.run_at - job.updated_at == pytest.approx(MAX_DELAY_S, abs=5)


def test_a_paused_queue_runs_nothing_until_resumed(app: Conveyor) -> None:
    @app.task(name="q_task", queue="paused_q")
    def q_task() -> int:
        return 7

    async def scenario(worker: Worker) -> int:
        backend = await app.backend()
        await backend.create_queue("paused_q")
        await backend.pause_queue("paused_q")
        handle = await q_task.enqueue_async()
        await asyncio.sleep(0.5)
        assert (await handle.refresh_async()).state is State.QUEUED
        await backend.resume_queue("paused_q")
        return await handle.wait_async(10)

    assert run_with_worker(app, scenario, queues=["paused_q"]) == 7


def test_prefetched_jobs_run_in_turn_and_go_back_untouched_on_shutdown(app: Conveyor) -> None:
    # Given one slot, a prefetch of 2, a long job and three quick ones behind it
    ran: list[int] = []

    @app.task(name="slow_first")
    async def slow_first() -> None:
        await asyncio.sleep(0.8)

    @app.task(name="quick")
    def quick(i: int) -> None:
        ran.append(i)

    async def scenario() -> list[Job]:
        # (a lease of 0.6 s: the worker checks for cancel requests every 0.2 s)
        worker = Worker(
            app,
            WorkerConfig(
                concurrency=1, prefetch=2, fetch=3, lease=0.6, interval=0.05, shutdown_timeout=5
            ),
        )
        first = await slow_first.enqueue_async()
        quick_ones = await quick.enqueue_many_async([[1], [2], [3]])
        running = asyncio.create_task(worker.run())
        while (await first.refresh_async()).state is not State.RUNNING:
            await asyncio.sleep(0.02)
        # When the worker holds two of the quick jobs claimed, and one of them is cancelled
        await asyncio.sleep(0.1)
        held = [await h.refresh_async() for h in quick_ones]
        assert [h.state for h in held].count(State.RUNNING) == 2
        await quick_ones[1].cancel_async()
        await first.wait_async(5)
        await quick_ones[0].wait_async(5)
        worker.request_stop()
        await running
        jobs = [(await h.refresh_async()).job for h in quick_ones]
        await app.aclose()
        return jobs

    # Then the cancelled one never ran and the others ran in their turn, or went back
    # to the queue without spending an attempt
    jobs = asyncio.run(scenario())
    assert 2 not in ran
    assert jobs[1].state is State.CANCELLED
    assert jobs[0].state is State.SUCCEEDED
    assert jobs[2].state in (State.SUCCEEDED, State.QUEUED)
    if jobs[2].state is State.QUEUED:
        assert jobs[2].attempts == 0


def test_a_registered_only_worker_refuses_import_paths(app: Conveyor) -> None:
    # Given a job that names an importable but unregistered function, and a registered task
    @app.task(name="known")
    def known() -> str:
        return "ran"

    stranger = app.get_task("os:getpid").with_options(max_attempts=1).enqueue()
    handle = known.enqueue()

    async def scenario(worker: Worker) -> str:
        # Then the strict worker fails the stranger without calling it, and runs the known
        with pytest.raises(JobFailed, match="not registered"):
            await stranger.wait_async(10)
        return str(await handle.wait_async(10))

    assert run_with_worker(app, scenario, registered_only=True) == "ran"


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_a_stop_ends_an_idle_wait_at_once_and_a_job_enqueued_while_waiting_runs(
    store: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("redis_url") if store == "redis" else f"sqlite:///{tmp_path}/j.db"
    app = Conveyor(url)

    @app.task(name="t")
    async def t(i: int) -> int:
        return i

    async def main() -> Any:
        # Given a worker whose idle waits last an hour
        worker = Worker(app, WorkerConfig(lease=30.0, interval=3600.0))
        running = asyncio.create_task(worker.run())
        try:
            await asyncio.sleep(0.3)
            # When a job is enqueued while it waits (on Redis and PostgreSQL: handed to
            # it), and then the worker is asked to stop while it waits again
            handle = await t.enqueue_async(7)
            result = await asyncio.wait_for(handle.wait_async(), 30)
            await asyncio.sleep(0.3)
            worker.request_stop()
            # Then the worker ends without waiting out its hour (wait_for fails after 30 s)
            await asyncio.wait_for(running, 30)
            return result
        finally:
            await app.aclose()

    # And the job ran
    assert asyncio.run(main()) == 7
