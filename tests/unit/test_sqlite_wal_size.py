"""SQLite's write-ahead log does not keep the size it grew to while a reader held an
old snapshot: once a checkpoint empties it, the file is cut back."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

import pytest

from conveyor.backends import sqlite as sqlite_backend
from conveyor.backends.sqlite import SQLiteBackend
from conveyor.testing.harness import make_job

MIB = 1024 * 1024


def _wal_bytes(db: Path) -> int:
    return os.path.getsize(f"{db}-wal")


def test_every_connection_limits_the_log_it_keeps(tmp_path: Path) -> None:
    backend = SQLiteBackend(f"sqlite:///{tmp_path}/limit.db")
    backend.open_blocking()
    try:
        conn = backend._db()
        assert conn.execute("PRAGMA journal_size_limit").fetchone()[0] == (
            sqlite_backend._WAL_KEEP_BYTES
        )
    finally:
        asyncio.run(backend.close())


def test_the_log_grown_under_a_long_reader_is_cut_back_after_it_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A small limit, so that a few megabytes show it.
    monkeypatch.setattr(sqlite_backend, "_WAL_KEEP_BYTES", MIB)
    db = tmp_path / "wal.db"

    async def enqueue(backend: SQLiteBackend, rounds: int) -> None:
        for _ in range(rounds):
            await backend.enqueue([make_job(args=["x" * 4096]) for _ in range(50)])

    async def scenario() -> tuple[int, int]:
        backend = SQLiteBackend(f"sqlite:///{db}")
        await backend.open()
        try:
            # Given a reader holding a snapshot while jobs are written (about 8 MB),
            reader = sqlite3.connect(db, isolation_level=None)
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM jobs").fetchone()
            await enqueue(backend, 40)
            grown = _wal_bytes(db)

            # When the reader ends and writing goes on,
            reader.execute("COMMIT")
            reader.close()
            await enqueue(backend, 3)
            return grown, _wal_bytes(db)
        finally:
            await backend.close()

    grown, after = asyncio.run(scenario())

    # Then the log, which could not restart while the reader held it, is back to the
    # limit instead of keeping its largest size.
    assert grown > 6 * MIB
    assert after <= MIB
