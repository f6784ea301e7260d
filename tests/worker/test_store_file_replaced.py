"""A running worker follows a SQLite file deleted or replaced at its URL (a backup
restored with ``mv`` while it runs): it runs the jobs of the file now at the path.
Before, it went on working on the file it had opened, which no path named any more,
and never ran a job stored at its URL again. Real worker processes on real files."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor import Conveyor, State

from .conftest import WorkerEnv

pytestmark = pytest.mark.slow


@pytest.fixture
def sqlite_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WorkerEnv]:
    env = WorkerEnv(tmp_path, monkeypatch, f"sqlite:///{tmp_path}/jobs.db")
    try:
        yield env
    finally:
        env.stop_all()
        env.app.close()
        sys.modules.pop("e2e_tasks", None)


@contextlib.contextmanager
def _app(path: Path) -> Iterator[Conveyor]:
    """An app of its own on ``path``, as another program has, with the env's task."""
    app = Conveyor(f"sqlite:///{path}")
    app.task(name="record")(lambda i: i)
    try:
        yield app
    finally:
        app.close()


def test_a_running_worker_follows_a_file_restored_in_place_of_its_own(
    sqlite_env: WorkerEnv, tmp_path: Path
) -> None:
    env = sqlite_env
    # Given a worker that runs jobs of its file
    env.tasks.record.enqueue(1)
    proc = env.start_worker("-c", "2")
    env.wait_until("the first job ran", lambda: env.lines("runs") == ["1"])

    # When another file, holding a waiting job, is moved into the file's place
    restored = tmp_path / "restored.db"
    with _app(restored) as other:
        kept = other.enqueue("record", 2)
    os.replace(restored, tmp_path / "jobs.db")

    # Then the worker runs that job, and it ends succeeded in the file at the path
    env.wait_until("the restored job ran", lambda: "2" in env.lines("runs"))
    with _app(tmp_path / "jobs.db") as reader:
        env.wait_until(
            "the restored job succeeded",
            lambda: reader.job(kept.id).state is State.SUCCEEDED,
        )
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    assert "was deleted or replaced while open" in env.logs()
