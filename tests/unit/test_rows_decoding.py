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

# One stored job by column (SQLite) and field (Redis) name, every value set apart from
# its neighbours, so that a value in the wrong place fails _check.
_STORED = {
    "id": "01a2-id",
    "queue": "mail",
    "task": "send",
    "priority": 7,
    "state": "running",
    "run_at": 11.5,
    "attempts": 2,
    "max_attempts": 9,
    "retry": '{"base":3.0,"exponent":2.0,"max_delay":60.0,"jitter":0.5}',
    "timeout": 4.5,
    "steps": '[{"name":"main","task":"send","args":[1]}]',
    "current_step": 0,
    "progress": '{"completed":1,"total":4,"message":"m"}',
    "result": '"the result"',
    "errors": '[{"type":"E"}]',
    "unique_key": "key-1",
    "metadata": '{"who":"me"}',
    "tenant": "tenant-a",
    "version": 5,
    "created_at": 100.0,
    "started_at": 101.0,
    "finished_at": 102.0,
    "updated_at": 103.0,
    "worker_id": "worker-1",
    "lease_until": 130.0,
}


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
    # Given a row of the jobs table in the current schema's column order
    path = tmp_path / "jobs.db"
    backend = create_backend(f"sqlite:///{path}")
    asyncio.run(backend.open())  # migrated to the current schema
    asyncio.run(backend.close())
    with contextlib.closing(sqlite3.connect(path)) as conn:
        columns = [r[1] for r in conn.execute("PRAGMA table_info(jobs)")]
    assert sorted(columns) == sorted(_STORED)
    row = tuple(_STORED[name] for name in columns)

    # When the row is decoded; Then each value is in its field
    _check(row_to_job(row))


def test_every_redis_field_lands_in_its_field() -> None:
    # Given the job as a Redis hash's values, in JOB_FIELDS order, as text
    values = [str(_STORED[name]) for name in JOB_FIELDS]

    # When they are decoded; Then each value is in its field
    _check(values_to_job(values))
