"""A worker's settings (the flags of ``conveyor worker``), checked before it starts."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from conveyor.exceptions import ConfigError, ConveyorError
from conveyor.task import validate_queue_name

#: The most jobs a worker process runs, claims or holds at once (--concurrency, --fetch,
#: --prefetch, threads): far beyond any process's means, and a typo's extra zeros are
#: refused here rather than when the store is asked (an int past 64 bits crashed the
#: worker's registration; past 32, PostgreSQL's column refused it).
MAX_SLOTS = 100_000


@dataclass
class WorkerConfig:
    """What ``Worker`` runs with; ``validate`` checks it (the worker calls it first)."""

    queues: list[str] = field(default_factory=lambda: ["default"])
    concurrency: int = 10
    fetch: int | None = None  # jobs per claim; default: concurrency
    prefetch: int = 0  # jobs claimed ahead of free slots, started as slots free up
    registered_only: bool = False  # refuse jobs naming an unregistered import path
    interval: float = 1.0  # seconds between claims when no wake-up arrives
    lease: float = 30.0
    max_jobs: int | None = None  # recycle after this many jobs
    shutdown_timeout: float = 30.0
    threads: int | None = None  # thread pool for sync tasks; default: concurrency
    includes: list[str] = field(default_factory=list)

    def validate(self) -> None:
        """Raise ConfigError naming the first setting that is out of range."""
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
            if value is not None and value > MAX_SLOTS and name != "max_jobs":
                raise ConfigError(name, f"must be at most {MAX_SLOTS:,}, got {value}")
        if not 0 <= self.prefetch <= MAX_SLOTS:
            raise ConfigError("prefetch", f"must be from 0 to {MAX_SLOTS:,}, got {self.prefetch}")
        # Written so that NaN fails them too (no comparison with it is true): a NaN lease
        # passed, and the lease keeper died on it after the worker had started.
        for name in ("interval", "lease"):
            value = getattr(self, name)
            if not 0 < value < math.inf:
                raise ConfigError(name, f"must be a finite number of seconds > 0, got {value}")
        if not self.shutdown_timeout >= 0:  # inf: wait as long as the jobs run
            raise ConfigError(
                "shutdown_timeout", f"must be a number of seconds >= 0, got {self.shutdown_timeout}"
            )
