"""A SQLite file that is not a database (random bytes, another format) or whose pages
are damaged (garbled, cut short): no retry mends it. Every call says so as a
ConfigError naming the file and SQLite's reason (a command exits 2, a worker stops),
not as a store outage that a worker and an API wait out for ever; and the file is left
exactly as it was. Real SQLite files."""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from conveyor.backends.sqlite import SQLiteBackend
from conveyor.exceptions import BackendUnavailable, ConfigError
from conveyor.testing.harness import make_job

PAGE = 4096  # SQLite's default page size: conveyor's files use it


def conveyors_file(path: Path, jobs: int = 200) -> None:
    """A conveyor store at ``path`` holding ``jobs`` jobs, closed (its log written back)."""

    async def make() -> None:
        backend = SQLiteBackend(f"sqlite:///{path}")
        await backend.open()
        await backend.enqueue([make_job() for _ in range(jobs)])
        await backend.close()

    asyncio.run(make())


def random_bytes(path: Path) -> str:
    path.write_bytes(random.Random(1).randbytes(8 * PAGE))
    return "file is not a database"


def garbled_pages(path: Path) -> str:
    # Its first page (the header and the list of tables) whole, the others noise
    conveyors_file(path)
    data = path.read_bytes()
    path.write_bytes(data[:PAGE] + random.Random(2).randbytes(len(data) - PAGE))
    return "database disk image is malformed"


def cut_short(path: Path) -> str:
    conveyors_file(path)
    data = path.read_bytes()
    path.write_bytes(data[: 2 * PAGE])
    return "database disk image is malformed"


DAMAGES = [random_bytes, garbled_pages, cut_short]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if not p.name.endswith("-lock")}


@pytest.mark.parametrize("damage", DAMAGES, ids=lambda d: d.__name__)
def test_a_damaged_file_is_a_config_error_naming_it_and_is_left_as_it_was(
    tmp_path: Path, damage: Callable[[Path], str]
) -> None:
    # Given a file at the store's path that is not a database, or is damaged
    path = tmp_path / "jobs.db"
    says = damage(path)
    before = _files(tmp_path)

    async def calls() -> list[BaseException]:
        backend = SQLiteBackend(f"sqlite:///{path}")
        errors: list[BaseException] = []
        try:
            # When a process opens it (some open: their first page is whole) and
            # claims and enqueues, twice over
            for _ in range(2):
                try:
                    await backend.open()
                except Exception as exc:
                    errors.append(exc)
                    continue
                for call in (
                    lambda: backend.claim(["default"], "w", 10, 60.0),
                    lambda: backend.enqueue([make_job()]),
                ):
                    try:
                        await call()
                    except Exception as exc:
                        errors.append(exc)
        finally:
            await backend.close()
        return errors

    errors = asyncio.run(calls())

    # Then every failed call is a ConfigError on the URL naming the file and what
    # SQLite said (none a BackendUnavailable, which a worker retries for ever)
    assert errors
    for error in errors:
        assert isinstance(error, ConfigError), repr(error)
        assert error.field == "url"
        assert repr(str(path)) in error.problem
        assert says in error.problem
    # And the file is exactly as it was: nothing deleted, rewritten or added beside it
    assert _files(tmp_path) == before


def test_a_file_locked_by_another_program_is_still_an_outage(tmp_path: Path) -> None:
    # Given a conveyor store, and another program holding its write lock
    path = tmp_path / "jobs.db"
    conveyors_file(path, jobs=1)
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")

    async def enqueue() -> None:
        backend = SQLiteBackend(f"sqlite:///{path}?busy_timeout=0.01")
        try:
            await backend.open()
            await backend.enqueue([make_job()])
        finally:
            await backend.close()

    # When a process writes to it; Then it is the store unavailable for now (a worker
    # waits it out), not a damaged file
    try:
        with pytest.raises(BackendUnavailable) as error:
            asyncio.run(enqueue())
        assert "locked" in str(error.value)
        assert not isinstance(error.value, ConfigError)
    finally:
        with contextlib.suppress(sqlite3.Error):
            holder.execute("ROLLBACK")
        holder.close()
