"""A SQLite file deleted or replaced while a process has it open (``rm jobs.db`` to
start over, a backup restored with ``mv``): SQLite's connections stay on the file they
opened, which no path names any more. Before, a running worker went on claiming from
and writing to that file for as long as it ran, and never saw a job enqueued into the
file at its URL; an API process stored the jobs it accepted where nothing would ever
find them once it stopped. Now the backend looks whether its path still names the file
it opened, at most once a second, and opens the file at the path when it does not.
Real SQLite files; one backend on a file stands for a running process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from conveyor.backends import sqlite as sqlite_module
from conveyor.backends.sqlite import SQLiteBackend
from conveyor.exceptions import ConfigError, JobNotFound
from conveyor.job import Job, Outcome
from conveyor.testing.harness import make_job


@pytest.fixture(autouse=True)
def look_at_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every call looks, rather than once a second: the test needs no clock.
    monkeypatch.setattr(sqlite_module, "_FILE_CHECK_S", 0.0)


@contextlib.asynccontextmanager
async def opened(path: Path) -> AsyncIterator[SQLiteBackend]:
    """A backend on the file at ``path``, open: a process on it."""
    backend = SQLiteBackend(f"sqlite:///{path}")
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


async def _store(path: Path, job: Job) -> None:
    """``job`` stored in the file at ``path`` by another, short-lived process."""
    async with opened(path) as backend:
        await backend.enqueue([job])


def test_a_running_process_follows_a_file_replaced_at_its_path(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    restored = tmp_path / "restored.db"

    async def scenario() -> None:
        # Given a running process on a file holding one job
        async with opened(path) as running:
            await running.enqueue([make_job()])
            # When another file, holding another job, is moved into its place
            kept = make_job()
            await _store(restored, kept)
            os.replace(restored, path)
            # Then the running process claims the job of the file now at the path
            claimed = await running.claim(["default"], "w", 10, 60.0)
            assert [j.id for j in claimed] == [kept.id]
            # And what it stores next is in that file, where a new process finds it
            late = make_job()
            await running.enqueue([late])
            await running.finish([(claimed[0], Outcome.succeeded())])
            async with opened(path) as fresh:
                assert (await fresh.get(late.id)).id == late.id
                assert (await fresh.get(kept.id)).state.value == "succeeded"

    asyncio.run(scenario())


def test_a_running_process_follows_a_file_deleted_and_made_again(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"

    async def scenario() -> None:
        # Given a running process on a file
        async with opened(path) as running:
            await running.enqueue([make_job()])
            # When the file is deleted, and a new process makes it again with a job
            os.remove(path)
            kept = make_job()
            await _store(path, kept)
            # Then the running process sees that job, and only it
            claimed = await running.claim(["default"], "w", 10, 60.0)
            assert [j.id for j in claimed] == [kept.id]

    asyncio.run(scenario())


def test_a_synchronous_enqueue_goes_to_the_file_at_the_path(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    restored = tmp_path / "restored.db"
    # Given a web process whose sync enqueues opened the file
    running = SQLiteBackend(f"sqlite:///{path}")
    running.enqueue_blocking([make_job()])
    try:
        # When another file is moved into its place
        kept = make_job()
        asyncio.run(_store(restored, kept))
        os.replace(restored, path)
        # Then a job it accepts next is in that file, beside the file's own
        late = make_job()
        running.enqueue_blocking([late])

        async def find() -> list[str]:
            async with opened(path) as fresh:
                return [(await fresh.get(job.id)).id for job in (kept, late)]

        assert asyncio.run(find()) == [kept.id, late.id]
    finally:
        asyncio.run(running.close())


@pytest.mark.parametrize("left", ["nothing", "a file"])
def test_a_process_whose_folder_was_removed_says_so_until_it_is_back(
    tmp_path: Path, left: str
) -> None:
    folder = tmp_path / "store"
    folder.mkdir()
    path = folder / "jobs.db"

    async def scenario() -> None:
        # Given a running process on a file
        async with opened(path) as running:
            await running.enqueue([make_job()])
            # When its folder is removed, file and all (and a file made in its place)
            shutil.rmtree(folder)
            if left == "a file":
                folder.write_text("")
            # Then each call says the folder is missing, rather than writing on unseen
            for _ in range(2):
                with pytest.raises(ConfigError, match="does not exist"):
                    await running.claim(["default"], "w", 10, 60.0)
            # And once the folder is back with a file in it, the process works on that
            if left == "a file":
                folder.unlink()
            folder.mkdir()
            kept = make_job()
            await _store(path, kept)
            claimed = await running.claim(["default"], "w", 10, 60.0)
            assert [j.id for j in claimed] == [kept.id]

    asyncio.run(scenario())


def test_a_process_that_only_reads_follows_a_file_replaced_at_its_path(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    restored = tmp_path / "restored.db"

    async def scenario() -> None:
        # Given a running process on a file that only reads it (an API answering polls)
        async with opened(path) as running:
            old = make_job()
            await running.enqueue([old])
            # When another file, holding another job, is moved into its place
            kept = make_job()
            await _store(restored, kept)
            os.replace(restored, path)
            # Then its reads find the job of the file now at the path, and not the other
            assert (await running.get(kept.id)).id == kept.id
            assert (await running.head(kept.id)).id == kept.id
            with pytest.raises(JobNotFound):
                await running.get(old.id)

    asyncio.run(scenario())
