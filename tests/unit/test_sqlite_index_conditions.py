"""SQLite's partial indexes after version 4 (0004_index_conditions.sql): their conditions
hold no IN list of more than two values, and a version-3 file upgraded to them keeps
listing, pruning and unique keys working (the conformance suite covers the behaviour on
new files, tests/unit/test_sqlite_plans.py the plans)."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from pathlib import Path

from conveyor.backends import sqlite as sqlite_module
from conveyor.backends.base import JobFilter
from conveyor.backends.sqlite import SCHEMA_VERSION, SQLiteBackend
from conveyor.job import Job, Outcome, State
from conveyor.testing.harness import make_job
from tests.migrations import schema_stopped_at


def _index_conditions(path: Path) -> dict[str, str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'jobs'"
            " AND sql LIKE '% WHERE %'"
        ).fetchall()
    return {name: sql.split(" WHERE ", 1)[1] for name, sql in rows}


def test_no_partial_index_condition_holds_an_in_list_of_more_than_two_values(
    tmp_path: Path,
) -> None:
    # Given a new file
    path = tmp_path / "new.db"
    backend = SQLiteBackend(f"sqlite:///{path}")
    asyncio.run(backend.open())
    asyncio.run(backend.close())

    # When its partial indexes' conditions are read
    conditions = _index_conditions(path)

    # Then none has an IN list of three values or more (SQLite checks those through a
    # temporary b-tree built on every run of an INSERT or UPDATE)
    assert {"jobs_listing", "jobs_unique_key", "jobs_ready"} <= set(conditions)
    long_lists = {
        name: condition
        for name, condition in conditions.items()
        if any(part.count(",") >= 2 for part in re.findall(r"IN \(([^)]*)\)", condition))
    }
    assert long_lists == {}


def test_a_version_3_file_is_upgraded_and_keeps_its_listing_pruning_and_unique_keys(
    tmp_path: Path,
) -> None:
    # Given a file made by a conveyor whose schema stopped at version 3, with a job
    # that succeeded and a waiting job holding a unique key
    path = tmp_path / "old.db"
    url = f"sqlite:///{path}"
    with schema_stopped_at(sqlite_module, 3):

        async def fill() -> Job:
            backend = SQLiteBackend(url)
            await backend.open()
            try:
                await backend.enqueue([make_job()])
                (job,) = await backend.claim(["default"], "w", 1, 60.0)
                assert await backend.finish([(job, Outcome.succeeded())]) == [True]
                await backend.enqueue([make_job(unique_key="order-7")])
                return job
            finally:
                await backend.close()

        done_job = asyncio.run(fill())
    assert "IN (" in _index_conditions(path)["jobs_listing"]

    # When this conveyor opens it (an embedded store upgrades itself)
    async def use() -> tuple[list[Job], list[Job], list[Job], int]:
        backend = SQLiteBackend(url)
        await backend.open()
        try:
            listed = (await backend.list_jobs(JobFilter(states=frozenset({State.SUCCEEDED})))).jobs
            again = await backend.enqueue([make_job(unique_key="order-7")])
            waiting = (await backend.list_jobs(JobFilter(states=frozenset({State.QUEUED})))).jobs
            pruned = await backend.prune(time.time() + 1.0, [State.SUCCEEDED])
            return listed, again, waiting, pruned
        finally:
            await backend.close()

    listed, again, waiting, pruned = asyncio.run(use())

    # Then it is at this version with the new conditions, its finished job is listed and
    # pruned, and the unique key is still held by the waiting job
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    assert "IN (" not in _index_conditions(path)["jobs_listing"]
    assert [j.id for j in listed] == [done_job.id]
    assert len(waiting) == 1
    assert [j.id for j in again] == [waiting[0].id]
    assert pruned == 1
