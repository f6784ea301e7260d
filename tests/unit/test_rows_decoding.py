"""Stored rows become Jobs positionally (rows.row_to_job, Redis' values_to_job): every
column of the SQLite schema and every Redis field lands in its own field."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

from conveyor.backends import create_backend
from conveyor.backends.redis_rows import JOB_FIELDS, values_to_job
from conveyor.backends.rows import row_to_job
from conveyor.job import Job, State

_SQL_COLUMNS = (
    "id",
    "queue",
    "task",
    "priority",
    "state",
    "run_at",
    "attempts",
    "max_attempts",
    "retry",
    "timeout",
    "steps",
    "current_step",
    "progress",
    "result",
    "errors",
    "unique_key",
    "metadata",
    "tenant",
    "version",
    "created_at",
    "started_at",
    "finished_at",
    "updated_at",
    "worker_id",
    "lease_until",
)

# A row of the SQL stores' jobs table (_SQL_COLUMNS), every column set apart from its neighbours.
_ROW = (
    "01a2-id",  # id
    "mail",  # queue
    "send",  # task
    7,  # priority
    "running",  # state
    11.5,  # run_at
    2,  # attempts
    9,  # max_attempts
    '{"base":3.0,"exponent":2.0,"max_delay":60.0,"jitter":0.5}',  # retry
    4.5,  # timeout
    '[{"name":"main","task":"send","args":[1]}]',  # steps
    0,  # current_step
    '{"completed":1,"total":4,"message":"m"}',  # progress
    '"the result"',  # result
    '[{"type":"E"}]',  # errors
    "key-1",  # unique_key
    '{"who":"me"}',  # metadata
    "tenant-a",  # tenant
    5,  # version
    100.0,  # created_at
    101.0,  # started_at
    102.0,  # finished_at
    103.0,  # updated_at
    "worker-1",  # worker_id
    130.0,  # lease_until
)


def _check(job: Job) -> None:
    assert (job.id, job.queue, job.priority, job.state) == ("01a2-id", "mail", 7, State.RUNNING)
    assert (job.run_at, job.attempts, job.max_attempts, job.timeout) == (11.5, 2, 9, 4.5)
    assert (job.retry.base, job.retry.max_delay) == (3.0, 60.0)
    assert [(s.name, s.task, s.args) for s in job.steps] == [("main", "send", [1])]
    assert job.current_step == 0
    assert (job.progress.completed, job.progress.total, job.progress.message) == (1, 4, "m")
    assert (job.result, job.errors) == ("the result", [{"type": "E"}])
    assert (job.unique_key, job.metadata, job.tenant, job.version) == (
        "key-1",
        {"who": "me"},
        "tenant-a",
        5,
    )
    assert (job.created_at, job.started_at, job.finished_at, job.updated_at) == (
        100.0,
        101.0,
        102.0,
        103.0,
    )
    assert (job.worker_id, job.lease_until) == ("worker-1", 130.0)


def test_every_sql_column_lands_in_its_field(tmp_path: Path) -> None:
    # Given the columns of the SQLite schema, and a row whose values all differ
    path = tmp_path / "jobs.db"
    backend = create_backend(f"sqlite:///{path}")
    asyncio.run(backend.open())  # migrated to the current schema
    asyncio.run(backend.close())
    with contextlib.closing(sqlite3.connect(path)) as conn:
        columns = tuple(r[1] for r in conn.execute("PRAGMA table_info(jobs)"))
    assert columns == _SQL_COLUMNS

    # When the row is decoded; Then each value is in its field
    _check(row_to_job(_ROW))


def test_every_redis_field_lands_in_its_field() -> None:
    # Given the same job as a Redis hash's values: JOB_FIELDS are the SQL columns but
    # the task (the steps name it), as text
    assert tuple(f for f in _SQL_COLUMNS if f != "task") == JOB_FIELDS
    values = [str(v) for name, v in zip(_SQL_COLUMNS, _ROW, strict=True) if name != "task"]

    # When they are decoded; Then each value is in its field
    _check(values_to_job(values))
