"""Opening a SQLite file whose schema is current needs no write lock: while another
program holds it (a ``BEGIN EXCLUSIVE`` left open in the ``sqlite3`` shell, a backup),
a process that starts (``conveyor stats``, ``conveyor jobs list``, the dashboard, a
worker) opens the file and reads, as the processes already running do. Before, every
open took the write lock to look at the schema's version, and failed after
``busy_timeout`` with "cannot migrate". Real SQLite files."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.backends.sqlite import SCHEMA_VERSION, SQLiteBackend
from conveyor.exceptions import BackendUnavailable, ConfigError
from conveyor.testing.harness import make_job


@pytest.fixture
def locked_file(tmp_path: Path) -> Iterator[Path]:
    """A file of the current schema holding one job, whose write lock another program
    holds for the length of the test."""
    path = tmp_path / "jobs.db"

    async def store_one() -> None:
        backend = SQLiteBackend(f"sqlite:///{path}")
        await backend.open()
        await backend.enqueue([make_job()])
        await backend.close()

    asyncio.run(store_one())
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        yield path
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_a_current_file_opens_and_reads_while_another_program_holds_the_write_lock(
    locked_file: Path,
) -> None:
    async def scenario() -> None:
        # Given a file whose write lock another program holds
        backend = SQLiteBackend(f"sqlite:///{locked_file}?busy_timeout=0.2")
        try:
            # When a new process opens it and reads
            versions = await backend.migrate()
            stats = await backend.stats()
            page = await backend.list_jobs()
            # Then it opened, found the schema current, and reads the stored job
            assert versions == (SCHEMA_VERSION, SCHEMA_VERSION)
            assert stats.counts["queued"] == 1
            assert len(page.jobs) == 1
            # And a write fails as a locked write, not as a migration
            with pytest.raises(BackendUnavailable) as error:
                await backend.enqueue([make_job()])
            assert "database is locked" in str(error.value)
            assert "migrate" not in str(error.value)
        finally:
            await backend.close()

    asyncio.run(scenario())


def test_a_file_of_a_newer_schema_is_refused_naming_the_url(tmp_path: Path) -> None:
    # Given a file of a newer conveyor's schema
    path = tmp_path / "jobs.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    backend = SQLiteBackend(f"sqlite:///{path}")
    # When it is opened
    with pytest.raises(ConfigError) as error:
        asyncio.run(backend.open())
    # Then the error names the url and both versions, and the file is left as it was
    assert error.value.field == "url"
    assert f"schema version {SCHEMA_VERSION + 1}" in str(error.value)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
        assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0


def test_reads_go_on_while_a_write_of_the_process_waits_for_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # (Every read looks whether the file was replaced, rather than once a second: the
    # test needs no clock.)
    from conveyor.backends import sqlite as sqlite_module

    monkeypatch.setattr(sqlite_module, "_FILE_CHECK_S", 0.0)
    path = tmp_path / "jobs.db"

    async def scenario() -> None:
        # Given an API process on a file holding one job
        backend = SQLiteBackend(f"sqlite:///{path}?busy_timeout=30")
        await backend.open()
        other = sqlite3.connect(path, isolation_level=None)
        try:
            (stored,) = await backend.enqueue([make_job()])
            # And an enqueue of that process waiting for the write lock, which another
            # program holds
            other.execute("BEGIN EXCLUSIVE")
            enqueue = asyncio.ensure_future(backend.enqueue([make_job()]))
            await asyncio.sleep(0)
            # When the process reads a job, polls it and waits for work
            reads = asyncio.ensure_future(
                asyncio.gather(
                    backend.get(stored.id),
                    backend.head(stored.id),
                    backend.wait(["default"], 0.01),
                )
            )
            done, _ = await asyncio.wait({enqueue, reads}, return_when=asyncio.FIRST_COMPLETED)
            # Then the reads are answered while the enqueue still waits (they used to
            # wait behind it, up to busy_timeout)
            assert reads in done
            assert not enqueue.done()
            job, head, ready = reads.result()
            assert (job.id, head.id, ready) == (stored.id, stored.id, True)
            # And the enqueue is stored once the lock is free
            other.execute("ROLLBACK")
            assert len(await enqueue) == 1
        finally:
            if other.in_transaction:
                other.execute("ROLLBACK")
            other.close()
            await backend.close()

    asyncio.run(scenario())
