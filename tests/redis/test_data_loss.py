"""Redis restarted without persistence: every job is gone. The promise under test: the
workers say so plainly, once, and go on with the jobs enqueued after it, without a crash
or a loop over the jobs they held (their leases are simply lost).

A real `conveyor worker` process on a private redis-server (no AOF, no snapshots) that
the test kills with SIGKILL and starts again, empty, on the same port.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.backends.base import DEAD_WORKER_S, WorkerInfo
from conveyor.backends.redis import RedisBackend
from conveyor.exceptions import BackendUnavailable, JobNotFound
from tests.redis.server import RedisServer
from tests.worker.conftest import WorkerEnv
from tests.worker.outage import log_lines, runs, stop

pytestmark = pytest.mark.slow

LOST = "lost this namespace's data"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis", "--appendonly", "no") as redis_server:
        yield redis_server


@pytest.fixture
def env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: RedisServer
) -> Iterator[WorkerEnv]:
    worker_env = WorkerEnv(tmp_path, monkeypatch, server.url(prefix=f"t{uuid.uuid4().hex[:8]}"))
    try:
        yield worker_env
    finally:
        worker_env.stop_all()
        worker_env.app.close()
        sys.modules.pop("e2e_tasks", None)


def heartbeats(env: WorkerEnv) -> list[float]:
    async def beats() -> list[float]:
        return [w.heartbeat_at for w in await (await env.app.backend()).list_workers()]

    try:
        return env.app.portal_call(beats())
    except BackendUnavailable:  # the test's own connection from before the restart
        return []


def test_a_restart_without_persistence_is_said_once_and_the_worker_goes_on(
    env: WorkerEnv, server: RedisServer
) -> None:
    # Given a worker running two long jobs on a Redis that keeps nothing on disk
    held = env.tasks.timed.enqueue_many([[1, 3.0], [2, 3.0]])
    proc = env.start_worker("-c", "4", "--lease", "3")
    env.wait_until("both running", lambda: len(runs(env)) == 2, 20)

    # When Redis is killed and starts again, empty
    server.kill()
    server.start()

    # Then the worker says once, at ERROR, that the namespace lost its data
    env.wait_until("the loss is logged", lambda: log_lines(env, " ERROR ", LOST), 30)
    # And it goes on: a job enqueued now runs once and succeeds
    env.wait_until("heartbeats seen again", lambda: bool(heartbeats(env)), 15)
    assert env.tasks.record.enqueue(7).wait(timeout=20) == 7
    first = heartbeats(env)
    env.wait_until("two more heartbeats", lambda: heartbeats(env) not in ([], first), 15)
    second = heartbeats(env)
    env.wait_until("and one more", lambda: heartbeats(env) not in ([], second), 15)
    assert proc.poll() is None
    assert len(log_lines(env, LOST)) == 1, env.logs()
    assert runs(env)["7"] == 1
    # (the jobs from before are gone, as the line says; their runs end as leases lost)
    for handle in held:
        with pytest.raises(JobNotFound):
            handle.refresh()
    assert "Traceback" not in env.logs(), env.logs()
    stop(proc)


def test_a_worker_back_after_an_hour_of_silence_is_not_taken_for_a_data_loss(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a worker registered through one backend, whose last heartbeat is an hour and
    # more ago, and whose registration the live workers have removed (another backend)
    worker = WorkerInfo(id="back:1:w", host="back", pid=1, queues=["default"], concurrency=1)

    async def scenario() -> None:
        own, others = RedisBackend(redis_url), RedisBackend(redis_url)
        await own.open()
        await others.open()
        try:
            await own.register_worker(worker)
            worker.heartbeat_at -= DEAD_WORKER_S + 60
            await others.unregister_worker(worker.id)
            # When it heartbeats again
            with caplog.at_level(logging.WARNING, logger="conveyor.backends.redis"):
                await own.heartbeat_worker(worker)
            listed = [w.id for w in await others.list_workers()]
        finally:
            await own.close()
            await others.close()
        # Then it is listed again, and the log says why it was gone: not a lost namespace
        assert listed == [worker.id]

    asyncio.run(scenario())
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if LOST in m], messages
    assert any("registered again after" in m for m in messages), messages
