"""SQLite's counts and listings (list_queues, stats, list_jobs, minute_counts) read on a
connection and thread of their own: the enqueues, claims and outcomes of the same
process do not wait behind them (on a file of millions of jobs they take a second or
more). The conformance suite covers what they answer."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from pathlib import Path

import pytest

from conveyor.backends.sqlite import SQLiteBackend
from conveyor.job import Outcome
from conveyor.testing.harness import make_job


def test_writes_go_on_while_a_read_aside_is_in_progress(tmp_path: Path) -> None:
    async def scenario() -> tuple[bool, int, list[bool]]:
        backend = SQLiteBackend(f"sqlite:///{tmp_path}/aside.db")
        await backend.open()
        try:
            await backend.enqueue([make_job() for _ in range(3)])
            started, release = threading.Event(), threading.Event()

            def held_read(conn: sqlite3.Connection) -> int:
                started.set()
                release.wait(10)
                return int(conn.execute("SELECT count(*) FROM jobs").fetchone()[0])

            # Given a read aside in progress, held open
            reading = asyncio.ensure_future(backend._read_aside(held_read))
            assert await asyncio.to_thread(started.wait, 10)

            # When the backend enqueues, claims and records an outcome meanwhile
            await backend.enqueue([make_job()])
            claimed = await backend.claim(["default"], "w", 10, 60.0)
            written = await backend.finish([(job, Outcome.succeeded()) for job in claimed])
            still_reading = not reading.done()
            release.set()
            return still_reading, await reading, written
        finally:
            await backend.close()

    still_reading, counted, written = asyncio.run(scenario())

    # Then the writes were done while the read was still held, and the read, once let
    # go, saw what was committed before its statement ran
    assert still_reading
    assert written == [True] * 4
    assert counted == 4


def test_a_read_aside_finds_the_file_after_the_working_directory_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a backend opened by a relative URL, holding two waiting jobs
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path)

    async def scenario() -> dict[str, int]:
        backend = SQLiteBackend("sqlite:///relative.db")
        await backend.open()
        try:
            await backend.enqueue([make_job() for _ in range(2)])
            # When the process's working directory changes (task code in a worker
            # may do it: os.chdir) and a count reads aside on a connection of its own
            os.chdir(tmp_path / "elsewhere")
            return (await backend.stats()).counts
        finally:
            await backend.close()

    counts = asyncio.run(scenario())

    # Then it reads the backend's file, not a new empty one in the new directory (it
    # had made one there, and failed on its missing tables)
    assert counts.get("queued") == 2
    assert not (tmp_path / "elsewhere" / "relative.db").exists()
