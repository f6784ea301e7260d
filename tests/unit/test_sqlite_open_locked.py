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
