"""An app made on a relative SQLite URL stays on one file when the process's working
directory changes after it was made (a server that changes it once the application is
imported, task code in a worker calling ``os.chdir`` before it waits for a job).
Before, the app's sync calls used the file of the directory it was made in, and each
event loop's backend, made on the loop's first use, the file of the directory current
then: a job enqueued by ``enqueue()`` was not found by ``app.job()`` or
``handle.refresh()`` (the portal's loop), nor by a worker started in the same
process. Real SQLite files."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from conveyor import Conveyor, Task


def _app_made_in(folder: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Conveyor, Task]:
    """An app on ``sqlite:///jobs.db`` made with ``folder`` as the working directory,
    and its task ``t``."""
    monkeypatch.chdir(folder)
    monkeypatch.delenv("CONVEYOR_URL", raising=False)
    app = Conveyor("sqlite:///jobs.db")

    @app.task(name="t")
    def t(i: int) -> int:
        return i

    return app, t


def test_an_app_on_a_relative_url_keeps_its_file_when_the_directory_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an app made on a relative URL, in a folder of its own
    made_in, elsewhere = tmp_path / "app", tmp_path / "elsewhere"
    made_in.mkdir()
    elsewhere.mkdir()
    app, t = _app_made_in(made_in, monkeypatch)
    try:
        # And a job enqueued by a sync call
        first = t.enqueue(1)
        # When the process's working directory changes
        os.chdir(elsewhere)
        # Then the app's other calls, on the portal's loop and on a new loop, use the
        # same file: they find that job, and store theirs beside it
        assert app.job(first.id).id == first.id
        assert first.refresh().state == "queued"
        second = asyncio.run(_enqueue_and_close(app, t))
        assert app.job(second).id == second
        assert t.enqueue(3).refresh().state == "queued"
    finally:
        app.close()
    # And no file was made in the new directory
    assert not any(elsewhere.iterdir())


async def _enqueue_and_close(app: Conveyor, task: Task) -> str:
    """A job enqueued on a loop of its own (which then ends); its id."""
    try:
        handle = await task.enqueue_async(2)
        return str(handle.id)
    finally:
        await app.aclose()


@pytest.mark.parametrize("folder", ["project#2", "what?"])
def test_an_app_on_a_relative_url_in_a_folder_whose_name_a_url_cannot_hold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, folder: str
) -> None:
    # Given an app made on a relative URL in a folder whose path has a '#' or a '?'
    # (a URL would read what follows as its fragment or its query)
    made_in = tmp_path / folder
    made_in.mkdir()
    app, t = _app_made_in(made_in, monkeypatch)
    try:
        # When a job is enqueued, then read on the portal's loop
        handle = t.enqueue(1)
        # Then it is found, in the file of that folder, and no other file was made
        assert app.job(handle.id).id == handle.id
    finally:
        app.close()
    assert (made_in / "jobs.db").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder]
