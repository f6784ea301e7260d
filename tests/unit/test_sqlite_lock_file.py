"""The lock file beside a SQLite database (``<file>-lock``, see
``SQLiteBackend._writer_lock``) that cannot be opened is a clear error naming it.
Before, the ``OSError`` came out of every call raw (a traceback from ``conveyor
migrate`` or ``enqueue``), after the backend had kept its connections: a later call of
the same process then wrote without the lock file. Real files."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from conveyor.backends.sqlite import SQLiteBackend
from conveyor.exceptions import BackendUnavailable
from conveyor.testing.harness import make_job


def test_a_lock_file_that_cannot_be_opened_is_named_at_every_call(tmp_path: Path) -> None:
    # Given a database whose lock file's name is taken by a folder
    path = tmp_path / "jobs.db"
    (tmp_path / "jobs.db-lock").mkdir()
    backend = SQLiteBackend(f"sqlite:///{path}")
    try:
        for _ in range(2):
            # When a job is enqueued, once and again
            with pytest.raises(BackendUnavailable) as error:
                backend.enqueue_blocking([make_job()])
            # Then each time the error names the lock file, and the backend is not open
            assert f"{path}-lock" in str(error.value)
            assert backend._conn is None
    finally:
        asyncio.run(backend.close())
    # And nothing was stored
    (tmp_path / "jobs.db-lock").rmdir()

    async def count() -> int:
        reader = SQLiteBackend(f"sqlite:///{path}")
        await reader.open()
        try:
            return sum((await reader.stats()).counts.values())
        finally:
            await reader.close()

    assert asyncio.run(count()) == 0
