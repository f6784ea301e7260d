"""Running one claimed job: its steps in order, hooks, middleware, timeouts.

The executor decides, the backend records: :meth:`Executor.run` returns an
:class:`~conveyor.job.Outcome` and writes nothing itself.

HTTP steps run through one :class:`~conveyor.steps.http.HttpSteps` (one pooled client),
made at the first HTTP step and closed by :meth:`Executor.close`. Their retries follow the
step's own policy (``max_attempts``, ``retry_exponent`` of its request), counted in
``step.attempts``; the job's ``max_attempts`` stays a backstop against crash loops.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import json
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor as FuturesExecutor
from typing import TYPE_CHECKING, Any

from conveyor.backends.rows import dumps
from conveyor.context import TaskContext, reset_context, set_context
from conveyor.exceptions import Cancel, Poison, Retry, TaskNotFound
from conveyor.job import Job, Outcome, Step
from conveyor.storable import json_problem, problem, storable
from conveyor.task import Hook, Task

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.steps.http import HttpStepError, HttpSteps
    from conveyor.worker.processes import ProcessRunner

logger = logging.getLogger("conveyor.worker")

Endpoint = Callable[[TaskContext], Awaitable[Any]]


class StepTimeout(Exception):
    """The job ran past its timeout."""


class Executor:
    """Runs jobs for one worker. Built once at start-up: the middleware chain is
    composed here, not per job."""

    def __init__(
        self,
        app: Conveyor,
        threads: FuturesExecutor,
        processes: ProcessRunner | None = None,
        *,
        registered_only: bool = False,
    ) -> None:
        self.app = app
        self.registered_only = registered_only
        self.threads = threads
        self.processes = processes
        self._chain = _compose(list(app.execution_middleware), self._run_steps)
        self._resolved: dict[str, Task] = {}
        #: Threads still running sync tasks that timed out or were cancelled.
        self.orphans = 0
        self.on_slot_freed: Callable[[], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._http: HttpSteps | None = None

    async def close(self) -> None:
        """Close what the executor opened for its jobs (the HTTP steps' connections)."""
        http, self._http = self._http, None
        if http is not None:
            await http.close()

    async def run(self, job: Job, ctx: TaskContext) -> Outcome:
        """Run ``job`` from its current step; the outcome to record.

        Whatever the task raises — any exception, ``SystemExit``, ``KeyboardInterrupt``
        and a ``CancelledError`` of its own making included — fails the attempt; it
        never reaches the worker. Only the worker's own cancellation (it marks the
        context first: ``_stopped_by_worker``) ends a run otherwise: ``cancelled`` when
        the job was asked to cancel; else (shutdown, a lost lease) it propagates and
        the worker gives the job back. ``task.cancelling()`` cannot tell the two
        apart: task code may cancel its own asyncio task.
        """
        token = set_context(ctx)
        try:
            try:
                await self._chain(ctx)
            except asyncio.CancelledError as exc:
                task = asyncio.current_task()
                if not ctx._stopped_by_worker:
                    # The task's own: forget its cancel requests, so that the hooks
                    # that run next (and their timeouts) see a task nobody cancels.
                    while task is not None and task.uncancel() > 0:
                        pass
                    failure: BaseException = exc
                elif not _unfinished(job) and task is not None:
                    # Stopped in a hook after the last step's work was done: that
                    # work stands, and the job succeeded (run again, it was done twice).
                    task.uncancel()
                    _job_result(job)
                    return Outcome.succeeded()
                elif ctx.cancelled and task is not None:
                    task.uncancel()
                    self._fail_step(ctx.step, "cancelled")
                    return Outcome.cancelled(_error(job, ctx.step, "Cancelled", "cancel requested"))
                else:
                    raise
            except BaseException as exc:
                failure = exc
            else:
                if ctx._stopped_by_worker and _unfinished(job):
                    # Middleware swallowed the worker's own cancellation: the steps did
                    # not run to their end, and the job must not succeed. It ends as the
                    # cancellation would have ended it.
                    if ctx.cancelled:
                        self._fail_step(ctx.step, "cancelled")
                        return Outcome.cancelled(
                            _error(job, ctx.step, "Cancelled", "cancel requested")
                        )
                    raise asyncio.CancelledError
                return Outcome.succeeded()
            return await self._failed(job, ctx, failure)
        finally:
            reset_context(token)

    async def _failed(self, job: Job, ctx: TaskContext, exc: BaseException) -> Outcome:
        """The outcome of an attempt that raised, after its hooks have run.

        ``Retry`` and ``Poison`` are instructions: they run the ``error`` hooks (the
        attempt did not succeed) but are not reported as exceptions; ``Cancel``
        runs no hook. The outcome is decided before the hooks run: a worker's stop
        that arrives in one of them (a hook that hangs past the shutdown's grace)
        ends the hooks, not the outcome, which is recorded as decided (given back
        instead, the attempt and its error were lost, and a job whose failure hook
        always hangs was never poisoned).
        """
        outcome, events = self._failure(job, ctx, exc)
        try:
            for event in events:
                if event == "report":
                    await self._report(ctx, exc)
                else:
                    await self._hooks(ctx, event, exc)
        except asyncio.CancelledError:
            # Only the worker's own stop comes out of _hooks and _report.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            if ctx.cancelled:
                return Outcome.cancelled(_error(job, ctx.step, "Cancelled", "cancel requested"))
            logger.warning(
                "job %s: stopped in a hook of its failed attempt %d; recording its outcome",
                job.id,
                job.attempts,
            )
        return outcome

    def _failure(
        self, job: Job, ctx: TaskContext, exc: BaseException
    ) -> tuple[Outcome, tuple[str, ...]]:
        """The outcome of an attempt that raised, and the hooks to run for it in order
        ("report": the exception reporter)."""
        step = ctx.step
        if step.kind == "http" and self._http is not None:
            # Imported already, by the step that raised.
            from conveyor.steps.http import HttpStepError

            if isinstance(exc, HttpStepError):
                return self._http_failure(job, ctx, exc)
        if isinstance(exc, Cancel):
            self._fail_step(step, exc.reason)
            return Outcome.cancelled(_error(job, step, "Cancel", exc.reason)), ()
        if isinstance(exc, Poison):
            self._fail_step(step, exc.reason)
            return Outcome.poisoned(_error(job, step, "Poison", exc.reason)), ("error", "failure")
        if isinstance(exc, Retry):
            self._fail_step(step, str(exc))
            error = _error(job, step, "Retry", str(exc))
            if exc.count_attempt and job.attempts >= job.max_attempts:
                return Outcome.poisoned(error), ("error", "failure")
            delay = exc.delay if exc.delay is not None else job.retry.delay(job.attempts)
            return Outcome.retry_in(delay, error, count_attempt=exc.count_attempt), ("error",)
        self._fail_step(step, describe(exc))
        error = _error(job, step, type(exc).__qualname__, describe(exc), exc)
        if job.attempts >= job.max_attempts:
            return Outcome.poisoned(error), ("error", "report", "failure")
        return Outcome.retry_in(job.retry.delay(job.attempts), error), ("error", "report")

    def _http_failure(
        self, job: Job, ctx: TaskContext, exc: HttpStepError
    ) -> tuple[Outcome, tuple[str, ...]]:
        """The step's own retry policy: poisoned when the failure is final or the step has
        had its attempts, else a retry after ``attempts ** retry_exponent`` seconds (or
        what the target asked for with ``Retry-After``)."""
        from conveyor.steps.http import retry_delay, retry_settings

        step = ctx.step
        self._fail_step(step, exc.message)
        error = _error(job, step, "HttpStepError", exc.message)
        max_attempts, exponent = retry_settings(step.request)
        if not exc.retryable or step.attempts >= max_attempts or job.attempts >= job.max_attempts:
            return Outcome.poisoned(error), ("error", "failure")
        delay = retry_delay(step.attempts, exponent, exc.retry_after)
        return Outcome.retry_in(delay, error), ("error",)

    # -- steps -----------------------------------------------------------------
    async def _run_steps(self, ctx: TaskContext) -> Any:
        job = ctx.job
        for index in range(job.current_step, len(job.steps)):
            step = job.steps[index]
            job.current_step = index
            ctx.step = step
            if step.state == "succeeded":
                continue
            step.state = "running"
            step.attempts += 1
            step.started_at = time.time()
            step.last_error = None
            _step_done(step, await self._run_step(ctx, step))
            if index + 1 < len(job.steps):
                ctx._progress_dirty = True  # saved by the worker if the job runs on
        return _job_result(job)

    async def _run_step(self, ctx: TaskContext, step: Step) -> Any:
        if step.kind == "http":
            await self._run_http(ctx, step)
            return None  # an HTTP step's outcome is its response, not a result
        if step.kind != "task":
            raise Poison(f"step {step.name!r}: {step.kind!r} steps are not supported here")
        task = self._task(step.task or "")
        hooks = task.hooks
        if hooks:
            await self._hooks(ctx, "before")
        try:
            call = self._call(task, step)
            timeout = ctx.job.timeout
            if timeout is None:
                result = await call
            else:
                try:
                    async with asyncio.timeout(timeout):
                        result = await call
                except TimeoutError:
                    raise StepTimeout(f"timed out after {timeout:g} s") from None
            _check_result(result, task.name)
        except BaseException:
            if hooks:
                await self._hooks(ctx, "after")
            raise
        if hooks:
            # The task's work is done, and the step with it: a worker's stop in a hook
            # after it (one that hangs past the shutdown's grace) must not have the
            # step run again (see Executor.run).
            _step_done(step, result)
            await self._hooks(ctx, "after")
            await self._hooks(ctx, "success", result)
        return result

    async def _run_http(self, ctx: TaskContext, step: Step) -> None:
        http = self.http()
        from conveyor.steps.http import HttpStepError

        try:
            step.response = await http.run(ctx.job, step)
        except HttpStepError as exc:
            # The failed attempt's response stays on the step: users see what the target said.
            step.response = exc.response
            raise

    def http(self) -> HttpSteps:
        """The pooled HTTP client of this worker (made on first use)."""
        return self._http or self._open_http()

    def _open_http(self) -> HttpSteps:
        try:
            from conveyor.steps.http import HttpSteps
        except ImportError as exc:
            # Not poisoned: another worker of the deploy may have the extra installed.
            raise RuntimeError(
                f"HTTP steps need aiohttp on the worker: pip install 'conveyor[http]' ({exc})"
            ) from None
        self._http = HttpSteps.from_env()
        return self._http

    def _call(self, task: Task, step: Step) -> Awaitable[Any]:
        if task.executor == "process" and self.processes is not None:
            # Crossing as JSON text: the child cannot reach the step's own arguments.
            return self.processes.call(task.name, step.args, step.kwargs, timeout=None)
        args, kwargs = _own_arguments(step)
        if task.executor == "async":
            return task.fn(*args, **kwargs)  # type: ignore[no-any-return]
        return self._in_thread(task, args, kwargs)

    async def _in_thread(self, task: Task, args: list[Any], kwargs: dict[str, Any]) -> Any:
        self._loop = asyncio.get_running_loop()  # where an orphaned thread reports back
        context = contextvars.copy_context()
        running = self.threads.submit(context.run, task.fn, *args, **kwargs)
        try:
            return await asyncio.wrap_future(running)
        except asyncio.CancelledError:
            # A timeout or a cancel: the thread cannot be stopped and runs on. Until it
            # returns it holds a slot of the worker, so that the jobs after it do not
            # wait for a thread while their own timeouts run.
            if not running.done():
                self.orphans += 1
                running.add_done_callback(self._orphan_done)
            raise

    def _orphan_done(self, _: object) -> None:
        # Called on the task's thread: hand the count back to the loop's thread (gone
        # if the worker has stopped meanwhile, and then there is nothing to count).
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._release_orphan)

    def _release_orphan(self) -> None:
        self.orphans -= 1
        if self.on_slot_freed is not None:
            self.on_slot_freed()

    def runs_on_loop(self, step: Step) -> bool:
        """Whether ``step``'s code runs on the worker's event loop (an async task's)."""
        task = self._resolved.get(step.task or "") if step.kind == "task" else None
        return task is not None and task.executor == "async"

    def _task(self, name: str) -> Task:
        task = self._resolved.get(name)
        if task is None:
            if self.registered_only and name not in self.app.tasks:
                # A job names its task; a strict worker runs only what its app registered.
                raise LookupError(
                    f"task {name!r} is not registered, and this worker runs registered "
                    "tasks only (--registered-only)"
                )
            try:
                task = self.app.get_task(name)
            except TaskNotFound as exc:
                # Not poisoned at once: a worker of an older deploy may not know it yet.
                raise LookupError(str(exc)) from None
            self._resolved[name] = task
        return task

    # -- failures and hooks ---------------------------------------------------------
    @staticmethod
    def _fail_step(step: Step, message: str) -> None:
        step.state = "failed"
        step.last_error = _message(message)
        step.finished_at = time.time()

    async def _report(self, ctx: TaskContext, exc: BaseException) -> None:
        reporter = self.app.reporter
        if reporter is not None:
            try:
                result = reporter(exc, ctx)
                if inspect.isawaitable(result):
                    await result
            except BaseException as failed:
                # SystemExit and KeyboardInterrupt included: out of the job's task they
                # would stop the worker's loop and every other job with it.
                if _worker_stop(ctx, failed):
                    raise
                logger.exception("exception reporter failed")

    async def _hooks(self, ctx: TaskContext, event: str, *args: Any) -> None:
        name = ctx.step.task or ""
        task = self._resolved.get(name)
        if task is None:
            return
        hooks: list[Hook] = task.hooks.get(event, [])
        for hook in hooks:
            try:
                result = hook(ctx, *args)
                if inspect.isawaitable(result):
                    await result
            except BaseException as failed:
                # Guarded like the task itself (SystemExit and KeyboardInterrupt out of
                # the job's task would stop the worker's loop). A failing before-hook
                # fails the attempt, like the task; the worker's own cancellation ends
                # the run wherever it arrives.
                if event == "before" or _worker_stop(ctx, failed):
                    raise
                logger.exception("%s hook of task %s failed (job %s)", event, name, ctx.job.id)


