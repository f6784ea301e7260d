"""The application object: configuration, the task registry, enqueue, middleware."""

from __future__ import annotations

import asyncio
import logging
import os
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import Any, TypeVar, overload

from conveyor.backends import create_backend, pinned_url, redact_url
from conveyor.backends.base import Backend
from conveyor.exceptions import ConfigError, InvalidJob, TaskNotFound, shown
from conveyor.garbage import collector_paused
from conveyor.handle import JobHandle
from conveyor.job import DEFAULT_RETRY, Job, Priority, RetryPolicy, parse_priority
from conveyor.portal import portal
from conveyor.task import (
    ExecutorKind,
    Hook,
    Task,
    TaskOptions,
    check_job_id,
    check_max_attempts,
    check_text,
    check_timeout,
    default_task_name,
    executor_for,
    import_callable,
    is_importable,
    iterate,
    retry_policy,
    validate_job,
    validate_queue_name,
)

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

#: Execution middleware: ``async def mw(ctx, call_next) -> result``; ``await call_next()``
#: runs the rest of the chain and the task.
ExecutionMiddleware = Callable[[Any, Callable[[], Awaitable[Any]]], Awaitable[Any]]
#: Enqueue middleware: ``def mw(job) -> job``; sees every job before it is stored,
#: may change it, or raise to refuse it.
EnqueueMiddleware = Callable[[Job], Job]
#: Exception reporter: ``def report(exc, ctx)``, called for every failed attempt.
Reporter = Callable[[BaseException, Any], Any]

logger = logging.getLogger("conveyor")


