"""A worker whose store is away says so in its log when the failures start, at most
every TELL_EVERY_S while they last, and when they end: not once per try (its claims,
its idle waits and its lease keeper try again every fraction of a second, which over an
outage of an hour was thousands of lines). A real SQLite store, closed under the worker
and opened again."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from conveyor import Conveyor
from conveyor.worker.runtime import Worker

from .test_runtime import run_with_worker


@pytest.fixture
def app(tmp_path: Path) -> Conveyor:
    return Conveyor(f"sqlite:///{tmp_path}/jobs.db")


def test_an_outage_is_a_few_lines_not_one_per_try(
    app: Conveyor, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario(worker: Worker) -> None:
        backend = await app.backend()
        await asyncio.sleep(0.3)  # the worker is idle, waiting for work
        # When the store is away for dozens of the worker's tries (its lease keeper
        # tries every 0.1 s, its claims after 0.1, 0.2, 0.4 ... s), then back
        await backend.close()
        await asyncio.sleep(2.0)
        await backend.open()
        await asyncio.sleep(1.5)

    with caplog.at_level(logging.INFO, logger="conveyor.worker"):
        run_with_worker(app, scenario, lease=0.3, interval=0.1)

    # Then each kind of failure is said once (the outage is shorter than TELL_EVERY_S),
    # and the claims and the lease keeping say when they work again
    messages = [r.getMessage() for r in caplog.records]
    said = {
        kind: [m for m in messages if m.startswith(kind)]
        for kind in (
            "claim failed",
            "claims still fail",
            "waiting for work failed",
            "waiting for work still fails",
            "lease keeping failed",
            "lease keeping still fails",
        )
    }
    assert len(said["claim failed"]) + len(said["waiting for work failed"]) >= 1, messages
    assert len(said["lease keeping failed"]) == 1, messages
    assert all(len(lines) <= 1 for lines in said.values()), said
    assert any(m.startswith("lease keeping works again") for m in messages), messages
