"""Registrations of workers that died without unregistering are removed in time."""

from __future__ import annotations

import asyncio
import logging

import pytest

from conveyor import Conveyor
from conveyor.backends.base import WorkerInfo
from conveyor.worker import leases
from conveyor.worker.runtime import Worker

from .test_runtime import run_with_worker


def test_a_worker_silent_past_the_limit_leaves_the_registry(
    app_on_each_store: Conveyor,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = app_on_each_store
    # Given a worker registration whose process died without unregistering (killed -9):
    # it sent one heartbeat and no more, and the limit is shorter than its silence
    monkeypatch.setattr(leases, "DEAD_WORKER_S", 0.5)
    monkeypatch.setattr(leases, "FORGET_EVERY_S", 0.1)
    dead = WorkerInfo(id="gone:4242:dead", host="gone", pid=4242, queues=["default"], concurrency=1)

    async def register_the_dead() -> None:
        backend = await app.backend()
        await backend.register_worker(dead)
        await backend.heartbeat_worker(dead)

    app.portal_call(register_the_dead())

    async def scenario(worker: Worker) -> list[str]:
        backend = await app.backend()
        # When a live worker runs (its lease keeper looks every FORGET_EVERY_S)
        for _ in range(200):
            ids = [w.id for w in await backend.list_workers()]
            if dead.id not in ids:
                return ids
            await asyncio.sleep(0.05)
        return ids

    with caplog.at_level(logging.WARNING, logger="conveyor.worker"):
        ids = run_with_worker(app, scenario, lease=0.6)

    # Then the dead one is gone, the live one listed, and the log says which went
    assert dead.id not in ids
    assert len(ids) == 1 and ids[0] != dead.id
    assert any(
        "removed worker gone:4242:dead (gone, pid 4242)" in r.getMessage() for r in caplog.records
    )
