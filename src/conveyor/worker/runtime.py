"""The worker runtime: one asyncio loop that claims jobs, runs them in slots,
keeps their leases alive and records their outcomes.

Outcomes are written in batches without a timer: while one ``finish`` call is
in flight the next outcomes gather, and the following call takes them all
(group commit). Claims likewise take up to ``fetch`` jobs at once.

Shutdown, in this order: stop claiming → wait up to ``shutdown_timeout`` for
running jobs → cancel the rest → release their leases (no attempt spent) →
write pending outcomes → unregister. A background task that dies stops the
worker loudly.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from conveyor.app import Conveyor
from conveyor.backends import redact_url
from conveyor.backends.base import Backend, WorkerInfo
from conveyor.context import TaskContext
from conveyor.exceptions import ConveyorError
from conveyor.job import Job, Outcome
from conveyor.worker.executor import Executor
from conveyor.worker.processes import ProcessRunner

logger = logging.getLogger("conveyor.worker")

#: How long a busy worker waits for more free slots before a small claim (seconds).
COALESCE_S = 0.001


@dataclass
class WorkerConfig:
    queues: list[str] = field(default_factory=lambda: ["default"])
    concurrency: int = 10
    fetch: int | None = None  # jobs per claim; default: concurrency
    interval: float = 1.0  # seconds between claims when no wake-up arrives
    lease: float = 30.0
    max_jobs: int | None = None  # recycle after this many jobs
    shutdown_timeout: float = 30.0
    threads: int | None = None  # thread pool for sync tasks; default: concurrency
    includes: list[str] = field(default_factory=list)

    def validate(self) -> None:
        from conveyor.exceptions import ConfigError
        from conveyor.task import validate_queue_name

        if not self.queues:
            raise ConfigError("queues", "name at least one queue")
        for queue in self.queues:
            try:
                validate_queue_name(queue)
            except ConveyorError as exc:
                raise ConfigError("queues", str(exc)) from None
        for name in ("concurrency", "fetch", "max_jobs", "threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(name, f"must be >= 1, got {value}")
        for name in ("interval", "lease"):
            if getattr(self, name) <= 0:
                raise ConfigError(name, f"must be > 0 seconds, got {getattr(self, name)}")
        if self.shutdown_timeout < 0:
            raise ConfigError("shutdown_timeout", "must be >= 0 seconds")


@dataclass
class _Running:
    job: Job
    ctx: TaskContext
    task: asyncio.Task[Outcome]
    started: float


class Worker:
    """One worker process's loop. ``await worker.run()``; ``request_stop()`` to end it."""

    def __init__(self, app: Conveyor, config: WorkerConfig) -> None:
        config.validate()
        self.app = app
        self.config = config
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.info = WorkerInfo(
            id=self.id,
            host=socket.gethostname(),
            pid=os.getpid(),
            queues=list(config.queues),
            concurrency=config.concurrency,
        )
        self._fetch = config.fetch or config.concurrency
        # Below this many free slots a busy worker waits a moment before claiming.
        self._batch = max(1, min(self._fetch, config.concurrency) // 2)
        self._last_claim_full = False
        self._running: dict[str, _Running] = {}
        self._outcomes: list[tuple[Job, Outcome]] = []
        self._flushing: asyncio.Task[None] | None = None
        self._slot_freed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._stop_now = False
        self._started_jobs = 0
        self._backend: Backend | None = None
        self._to_release: list[Job] = []  # held jobs that will not finish here

    # -- control -----------------------------------------------------------------
    def request_stop(self) -> None:
        """First call: graceful (finish or release); second call: now."""
        if self._stopping.is_set():
            self._stop_now = True
            logger.warning(
                "second stop request: cancelling %d running job(s) now", len(self._running)
            )
            for running in self._running.values():
                running.task.cancel()
        self._stopping.set()
        self._slot_freed.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    # -- main loop -----------------------------------------------------------------
    async def run(self) -> None:
        backend = self._backend = await self.app.backend()
        threads = ThreadPoolExecutor(
            self.config.threads or self.config.concurrency, thread_name_prefix="conveyor-task"
        )
        processes = ProcessRunner(self.config.includes, self.app.url)
        self.executor = Executor(self.app, threads, processes)
        self.info.started_at = time.time()
        await backend.register_worker(self.info)
        logger.info(
            "worker %s started: queues=%s concurrency=%d fetch=%d lease=%gs store=%s",
            self.id,
            ",".join(self.config.queues),
            self.config.concurrency,
            self._fetch,
            self.config.lease,
            redact_url(backend.url),
        )
        keeper = asyncio.create_task(self._keep_leases(backend), name="conveyor-leases")
        try:
            await self._claim_loop(backend, keeper)
        finally:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
            await self._shutdown(backend)
            threads.shutdown(wait=False, cancel_futures=True)

    async def _claim_loop(self, backend: Backend, keeper: asyncio.Task[None]) -> None:
        max_jobs = self.config.max_jobs
        while not self._stopping.is_set():
            if keeper.done():
                keeper.result()  # a dead lease keeper stops the worker loudly
                raise RuntimeError("lease keeper stopped")
            if max_jobs is not None and self._started_jobs >= max_jobs:
                logger.info("worker %s ran %d jobs (--max-jobs): recycling", self.id, max_jobs)
                self._stopping.set()
                break
            free = self.config.concurrency - len(self._running)
            if free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            if free < self._batch and self._last_claim_full:
                # Coalesce: a busy worker whose slots free one by one would otherwise
                # claim one job per transaction. A millisecond lets more slots free up
                # so the claim takes a batch; it costs a slow job no more than that.
                await asyncio.sleep(COALESCE_S)
                free = self.config.concurrency - len(self._running)
            limit = min(self._fetch, free)
            if max_jobs is not None:
                limit = min(limit, max_jobs - self._started_jobs)
            jobs = await backend.claim(self.config.queues, self.id, limit, self.config.lease)
            logger.debug(
                "claimed %d of %d from %s (%d running)",
                len(jobs),
                limit,
                ",".join(self.config.queues),
                len(self._running),
            )
            self._last_claim_full = len(jobs) == limit
            for job in jobs:
                self._start(job)
            if not jobs:
                await self._idle(backend)

    async def _idle(self, backend: Backend) -> None:
        """Sleep until the store signals work, a slot frees, a stop, or ``interval``."""
        waiter = asyncio.create_task(backend.wait(self.config.queues, self.config.interval))
        stopper = asyncio.create_task(self._stopping.wait())
        done, pending = await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if waiter in done:
            woke = waiter.result()
            logger.debug("idle wait ended: %s", "store changed" if woke else "interval")

    def _start(self, job: Job) -> None:
        ctx = TaskContext(job=job, step=job.steps[job.current_step], worker_id=self.id)
        task = asyncio.create_task(self.executor.run(job, ctx), name=f"job-{job.id}")
        self._running[job.id] = _Running(job, ctx, task, time.monotonic())
        self._started_jobs += 1
        logger.info("start %s %s (attempt %d/%d)", job.id, job.task, job.attempts, job.max_attempts)
        task.add_done_callback(functools.partial(self._done, job.id))

    def _done(self, job_id: str, task: asyncio.Task[Outcome]) -> None:
        running = self._running.pop(job_id)
        self._slot_freed.set()
        if task.cancelled():
            # Shutdown: given back by _shutdown, the unfinished steps as not started.
            for step in running.job.steps:
                if step.state != "succeeded":
                    step.state = "pending"
            self._to_release.append(running.job)
            return
        exc = task.exception()
        if exc is not None:
            # The executor turns task errors into outcomes, so this is a bug in conveyor
            # itself: give the job back rather than guess its outcome.
            logger.error("executor failed on job %s", job_id, exc_info=exc)
            self._to_release.append(running.job)
            return
        outcome = task.result()
        elapsed = time.monotonic() - running.started
        self.info.processed += 1
        if outcome.kind in ("retry", "poisoned"):
            self.info.failed += 1
        logger.info(
            "%s %s %s in %.3fs%s",
            outcome.kind,
            job_id,
            running.job.task,
            elapsed,
            f": {outcome.error['message']}" if outcome.error else "",
        )
        self._outcomes.append((running.job, outcome))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        """Write gathered outcomes, batch after batch, until none are left."""
        backend = self._backend
        assert backend is not None
        while self._outcomes:
            batch, self._outcomes = self._outcomes, []
            try:
                written = await backend.finish(batch)
            except ConveyorError:
                logger.exception("could not record %d outcome(s); retrying in 1 s", len(batch))
                self._outcomes[:0] = batch
                await asyncio.sleep(1.0)
                continue
            for (job, _), ok in zip(batch, written, strict=True):
                if not ok:
                    logger.warning("job %s: lease lost before its outcome was recorded", job.id)

    # -- leases ----------------------------------------------------------------------
    async def _keep_leases(self, backend: Backend) -> None:
        """Extend leases, pass cancel requests on, flush progress, heartbeat, recover."""
        period = max(min(self.config.lease / 3, 5.0), 0.05)
        recover_every = max(self.config.lease / 2, 0.1)
        next_recover = time.monotonic() + random.uniform(0, recover_every)
        while True:
            await asyncio.sleep(period)
            ids = list(self._running)
            if ids:
                status = await backend.extend(ids, self.id, self.config.lease)
                for job_id in status.cancelling:
                    self._cancel_job(job_id, "cancel requested")
                for job_id in status.lost:
                    logger.warning("job %s: lease lost; stopping it here", job_id)
                    self._cancel_job(job_id, "lease lost")
            for running in list(self._running.values()):
                if running.ctx._progress_dirty:
                    running.ctx._progress_dirty = False
                    await backend.save(running.job)
            self.info.running = list(self._running)
            await backend.heartbeat_worker(self.info)
            if time.monotonic() >= next_recover:
                next_recover = time.monotonic() + recover_every
                recovered = await backend.recover_expired()
                for job in recovered:
                    logger.warning("recovered job %s from a lost worker: now %s", job.id, job.state)

    def _cancel_job(self, job_id: str, why: str) -> None:
        running = self._running.get(job_id)
        if running is not None and not running.ctx.cancelled:
            logger.info("cancelling job %s: %s", job_id, why)
            running.ctx.request_cancel()
            running.task.cancel()

    # -- shutdown --------------------------------------------------------------------
    async def _shutdown(self, backend: Backend) -> None:
        pending = [r.task for r in self._running.values()]
        if pending and not self._stop_now:
            logger.info(
                "stopping: waiting up to %gs for %d running job(s)",
                self.config.shutdown_timeout,
                len(pending),
            )
            await asyncio.wait(pending, timeout=self.config.shutdown_timeout or None)
        leftover = [r.task for r in self._running.values()]
        for task in leftover:
            task.cancel()
        if leftover:
            await asyncio.gather(*leftover, return_exceptions=True)
        if self._flushing is not None:
            await asyncio.gather(self._flushing, return_exceptions=True)
        await self._flush()
        if self._to_release:
            released = await backend.release(self._to_release)
            logger.info("released %d job(s) for other workers", released)
        await backend.unregister_worker(self.id)
        logger.info("worker %s stopped after %d job(s)", self.id, self.info.processed)


async def run_worker(app: Conveyor, config: WorkerConfig, stop_signals: Sequence[int] = ()) -> None:
    """Run a worker until a stop signal (first: graceful, second: now)."""
    worker = Worker(app, config)
    loop = asyncio.get_running_loop()
    for sig in stop_signals:
        loop.add_signal_handler(sig, worker.request_stop)
    try:
        await worker.run()
    finally:
        for sig in stop_signals:
            loop.remove_signal_handler(sig)
        await app.aclose()
