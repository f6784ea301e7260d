"""Writing outcomes: batched without a timer, never dropped silently.

While one ``finish`` call is in flight the next outcomes gather, and the
following call takes them all (group commit). It starts one turn of the event loop
after the call before returned, so that the jobs ending in the turn that answer came
in join it: fewer, larger batches (on SQLite, whose transactions take turns between
the processes, the W2n drain ran about 15 % faster; docs/benchmarks.md). Until an
outcome is written its job stays ``pending`` here, so the worker keeps extending its
lease.

When the store is down the batch is kept and tried again (a job whose lease
runs out meanwhile is recovered elsewhere: at least once still holds). A write that
failed may have been stored all the same (the connection dropped after the commit,
before its answer came: a restart of the server, a cut): tried again, its outcomes
are then refused as if their leases were lost. So a refusal that follows such a
failure looks at the job, and an outcome the store already has, from this run, counts
as written (its callback is sent, its cache purged), not as a lost lease. When a
batch cannot even be encoded (task code put into its job what no store keeps),
its outcomes are written one by one, and one that still fails is replaced by a
``poisoned`` outcome that says why, written over the job as the store has it — so
one bad job never holds up the others, and its reason is recorded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from conveyor.backends import redact_url
from conveyor.backends.base import Backend
from conveyor.exceptions import ConveyorError, JobNotFound
from conveyor.job import Job, Outcome, State
from conveyor.storable import storable
from conveyor.worker.streaks import Streak

logger = logging.getLogger("conveyor.worker")

#: Seconds between attempts to write outcomes while the store does not answer.
RETRY_S = 1.0
#: The state each outcome that ends a job leaves it in.
_ENDS = {"succeeded": State.SUCCEEDED, "poisoned": State.POISONED, "cancelled": State.CANCELLED}


class OutcomeRecorder:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._queued: list[tuple[Job, Outcome]] = []
        self._in_flight: list[tuple[Job, Outcome]] = []
        self._task: asyncio.Task[None] | None = None
        self.give_up = False  # set by a second stop signal: do not wait for the store
        self._failing = Streak()  # failed writes in a row
        #: Jobs whose outcome was in a write that failed: it may be stored all the same.
        self._unanswered: set[str] = set()
        #: Called with each outcome once the store has it (the worker sends callbacks).
        self.on_written: Callable[[Job, Outcome], None] | None = None

    def give_up_now(self) -> None:
        """A second stop signal: write nothing more, and stop the write in flight (a
        store that does not answer would hold the worker as long as it hangs)."""
        self.give_up = True
        if self._task is not None:
            self._task.cancel()

    @property
    def pending_ids(self) -> list[str]:
        """Jobs whose outcome is not written yet (their leases must be kept)."""
        return [job.id for job, _ in self._in_flight] + [job.id for job, _ in self._queued]

    def add(self, job: Job, outcome: Outcome) -> None:
        self._queued.append((job, outcome))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._write_all(), name="conveyor-outcomes")

    async def drain(self) -> None:
        """Wait until every outcome added so far is written (or given up on)."""
        while self._task is not None and not self._task.done():
            await asyncio.wait({self._task})
        if self._queued and not self.give_up:
            self._task = asyncio.create_task(self._write_all(), name="conveyor-outcomes")
            await asyncio.wait({self._task})
        if self._queued or self._in_flight:
            lost = self.pending_ids
            logger.error(
                "%d outcome(s) not written (store unavailable); their jobs run again "
                "elsewhere once their leases expire: %s",
                len(lost),
                ", ".join(lost[:20]),
            )

    async def _write_all(self) -> None:
        while self._queued and not self.give_up:
            # One turn of the loop first: the jobs that end in this turn, after the
            # write before was answered, join the batch (see the module's docstring).
            await asyncio.sleep(0)
            self._in_flight, self._queued = self._queued, []
            try:
                await self._write(self._in_flight)
            except ConveyorError as exc:
                # Tried every second while the store is away: said when the failures
                # start, then every TELL_EVERY_S (see conveyor.worker.streaks).
                lasted = self._failing.fail()
                if lasted == 0.0:
                    logger.error(
                        "could not record %d outcome(s): %s; trying again every %gs",
                        len(self._in_flight),
                        exc,
                        RETRY_S,
                    )
                elif lasted is not None:
                    logger.error(
                        "still could not record %d outcome(s) after %.0fs: %s",
                        len(self._in_flight),
                        lasted,
                        exc,
                    )
                self._unanswered.update(job.id for job, _ in self._in_flight)
                self._queued[:0] = self._in_flight
                self._in_flight = []
                await asyncio.sleep(RETRY_S)
                continue
            if (lasted := self._failing.end()) is not None:
                # The other half of the error lines above: the outcomes held meanwhile
                # are in the store now (or were refused for a lost lease, logged apart).
                logger.warning(
                    "recorded %d outcome(s) on %s after %.1fs of errors",
                    len(self._in_flight),
                    redact_url(self.backend.url),
                    lasted,
                )
            self._in_flight = []

    async def _write(self, batch: Sequence[tuple[Job, Outcome]]) -> None:
        written: Sequence[bool | None]
        try:
            written = await self.backend.finish(batch)
        except ConveyorError:
            raise
        except Exception:
            logger.exception("a batch of %d outcome(s) failed; writing them one by one", len(batch))
            written = [await self._write_one(job, outcome) for job, outcome in batch]
        for (job, outcome), ok in zip(batch, written, strict=True):
            if ok is None:
                self._unanswered.discard(job.id)
                continue  # not written, logged: the job's lease runs out (see _write_one)
            if not ok and job.id in self._unanswered and await self._stored_before(job, outcome):
                ok = True
                logger.info(
                    "job %s: its outcome was stored by a write whose answer was lost", job.id
                )
            self._unanswered.discard(job.id)
            if not ok:
                logger.warning("job %s: lease lost before its outcome was recorded", job.id)
            elif self.on_written is not None:
                self.on_written(job, outcome)

    async def _stored_before(self, job: Job, outcome: Outcome) -> bool:
        """Whether the store already has this run's outcome, which ends the job: the
        job ended in its state, at this attempt, held by no one, with this outcome's
        error last (when it has one). A retry is not looked for: the recovery of an
        expired lease leaves a job waiting at the same attempt too."""
        ends = _ENDS.get(outcome.kind)
        if ends is None:
            return False
        try:
            stored = await self.backend.get(job.id)
        except ConveyorError:
            return False  # gone, or the store away again: a lost lease, as it says
        if stored.state is not ends or stored.attempts != job.attempts or stored.worker_id:
            return False
        return outcome.error is None or (
            bool(stored.errors) and stored.errors[-1].get("at") == outcome.error.get("at")
        )

    async def _write_one(self, job: Job, outcome: Outcome) -> bool | None:
        """Write one outcome; if the store refuses it, a ``poisoned`` outcome that says
        why, over the job's steps, progress and errors as the store has them (what the
        run made of them cannot be stored: task code may have changed its own step's
        arguments, say); False if the job is gone; None if even that is refused: the job
        stays running in the store until its lease runs out and is recovered there."""
        try:
            return (await self.backend.finish([(job, outcome)]))[0]
        except ConveyorError:
            raise
        except Exception as exc:
            logger.exception("job %s: its outcome cannot be stored; poisoning it", job.id)
            reason = exc
        try:
            stored = await self.backend.get(job.id)
        except JobNotFound:
            return False  # deleted meanwhile: nothing left to record
        message = storable(f"the outcome could not be stored: {reason}")
        # The lease's (id, worker, attempt) stay this run's: finish writes only if it
        # still holds the job.
        job.steps, job.current_step = stored.steps, stored.current_step
        job.progress, job.errors, job.result = stored.progress, stored.errors, None
        step = job.steps[job.current_step] if 0 <= job.current_step < len(job.steps) else None
        if step is not None:
            step.state, step.last_error, step.finished_at = "failed", message, time.time()
        error = {
            "attempt": job.attempts,
            "step": storable(step.name) if step else None,
            "at": time.time(),
            "type": type(reason).__name__,
            "message": message,
        }
        try:
            return (await self.backend.finish([(job, Outcome.poisoned(error))]))[0]
        except ConveyorError:
            raise
        except Exception:
            # A bug of conveyor's (the store's own copy of the job refused): the
            # recorder must go on for the other jobs, and this one is not lost (its
            # lease runs out; see above).
            logger.critical(
                "job %s: not even its poisoned outcome can be stored; leaving it to the "
                "recovery of expired leases",
                job.id,
                exc_info=True,
            )
            return None
