"""Every exception conveyor raises, and the three that task code raises.

The tree is shallow on purpose::

    ConveyorError
    ├── InvalidJob          bad input to enqueue / admin calls (names the field)
    ├── ConfigError         a bad URL, option or setting (names the setting)
    ├── TaskNotFound        a task name that is not registered / importable
    ├── JobNotFound         no job with that id
    ├── QueueNotFound       no queue with that name (admin commands)
    ├── JobStateError       the job is not in a state that allows the action
    │   └── UniqueKeyHeld   a retry refused: another active job holds its unique key
    ├── BackendUnavailable  the store did not answer; driver errors are wrapped in it
    ├── BackendCorrupt      the store's file is damaged or not a database: both a
    │                       ConfigError and a BackendUnavailable, that no retry mends
    └── JobFailed           ``handle.wait()`` on a job that ended poisoned
        └── JobCancelled    ``handle.wait()`` on a job that ended cancelled

Task code tells the worker what happens next by raising one of
:class:`Retry`, :class:`Poison` or :class:`Cancel`; the worker never guesses.
They derive from :class:`TaskControl`, not from :class:`ConveyorError`, because
they are instructions, not errors.
"""

from __future__ import annotations

import math
from typing import Any


class ConveyorError(Exception):
    """Root of every error raised by conveyor."""


class InvalidJob(ConveyorError, ValueError):
    """Bad input to an enqueue or admin call. ``field`` names what was wrong."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class ConfigError(ConveyorError, ValueError):
    """A bad URL, option or setting. ``field`` names the setting."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class TaskNotFound(InvalidJob):
    """No task of that name is registered and none can be imported from that path."""

    def __init__(self, name: str, problem: str | None = None) -> None:
        self.name = name
        super().__init__("task", problem or f"unknown task {name!r}")


class JobNotFound(ConveyorError, LookupError):
    """No job with that id (or not visible to the caller)."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"job {job_id!r} not found")


class QueueNotFound(ConveyorError, LookupError):
    """No queue with that name."""

    def __init__(self, queue: str) -> None:
        self.queue = queue
        super().__init__(f"queue: no queue named {queue!r}")


class JobStateError(ConveyorError):
    """The job's state does not allow the action (e.g. retrying a succeeded job)."""

    def __init__(self, job_id: str, state: str, action: str) -> None:
        self.job_id = job_id
        self.state = state
        self.action = action
        super().__init__(f"job {job_id!r} is {state}: cannot {action}")


class UniqueKeyHeld(JobStateError):
    """A retry refused: another job holding the same unique key waits or runs."""

    def __init__(self, job_id: str, state: str, unique_key: str | None) -> None:
        self.unique_key = unique_key
        super().__init__(
            job_id, state, f"retry: unique key {unique_key!r} is held by another active job"
        )


class BackendUnavailable(ConveyorError):
    """The store did not answer or refused the operation."""


class BackendCorrupt(ConfigError, BackendUnavailable):
    """The store at the URL cannot be read: a SQLite file that is not a database, or is
    damaged. A configuration to fix (``field`` names the URL; a command exits 2), and a
    store that cannot answer (what catches BackendUnavailable, an API's 503, takes it
    too); but no retry mends it: a worker stops rather than waiting as through an
    outage. conveyor leaves the file as it is."""


class JobFailed(ConveyorError):
    """Raised by ``wait()`` when the job ended without a result."""

    def __init__(self, job_id: str, state: str, message: str | None) -> None:
        self.job_id = job_id
        self.state = state
        self.message = message
        super().__init__(f"job {job_id} ended {state}" + (f": {message}" if message else ""))


class JobCancelled(JobFailed):
    """Raised by ``wait()`` when the job was cancelled."""


class JobTimeout(ConveyorError, TimeoutError):
    """Raised by ``wait(timeout=)`` when the job did not finish in time."""


# ---------------------------------------------------------------------------
# Raised by task code.
# ---------------------------------------------------------------------------
class TaskControl(Exception):
    """Base of the instructions task code raises to steer its job."""


class Retry(TaskControl):
    """Run this job again later. ``delay`` in seconds; None means the retry policy's delay.

    Counts as a failed attempt unless ``count_attempt=False`` (a "snooze").
    """

    def __init__(
        self, delay: float | None = None, reason: str = "", *, count_attempt: bool = True
    ) -> None:
        if delay is not None and (
            isinstance(delay, bool)
            or not isinstance(delay, int | float)
            # (an int is finite however large: math.isfinite raises OverflowError for one)
            or (isinstance(delay, float) and not math.isfinite(delay))
            or delay < 0
        ):
            raise ValueError(f"delay: must be a finite number of seconds >= 0, got {shown(delay)}")
        self.delay = delay
        self.reason = reason
        self.count_attempt = count_attempt
        super().__init__(reason or f"retry requested (delay={shown(delay)})")


class Poison(TaskControl):
    """Stop retrying: the job ends ``poisoned`` at once with ``reason``."""

    def __init__(self, reason: str = "poisoned by task") -> None:
        self.reason = reason
        super().__init__(reason)


class Cancel(TaskControl):
    """Stop the job: it ends ``cancelled`` with ``reason``."""

    def __init__(self, reason: str = "cancelled by task") -> None:
        self.reason = reason
        super().__init__(reason)


def describe(exc: BaseException) -> dict[str, Any]:
    """A JSON-able summary of an exception for a job's error history."""
    return {"type": type(exc).__qualname__, "message": str(exc)}


def shown(value: Any, width: int = 80) -> str:
    """``repr(value)`` cut at ``width`` characters, for a message. An int too long for
    Python to write out (past ``sys.get_int_max_str_digits()`` digits, a ValueError) is
    told by its sign and size: the message about it must not fail in its turn."""
    try:
        text = repr(value)
    except ValueError:
        sign = "a negative" if value < 0 else "an"
        return f"<{sign} int of {value.bit_length():,} bits>"
    return text[:width]
