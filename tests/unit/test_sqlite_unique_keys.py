"""SQLite's find_unique after the upgrade of a version-2 file (the conformance suite covers
the behaviour, tests/unit/test_sqlite_plans.py the index it reads)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from conveyor.backends import sqlite as sqlite_module
from conveyor.backends.sqlite import SCHEMA_VERSION, SQLiteBackend
from conveyor.job import Job, Outcome, State
from conveyor.testing.harness import make_job
from tests.migrations import run_migrate, schema_stopped_at


def test_a_version_2_file_is_upgraded_and_its_finished_jobs_are_found_by_key(
    tmp_path: Path,
) -> None:
    # Given a file made by a conveyor whose schema stopped at version 2, with a job
    # of a unique key that succeeded
    path = tmp_path / "old.db"
    url = f"sqlite:///{path}"
    with schema_stopped_at(sqlite_module, 2):

        async def fill() -> Job:
            backend = SQLiteBackend(url)
            await backend.open()
            try:
                await backend.enqueue([make_job(unique_key="order-7")])
                (job,) = await backend.claim(["default"], "w", 1, 60.0)
                assert await backend.finish([(job, Outcome.succeeded())]) == [True]
                return job
            finally:
                await backend.close()

        done_job = asyncio.run(fill())
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (2,)

    # When `conveyor migrate` runs on it
    done = run_migrate(url)

    # Then it is at this version, and the finished job is found by its key
    assert done.returncode == 0, done.stderr
    assert f"from version 2 to {SCHEMA_VERSION}" in done.stdout

    async def find() -> Job | None:
        backend = SQLiteBackend(url)
        await backend.open()
        try:
            return await backend.find_unique("order-7")
        finally:
            await backend.close()

    found = asyncio.run(find())
    assert found is not None
    assert (found.id, found.state) == (done_job.id, State.SUCCEEDED)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
