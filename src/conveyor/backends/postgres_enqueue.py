"""Storing new jobs on PostgreSQL, through a pooled connection or the caller's own.

One statement per call whatever its size (``insert_job`` for one job, with plain
parameters; ``insert_jobs`` for a batch, as one JSON parameter); a large batch
without unique keys goes by COPY instead, in one transaction. The database
clock stamps the jobs, unique keys held by active jobs are looked up after, and a
queue's row is written only the first time this process enqueues into it: the
upsert of an existing row costs a noticeable part of a single enqueue.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.rows import tuple_row
from psycopg.types.string import TextLoader

from conveyor.backends.postgres_copy import COLUMNS as COPY_COLUMNS
from conveyor.backends.postgres_copy import copy_chunks
from conveyor.backends.rows import Row, dumps, row_to_job, stamp_new
from conveyor.exceptions import BackendUnavailable, InvalidJob
from conveyor.job import Job, State, is_default_retry

#: A job whose unique key's holder finished between the INSERT and the lookup is
#: inserted again; more rounds than this means something else is wrong.
_INSERT_ROUNDS = 5
#: From this many jobs without unique keys, a batch goes by COPY: the server reads
#: rows without parsing a JSON batch, about twice as fast per job (a few more round
#: trips per batch).
COPY_MIN = 64


def job_fields(job: Job) -> dict[str, Any]:
    """The columns a new job brings (the store adds state, times and counters)."""
    return {
        "id": job.id,
        "queue": job.queue,
        "task": job.task,
        "priority": job.priority,
        "run_at": job.run_at,
        "max_attempts": job.max_attempts,
        "retry": None if is_default_retry(job.retry) else job.retry.to_dict(),
        "timeout": job.timeout,
        "steps": [s.to_storage() for s in job.steps],
        "unique_key": job.unique_key,
        "metadata": job.metadata or None,
        "tenant": job.tenant,
    }


class Inserter:
    """New jobs into one schema; remembers which queues it has created."""

    def __init__(self, queries: dict[str, str], channel: str) -> None:
        self._q = queries
        self.channel = channel
        self._queues: set[str] = set()
        #: Whether a worker waited for a hand-off at this process's last single enqueue
        #: (each answers it): the next one then tries a hand-off. Unknown at first.
        self._waiters = True

    def forget_queue(self, name: str) -> None:
        self._queues.discard(name)

    def remember_queue(self, name: str) -> None:
        self._queues.add(name)

    def unknown_queues(self, jobs: Sequence[Job]) -> list[str]:
        """The queues of ``jobs`` whose rows this process has not written yet."""
        return sorted({job.queue for job in jobs} - self._queues)

    def insert_sync(
        self, conn: psycopg.Connection[Any], jobs: Sequence[Job], own: bool = True
    ) -> list[Job]:
        """``own``: a connection of conveyor's in autocommit mode (a caller's
        transaction may roll back, so its queue rows are written every time).
        InvalidJob("id") when an id is taken: nothing of the batch is stored (the
        statement, or the COPY's transaction, fails whole; a caller's transaction is
        left failed, as by any error of its statements)."""
        try:
            return self._insert_sync(conn, jobs, own)
        except psycopg.errors.UniqueViolation as exc:
            taken = id_taken(exc)
            if taken is None:
                raise
            raise taken from exc

    async def insert_async(
        self, conn: psycopg.AsyncConnection[Any], jobs: Sequence[Job], own: bool = True
    ) -> list[Job]:
        try:
            return await self._insert_async(conn, jobs, own)
        except psycopg.errors.UniqueViolation as exc:
            taken = id_taken(exc)
            if taken is None:
                raise
            raise taken from exc

    def _insert_sync(
        self, conn: psycopg.Connection[Any], jobs: Sequence[Job], own: bool
    ) -> list[Job]:
        if own and _copyable(jobs):
            with conn.transaction():
                cur = conn.cursor(row_factory=tuple_row)
                now = _answer(cur.execute(self._q["now"]).fetchone())[0]
                with cur.copy(self._copy_sql) as copy:
                    for chunk in copy_chunks(jobs, now):
                        copy.write(chunk)
                cur.execute(self._q["after_copy"], self._after_copy(jobs))
            return self._stored(jobs, {}, own)
        cur = tuple_cursor(conn)
        if not own:  # conveyor's own connections read jsonb as text already
            cur.adapters.register_loader("jsonb", TextLoader)
        placed: dict[str, Job] = {}
        pending = list(jobs)
        for _ in range(_INSERT_ROUNDS):
            insert = self._round(pending, own)
            cur.execute(self._q[insert.query], insert.params)
            keys = self._look_up(insert, _answer(cur.fetchone()))
            if keys:
                cur.execute(self._q["active_by_unique_keys"], {"keys": keys})
                pending = insert.place(cur.fetchall(), placed)
            if not keys or not pending:
                return self._stored(jobs, placed, own)
        raise BackendUnavailable("unique keys kept changing hands; enqueue again")

    async def _insert_async(
        self, conn: psycopg.AsyncConnection[Any], jobs: Sequence[Job], own: bool
    ) -> list[Job]:
        if own and _copyable(jobs):
            async with conn.transaction():
                cur = conn.cursor(row_factory=tuple_row)
                await cur.execute(self._q["now"])
                now = _answer(await cur.fetchone())[0]
                async with cur.copy(self._copy_sql) as copy:
                    for chunk in copy_chunks(jobs, now):
                        await copy.write(chunk)
                await cur.execute(self._q["after_copy"], self._after_copy(jobs))
            return self._stored(jobs, {}, own)
        cur = tuple_cursor_async(conn)
        if not own:  # conveyor's own connections read jsonb as text already
            cur.adapters.register_loader("jsonb", TextLoader)
        placed: dict[str, Job] = {}
        pending = list(jobs)
        for _ in range(_INSERT_ROUNDS):
            insert = self._round(pending, own)
            await cur.execute(self._q[insert.query], insert.params)
            keys = self._look_up(insert, _answer(await cur.fetchone()))
            if keys:
                await cur.execute(self._q["active_by_unique_keys"], {"keys": keys})
                pending = insert.place(await cur.fetchall(), placed)
            if not keys or not pending:
                return self._stored(jobs, placed, own)
        raise BackendUnavailable("unique keys kept changing hands; enqueue again")

    @property
    def _copy_sql(self) -> str:
        return self._q["copy_jobs"].replace("{columns}", COPY_COLUMNS)

    def _after_copy(self, jobs: Sequence[Job]) -> dict[str, Any]:
        """Parameters of ``after_copy``: the queues to create, the queues to wake."""
        new = self.unknown_queues(jobs)
        ready = sorted({job.queue for job in jobs if job.state is State.QUEUED})
        return {"new_queues": new, "ready_queues": ready, "channel": self.channel}

    def _round(self, jobs: list[Job], own: bool) -> _InsertRound:
        new_queues = not own or any(job.queue not in self._queues for job in jobs)
        # Hand-offs only while workers wait (the statement costs more), and never in a
        # caller's transaction: it would hold the waiting worker's registration
        # locked, and that worker's next claim with it, until it ends.
        return _InsertRound(jobs, self.channel, new_queues, hand_off=own and self._waiters)

    def _look_up(self, insert: _InsertRound, answer: Row) -> list[str]:
        if insert.query != "insert_jobs":
            self._waiters = answer[4]
        return insert.keys_to_look_up(answer)

    def _stored(self, jobs: Sequence[Job], placed: dict[str, Job], own: bool) -> list[Job]:
        if own:  # the queues whose rows were written: a job not stored wrote none
            self._queues.update(job.queue for job in jobs if job.id not in placed)
        return [placed.get(job.id, job) for job in jobs]


class _InsertRound:
    """One INSERT and what its answer means (shared by the sync and the async path,
    which differ only in how they talk to the connection)."""

    def __init__(self, jobs: list[Job], channel: str, new_queues: bool, hand_off: bool) -> None:
        self.jobs = jobs
        self.params: dict[str, Any]
        if len(jobs) == 1:
            self.query = "insert_job_hand_off" if hand_off else "insert_job"
            fields = job_fields(jobs[0])
            for name in ("retry", "steps", "metadata"):
                if fields[name] is not None:
                    fields[name] = dumps(fields[name])
            self.params = fields
        else:
            self.query = "insert_jobs"
            self.params = {"batch": dumps([job_fields(job) for job in jobs])}
        self.params["channel"] = channel
        self.params["new_queues"] = new_queues
        #: jobs not stored because an active job holds their unique key
        self.held: list[Job] = []

    def keys_to_look_up(self, answer: Row) -> list[str]:
        """Stamp the jobs with the store's answer; the unique keys found held."""
        now, stored, unique_ids = answer[0], answer[1], answer[2]
        for job in self.jobs:
            stamp_new(job, now)
        if stored == len(self.jobs):
            return []
        inserted = set(unique_ids or ())
        self.held = [j for j in self.jobs if j.unique_key is not None and j.id not in inserted]
        if stored + len(self.held) != len(self.jobs):
            # A job skipped without an active holder of its key: the statement names
            # only that index as arbiter (a taken id fails it), so this cannot happen.
            raise BackendUnavailable("a job of the batch was neither stored nor held")
        return sorted({j.unique_key for j in self.held if j.unique_key is not None})

    def place(self, holders: list[Row], placed: dict[str, Job]) -> list[Job]:
        """Record, per job not stored, the active job holding its key; the jobs whose
        key's holder finished between the INSERT and the lookup (to insert again)."""
        by_key = {job.unique_key: job for job in map(row_to_job, holders)}
        again: list[Job] = []
        for job in self.held:
            holder = by_key.get(job.unique_key)
            if holder is None:
                again.append(job)
            else:
                placed[job.id] = holder
        return again


