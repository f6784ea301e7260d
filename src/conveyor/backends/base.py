"""The Backend interface: everything above it speaks only this; one module per store below.

Methods are async and batch-first. A backend owns its clock (``now()``): every
time it writes (run_at, leases, timestamps) comes from the store's clock, so
workers on skewed machines behave.

Rules every implementation keeps (the conformance suite in
``conveyor.testing`` checks them):

* ``claim`` is atomic: no two workers hold a job at once; within a queue,
  lower priority first, then earlier ``run_at``, then id (FIFO); queues in the
  order given; paused queues are skipped; due ``scheduled`` / ``retrying``
  jobs are claimable without a separate daemon. A claim increments
  ``attempts``, so a worker that dies mid-job has spent an attempt.
* ``finish`` / ``save`` / ``extend`` are compare-and-set on
  (id, worker_id, attempts): a worker that lost its lease writes nothing.
* ``release`` gives a job back without costing an attempt.
* a finished job (succeeded, poisoned, cancelled) changes only through ``retry``.
* ``version`` increases on every change of a job.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from conveyor.exceptions import ConfigError, JobNotFound, JobStateError, QueueNotFound
from conveyor.job import Job, Outcome, State
from conveyor.storable import problem

#: Why ``retry_all`` leaves a job poisoned (``RetriedAll.held``), as reports tell it.
HELD_KEY_WHY = "another job with the same unique key waits or runs. Retry them once it ends."


@dataclass(frozen=True, slots=True)
class RetriedAll:
    """What ``retry_all`` did: the jobs queued again, and those left as they were
    because another job holding the same unique key waits or runs (``retry`` names it)."""

    retried: int = 0
    held: int = 0


@dataclass(frozen=True, slots=True)
class JobFilter:
    """What ``list_jobs`` returns: every given field must match."""

    states: frozenset[State] | None = None
    queue: str | None = None
    task: str | None = None
    tenant: str | None = None


@dataclass(frozen=True, slots=True)
class Page:
    """One page of ``list_jobs``; pass ``next_cursor`` back for the next page (None: last page)."""

    jobs: list[Job]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class JobHead:
    """A job without its steps, result and errors (``Backend.head``): enough to decide who
    may read it and whether a reader's copy (its ``version``) is still current."""

    id: str
    version: int
    state: State
    tenant: str | None
    metadata: dict[str, Any]

    @classmethod
    def of(cls, job: Job) -> JobHead:
        return cls(job.id, job.version, job.state, job.tenant, job.metadata)


@dataclass(frozen=True, slots=True)
class LeaseStatus:
    """Answer of ``extend``: which leases were extended, which jobs were asked to cancel
    meanwhile, and which leases this worker no longer holds. A store may leave a job it
    could not extend at once (its row busy) out of ``extended`` without calling it lost:
    its lease is extended at the next call."""

    extended: list[str]
    cancelling: list[str]
    lost: list[str]


@dataclass(frozen=True, slots=True)
class QueueInfo:
    name: str
    paused: bool
    counts: dict[str, int]  # by state name; every state present, 0 when none
    created_at: float


@dataclass(slots=True)
class WorkerInfo:
    id: str
    host: str
    pid: int
    queues: list[str]
    concurrency: int
    started_at: float = 0.0
    heartbeat_at: float = 0.0
    processed: int = 0
    failed: int = 0
    running: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "queues": self.queues,
            "concurrency": self.concurrency,
            "started_at": self.started_at,
            "heartbeat_at": self.heartbeat_at,
            "processed": self.processed,
            "failed": self.failed,
            "running": self.running,
        }