_SCALARS = frozenset({int, bool})  # results that are JSON as they are


def _unfinished(job: Job) -> bool:
    return any(step.state != "succeeded" for step in job.steps)


def _step_done(step: Step, result: Any) -> None:
    step.result = result
    step.state = "succeeded"
    step.finished_at = time.time()


def _job_result(job: Job) -> Any:
    """The job's result, set from its last step: an HTTP job's is its last response."""
    last = job.steps[-1] if job.steps else None
    if last is not None and last.kind == "http":
        job.result = last.response
    else:
        job.result = last.result if last is not None else None
    return job.result


def _worker_stop(ctx: TaskContext, exc: BaseException) -> bool:
    """Whether ``exc`` is the worker's own cancellation of the run (see Executor.run),
    which no hook or reporter may swallow; any other is user code's failure."""
    return isinstance(exc, asyncio.CancelledError) and ctx._stopped_by_worker


def _own_arguments(step: Step) -> tuple[list[Any], dict[str, Any]]:
    """The step's arguments for one call, the task's own to change: what a task does
    to a list or dict it was given (``d["seen"] = {1, 2}``, say) must not become the
    job's stored arguments, which are written back with its progress and outcome.
    Scalars need no copy, and most jobs have only those: they pay one type check each."""
    args, kwargs = step.args, step.kwargs
    for value in args:
        if type(value) in _CONTAINERS:
            args = [_json_copy(v) for v in args]
            break
    for value in kwargs.values():
        if type(value) in _CONTAINERS:
            kwargs = {k: _json_copy(v) for k, v in kwargs.items()}
            break
    return args, kwargs