def id_taken(exc: psycopg.errors.UniqueViolation) -> InvalidJob | None:
    """InvalidJob for a violation of the jobs' primary key (a job id stored already);
    None for any other."""
    if exc.diag.constraint_name != "jobs_pkey":
        return None
    found = _TAKEN_ID.search(exc.diag.message_detail or "")
    which = f"{found.group(1)!r} is" if found else "one of the batch's ids is"
    return InvalidJob("id", f"{which} taken by a stored job; no job was stored")


#: PostgreSQL's detail of a unique violation: ``Key (id)=(<id>) already exists.``
_TAKEN_ID = re.compile(r"^Key \(id\)=\((.*)\) already exists")


def tuple_cursor(conn: psycopg.Connection[Any]) -> psycopg.Cursor[Row]:
    """A cursor of tuples on ``conn`` that takes ``%(name)s`` placeholders: of the
    connection's own kind (a caller's may bind client-side, as Django's does), or
    psycopg's default where that kind is raw (``$1`` placeholders only)."""
    if issubclass(conn.cursor_factory, psycopg.RawCursor):
        return psycopg.Cursor(conn, row_factory=tuple_row)
    return conn.cursor(row_factory=tuple_row)


def tuple_cursor_async(conn: psycopg.AsyncConnection[Any]) -> psycopg.AsyncCursor[Row]:
    """:func:`tuple_cursor` of an async connection."""
    if issubclass(conn.cursor_factory, psycopg.AsyncRawCursor):
        return psycopg.AsyncCursor(conn, row_factory=tuple_row)
    return conn.cursor(row_factory=tuple_row)


def _copyable(jobs: Sequence[Job]) -> bool:
    return len(jobs) >= COPY_MIN and all(job.unique_key is None for job in jobs)


def _answer(row: Row | None) -> Row:
    if row is None:  # the statements always answer one row
        raise BackendUnavailable("the store did not answer the enqueue")
    return row