class Conveyor:
    """A conveyor application.

    Args:
        url: the store, e.g. ``sqlite:///jobs.db``; defaults to ``$CONVEYOR_URL``.
        default_queue: the queue of tasks that name none.
        reporter: called with ``(exc, ctx)`` whenever a task raises.

    Example::

        app = Conveyor("sqlite:///jobs.db")

        @app.task(queue="mail", max_attempts=3)
        def send(to: str) -> None: ...

        send.enqueue("ada@example.com")
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        default_queue: str = "default",
        reporter: Reporter | None = None,
    ) -> None:
        resolved = url or os.environ.get("CONVEYOR_URL")
        if not resolved:
            raise ConfigError(
                "url", "no store URL: pass Conveyor('sqlite:///jobs.db') or set CONVEYOR_URL"
            )
        try:
            validate_queue_name(default_queue)
        except InvalidJob as exc:
            raise ConfigError("default_queue", exc.problem) from None
        if reporter is not None and not callable(reporter):
            raise ConfigError("reporter", f"expected a function (exc, ctx), got {reporter!r:.80}")
        self.url = resolved
        self.default_queue = default_queue
        self.reporter = reporter
        self.tasks: dict[str, Task] = {}
        self.execution_middleware: list[ExecutionMiddleware] = []
        self.enqueue_middleware: list[EnqueueMiddleware] = []
        # One backend per event loop: drivers' connections belong to the loop that made them.
        self._backends: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Backend] = (
            weakref.WeakKeyDictionary()
        )
        self._opening: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        self._blocking = create_backend(resolved)  # validates the URL now, at construction
        self._store_url = pinned_url(resolved)

    def __repr__(self) -> str:
        # Shown by debuggers, error trackers' locals and every task's repr: no password.
        return f"<Conveyor {redact_url(self.url)!r} tasks={len(self.tasks)}>"

    def use_url(self, url: str) -> None:
        """Point the app at another store (the CLI's ``--url``); before any use."""
        self._blocking = create_backend(url)
        self.url = url
        self._store_url = pinned_url(url)

    # -- tasks ------------------------------------------------------------------
    @overload
    def task(self, fn: F, /) -> Task: ...

    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        queue: str | None = None,
        priority: int | str | Priority = Priority.NORMAL,
        max_attempts: int = 5,
        retry: RetryPolicy | dict[str, Any] | None = None,
        timeout: float | None = None,
        executor: ExecutorKind | None = None,
        before: Hook | None = None,
        after: Hook | None = None,
        success: Hook | None = None,
        error: Hook | None = None,
        failure: Hook | None = None,
    ) -> Callable[[F], Task]: ...

    def task(
        self,
        fn: F | None = None,
        /,
        *,
        name: str | None = None,
        queue: str | None = None,
        priority: int | str | Priority = Priority.NORMAL,
        max_attempts: int = 5,
        retry: RetryPolicy | dict[str, Any] | None = None,
        timeout: float | None = None,
        executor: ExecutorKind | None = None,
        before: Hook | None = None,
        after: Hook | None = None,
        success: Hook | None = None,
        error: Hook | None = None,
        failure: Hook | None = None,
    ) -> Task | Callable[[F], Task]:
        """Register a function (sync or async) as a task.

        Args:
            name: defaults to ``module:qualname``, which is also an import path.
            queue, priority, max_attempts, retry, timeout: defaults for its jobs.
            executor: ``async`` (async def), ``thread`` (default for def) or
                ``process`` (a def run in a separate process, killed on timeout).
            before, after, success, error, failure: hooks; ``failure`` runs when
                the job is poisoned, ``error`` after every failed attempt.
        """
        hooks = {
            "before": before,
            "after": after,
            "success": success,
            "error": error,
            "failure": failure,
        }

        def register(func: F) -> Task:
            if not callable(func):
                raise InvalidJob("task", f"expected a function to register, got {func!r:.80}")
            for hook, given in hooks.items():
                if given is not None and not callable(given):
                    raise InvalidJob(hook, f"a hook is a function, got {given!r:.80}")
            # None, not "", is "the default": an empty name or queue is a mistake.
            if name is not None and (not isinstance(name, str) or not name.strip()):
                raise InvalidJob("name", f"must be a non-blank string, got {name!r:.80}")
            if queue is not None:
                validate_queue_name(queue)
            try:
                task_priority = parse_priority(priority)
            except ValueError as exc:
                raise InvalidJob("priority", str(exc).removeprefix("priority: ")) from None
            if not -(2**31) <= task_priority < 2**31:
                raise InvalidJob("priority", f"must fit in 32 bits, got {shown(task_priority)}")
            try:
                kind = executor_for(func, executor)
            except ValueError as exc:
                raise InvalidJob("executor", str(exc).removeprefix("executor: ")) from None
            options = TaskOptions(
                queue=queue or self.default_queue,
                priority=task_priority,
                max_attempts=max_attempts,
                # The shared default (frozen) when none is given: the stores test a job's
                # policy for it by identity first, which saves a comparison per job.
                retry=retry_policy(retry) if retry is not None else DEFAULT_RETRY,
                timeout=timeout,
            )
            check_max_attempts(max_attempts)
            check_timeout(options.timeout)
            validate_queue_name(options.queue)
            task_name = name or default_task_name(func)
            check_text("name", task_name)
            existing = self.tasks.get(task_name)
            if existing is not None and existing.fn is not func:
                raise InvalidJob("name", f"a different task is already registered as {task_name!r}")
            task = Task(
                app=self,
                fn=func,
                name=task_name,
                options=options,
                executor=kind,
                hooks={k: [h] for k, h in hooks.items() if h is not None},
            )
            self.tasks[task_name] = task
            return task

        if fn is not None:
            return register(fn)
        return register

    def get_task(self, ref: str | Task | Callable[..., Any]) -> Task:
        """A registered task by name, a Task, a function, or an import path ``pkg.mod:func``."""
        if isinstance(ref, Task):
            return ref
        if isinstance(ref, str):
            found = self.tasks.get(ref)
            if found is not None:
                return found
            target = import_callable(ref)
            if isinstance(target, Task):
                return target  # registered under another name or on another app
            found = self.tasks.get(ref) or self._registered(target)
            return found if found is not None else self._transient_task(ref, target)
        if callable(ref):
            found = self._registered(ref)
            if found is not None:
                return found
            try:
                path = default_task_name(ref)
            except InvalidJob as exc:
                raise TaskNotFound(repr(ref), f"not registered, and {exc.problem}") from None
            if not is_importable(ref, path):
                raise TaskNotFound(path, f"{path!r} is not registered and not importable")
            return self._transient_task(path, ref)
        raise TaskNotFound(repr(ref))

    def _registered(self, fn: Callable[..., Any]) -> Task | None:
        for task in self.tasks.values():
            if task.fn is fn:
                return task
        return None

    def _transient_task(self, name: str, fn: Callable[..., Any]) -> Task:
        return Task(
            app=self,
            fn=fn,
            name=name,
            options=TaskOptions(queue=self.default_queue),
            executor=executor_for(fn, None),
        )

    # -- middleware ---------------------------------------------------------------
    def middleware(self, mw: ExecutionMiddleware) -> ExecutionMiddleware:
        """Add execution middleware (outermost first): ``async def mw(ctx, call_next)``."""
        _check_function("middleware", mw)
        self.execution_middleware.append(mw)
        return mw

    def before_enqueue(self, mw: EnqueueMiddleware) -> EnqueueMiddleware:
        """Add enqueue middleware: ``def mw(job) -> job``, run on every job before it is stored."""
        _check_function("before_enqueue", mw)
        self.enqueue_middleware.append(mw)
        return mw

    # -- enqueue ------------------------------------------------------------------
    def enqueue(
        self, task: str | Task | Callable[..., Any], *args: Any, **kwargs: Any
    ) -> JobHandle:
        """Enqueue a call of a task given by name, function or import path
        (``app.enqueue("billing.jobs:charge", 42)``: Delayed::Job's ``send_later``)."""
        return self.get_task(task).enqueue(*args, **kwargs)

    async def enqueue_async(
        self, task: str | Task | Callable[..., Any], *args: Any, **kwargs: Any
    ) -> JobHandle:
        return await self.get_task(task).enqueue_async(*args, **kwargs)

    def enqueue_many(self, jobs: Iterable[Job]) -> list[JobHandle]:
        """Store prepared jobs (``task.prepare(...)``) in one round trip."""
        with collector_paused():  # see Task.enqueue_many
            return self.enqueue_jobs(_job_list(jobs))

    async def enqueue_many_async(self, jobs: Iterable[Job]) -> list[JobHandle]:
        return await self.enqueue_jobs_async(_job_list(jobs))

    def _through_middleware(self, jobs: Sequence[Job], built_here: bool) -> list[Job]:
        """Enqueue middleware, then validation of every job that did not come straight
        from ``Task.prepare`` (jobs built by hand, or changed by middleware)."""
        out = list(jobs)
        for mw in self.enqueue_middleware:
            out = [mw(job) for job in out]
        if not built_here or self.enqueue_middleware:
            for job in out:
                validate_job(job)
            _check_distinct_ids(out)
        return out

    def enqueue_jobs(
        self, jobs: Sequence[Job], *, built_here: bool = False, connection: Any = None
    ) -> list[JobHandle]:
        """Store jobs in one round trip (``built_here``: made by ``Task.prepare``;
        ``connection``: the caller's database connection, see ``Task.with_options``)."""
        jobs = self._through_middleware(jobs, built_here)
        if not jobs:
            return []
        if connection is not None:
            stored: list[Job] | None = self._blocking.enqueue_in(connection, jobs)
        else:
            stored = self._blocking.enqueue_blocking(jobs)
        if stored is None:
            return self.portal_call(self.enqueue_jobs_async(jobs, _middleware=False))
        return [JobHandle(self, job) for job in stored]

    async def enqueue_jobs_async(
        self,
        jobs: Sequence[Job],
        *,
        built_here: bool = False,
        connection: Any = None,
        _middleware: bool = True,
    ) -> list[JobHandle]:
        if _middleware:
            jobs = self._through_middleware(jobs, built_here)
        if not jobs:
            return []
        if connection is not None:
            # The caller's connection needs no pool of ours: the unopened backend
            # only lends its statements.
            stored = await self._blocking.enqueue_in_async(connection, jobs)
            return [JobHandle(self, job) for job in stored]
        stored = await (await self.backend()).enqueue(jobs)
        return [JobHandle(self, job) for job in stored]

    # -- handles and the store ----------------------------------------------------
    def job(self, job_id: str) -> JobHandle:
        """A handle on an existing job (JobNotFound if there is none; InvalidJob for an
        id no job can have: not a string, blank, a NUL, too long)."""
        check_job_id(job_id)
        return self.portal_call(self.job_async(job_id))

    async def job_async(self, job_id: str) -> JobHandle:
        check_job_id(job_id)
        return JobHandle(self, await (await self.backend()).get(job_id))

    async def backend(self) -> Backend:
        """The store, opened, for the running event loop."""
        loop = asyncio.get_running_loop()
        backend = self._backends.get(loop)
        if backend is None:
            # Stored before it is opened, so concurrent callers share one; they wait
            # for the open on the loop's lock.
            backend = self._backends[loop] = create_backend(self._store_url)
            self._opening[loop] = asyncio.Lock()
        lock = self._opening.get(loop)
        if lock is not None:
            async with lock:
                if self._opening.get(loop) is lock:
                    try:
                        await backend.open()
                    except BaseException:
                        self._backends.pop(loop, None)
                        raise
                    finally:
                        self._opening.pop(loop, None)
        return backend

    def portal_call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine of this app from synchronous code."""
        return portal.call(coro)

    async def aclose(self) -> None:
        """Close the store connections of the running loop."""
        loop = asyncio.get_running_loop()
        backend = self._backends.pop(loop, None)
        if backend is not None:
            await backend.close()

    def close(self) -> None:
        """Close the connections sync calls made (the portal's and the blocking one)."""
        self.portal_call(self.aclose())
        portal.call(self._blocking.close())


def _check_function(setting: str, value: object) -> None:
    """ConfigError now, rather than a TypeError in every worker run or enqueue later."""
    if not callable(value):
        raise ConfigError(setting, f"expected a function, got {value!r:.80}")


def _check_distinct_ids(jobs: Sequence[Job]) -> None:
    """InvalidJob when two jobs of a batch share an id (set by hand or by middleware).

    Checked here, once, before the store sees the batch: each store would otherwise
    answer its own way (one row kept, or an error after part of the batch was
    written). Jobs from ``Task.prepare`` alone are not checked: their ids are new
    UUIDv7s, distinct by construction (a bulk enqueue pays nothing for this).
    """
    if len(jobs) < 2 or len({job.id for job in jobs}) == len(jobs):
        return
    seen: set[str] = set()
    for job in jobs:
        if job.id in seen:
            raise InvalidJob("id", f"{job.id!r} is given to two jobs of the batch; none was stored")
        seen.add(job.id)


def _job_list(jobs: Iterable[Job]) -> list[Job]:
    return list(iterate(jobs, "jobs", "Job objects (task.prepare(...))"))
