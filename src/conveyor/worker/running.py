"""A job running in this worker, and the records of runs that left no outcome."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from conveyor.context import TaskContext
from conveyor.job import Job, Outcome
from conveyor.storable import storable


@dataclass
class Running:
    """One run of a job: its asyncio task and the context its code sees."""

    job: Job
    ctx: TaskContext
    task: asyncio.Task[Outcome]
    started: float
    #: Why the store refused to save the job (its task put into its steps what no store
    #: keeps): the run was stopped for it, and the job ends poisoned saying so.
    refused: Exception | None = None

    def stop(self) -> None:
        """Cancel the run on the worker's behalf (shutdown, a lost lease, a cancel
        request). Marked first: the executor and ``Worker._done`` tell this cancellation from
        one of the task's own making by the mark (see Executor.run)."""
        self.ctx._stopped_by_worker = True
        self.task.cancel()


def failed_run(job: Job, message: str) -> Outcome:
    """A failed attempt for a run that left no outcome: retried, or poisoned on its last."""
    if job.attempts >= job.max_attempts:
        return Outcome.poisoned(error_record(job, message))
    return Outcome.retry_in(job.retry.delay(job.attempts), error_record(job, message))


def error_record(job: Job, message: str, kind: str = "WorkerError") -> dict[str, object]:
    """An entry of the job's error history for what the worker, not the task, saw."""
    step = job.steps[job.current_step].name if 0 <= job.current_step < len(job.steps) else None
    return {
        "attempt": job.attempts,
        "step": step,
        "at": time.time(),
        "type": kind,
        "message": storable(message),  # it may quote an exception's text
    }