_CONTAINERS = (list, dict)


def _json_copy(value: Any) -> Any:
    """A deep copy of JSON ``value`` (what arguments are): its lists and dicts anew, the
    rest (str, int, float, bool, None) immutable and shared. Several times as fast as
    ``copy.deepcopy`` (which keeps a memo for the shared and cyclic objects JSON has
    not); a value nested deeper than Python's stack allows (two frames a level) is
    copied through its JSON text instead, as deep as the store's decoding went."""
    try:
        return _copy(value)
    except RecursionError:
        return json.loads(dumps(value))


def _copy(value: Any) -> Any:
    kind = type(value)
    if kind is list:
        return [_copy(v) for v in value]
    if kind is dict:
        return {k: _copy(v) for k, v in value.items()}
    return value


def _compose(middleware: list[Any], endpoint: Endpoint) -> Endpoint:
    """``mw1(ctx, → mw2(ctx, → endpoint(ctx)))``, built once."""
    call = endpoint
    for mw in reversed(middleware):

        def layer(ctx: TaskContext, mw: Any = mw, inner: Endpoint = call) -> Awaitable[Any]:
            return mw(ctx, lambda: inner(ctx))  # type: ignore[no-any-return]

        call = layer
    return call


def describe(exc: BaseException) -> str:
    """``Type: message`` of an exception, also when its ``__str__`` raises (task code's
    exceptions may do anything; their attempt must still fail as any other)."""
    try:
        text = str(exc)
    except Exception as inner:
        text = f"<str() failed: {type(inner).__name__}>"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _error(
    job: Job, step: Step, kind: str, message: str, exc: BaseException | None = None
) -> dict[str, Any]:
    # Written as told, except for the characters no store keeps (an exception's message
    # may hold any text): an outcome that cannot be written would help nobody.
    error: dict[str, Any] = {
        "attempt": job.attempts,
        "step": step.name,
        "at": time.time(),
        "type": storable(kind),
        "message": _message(message),
    }
    if exc is not None:
        error["traceback"] = storable("".join(traceback.format_exception(exc))[-20000:])
    return error


