"""The worker runtime: one asyncio loop that claims jobs, runs them in slots and
records their outcomes.

Claims take up to ``fetch`` jobs at once (plus ``prefetch`` held ahead of free
slots); outcomes are written in batches by the
:class:`~conveyor.worker.recorder.OutcomeRecorder`. Leases, cancel requests and
progress are kept by the loops of :mod:`conveyor.worker.leases`, for as long as the
worker holds any job, shutdown included.

Shutdown, in this order: stop claiming → wait up to ``shutdown_timeout`` for
running jobs (leases still kept) → cancel the rest → close the HTTP steps'
connections → write pending outcomes → release the cancelled jobs (no attempt
spent) → stop the lease keeper → unregister. A second stop request skips the
wait and gives each store call ``STOP_NOW_S``. Store errors in the claim loop are
logged and retried with backoff.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from conveyor.app import Conveyor
from conveyor.backends import redact_url
from conveyor.backends.base import Backend, WorkerInfo
from conveyor.context import TaskContext
from conveyor.exceptions import BackendCorrupt, BackendUnavailable, ConveyorError
from conveyor.garbage import settle_for_service
from conveyor.job import Job, Outcome
from conveyor.web.documents import PRIVATE
from conveyor.web.purge import Purger
from conveyor.worker.callbacks import Callbacks, callback_url
from conveyor.worker.config import WorkerConfig
from conveyor.worker.executor import Executor, describe
from conveyor.worker.leases import LOOP_BLOCKED_S, LeaseKeeping
from conveyor.worker.processes import ProcessRunner
from conveyor.worker.recorder import OutcomeRecorder
from conveyor.worker.running import Running, error_record, failed_run
from conveyor.worker.streaks import Streak

logger = logging.getLogger("conveyor.worker")
T = TypeVar("T")

#: How long a busy worker waits for more free slots before a small claim (seconds).
COALESCE_S = 0.001
#: Seconds a worker told to stop now gives each store call of its shutdown.
STOP_NOW_S = 2.0
#: The names of the threads sync tasks run in (``conveyor-task_0``, ...).
TASK_THREAD_PREFIX = "conveyor-task"
#: How long a stopping worker waits for the cache purges it started (seconds).
PURGE_GRACE_S = 2.0
#: How long a stopping worker waits for the callbacks it still owes (seconds).
CALLBACK_GRACE_S = 5.0
#: Longest pause of the claim loop after a store error (seconds; it doubles up to this).
MAX_BACKOFF_S = 5.0
#: After a failed wait for work, the claim loop claims again this soon (seconds), as it
#: polls while a store's wake-ups are down.
WAIT_FAILED_S = 1.0


class Worker(LeaseKeeping):
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
        self._running: dict[str, Running] = {}
        #: Runs of LOOP_BLOCKED_S or more that ended since the watcher looked.
        self._ended: list[tuple[Running, float]] = []
        self._slot_freed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._idle_task: asyncio.Task[object] | None = None  # the claim loop, while it waits
        self._stop_cancelled = False  # request_stop cancelled that wait
        self._waits_failing = Streak()
        self._stop_now = False
        #: Store calls a stop-now cuts short (see _store).
        self._store_calls: set[asyncio.Future[Any]] = set()
        self._claims = 0  # claims started: which one a cut is for
        self._claim_task: asyncio.Task[Any] | None = None  # the claim loop, while it claims
        self._claim_cut = False  # _cut_store_calls cancelled that claim
        self._stop_requests = 0  # request_stop calls: the second one stops now
        self._started_jobs = 0
        self._held: collections.deque[Job] = collections.deque()  # claimed, not started
        #: per held job, the monotonic time until which its lease is surely this
        #: worker's: when the claim (or the last extension that reached it) was sent,
        #: plus the lease. Past it, the store may have given the job to another worker.
        self._held_until: dict[str, float] = {}
        self._to_release: list[Job] = []  # held jobs that will not finish here
        self._recorder: OutcomeRecorder | None = None
        self._keeper_failed = False
        self._background: set[asyncio.Task[None]] = set()
        self._callbacks: Callbacks | None = None
        # The loop run() runs on, for the job tasks: asyncio.create_task looks the loop
        # up, and that lookup makes a getpid system call (a fork check), 0.5 us here.
        self._loop: asyncio.AbstractEventLoop | None = None
        # The cache in front of the API, told of each change this worker makes to an HTTP
        # job (the API's own changes it purges itself): see conveyor.web.purge.
        self._purger = Purger(os.environ.get("CONVEYOR_CACHE_PURGE_URL") or None)
        #: Called at every stop request, the worker's own ones too (the CLI arms its
        #: stop watchdog there: conveyor.worker.watchdog).
        self.on_stop_begun: Callable[[], object] | None = None

    # -- control -----------------------------------------------------------------
    def request_stop(self) -> None:
        """First call: graceful (finish or release); second call: now.

        Counted apart from the worker's own stops (a ``--max-jobs`` recycle, a failed
        lease keeper): the first signal after one of those is still the graceful one.
        """
        self._stop_requests += 1
        if self._stop_requests > 1:
            self.stop_now()
        self.stop_gracefully()

    def stop_now(self) -> None:
        """Cancel the running jobs and give them back without waiting; store calls get
        ``STOP_NOW_S`` (see ``_store``)."""
        if self._stop_now:
            return
        self._stop_now = True
        logger.warning("second stop request: cancelling %d running job(s) now", len(self._running))
        for running in self._running.values():
            running.stop()
        if self._recorder is not None:
            self._recorder.give_up = True  # no more writes or retries of outcomes
        # Store calls in flight get STOP_NOW_S to answer, no more: cut at once, a
        # claim the store had committed would leave its jobs held here.
        loop = asyncio.get_running_loop()
        loop.call_later(STOP_NOW_S, self._cut_store_calls, self._claims)
        self.stop_gracefully()

    def _cut_store_calls(self, claims_then: int) -> None:
        """Stop waiting for the store: the claim in flight (if still the one that was
        in flight STOP_NOW_S ago), the calls of the shutdown, the outcomes' write."""
        if self._claim_task is not None and self._claims == claims_then:
            self._claim_cut = True
            self._claim_task.cancel()
        for call in list(self._store_calls):
            call.cancel()
        if self._recorder is not None:
            self._recorder.give_up_now()

    def stop_gracefully(self) -> None:
        """Stop claiming and wind down gracefully (see the module's docstring), without
        counting as a stop request: the worker's own reasons (a --max-jobs recycle, a
        failed keeper, the API beside it that stopped) leave a signal after them the
        first, graceful one."""
        if self.on_stop_begun is not None:
            self.on_stop_begun()
        self._stopping.set()
        self._slot_freed.set()
        if self._idle_task is not None and not self._stop_cancelled:
            self._stop_cancelled = True
            self._idle_task.cancel()  # the idle wait ends now (see _idle)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    # -- main loop -----------------------------------------------------------------
    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        backend = await self.app.backend()
        await backend.check_rights()  # (a long-running process: here, not at each open)
        await backend.warn_about_setup()
        threads = ThreadPoolExecutor(
            self.config.threads or self.config.concurrency, thread_name_prefix=TASK_THREAD_PREFIX
        )
        processes = ProcessRunner(self.config.includes, self.app.url)
        self.executor = Executor(
            self.app, threads, processes, registered_only=self.config.registered_only
        )
        self.executor.on_slot_freed = self._slot_freed.set
        self._recorder = OutcomeRecorder(backend)
        self._recorder.on_written = functools.partial(self._written, backend)
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
        keepers = [
            asyncio.create_task(self._keep_leases(backend), name="conveyor-leases"),
            asyncio.create_task(self._watch_running(backend), name="conveyor-running"),
        ]
        for keeper in keepers:
            keeper.add_done_callback(self._keeper_done)
        try:
            await self._claim_loop(backend)
        finally:
            await self._shutdown(backend, keepers)
            threads.shutdown(wait=False, cancel_futures=True)

    def _keeper_done(self, keeper: asyncio.Task[None]) -> None:
        if not keeper.cancelled() and keeper.exception() is not None:
            logger.critical("%s failed: stopping", keeper.get_name(), exc_info=keeper.exception())
            self._keeper_failed = True
            self.stop_gracefully()

    async def _claim_loop(self, backend: Backend) -> None:
        max_jobs = self.config.max_jobs
        backoff = 0.0
        failing = Streak()
        while not self._stopping.is_set():
            if self._start_buffered():
                await _let_started_jobs_begin()
            if max_jobs is not None and self._started_jobs >= max_jobs:
                logger.info("worker %s ran %d jobs (--max-jobs): recycling", self.id, max_jobs)
                self.stop_gracefully()  # no stop request: a signal now is still the first
                break
            room = self._room()
            if room <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            if room < self._batch and self._last_claim_full:
                # Coalesce: a busy worker whose slots free one by one would otherwise
                # claim one job per transaction. A millisecond lets more slots free up
                # so the claim takes a batch; it costs a slow job no more than that.
                await asyncio.sleep(COALESCE_S)
                room = self._room()
            limit = min(self._fetch, room)
            sent = time.monotonic()
            try:
                jobs = await self._claim(backend, limit)
            except BackendCorrupt as exc:
                # A damaged store file: no retry mends it, and every claim would fail
                # as this one did. The worker stops, saying why.
                logger.critical("claim failed: %s; stopping", exc)
                raise
            except ConveyorError as exc:
                backoff = min(max(backoff * 2, 0.1), MAX_BACKOFF_S)
                lasted = failing.fail()
                if lasted == 0.0:
                    logger.error(
                        "claim failed: %s; trying again with a growing pause (up to %gs)",
                        exc,
                        MAX_BACKOFF_S,
                    )
                elif lasted is not None:
                    logger.error("claims still fail after %.0fs: %s", lasted, exc)
                await self._sleep_unless_stopped(backoff)
                continue
            if (lasted := failing.end()) is not None:
                # Say so when the store answers again: the errors above stop, and whoever
                # reads the log should not have to infer the recovery from their absence.
                logger.warning(
                    "claims work again on %s after %.1fs of errors",
                    redact_url(backend.url),
                    lasted,
                )
            backoff = 0.0
            logger.debug(
                "claimed %d of %d from %s (%d running, %d held)",
                len(jobs),
                limit,
                ",".join(self.config.queues),
                len(self._running),
                len(self._held),
            )
            self._last_claim_full = len(jobs) == limit
            if self._stopping.is_set():
                self._to_release.extend(jobs)  # claimed as the stop arrived: not started
                break
            self._hold(jobs, sent)
            if self._start_buffered():
                await _let_started_jobs_begin()
            if len(jobs) < limit and not self._startable():
                # Fewer than asked: the queues are empty now. Wait for the store's
                # wake-up rather than claim again at once: a job just claimed starts
                # without an empty claim's round trip in its way (pickup latency, W3),
                # and every store's wait sees what arrives after the claim.
                await self._idle(backend)

    def _room(self) -> int:
        """How many more jobs to claim: free slots, plus the prefetch, less those held."""
        room = self._free_slots() + self.config.prefetch - len(self._held)
        if self.config.max_jobs is not None:
            room = min(room, self.config.max_jobs - self._started_jobs - len(self._held))
        return room

    def _hold(self, jobs: Sequence[Job], sent: float) -> None:
        """Hold jobs claimed (or handed over) by a call sent at ``sent``."""
        until = sent + self.config.lease
        for job in jobs:
            self._held_until[job.id] = until
        self._held.extend(jobs)

    def _startable(self) -> bool:
        """Whether a held job may start now (see _start_buffered)."""
        now = time.monotonic()
        return any(self._held_until.get(job.id, now) > now for job in self._held)

    def _start_buffered(self) -> int:
        """Start held jobs while slots are free (also called as each job ends, so a
        freed slot is filled at once, without waiting for a claim, and after each lease
        extension); how many.

        A held job whose lease may have run out (the store unreachable since its
        claim: no extension reached it) is not started: the store may have given it to
        another worker meanwhile, which would run it at the same time. It waits for
        the next extension, which either renews its lease or finds it lost (it is
        dropped then)."""
        max_jobs = self.config.max_jobs
        started = 0
        now = time.monotonic()
        waiting: list[Job] = []
        while self._held and self._free_slots() > 0 and not self._stopping.is_set():
            if max_jobs is not None and self._started_jobs >= max_jobs:
                break
            job = self._held.popleft()
            if self._held_until.get(job.id, now) <= now:
                waiting.append(job)
                continue
            self._held_until.pop(job.id, None)
            self._start(job)
            started += 1
        self._held.extendleft(reversed(waiting))
        return started

    def _free_slots(self) -> int:
        # A thread still running a timed-out sync task holds its slot until it returns.
        return self.config.concurrency - len(self._running) - self.executor.orphans

    async def _sleep_unless_stopped(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _idle(self, backend: Backend) -> None:
        """Sleep until the store signals work (or hands a job over), a stop, or
        ``interval``. A stop cancels the wait (``request_stop``), which this swallows.
        The wait runs in the claim loop's own task: in a task of its own, raced against
        the stop in ``asyncio.wait``, it took a task per wait and three more turns of
        the loop between a hand-off and the job's start."""
        if self._stopping.is_set():
            return
        task = self._idle_task = asyncio.current_task()
        try:
            woke, handed = await backend.wait_for_jobs(
                self.config.queues, self.id, self.config.lease, self.config.interval
            )
        except asyncio.CancelledError:
            if self._stop_cancelled and task is not None and task.uncancel() == 0:
                return  # the stop's cancel, and nobody else's
            raise
        except ConveyorError as exc:
            # Not ``interval`` (which may be long when the store wakes workers): the
            # store that failed may be back already, with work that came meanwhile
            # and whose wake-up was lost. Claims take their own backoff if it is not.
            lasted = self._waits_failing.fail()
            if lasted == 0.0:
                logger.error("waiting for work failed: %s", exc)
            elif lasted is not None:
                logger.error("waiting for work still fails after %.0fs: %s", lasted, exc)
            await self._sleep_unless_stopped(min(self.config.interval, WAIT_FAILED_S))
            return
        finally:
            self._idle_task = None
            self._stop_cancelled = False
        self._waits_failing.end()  # (the claims say when the store is back)
        logger.debug(
            "idle wait ended: %s",
            f"{len(handed)} handed over" if handed else "store changed" if woke else "interval",
        )
        if self._stopping.is_set():
            self._to_release.extend(handed)
        else:
            # A handed job's lease began when it was handed over, which its notification
            # tells at once (a late one is answered by the next claim instead): from
            # now, not from the wait's start, which may be longer ago than a lease.
            self._hold(handed, time.monotonic())

    def _start(self, job: Job) -> None:
        try:
            ctx = TaskContext(job=job, step=job.steps[job.current_step], worker_id=self.id)
        except IndexError:
            # A job without the step it points at cannot run anywhere: poison it.
            self._record(job, Outcome.poisoned(error_record(job, "the job has no step to run")))
            return
        older = self._running.get(job.id)
        if older is not None:
            # The store handed out a job whose earlier run is still going here: that
            # run's lease ran out and the job was taken back (say, while the store was
            # unreachable) before the lease keeper noticed. The older run has nothing
            # left to record; stop it, and keep its end away from this run (_done).
            logger.warning(
                "job %s: claimed again while its attempt %d still runs here (lease "
                "lost); stopping that run",
                job.id,
                older.job.attempts,
            )
            older.stop()
        assert self._loop is not None
        task = self._loop.create_task(self.executor.run(job, ctx), name=f"job-{job.id}")
        self._running[job.id] = Running(job, ctx, task, time.monotonic())
        self._purge(job)  # claimed: now running
        self._started_jobs += 1
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "start %s %s (attempt %d/%d)", job.id, job.task, job.attempts, job.max_attempts
            )
        task.add_done_callback(functools.partial(self._done, job.id))

    def _done(self, job_id: str, task: asyncio.Task[Outcome]) -> None:
        self._slot_freed.set()
        running = self._running.get(job_id)
        if running is None or running.task is not task:
            # A run superseded by a newer claim of the same job (see _start): its lease
            # is gone, so there is nothing to record or release, and the entry is the
            # newer run's.
            return
        del self._running[job_id]
        ended = time.monotonic()
        if ended - running.started >= LOOP_BLOCKED_S:
            # A suspect if the loop stood still meanwhile (see _loop_was_blocked). Long
            # runs only: holding every run for half a second kept thousands of them
            # alive past their end, and the garbage collector's work made a busy
            # worker about 9 % slower (W2n).
            self._ended.append((running, ended))
        job = running.job
        if running.refused is not None:
            # Whatever the run came to, its state cannot be written: the recorder
            # writes the job as the store has it, poisoned with the reason.
            reason = running.refused
            message = f"the job's progress could not be stored: {describe(reason)}"
            outcome = Outcome.poisoned(error_record(job, message, type(reason).__name__))
        elif task.cancelled() and running.ctx._stopped_by_worker:
            # Stopped by the worker without an outcome (shutdown, or a lease lost): the
            # job goes back with its unfinished steps as not started, without costing
            # an attempt. A lost lease makes the release a no-op.
            _give_back_steps(job)
            if self._stopping.is_set():
                self._to_release.append(job)
            else:
                releasing = asyncio.create_task(self._release_now(job))
                self._background.add(releasing)
                releasing.add_done_callback(self._background.discard)
            return
        elif task.cancelled():
            # Cancelled, but not by the worker: code of the job asked for it and the
            # request outlived the task's own code (it cancelled its task and returned,
            # say). Its outcome is lost; the attempt fails, so that it cannot loop.
            logger.error("job %s: its asyncio task was cancelled by its own code", job_id)
            outcome = failed_run(job, "the run was cancelled by its own code, not the worker")
        elif (exc := task.exception()) is not None:
            # The executor turns every task error into an outcome, so this is a bug in
            # conveyor: count it as a failed attempt rather than guess, so that a job
            # that trips it cannot loop for ever.
            logger.error("executor failed on job %s", job_id, exc_info=exc)
            outcome = failed_run(job, f"worker error: {describe(exc)}")
        else:
            outcome = task.result()
        if logger.isEnabledFor(logging.INFO):  # the arguments cost more than the check
            logger.info(
                "%s %s %s in %.3fs%s",
                outcome.kind,
                job_id,
                job.task,
                ended - running.started,
                f": {outcome.error['message']}" if outcome.error else "",
            )
        self._record(job, outcome)
        self._start_buffered()

    def _written(self, backend: Backend, job: Job, outcome: Outcome) -> None:
        """An outcome is in the store: purge the cache, send the job's callback if it has one."""
        self._purge(job)
        self._call_back(backend, job, outcome.kind)

    def _call_back(self, backend: Backend, job: Job, state: str) -> None:
        """Send ``job``'s callback if it has one and ``state`` ends it."""
        url = callback_url(job, state)
        if url is None:
            return
        if self._callbacks is None:
            self._callbacks = Callbacks(backend, self.executor.http())
        self._callbacks.send(job.id, url)

    def _purge(self, job: Job) -> None:
        if self._purger.enabled and PRIVATE in job.metadata:  # only HTTP jobs are cached
            self._purger.soon(job.id)

    def _record(self, job: Job, outcome: Outcome) -> None:
        self.info.processed += 1
        if outcome.kind == "poisoned" or (outcome.kind == "retry" and outcome.count_attempt):
            self.info.failed += 1
        assert self._recorder is not None
        self._recorder.add(job, outcome)

    async def _release_now(self, job: Job) -> None:
        assert self._recorder is not None
        try:
            await self._recorder.backend.release([job])
        except Exception as exc:  # the store's failure, or a job task code spoiled
            logger.error("could not release job %s (%s): its lease will expire", job.id, exc)

    # -- shutdown --------------------------------------------------------------------
    async def _shutdown(self, backend: Backend, keepers: list[asyncio.Task[None]]) -> None:
        self._to_release.extend(self._held)  # claimed, never started: back at once
        self._held.clear()
        pending = [r.task for r in self._running.values()]
        if pending and not self._stop_now:
            logger.info(
                "stopping: waiting up to %gs for %d running job(s)",
                self.config.shutdown_timeout,
                len(pending),
            )
            # The keeper still runs: leases outlive a long wait.
            await asyncio.wait(pending, timeout=self.config.shutdown_timeout)
        leftover = [r.task for r in self._running.values()]
        for running in self._running.values():
            running.stop()
        if leftover:
            await asyncio.gather(*leftover, return_exceptions=True)
        assert self._recorder is not None
        await self._recorder.drain()
        if self._callbacks is not None:
            await self._callbacks.close(grace=0.0 if self._stop_now else CALLBACK_GRACE_S)
        try:
            await self.executor.close()
        except Exception:  # a failed close must not keep jobs from being released
            logger.exception("closing the HTTP steps' connections failed")
        if self._to_release:
            await self._release_all(backend, self._to_release)
        for keeper in keepers:
            keeper.cancel()
        await asyncio.gather(*keepers, return_exceptions=True)
        await self._purger.aclose(grace=0.0 if self._stop_now else PURGE_GRACE_S)
        with contextlib.suppress(ConveyorError):
            await self._store(backend.unregister_worker(self.id))
        logger.info("worker %s stopped after %d job(s)", self.id, self.info.processed)
        if self._keeper_failed:
            raise RuntimeError("a lease keeper of the worker failed; see the log above")

    async def _claim(self, backend: Backend, limit: int) -> list[Job]:
        """One claim, in the claim loop's own task (a task per claim cost a turn of the
        loop and 8-11 us); a stop-now cuts it as it cuts the idle wait (_cut_store_calls):
        BackendUnavailable then, as a store that failed."""
        task = self._claim_task = asyncio.current_task()
        self._claims += 1
        try:
            return await backend.claim(self.config.queues, self.id, limit, self.config.lease)
        except asyncio.CancelledError:
            if self._claim_cut and task is not None and task.uncancel() == 0:
                raise BackendUnavailable("stopping now: the store did not answer") from None
            raise
        finally:
            self._claim_task = None
            self._claim_cut = False

    async def _store(self, call: Awaitable[T]) -> T:
        """``call`` (a store call of the shutdown), cut short by a stop now: in flight at
        a second stop request, or made after it, it gets STOP_NOW_S. Cut short, it is a
        BackendUnavailable, as a store that failed: what it would have written is left
        to the leases (a release). The store may not answer for as long as it likes (a
        held lock, a stalled network: PostgreSQL has no timeout of its own), and "now"
        must not wait for it."""
        future = asyncio.ensure_future(call)
        self._store_calls.add(future)
        future.add_done_callback(self._store_calls.discard)
        if self._stop_now:
            asyncio.get_running_loop().call_later(STOP_NOW_S, future.cancel)
        try:
            return await future
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if future.cancelled() and self._stop_now and not (task and task.cancelling()):
                raise BackendUnavailable("stopping now: the store did not answer") from None
            raise

    async def _release_all(self, backend: Backend, jobs: list[Job]) -> None:
        """Give ``jobs`` back for other workers. A batch the store refuses to encode (a
        job whose task put what no store keeps into its own step) goes one by one: the
        others, never started ones among them, are still given back for free."""
        try:
            released = await self._store(backend.release(jobs))
        except ConveyorError as exc:
            logger.error(
                "could not release %d job(s) (%s): they run again once their leases expire",
                len(jobs),
                exc,
            )
            return
        except (TypeError, ValueError, RecursionError):
            released = 0
            for job in jobs:
                try:
                    released += await self._store(backend.release([job]))
                except Exception as exc:  # the store's, or this job's: its lease will do
                    logger.error(
                        "could not release job %s (%s): its lease will expire", job.id, exc
                    )
        logger.info("released %d job(s) for other workers", released)
        for job in jobs:
            self._purge(job)


