"""The plumbing of the conformance suite: one event loop per test, backends on one store,
job builders, and the claim loop that race tests run in other processes.

We do not use pytest-asyncio: a test is a plain method that runs its scenario on
the :class:`BackendFactory`'s event loop. Every backend a test opens lives on that
one loop (drivers such as psycopg bind connections to the loop that opened them)
and is closed on it at teardown.
"""

from __future__ import annotations

import asyncio
import importlib
import queue
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from types import TracebackType
from typing import Any, TypeVar

from conveyor.backends.base import Backend, JobFilter
from conveyor.job import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_RETRY,
    Job,
    Outcome,
    RetryPolicy,
    State,
    Step,
    new_job_id,
)

T = TypeVar("T")

#: How long a backend may take to open before the store counts as not answering.
OPEN_TIMEOUT = 10.0


class BackendFactory:
    """Backends on one store for one test, all driven by one event loop.

    Use it as a context manager: entering opens the first backend
    (:attr:`backend`), leaving closes every backend it opened and the loop::

        with BackendFactory(lambda: SQLiteBackend(url)) as factory:
            factory.run(factory.backend.enqueue([make_job()]))

    Args:
        make: builds a new, unopened backend on the store under test; called once
            per :meth:`open`, so that every call gives an independent instance
            (own connections, own caches) sharing the same data.
    """

    def __init__(self, make: Callable[[], Backend]) -> None:
        self._make = make
        self._runner: asyncio.Runner | None = None
        self._opened: list[Backend] = []

    # -- lifecycle -------------------------------------------------------------
    def __enter__(self) -> BackendFactory:
        self._runner = asyncio.Runner()
        try:
            self.run(asyncio.wait_for(self.open(), OPEN_TIMEOUT))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        try:
            opened, self._opened = self._opened, []
            for backend in reversed(opened):
                runner.run(backend.close())
        finally:
            runner.close()

    # -- use ---------------------------------------------------------------------
    def run(self, awaitable: Awaitable[T]) -> T:
        """Run ``awaitable`` to completion on this factory's event loop."""
        if self._runner is None:
            raise RuntimeError("BackendFactory is not entered (use it as a context manager)")
        return self._runner.run(_as_coroutine(awaitable))

    @property
    def backend(self) -> Backend:
        """The first backend, opened on entering."""
        if not self._opened:
            raise RuntimeError("BackendFactory is not entered (use it as a context manager)")
        return self._opened[0]

    @property
    def url(self) -> str:
        """The URL of the store under test."""
        return self.backend.url

    async def open(self) -> Backend:
        """Open one more backend instance on the same store (closed at teardown)."""
        backend = self._make()
        await backend.open()
        self._opened.append(backend)
        return backend


async def _as_coroutine(awaitable: Awaitable[T]) -> T:
    return await awaitable


def async_test(
    body: Callable[[T, Backend], Coroutine[Any, Any, None]],
) -> Callable[[T, BackendFactory], None]:
    """Turn ``async def test_x(self, backend)`` into a pytest test taking ``backend_factory``.

    The scenario runs on the factory's event loop against its first backend.
    """

    def test(self: T, backend_factory: BackendFactory) -> None:
        backend_factory.run(body(self, backend_factory.backend))

    # Not functools.wraps: pytest would follow __wrapped__ and ask for a "backend" fixture.
    test.__name__ = getattr(body, "__name__", "test")
    test.__qualname__ = getattr(body, "__qualname__", test.__name__)
    test.__doc__ = body.__doc__
    test.__module__ = getattr(body, "__module__", __name__)
    return test


# ---------------------------------------------------------------------------
# Jobs
# ---------------------------------------------------------------------------
def make_job(
    queue: str = "default",
    *,
    priority: int = 0,
    run_at: float = 0.0,
    unique_key: str | None = None,
    task: str = "t",
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    steps: Sequence[Step] | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    retry: RetryPolicy = DEFAULT_RETRY,
    timeout: float | None = None,
    metadata: dict[str, Any] | None = None,
    tenant: str | None = None,
) -> Job:
    """A new job as an application would enqueue it: one ``task`` step unless ``steps``."""
    return Job(
        id=new_job_id(),
        queue=queue,
        steps=list(steps)
        if steps is not None
        else [Step(name=task, task=task, args=list(args), kwargs=dict(kwargs or {}))],
        priority=priority,
        run_at=run_at,
        max_attempts=max_attempts,
        retry=retry,
        timeout=timeout,
        unique_key=unique_key,
        metadata=dict(metadata or {}),
        tenant=tenant,
    )


def task_step(name: str, *args: Any, **kwargs: Any) -> Step:
    """A ``task`` step calling the task ``name``."""
    return Step(name=name, task=name, args=list(args), kwargs=dict(kwargs))