#: Characters of an error's message that are kept (its head; a traceback keeps its tail).
MESSAGE_CHARS = 10_000


def _message(message: str) -> str:
    """An error's message as stored: at most MESSAGE_CHARS, its head and how much was
    cut (an exception's text may be megabytes, kept with every attempt and in the job's
    every read, and a job's errors can outgrow what a store takes in one value), and
    without the characters no store keeps. The note fits within MESSAGE_CHARS, so that
    the dashboard, which cuts values there, shows it."""
    if len(message) > MESSAGE_CHARS:
        head = MESSAGE_CHARS - 50  # room for the note
        message = f"{message[:head]}... ({len(message) - head:,} more characters)"
    return storable(message)


def _check_result(result: Any, task_name: str) -> None:
    """TypeError (the attempt fails, saying why) for a result the store cannot keep: not
    JSON, or text that some store refuses (see conveyor.storable). Refused here, it is
    the task's error like any other, instead of an outcome that cannot be written."""
    kind = type(result)
    if result is None or kind in _SCALARS:
        return
    try:
        why = problem(result) if kind is str else json_problem(result)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"task {task_name!r} returned a result that is not JSON: {exc}") from None
    if why is not None:
        raise TypeError(f"task {task_name!r} returned a result that cannot be stored: it {why}")
