"""conveyor: background jobs for Python.

Public API only; everything else is an implementation detail::

    from conveyor import Conveyor, Retry

    app = Conveyor("sqlite:///jobs.db")

    @app.task(max_attempts=3)
    def send(to: str) -> None: ...

    send.enqueue("ada@example.com")
"""

from conveyor.app import Conveyor
from conveyor.backends.base import (
    Backend,
    JobFilter,
    MinuteCount,
    Page,
    QueueInfo,
    RetriedAll,
    Stats,
    WorkerInfo,
)
from conveyor.context import TaskContext, current_context
from conveyor.exceptions import (
    BackendCorrupt,
    BackendUnavailable,
    Cancel,
    ConfigError,
    ConveyorError,
    InvalidJob,
    JobCancelled,
    JobFailed,
    JobNotFound,
    JobStateError,
    JobTimeout,
    Poison,
    QueueNotFound,
    Retry,
    TaskNotFound,
    UniqueKeyHeld,
)
from conveyor.handle import JobHandle
from conveyor.job import Job, Outcome, Priority, Progress, RetryPolicy, State, Step
from conveyor.task import Task

__version__ = "0.1.0"

__all__ = [
    "Backend",
    "BackendCorrupt",
    "BackendUnavailable",
    "Cancel",
    "ConfigError",
    "Conveyor",
    "ConveyorError",
    "InvalidJob",
    "Job",
    "JobCancelled",
    "JobFailed",
    "JobFilter",
    "JobHandle",
    "JobNotFound",
    "JobStateError",
    "JobTimeout",
    "MinuteCount",
    "Outcome",
    "Page",
    "Poison",
    "Priority",
    "Progress",
    "QueueInfo",
    "QueueNotFound",
    "RetriedAll",
    "Retry",
    "RetryPolicy",
    "State",
    "Stats",
    "Step",
    "Task",
    "TaskContext",
    "TaskNotFound",
    "UniqueKeyHeld",
    "WorkerInfo",
    "__version__",
    "current_context",
]