@dataclass(frozen=True, slots=True)
class MinuteCount:
    """One queue's figures for one minute (``Backend.minute_counts``): the dashboard's
    throughput and queue-depth chart."""

    #: start of the minute, seconds since the epoch on the store's clock (a multiple of 60)
    minute: float
    queue: str
    #: runs that ended in that minute, counted as ``Stats.processed`` counts them
    processed: int
    #: runs that failed in that minute, counted as ``Stats.failed`` counts them
    failed: int
    #: jobs waiting (``queued``) in the queue as last sampled in that minute; None: not sampled
    depth: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "minute": self.minute,
            "queue": self.queue,
            "processed": self.processed,
            "failed": self.failed,
            "depth": self.depth,
        }


#: Seconds between two calls of ``Backend.sample_depth`` by a worker's lease keeper: a
#: look in every minute of the store's clock, whatever the skew.
DEPTH_EVERY_S = 20.0
#: A worker registration without a heartbeat for this long (seconds) is removed by the
#: live workers (conveyor.worker.leases): its process is gone (killed, its machine lost),
#: and the registry, which the dashboard and `conveyor workers` list, would keep it for
#: ever. A worker only cut off that long registers again with its next heartbeat.
DEAD_WORKER_S = 3600.0

#: Seconds a minute's counts are kept after the minute starts (``Backend.keep_counts``):
#: at least a day of whole minutes.
KEEP_COUNTS = 25 * 3600.0


@dataclass(frozen=True, slots=True)
class Stats:
    processed: int
    failed: int
    counts: dict[str, int]  # jobs by state, all queues
    store: dict[str, Any]  # the store's own figures (size, version, ...)

    def to_dict(self) -> dict[str, Any]:
        return {
            "processed": self.processed,
            "failed": self.failed,
            "counts": self.counts,
            "store": self.store,
        }


def unique_key_of(job: Job) -> str:
    """``job``'s unique key, for ``Backend.enqueue_once``; ValueError without one."""
    if job.unique_key is None:
        raise ValueError(f"job {job.id}: enqueue_once needs a job with a unique key")
    return job.unique_key


def could_exist(key: object) -> bool:
    """Whether a job id or a queue name could be stored: a string every store can hold.
    One with a NUL or a lone surrogate (from a URL, a command line) would reach a store
    as an error, not as the answer that there is no such thing (see conveyor.storable)."""
    return isinstance(key, str) and problem(key) is None


def known_id(job_id: str) -> None:
    """JobNotFound for an id no job can have (see ``could_exist``)."""
    if not could_exist(job_id):
        raise JobNotFound(job_id)


def known_queue(name: str) -> None:
    """QueueNotFound for a name no queue can have (see ``could_exist``)."""
    if not could_exist(name):
        raise QueueNotFound(name)


def delete_refused(job_id: str, state: str, states: Sequence[State] | None) -> JobStateError:
    """The error of a ``delete`` that left job ``job_id`` alone in ``state``."""
    if state in (State.RUNNING.value, State.CANCELLING.value) or not states:
        return JobStateError(job_id, state, "delete a running job (cancel it first)")
    named = " or ".join(s.value for s in states)
    return JobStateError(job_id, state, f"delete (only a job that is {named})")


def matches_nothing(filter: JobFilter | None, cursor: str | None) -> bool:
    """Whether a listing asks for text no job can hold (its answer: no jobs)."""
    asked = (cursor,) if filter is None else (filter.queue, filter.task, filter.tenant, cursor)
    return any(value is not None and not could_exist(value) for value in asked)


