"""SQLite's counts per minute: the upgrade of a version-1 file, and old minutes swept
by ``sample_depth`` and ``prune`` (the conformance suite covers the behaviour)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from conveyor.backends import sqlite as sqlite_module
from conveyor.backends.sqlite import SCHEMA_VERSION, Q, SQLiteBackend
from conveyor.job import Outcome, State
from conveyor.testing.harness import make_job
from tests.migrations import run_migrate, schema_stopped_at


def _minute(t: float) -> int:
    return int(t // 60) * 60


def test_a_version_1_file_is_upgraded_by_migrate_and_keeps_its_jobs(tmp_path: Path) -> None:
    # Given a file made by a conveyor whose schema stopped at version 1, with a
    # queued job and a running one
    path = tmp_path / "old.db"
    url = f"sqlite:///{path}"
    with schema_stopped_at(sqlite_module, 1):

        async def fill() -> list[str]:
            backend = SQLiteBackend(url)
            await backend.open()
            await backend.enqueue([make_job(), make_job()])
            (claimed,) = await backend.claim(["default"], "w", 1, 60.0)
            await backend.close()
            return claimed

        running = asyncio.run(fill())
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (1,)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert "minute_counts" not in tables

    # When `conveyor migrate` runs on it
    done = run_migrate(url)

    # Then it is at this version, with its jobs and the new table
    assert done.returncode == 0, done.stderr
    assert f"from version 1 to {SCHEMA_VERSION}" in done.stdout

    async def read() -> None:
        backend = SQLiteBackend(url)
        await backend.open()
        try:
            jobs = (await backend.list_jobs()).jobs
            assert sorted(j.state for j in jobs) == sorted([State.QUEUED, State.RUNNING])
            assert await backend.finish([(running, Outcome.succeeded())]) == [True]
            (row,) = await backend.minute_counts(0.0)
            assert (row.queue, row.processed, row.failed) == ("default", 1, 0)
        finally:
            await backend.close()

    asyncio.run(read())
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


def _store_minutes(path: Path, *minutes: int) -> None:
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO minute_counts (minute, queue, processed, failed) VALUES (?, 'q', 1, 0)",
            [(m,) for m in minutes],
        )


@pytest.mark.parametrize("sweep", ["sample_depth", "prune"])
def test_minutes_past_keep_counts_are_swept(tmp_path: Path, sweep: str) -> None:
    # Given minutes counted 26 hours ago, 24 hours ago and now
    path = tmp_path / "minutes.db"
    backend = SQLiteBackend(f"sqlite:///{path}")
    now = time.time()
    old, kept, current = _minute(now - 26 * 3600), _minute(now - 24 * 3600), _minute(now)

    async def run() -> list[float]:
        await backend.open()
        try:
            await backend.create_queue("q")
            _store_minutes(path, old, kept, current)

            # When a worker samples the depth, or an operator prunes
            if sweep == "sample_depth":
                await backend.sample_depth()
            else:
                await backend.prune(now - 3600)

            # Then the minutes older than keep_counts (25 hours) are gone
            return [row.minute for row in await backend.minute_counts(0.0)]
        finally:
            await backend.close()

    assert asyncio.run(run()) == [kept, current]


def test_minute_reads_and_sweeps_use_the_primary_key(tmp_path: Path) -> None:
    backend = SQLiteBackend(f"sqlite:///{tmp_path}/plans.db")
    asyncio.run(backend.open())
    asyncio.run(backend.close())
    conn = sqlite3.connect(tmp_path / "plans.db")
    for query, params in [
        ("minute_counts", {"since": 0.0, "queue": None}),
        ("prune_minute_counts", (0.0,)),
        ("depth_missing", (0,)),
    ]:
        rows = conn.execute(f"EXPLAIN QUERY PLAN {Q[query]}", params).fetchall()
        plan = "\n".join(row[-1] for row in rows)
        assert "USING PRIMARY KEY (minute" in plan, (query, plan)
