"""What a running task can see of its job: attempt, job, progress, cancellation.

Task code reaches it through :func:`current_context` (a context variable, so it
works in async tasks and in sync tasks run on worker threads alike).
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from typing import Any

from conveyor.exceptions import Cancel, shown
from conveyor.job import Job, Step, fits_a_float
from conveyor.storable import problem

_current: contextvars.ContextVar[TaskContext | None] = contextvars.ContextVar(
    "conveyor_task_context", default=None
)


@dataclass
class TaskContext:
    """The job a task is running for.

    Attributes:
        job: the job as claimed (its steps, metadata, errors so far).
        step: the step being run.
        worker_id: the worker running it.
    """

    job: Job
    step: Step
    worker_id: str
    # A plain flag, not a threading.Event: set on the loop, read by task threads, and
    # one per job (an Event's lock and condition cost more than the rest of the context).
    _cancel_requested: bool = field(default=False, repr=False)
    _progress_dirty: bool = field(default=False, repr=False)
    # Set by the worker just before it cancels the run's asyncio task (shutdown, a lost
    # lease, a cancel request): a CancelledError without it is the task's own doing and
    # fails the attempt like any exception (task.cancelling() cannot tell them apart).
    _stopped_by_worker: bool = field(default=False, repr=False)

    @property
    def attempt(self) -> int:
        """1 on the first run, 2 on the first retry, ..."""
        return self.job.attempts

    @property
    def job_id(self) -> str:
        return self.job.id

    @property
    def metadata(self) -> dict[str, Any]:
        return self.job.metadata

    def progress(self, done: float, total: float | None = None, message: str | None = None) -> None:
        """Report progress; the worker writes it to the store within about a second.

        Non-blocking, safe from sync and async tasks.

        Raises:
            ValueError: ``done`` / ``total`` not finite numbers, or ``message`` not a string
                every store can keep (see conveyor.storable).
        """
        _check_number("progress.done", done)
        if total is not None:
            _check_number("progress.total", total)
        if message is not None:
            if not isinstance(message, str):
                raise ValueError(f"progress.message: expected a string, got {message!r:.80}")
            why = problem(message)
            if why is not None:
                raise ValueError(f"progress.message: {why}")
        self.job.progress.completed = done
        if total is not None:
            self.job.progress.total = total
        if message is not None:
            self.job.progress.message = message
        self._progress_dirty = True

    @property
    def cancelled(self) -> bool:
        """True once the job was asked to cancel (check it in long sync loops)."""
        return self._cancel_requested

    def raise_if_cancelled(self) -> None:
        """Stop here if the job was asked to cancel."""
        if self._cancel_requested:
            raise Cancel("cancel requested")

    def request_cancel(self) -> None:
        self._cancel_requested = True


def _check_number(field_name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not fits_a_float(value):
        raise ValueError(f"{field_name}: expected a finite number, got {shown(value)}")


def current_context() -> TaskContext:
    """The context of the task running in this thread / asyncio task.

    Raises:
        RuntimeError: outside a task run by a conveyor worker.
    """
    ctx = _current.get()
    if ctx is None:
        raise RuntimeError("current_context() is only available inside a running conveyor task")
    return ctx


def set_context(ctx: TaskContext | None) -> contextvars.Token[TaskContext | None]:
    return _current.set(ctx)


def reset_context(token: contextvars.Token[TaskContext | None]) -> None:
    _current.reset(token)
