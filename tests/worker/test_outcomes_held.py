"""Outcomes held while the store is away (conveyor.worker.recorder): tried again every
second, and said once in the log, not once a try: an outage of an hour would otherwise
write 3,600 error lines per worker process. A real SQLite store, closed and opened again
under the recorder."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from conveyor.backends.sqlite import SQLiteBackend
from conveyor.job import Outcome, State
from conveyor.testing.harness import make_job
from conveyor.worker import recorder
from conveyor.worker.recorder import OutcomeRecorder


def test_outcomes_held_through_an_outage_are_logged_once_then_once_more_when_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a recorder that tries again every 10 ms
    monkeypatch.setattr(recorder, "RETRY_S", 0.01)
    caplog.set_level(logging.INFO, logger="conveyor.worker")

    async def scenario() -> State:
        backend = SQLiteBackend(f"sqlite:///{tmp_path}/jobs.db")
        await backend.open()
        await backend.enqueue([make_job()])
        [job] = await backend.claim(["default"], "w", 1, 60.0)
        outcomes = OutcomeRecorder(backend)
        try:
            # When the store goes away as a job's outcome is to be written, for dozens
            # of tries, and comes back
            await backend.close()
            outcomes.add(job, Outcome.succeeded())
            await asyncio.sleep(0.5)
            await backend.open()
            await asyncio.wait_for(outcomes.drain(), 30)
            return (await backend.get(job.id)).state
        finally:
            await backend.close()

    state = asyncio.run(scenario())

    # Then the outcome is written, and the log said so after one line about the failure
    assert state is State.SUCCEEDED
    said = [r.getMessage() for r in caplog.records if r.name == "conveyor.worker"]
    failed = [line for line in said if "could not record" in line]
    assert len(failed) == 1, said
    assert "trying again every 0.01s" in failed[0]
    assert [line for line in said if line.startswith("recorded 1 outcome(s) on ")], said
