"""Lease keeping, a part of the worker (:class:`conveyor.worker.runtime.Worker`).

Two loops run beside the claim loop for as long as the worker runs, shutdown included:

- the lease keeper, every ``min(lease/3, 5)`` seconds: extends the leases of every job
  this worker holds (running, claimed and not started, outcome not written yet, to be
  released), passes the store's cancel requests and lost leases on to the runs,
  heartbeats the worker, samples queue depths and recovers other workers' expired
  leases;
- the running-jobs watcher, every ``WATCH_RUNNING_S``: saves progress, and asks the
  store about jobs in an HTTP step only (a cancel request aborts their request in
  flight), so an idle or task-only worker pays nothing for it.

Store errors are logged and tried again next period: a passing hiccup must not leave
running jobs without their leases. A bug that kills a loop stops the worker loudly.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
from typing import TYPE_CHECKING

from conveyor.backends import redact_url
from conveyor.backends.base import (
    DEAD_WORKER_S,
    DEPTH_EVERY_S,
    Backend,
    LeaseStatus,
    WorkerInfo,
)
from conveyor.exceptions import BackendUnavailable, ConveyorError
from conveyor.job import Job, Outcome
from conveyor.worker.config import WorkerConfig
from conveyor.worker.executor import Executor, describe
from conveyor.worker.recorder import OutcomeRecorder
from conveyor.worker.running import Running, error_record
from conveyor.worker.streaks import Streak

logger = logging.getLogger("conveyor.worker")

#: How often the worker looks at its running jobs (seconds): jobs in an HTTP step are
#: asked whether they should cancel (an in-flight request is aborted within this of a
#: cancel request), and the progress of jobs running longer than this is saved.
WATCH_RUNNING_S = 0.5
#: How often a worker looks for registrations silent for DEAD_WORKER_S (seconds).
FORGET_EVERY_S = 60.0
#: A wake-up of the running-jobs watcher this late (seconds) is logged as a blocked loop.
LOOP_BLOCKED_S = 1.0


class LeaseKeeping:
    """The worker's lease keeper and running-jobs watcher (mixed into Worker)."""

    # The worker's state these loops read and change (set by Worker.__init__).
    id: str
    executor: Executor
    config: WorkerConfig
    info: WorkerInfo
    _running: dict[str, Running]
    _ended: list[tuple[Running, float]]  # long runs ended since the watcher's last wake-up
    _held: collections.deque[Job]  # claimed, not started
    _held_until: dict[str, float]  # per held job, until when its lease is surely ours
    _slot_freed: asyncio.Event  # wakes the claim loop waiting for room
    _to_release: list[Job]  # held jobs that will not finish here
    _recorder: OutcomeRecorder | None
    _stopping: asyncio.Event

    if TYPE_CHECKING:  # Worker's methods these loops call (declared for the checker only)

        def _purge(self, job: Job) -> None: ...  # tell the cache in front of the API

        def _record(self, job: Job, outcome: Outcome) -> None: ...  # count, hand to recorder

        def _call_back(self, backend: Backend, job: Job, state: str) -> None: ...  # callback

        def _start_buffered(self) -> int: ...  # start held jobs in free slots

    async def _keep_leases(self, backend: Backend) -> None:
        """Extend leases, pass cancel requests on, heartbeat, recover.

        Each step's store errors are logged and tried again next period: a passing
        hiccup must not leave running jobs without their leases.
        """
        period = max(min(self.config.lease / 3, 5.0), 0.05)
        recover_every = max(self.config.lease / 2, 0.1)
        next_recover = time.monotonic() + random.uniform(0, recover_every)
        next_depth = time.monotonic()
        next_forget = time.monotonic() + random.uniform(0, FORGET_EVERY_S)
        failing = Streak()
        while True:
            await asyncio.sleep(period)
            # The step the log names when one fails: a store that refuses some writes
            # (Redis out of memory) still takes the lease extensions, which come first.
            step = "extending the leases"
            try:
                await self._extend(backend)
                self.info.running = list(self._running)
                step = "the worker's heartbeat"
                await backend.heartbeat_worker(self.info)
                if time.monotonic() >= next_depth:
                    next_depth = time.monotonic() + DEPTH_EVERY_S
                    step = "sampling queue depths"
                    await backend.sample_depth()  # the dashboard's queue depths
                if time.monotonic() >= next_forget and not self._stopping.is_set():
                    next_forget = time.monotonic() + FORGET_EVERY_S
                    step = "forgetting dead workers"
                    await self._forget_dead_workers(backend)
                if time.monotonic() >= next_recover and not self._stopping.is_set():
                    next_recover = time.monotonic() + recover_every
                    step = "recovering expired leases"
                    for job in await backend.recover_expired():
                        self._purge(job)
                        logger.warning(
                            "recovered job %s from a lost worker: now %s", job.id, job.state
                        )
                        # Poisoned (its last attempt) or cancelled (asked while it ran):
                        # finished here, and nobody else will call back. Not once the
                        # worker stops: its callbacks and HTTP client are closed by then.
                        if not self._stopping.is_set():
                            self._call_back(backend, job, job.state.value)
            except ConveyorError as exc:
                lasted = failing.fail()
                if lasted == 0.0:
                    logger.error(
                        "lease keeping failed at %s: %s; trying again every %.1fs",
                        step,
                        exc,
                        period,
                    )
                elif lasted is not None:
                    logger.error(
                        "lease keeping still fails after %.0fs, at %s: %s", lasted, step, exc
                    )
            else:
                if (lasted := failing.end()) is not None:
                    logger.warning(
                        "lease keeping works again on %s after %.1fs of errors",
                        redact_url(backend.url),
                        lasted,
                    )

    async def _forget_dead_workers(self, backend: Backend) -> None:
        """Remove the registrations of workers silent for ``DEAD_WORKER_S`` (as Resque
        prunes dead workers). Their jobs went back with their leases long before; a
        worker that was only cut off registers again with its next heartbeat."""
        now = await backend.now()
        for worker in await backend.list_workers():
            silent = now - (worker.heartbeat_at or worker.started_at)
            if (
                worker.id != self.id
                and silent > DEAD_WORKER_S
                # Only if still silent: it may have come back since the listing.
                and await backend.forget_worker(worker.id, now - DEAD_WORKER_S)
            ):
                logger.warning(
                    "removed worker %s (%s, pid %d) from the registry: no heartbeat for %.0f s",
                    worker.id,
                    worker.host,
                    worker.pid,
                    silent,
                )

    async def _extend(self, backend: Backend) -> None:
        assert self._recorder is not None
        ids = [
            *self._running,
            *(job.id for job in self._held),
            *self._recorder.pending_ids,
            *(job.id for job in self._to_release),
        ]
        if not ids:
            return
        asked = self._asked()
        sent = time.monotonic()
        status = await backend.extend(ids, self.id, self.config.lease)
        if self._held and (status.cancelling or status.lost):
            self._drop_held(set(status.cancelling), set(status.lost), asked)
        self._stop_running(status, asked)
        if self._held:
            # Held jobs whose leases this renewed may start (see Worker._start_buffered).
            extended = set(status.extended)
            for job in self._held:
                if job.id in extended and asked.get(job.id) is job:
                    self._held_until[job.id] = sent + self.config.lease
            self._start_buffered()

    def _asked(self) -> dict[str, object]:
        """The runs and held claims an extension asks about, by job id. Its answer is
        about them: a job whose lease was lost may be claimed again here before the
        answer comes (the store was slow, or away), and that newer claim's lease is
        not the one lost."""
        asked: dict[str, object] = {job.id: job for job in self._held}
        asked.update(self._running)
        return asked

    def _stop_running(self, status: LeaseStatus, asked: dict[str, object]) -> None:
        """Cancel the running jobs asked to cancel, and those whose lease is gone."""
        for job_id in status.cancelling:
            self._cancel_job(job_id, "cancel requested")
        for job_id in status.lost:
            running = self._running.get(job_id)
            if running is not None and asked.get(job_id) is running:
                logger.warning("job %s: lease lost; stopping it here", job_id)
                self._cancel_job(job_id, "lease lost")

    async def _watch_running(self, backend: Backend) -> None:
        """Every half second: save progress, pass cancel requests on to HTTP steps.

        Progress (``ctx.progress``, or a step of a multi-step job done) is what a user
        polling the job watches move, so it is written within about a second, not at the
        next lease extension (up to 5 s away). A job is saved once it has run for a
        whole period: most short jobs finish first, and their outcome carries it anyway.

        A request may wait on a slow target for its whole timeout; a user who cancels
        expects it to stop now. The lease extension is the store's cheap way to ask which
        jobs are cancelling (and it keeps their leases).

        Its wake-ups also measure the event loop: one that comes ``LOOP_BLOCKED_S`` late
        means code on the loop blocked it (see ``_loop_was_blocked``).
        """
        while True:
            due = time.monotonic() + WATCH_RUNNING_S
            await asyncio.sleep(WATCH_RUNNING_S)
            late = time.monotonic() - due
            if late >= LOOP_BLOCKED_S:
                self._loop_was_blocked(late, due)
            self._ended.clear()
            try:
                await self._save_progress(backend)
            except ConveyorError as exc:
                # The lease keeper reports store errors; progress is saved next time.
                logger.debug("saving progress failed: %s", exc)
            ids = [
                job_id
                for job_id, running in self._running.items()
                if running.ctx.step.kind == "http" and not running.ctx.cancelled
            ]
            if not ids:
                continue
            asked = self._asked()
            try:
                status = await backend.extend(ids, self.id, self.config.lease)
            except ConveyorError as exc:
                # The lease keeper reports and retries store errors; this check just waits.
                logger.debug("checking HTTP jobs for cancel requests failed: %s", exc)
                continue
            self._stop_running(status, asked)

    def _loop_was_blocked(self, seconds: float, since: float) -> None:
        """Say that the event loop stood still, and which jobs may have stopped it.

        Code on the loop that blocks (an async task calling ``time.sleep`` or a sync
        client, a slow sync hook) stops every other job with it, and what the loop does
        for them: no timeout fires (asyncio cancels at the next ``await``), no lease is
        extended (the job may be recovered by another worker and run twice), no cancel
        request is seen. Nothing else would tell: the task's own timeout cannot.

        The suspects are the runs on the loop that went on past ``since`` (the stall
        began before it): those running still, and those that ended after it (a task
        that blocks and then returns has ended by the time the loop turns again; it
        ran for the stall at least, so the worker keeps only runs that long).
        """
        runs = [*self._running.values()]
        runs += [running for running, ended in self._ended if ended >= since]
        on_loop = [
            f"{running.job.id} ({running.job.task})"
            for running in runs
            if self.executor.runs_on_loop(running.ctx.step)
        ]
        logger.warning(
            "the event loop was blocked for at least %.1fs (async jobs running: %s): meanwhile no "
            "timeout fires, no lease is extended and no cancel request is seen. Blocking "
            "calls (time.sleep, sync I/O, long computations) belong in sync tasks, which "
            "run on threads, or in an await of asyncio.to_thread",
            seconds,
            ", ".join(on_loop[:5]) + (f" and {len(on_loop) - 5} more" if len(on_loop) > 5 else "")
            if on_loop
            else "none; a hook, middleware, the reporter, or threads holding the GIL?",
        )

    def _drop_held(self, cancelling: set[str], lost: set[str], asked: dict[str, object]) -> None:
        """Held jobs asked to cancel end cancelled without running; lost ones are gone
        (a claim made after the question is not the one the answer is about)."""
        keep: collections.deque[Job] = collections.deque()
        for job in self._held:
            if job.id in cancelling:
                self._record(
                    job, Outcome.cancelled(error_record(job, "cancel requested", "Cancelled"))
                )
            elif job.id not in lost or asked.get(job.id) is not job:
                keep.append(job)
                continue
            self._held_until.pop(job.id, None)
        if len(keep) < len(self._held):
            # Room to claim again: the claim loop may wait for it with no job running
            # (all it held waited for this extension, see Worker._start_buffered).
            self._slot_freed.set()
        self._held = keep

    async def _save_progress(self, backend: Backend) -> None:
        started_before = time.monotonic() - WATCH_RUNNING_S
        for running in list(self._running.values()):
            if running.ctx._progress_dirty and running.started <= started_before:
                running.ctx._progress_dirty = False
                try:
                    saved = await backend.save(running.job)
                except ConveyorError:
                    running.ctx._progress_dirty = True  # not written: next time
                    raise
                except (TypeError, ValueError, RecursionError) as exc:
                    # Not the store's trouble but the job's: its task put into its steps
                    # what no store keeps (encoding them failed). It fails that job, not
                    # the keeper (and with it the worker).
                    self._refused(running, exc)
                    continue
                except Exception as exc:
                    # A driver's error conveyor does not wrap: the store's trouble, as a
                    # BackendUnavailable would be (saved next time), not the job's.
                    running.ctx._progress_dirty = True
                    raise BackendUnavailable(f"saving progress failed: {exc}") from exc
                except BaseException:
                    running.ctx._progress_dirty = True
                    raise
                if saved:
                    self._purge(running.job)

    @staticmethod
    def _refused(running: Running, exc: Exception) -> None:
        logger.error(
            "job %s: the store refuses its progress (%s); stopping it",
            running.job.id,
            describe(exc),
        )
        running.refused = exc
        running.stop()

    def _cancel_job(self, job_id: str, why: str) -> None:
        running = self._running.get(job_id)
        if running is not None and not running.ctx.cancelled:
            logger.info("cancelling job %s: %s", job_id, why)
            if why == "cancel requested":
                running.ctx.request_cancel()
            running.stop()
