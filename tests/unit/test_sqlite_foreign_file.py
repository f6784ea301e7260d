"""A SQLite database of another program at conveyor's URL (the application's own
``app.db``, given by mistake) is refused, and left as it was. Before, conveyor switched
it to WAL mode, added its tables and set its ``user_version`` (which many programs use
as their own schema's version) without a word. Real SQLite files."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from conveyor.backends.sqlite import SCHEMA_VERSION, SQLiteBackend
from conveyor.exceptions import ConfigError


def _another_programs_database(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO users (name) VALUES ('ada')")
    sqlite3.connect(path).close()


def _look(path: Path) -> tuple[str, int, list[str]]:
    with sqlite3.connect(path) as conn:
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master ORDER BY name")]
    return mode, version, tables


def test_a_database_of_another_program_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    # Given a SQLite database another program made: a table of its own, no version
    path = tmp_path / "app.db"
    _another_programs_database(path)
    before = _look(path)
    backend = SQLiteBackend(f"sqlite:///{path}")
    # When conveyor opens it
    with pytest.raises(ConfigError) as error:
        asyncio.run(backend.open())
    # Then the error names the URL and says whose file it looks like
    assert error.value.field == "url"
    assert "another program" in str(error.value) and "users" in str(error.value)
    # And the file is as it was: its journal mode, version and tables
    assert _look(path) == before == ("delete", 0, ["users"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.db"]


def test_an_empty_database_is_made_conveyors(tmp_path: Path) -> None:
    # Given an empty SQLite database (made by the sqlite3 shell, say)
    path = tmp_path / "jobs.db"
    sqlite3.connect(path).close()
    backend = SQLiteBackend(f"sqlite:///{path}")
    # When conveyor opens it, then it takes it as its own
    assert asyncio.run(backend.migrate()) == (0, SCHEMA_VERSION)
    asyncio.run(backend.close())
    mode, version, tables = _look(path)
    assert (mode, version) == ("wal", SCHEMA_VERSION) and "jobs" in tables