def _give_back_steps(job: Job) -> None:
    """``job``'s unfinished steps as not started, for a release. The step that was
    running gets back the attempt its start counted: an HTTP step's retries are bounded
    by its own attempts, and each release (a shutdown, a lost lease) spent one, so that
    a step of two attempts given back once was poisoned after its first real failure."""
    for step in job.steps:
        if step.state == "running" and step.attempts > 0:
            step.attempts -= 1
        if step.state != "succeeded":
            step.state = "pending"


async def _let_started_jobs_begin() -> None:
    """One turn of the event loop: the tasks of jobs just started run to their first
    wait before the claim loop's next claim or wait does its own work in between
    (the pickup latency of W3 is measured at the job's first line)."""
    await asyncio.sleep(0)


async def run_worker(
    app: Conveyor,
    config: WorkerConfig,
    stop_signals: Sequence[int] = (),
    now_signals: Sequence[int] = (),
    on_stop_begun: Callable[[], object] | None = None,
) -> None:
    """Run a worker until a stop signal: the first graceful, a second one now. With
    ``now_signals`` (a supervisor's child), ``stop_signals`` only ever stop gracefully,
    and a ``now_signals`` one stops now (see :mod:`conveyor.worker.supervisor`).
    ``on_stop_begun`` is called when a stop begins (and again at later requests).

    The process is a worker from here on: its garbage collector is set for one
    (:mod:`conveyor.garbage`).
    """
    settle_for_service()
    worker = Worker(app, config)
    worker.on_stop_begun = on_stop_begun
    loop = asyncio.get_running_loop()
    graceful = worker.stop_gracefully if now_signals else worker.request_stop
    for sig in stop_signals:
        loop.add_signal_handler(sig, graceful)
    for sig in now_signals:
        loop.add_signal_handler(sig, worker.stop_now)
    try:
        await worker.run()
    finally:
        for sig in (*stop_signals, *now_signals):
            loop.remove_signal_handler(sig)
        await app.aclose()