def error(message: str, **extra: Any) -> dict[str, Any]:
    """An entry for a job's error history, as the executor writes it."""
    return {"type": "RuntimeError", "message": message, **extra}


async def enqueue_one(backend: Backend, job: Job) -> Job:
    """Enqueue one job; the job as stored."""
    (stored,) = await backend.enqueue([job])
    return stored


async def claim_one(
    backend: Backend, queue: str = "default", worker_id: str = "worker-1", lease: float = 60.0
) -> Job:
    """Claim exactly one job (AssertionError when none is ready)."""
    claimed = await backend.claim([queue], worker_id, 1, lease)
    assert len(claimed) == 1, f"expected one claimable job in {queue!r}, got {claimed!r}"
    return claimed[0]


async def finish_one(backend: Backend, job: Job, outcome: Outcome) -> bool:
    """Record one outcome; whether it was written."""
    (written,) = await backend.finish([(job, outcome)])
    return written


async def all_jobs(backend: Backend, filter: JobFilter | None = None) -> list[Job]:
    """Every job matching ``filter``, following the cursor to the end."""
    jobs: list[Job] = []
    cursor: str | None = None
    while True:
        page = await backend.list_jobs(filter, cursor, 200)
        jobs.extend(page.jobs)
        if page.next_cursor is None:
            return jobs
        cursor = page.next_cursor


async def wipe(backend: Backend) -> None:
    """Empty a shared store through the Backend interface (for stores that are not
    created fresh per test). The processed / failed counters stay: tests compare
    them before and after."""
    for _ in range(100):
        page = await backend.list_jobs(None, None, 500)
        if not page.jobs:
            break
        for job in page.jobs:
            if job.state in (State.RUNNING, State.CANCELLING):
                await backend.finish([(job, Outcome.cancelled(None))])
            await backend.delete(job.id)
    for info in await backend.list_queues():
        await backend.drop_queue(info.name)
    for worker in await backend.list_workers():
        await backend.unregister_worker(worker.id)


# ---------------------------------------------------------------------------
# Races
# ---------------------------------------------------------------------------
async def claim_until_empty(
    backend: Backend, queue: str, worker_id: str, seed: int, max_limit: int = 7
) -> list[str]:
    """Claim from ``queue`` in batches of random size until a claim comes back empty;
    the ids claimed, in order."""
    rng = random.Random(seed)
    ids: list[str] = []
    while True:
        claimed = await backend.claim([queue], worker_id, rng.randint(1, max_limit), 60.0)
        if not claimed:
            return ids
        ids.extend(job.id for job in claimed)
        await asyncio.sleep(0)


def backend_path(backend: Backend) -> str:
    """``module:Class`` of a backend, so that another process can build one."""
    cls = type(backend)
    return f"{cls.__module__}:{cls.__qualname__}"


def claim_in_subprocess(
    path: str, url: str, queue: str, worker_id: str, start: Any, results: Any
) -> None:
    """Process target of the multi-process race: open a backend of class ``path`` on
    ``url``, wait at the ``start`` barrier, claim until empty, put the ids on ``results``."""
    module_name, _, class_name = path.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)

    async def main() -> list[str]:
        backend: Backend = cls(url)
        await backend.open()
        try:
            start.wait(30)
            return await claim_until_empty(backend, queue, worker_id, seed=hash(worker_id))
        finally:
            await backend.close()

    try:
        results.put((worker_id, asyncio.run(main())))
    except BaseException as exc:
        results.put((worker_id, f"{type(exc).__name__}: {exc}"))
        raise


def collect_answers(processes: Sequence[Any], results: Any, timeout: float) -> dict[str, Any]:
    """The ``(worker_id, answer)`` pairs that ``processes`` put on ``results``, one each.

    Fails at once, with the exit codes, when a process died without answering
    (e.g. it could not import the backend) rather than waiting out ``timeout``.
    """
    answers: dict[str, Any] = {}
    deadline = time.monotonic() + timeout
    while len(answers) < len(processes):
        try:
            worker_id, answer = results.get(timeout=0.2)
        except queue.Empty:
            if time.monotonic() > deadline:
                raise AssertionError(f"no answer from every process in {timeout} s") from None
            if all(p.exitcode is not None for p in processes):
                try:  # an answer may still be in the pipe just after its process exited
                    worker_id, answer = results.get(timeout=1.0)
                except queue.Empty:
                    codes = [p.exitcode for p in processes]
                    raise AssertionError(
                        f"claiming processes exited (codes {codes}) with {len(answers)} of "
                        f"{len(processes)} answers; see their stderr above"
                    ) from None
            else:
                continue
        answers[worker_id] = answer
    return answers