class Backend(abc.ABC):
    """A job store. Construct with a URL; ``open()`` before use, ``close()`` after."""

    #: URL scheme(s) served, e.g. ``("sqlite",)``.
    schemes: tuple[str, ...] = ()

    url: str

    # -- lifecycle ---------------------------------------------------------
    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and make sure the schema is there (or refuse with a clear error)."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    async def check(self) -> None:
        """Whether the store can be used now, as ``open`` finds out (reachable, its
        schema current; BackendUnavailable or ConfigError if not), leaving nothing
        open. A supervisor asks before it starts its workers. This default opens the
        store, asks its clock and closes it; a store whose ``open`` does more than
        the check (a pool of connections) answers with less."""
        try:
            await self.open()
            await self.now()
        finally:
            await self.close()

    async def warn_about_setup(self) -> None:
        """Log, once per store and process, what the store's set-up risks losing (a
        Redis that keeps nothing on disk). The long-running processes call it as they
        start (a worker, the API), as Sidekiq's server does; a short command or an
        app's enqueue does not, so the warning is not repeated on every call. Opens the
        store itself when needed. Nothing to say by default."""
        return None

    async def check_rights(self) -> None:
        """ConfigError when the store would refuse this connection what a worker or the
        API does (PostgreSQL: a right on one of its tables that the role lacks): the
        long-running processes ask as they start, so that a missing grant is one clear
        error then rather than every claim refused. Opens the store itself when
        needed. Nothing to check by default."""
        return None

    async def migrate(self) -> tuple[int, int]:
        """Create or upgrade the store's schema; the version before and after.

        Safe to run from several processes at once. Stores without a schema of
        their own answer ``(0, 0)``.
        """
        return (0, 0)

    @abc.abstractmethod
    async def now(self) -> float:
        """The store's clock, seconds since the epoch."""

    # -- jobs ----------------------------------------------------------------
    def enqueue_blocking(self, jobs: Sequence[Job]) -> list[Job] | None:
        """Optional fast path for synchronous callers, without an event loop.

        None means "not supported here": the caller goes through ``enqueue`` on
        an event loop instead. Opens the backend itself when needed.
        """
        return None

    def enqueue_in(self, connection: Any, jobs: Sequence[Job]) -> list[Job]:
        """Store jobs through the caller's own database connection, inside the
        caller's transaction (transactional enqueue). Only where the store allows it."""
        raise ConfigError(
            "connection",
            "enqueue through a connection needs a PostgreSQL store, "
            f"not {urlsplit(self.url).scheme or self.url}",
        )

    async def enqueue_in_async(self, connection: Any, jobs: Sequence[Job]) -> list[Job]:
        """:meth:`enqueue_in` with an async connection."""
        return self.enqueue_in(connection, jobs)

    @abc.abstractmethod
    async def enqueue(self, jobs: Sequence[Job]) -> list[Job]:
        """Store new jobs in one round trip; returns them as stored.

        ``run_at`` of 0 means now (store clock); a future ``run_at`` stores the job
        ``scheduled``. A job whose ``unique_key`` is held by an active job is not
        stored: the active job is returned in its place.
        """

    @abc.abstractmethod
    async def claim(
        self, queues: Sequence[str], worker_id: str, limit: int, lease: float
    ) -> list[Job]:
        """Take up to ``limit`` ready jobs for ``worker_id``, leased for ``lease`` seconds."""

    @abc.abstractmethod
    async def extend(self, job_ids: Sequence[str], worker_id: str, lease: float) -> LeaseStatus:
        """Push the leases of jobs this worker holds ``lease`` seconds into the future."""

    @abc.abstractmethod
    async def save(self, job: Job) -> bool:
        """Write a running job's progress, steps and current step (under its lease)."""

    @abc.abstractmethod
    async def finish(self, items: Sequence[tuple[Job, Outcome]]) -> list[bool]:
        """Record how runs ended (under their leases); True where it was written.

        The job carries its steps, current step, result and progress as the
        executor left them; the outcome says what state follows.
        """

    @abc.abstractmethod
    async def release(self, jobs: Sequence[Job]) -> int:
        """Give held jobs back (shutdown): queued again, the attempt not counted."""

    @abc.abstractmethod
    async def get(self, job_id: str) -> Job:
        """The job, or :class:`~conveyor.exceptions.JobNotFound`."""

    async def head(self, job_id: str) -> JobHead:
        """The job's head, or :class:`~conveyor.exceptions.JobNotFound`.

        One indexed read of four fields: the API answers most polls (``304 Not Modified``)
        from it alone, without reading and decoding the whole job. This default reads the
        whole job; a backend overrides it with a read of only these fields.
        """
        return JobHead.of(await self.get(job_id))

    @abc.abstractmethod
    async def enqueue_once(self, job: Job) -> Job:
        """``job`` stored, unless a stored job carries its ``unique_key`` in any state
        (the job ``find_unique`` finds): then that job, and nothing is stored.

        One atomic step against the other ``enqueue_once`` calls of the key, from any
        process: a look-up then an ``enqueue`` is not, since a job made, run and
        finished by another process between the two frees its key for ``enqueue``. The
        HTTP API stores a job with an ``Idempotency-Key`` this way, so that requests
        racing with one key to several API processes make one job. ValueError when the
        job has no unique key.
        """

    @abc.abstractmethod
    async def find_unique(self, unique_key: str) -> Job | None:
        """The newest stored job carrying ``unique_key``, in any state; None when none.

        ``enqueue`` matches a unique key against active jobs only (a finished job frees
        its key); this finds finished jobs too, for as long as they are stored: until
        ``delete``, ``prune``, emptying or dropping their queue, or the store's own
        retention removes them. Newest means the highest id (ids are time-ordered). One
        indexed read, whatever the number of jobs. The HTTP API answers a repeated
        ``Idempotency-Key`` from it, so that a retried POST does not make a second job
        of one whose first run has already finished.
        """

    @abc.abstractmethod
    async def list_jobs(
        self, filter: JobFilter | None = None, cursor: str | None = None, limit: int = 50
    ) -> Page:
        """Jobs matching ``filter``, newest first, a page at a time."""

    @abc.abstractmethod
    async def cancel(self, job_id: str, reason: str = "cancelled") -> Job:
        """Waiting → ``cancelled``; running → ``cancelling`` (the worker stops it);
        finished → unchanged. Returns the job as it is now."""

    @abc.abstractmethod
    async def delete(self, job_id: str, states: Sequence[State] | None = None) -> bool:
        """Remove a job that is not running. True if removed, False if there was none;
        :class:`~conveyor.exceptions.JobStateError` if it is running, or, with
        ``states``, in none of them (checked with the removal, at once: a job retried
        since a caller saw it poisoned is not removed as a queued one)."""

    @abc.abstractmethod
    async def retry(self, job_id: str) -> Job:
        """Poisoned or cancelled → ``queued`` now, attempts reset, resuming at the
        failed step. Other states: :class:`~conveyor.exceptions.JobStateError`; a job
        whose unique key another active job holds (a key belongs to one active job at a
        time): :class:`~conveyor.exceptions.UniqueKeyHeld`, one of those."""

    @abc.abstractmethod
    async def retry_all(self, filter: JobFilter) -> RetriedAll:
        """``retry`` every poisoned / cancelled job matching ``filter``: how many were,
        and how many were left because another job holds their unique key."""

    @abc.abstractmethod
    async def recover_expired(self) -> list[Job]:
        """Running jobs whose lease ran out: back to waiting (the claim already
        counted the attempt), ``poisoned`` when attempts are spent, ``cancelled``
        when a cancel was asked; the jobs so changed, as stored now. A job handed to
        a worker that never took it (PostgreSQL and Redis hand jobs over) waits again
        as it was and is not among them, unless it was asked to cancel and ends
        ``cancelled``."""

    @abc.abstractmethod
    async def prune(self, before: float, states: Sequence[State] | None = None) -> int:
        """Delete finished jobs that finished before ``before``; how many."""

    # -- queues --------------------------------------------------------------
    @abc.abstractmethod
    async def create_queue(self, name: str) -> None: ...

    @abc.abstractmethod
    async def pause_queue(self, name: str) -> None: ...

    @abc.abstractmethod
    async def resume_queue(self, name: str) -> None: ...

    @abc.abstractmethod
    async def empty_queue(self, name: str) -> int:
        """Delete the queue's waiting jobs (running ones finish); how many."""

    @abc.abstractmethod
    async def drop_queue(self, name: str) -> int:
        """Delete the queue and its jobs that are not running; how many jobs."""

    @abc.abstractmethod
    async def list_queues(self) -> list[QueueInfo]: ...

    # -- workers and counters ------------------------------------------------
    @abc.abstractmethod
    async def register_worker(self, worker: WorkerInfo) -> None: ...

    @abc.abstractmethod
    async def heartbeat_worker(self, worker: WorkerInfo) -> None:
        """Store the worker's figures (processed, failed, running) and its heartbeat time."""

    @abc.abstractmethod
    async def unregister_worker(self, worker_id: str) -> None: ...

    @abc.abstractmethod
    async def forget_worker(self, worker_id: str, silent_before: float) -> bool:
        """Remove the registration of ``worker_id`` (another worker's, gone) if its last
        heartbeat, on the store's clock, is still before ``silent_before``; whether it
        did. One atomic step: a heartbeat that comes meanwhile keeps the worker listed
        (a removal decided on a listing read earlier would drop a worker just back)."""

    @abc.abstractmethod
    async def list_workers(self) -> list[WorkerInfo]: ...

    @abc.abstractmethod
    async def stats(self) -> Stats: ...

    # -- counts per minute -----------------------------------------------------
    #: Seconds a minute's counts are kept after the minute starts; older ones are
    #: removed by ``sample_depth`` and ``prune`` (SQL stores) or expire (Redis).
    keep_counts: float = KEEP_COUNTS

    @abc.abstractmethod
    async def minute_counts(self, since: float, queue: str | None = None) -> list[MinuteCount]:
        """Per queue and minute, the minutes starting at or after ``since``, oldest first
        (then by queue name); minutes with nothing recorded are absent.

        ``finish`` and ``recover_expired`` add the runs they end to the current minute
        of the store's clock, in the same transaction (or script) as ``Stats``' totals
        and counted the same way, so the minutes add up to the totals' growth. The
        depth is what ``sample_depth`` last recorded in that minute. Counts are kept
        ``keep_counts`` seconds after the minute starts (25 hours: at least a day of
        minutes). ``queue``: that queue only.
        """

    @abc.abstractmethod
    async def sample_depth(self) -> None:
        """Record how many jobs wait (``queued``) in each queue, in the current minute.

        Each call looks whether some queue has no depth yet in this minute of the
        store's clock (a cheap read) and counts only then: one count per minute,
        however many processes call. Workers call it every ``DEPTH_EVERY_S`` seconds
        from their lease keeper, so a store with a running worker has a depth for every
        minute; the dashboard's overview calls it on each load, so that a store whose
        workers are stopped shows its backlog too. SQL stores also remove counts older
        than ``keep_counts`` when they count.
        """

    # -- wake-ups ------------------------------------------------------------
    @abc.abstractmethod
    async def wait(self, queues: Sequence[str], timeout: float) -> bool:
        """Sleep until work may be ready in ``queues`` or ``timeout`` passes.

        True means "something changed, claim now"; False means the timeout passed.
        A spurious True is allowed, a missed wake-up is not (callers also poll).
        """

    async def wait_for_jobs(
        self, queues: Sequence[str], worker_id: str, lease: float, timeout: float
    ) -> tuple[bool, list[Job]]:
        """``wait``, for worker ``worker_id``, which can start jobs at once: a store may
        hand it a job enqueued meanwhile, claimed for it (leased for ``lease`` seconds),
        rather than wake it to claim: one round trip less between an enqueue and the
        job's start. Answers what ``wait`` would, and the jobs handed over.

        The worker claims after every wait; a store that hands jobs over gives back
        there (and when the worker unregisters, or its lease runs out unstarted) any job
        handed over after the wait ended, without counting an attempt. This default
        hands over nothing.
        """
        return await self.wait(queues, timeout), []

    @abc.abstractmethod
    async def watch(self, job_id: str, version: int, timeout: float) -> Job | None:
        """The job as soon as its version is past ``version``; None after ``timeout``."""
