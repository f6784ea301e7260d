"""A SQLite write waits no longer than its URL's ``busy_timeout`` while another program
keeps the database's write lock (a ``BEGIN EXCLUSIVE`` left open in the ``sqlite3``
shell, a backup), however many of conveyor's processes wait too. Before, the first
writer waited in SQLite's busy handler holding conveyor's lock file
(``SQLiteBackend._writer_lock``), and every other process's writes waited for that
file first: each one's wait added to the others', and an API request on such a file was
answered after several times its busy timeout. Real SQLite files; two backends on one
file stand for two processes (each has its own lock file descriptor)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from conveyor.backends.sqlite import SQLiteBackend
from conveyor.exceptions import BackendUnavailable, JobNotFound
from conveyor.testing.harness import make_job

#: A guard against the wait this is about: far longer than the waits under test.
HANG_S = 60.0


def test_a_write_waits_its_own_busy_timeout_not_another_waiting_process(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"

    async def scenario() -> None:
        patient = SQLiteBackend(f"sqlite:///{path}?busy_timeout=3600")
        hasty = SQLiteBackend(f"sqlite:///{path}?busy_timeout=0.5")
        await patient.open()
        await hasty.open()
        try:
            await hasty.enqueue([make_job()])
            # Given another program holding the database's write lock
            other = sqlite3.connect(path, isolation_level=None)
            other.execute("BEGIN EXCLUSIVE")
            try:
                # And a process that waits for it for up to an hour, its write under way
                began = threading.Event()
                assert patient._conn is not None
                patient._conn.set_trace_callback(
                    lambda sql: began.set() if sql.startswith("BEGIN") else None
                )
                waiting = asyncio.ensure_future(patient.enqueue([make_job(), make_job()]))
                assert await asyncio.to_thread(began.wait, HANG_S)

                # When another process enqueues, one job and then two, and claims
                refused = [make_job(), make_job(), make_job()]
                calls = [
                    hasty.enqueue(refused[:1]),
                    hasty.enqueue(refused[1:]),
                    hasty.claim(["default"], "w", 10, 60.0),
                ]
                for call in calls:
                    # Then each is refused once its own busy timeout has passed, as a
                    # locked database, naming the file
                    with pytest.raises(BackendUnavailable) as error:
                        await asyncio.wait_for(call, HANG_S)
                    assert "database is locked" in str(error.value)
                    assert str(path) in str(error.value)
                assert not waiting.done()
            finally:
                # And once the other program lets go
                other.execute("ROLLBACK")
                other.close()
            # the waiting process's write goes through, the refused ones stored nothing,
            # and the other process writes again
            stored = await asyncio.wait_for(waiting, HANG_S)
            for job in stored:
                assert (await hasty.get(job.id)).id == job.id
            for job in refused:
                with pytest.raises(JobNotFound):
                    await hasty.get(job.id)
            assert len(await asyncio.wait_for(hasty.claim(["default"], "w", 10, 60.0), HANG_S)) == 3
        finally:
            await patient.close()
            await hasty.close()

    asyncio.run(scenario())
