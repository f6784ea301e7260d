"""Script calls, wake-up waits and sync enqueues on Redis go through connections of
their own, without redis-py's client layer (conveyor.backends.redis_direct): what that
client did for them (answers as dicts, scripts loaded when the server lost them, a
new connection after a dead one, a connection per call in flight) still holds.
Restarts of Redis: tests/redis/test_connection_loss.py; a server that stops
answering: tests/redis/test_unresponsive_server.py."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from conveyor import Conveyor, State
from conveyor.backends.redis import RedisBackend
from conveyor.testing.harness import make_job
from tests.rd import client_url
from tests.redis.server import RedisServer


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis server of the test's own, for what must not be done to the shared one
    (which other checkouts' test runs use at the same time): SCRIPT FLUSH, CLIENT KILL."""
    with RedisServer(tmp_path / "redis") as private:
        yield private


def test_a_held_unique_key_returns_the_job_holding_it_with_its_fields(redis_url: str) -> None:
    app = Conveyor(redis_url)

    @app.task(name="report", queue="reports")
    def report(day: str) -> None: ...

    try:
        # Given a waiting job holding a unique key
        first = report.with_options(unique_key="report:2026-12-04", priority=3).enqueue("x")

        # When a sync enqueue asks for the same key with other arguments
        second = report.with_options(unique_key="report:2026-12-04").enqueue("y")

        # Then it answers the waiting job, read back whole from its hash
        assert second.id == first.id
        job = second.job
        assert job.state is State.QUEUED
        assert (job.queue, job.priority, job.unique_key) == ("reports", 3, "report:2026-12-04")
        assert job.steps[0].args == ["x"]
    finally:
        app.close()


def test_scripts_flushed_and_connections_killed_on_the_server_are_recovered(
    server: RedisServer,
) -> None:
    app = Conveyor(server.url(prefix="direct"))

    @app.task(name="record")
    def record(n: int) -> None: ...

    try:
        record.enqueue(1)
        # Given a server that forgot its scripts (a restart or SCRIPT FLUSH does that)
        # and then dropped every other client's connection
        with server.client() as admin:
            admin.script_flush()
            assert admin.client_kill_filter(_type="normal", skipme=True) >= 1

        # When the app enqueues again, twice
        second = record.enqueue(2)
        third = record.enqueue(3)

        # Then both are stored once each, beside the first
        assert second.refresh().state is State.QUEUED
        assert third.refresh().state is State.QUEUED
        queued = app.portal_call(_queued(app))
        assert queued == 3
    finally:
        app.close()


async def _queued(app: Conveyor) -> int:
    stats = await (await app.backend()).stats()
    return stats.counts.get(State.QUEUED.value, 0)


def test_a_blocked_wait_holds_up_no_other_call_and_a_cancelled_one_leaves_none_broken(
    redis_url: str,
) -> None:
    backend = RedisBackend(redis_url)

    async def run() -> tuple[bool, int, bool, int]:
        await backend.open()
        try:
            # Given a worker's wait blocked on an empty queue's wake-up list
            waiting = asyncio.create_task(backend.wait(["q"], 10.0))
            await asyncio.sleep(0.2)

            # When other calls run meanwhile: an enqueue (whose token wakes the wait)
            # and a claim
            await backend.enqueue([make_job("q"), make_job("q")])
            claimed = await backend.claim(["q"], "w", 1, 60.0)
            woken = await asyncio.wait_for(waiting, 5.0)

            # And a wait cancelled while blocked, as at a worker's shutdown
            cancelled = asyncio.create_task(backend.wait(["empty"], 10.0))
            await asyncio.sleep(0.2)
            cancelled.cancel()
            await asyncio.gather(cancelled, return_exceptions=True)
            claimed_after = await backend.claim(["q"], "w", 5, 60.0)
            return woken, len(claimed), cancelled.cancelled(), len(claimed_after)
        finally:
            await backend.close()

    woken, claimed, cancelled, claimed_after = asyncio.run(run())

    # Then the claim went through while the wait blocked, the wait woke, and after the
    # cancelled wait the next call works
    assert (woken, claimed) == (True, 1)
    assert (cancelled, claimed_after) == (True, 1)


def test_a_forked_process_enqueues_on_a_connection_of_its_own(redis_url: str) -> None:
    name = f"fork-test-{uuid.uuid4().hex[:8]}"  # the connections' CLIENT SETNAME
    app = Conveyor(f"{redis_url}&client_name={name}")

    @app.task(name="record")
    def record(n: int) -> None: ...

    done_r, done_w = os.pipe()
    exit_r, exit_w = os.pipe()
    try:
        # Given an app whose sync connection is open (as in a pre-forking server that
        # enqueued before it forked its workers)
        record.enqueue(0)

        # When the process forks and the child enqueues, keeping its connection until
        # the parent has looked at the server's clients
        pid = os.fork()
        if pid == 0:
            ok = record.enqueue(1).job.steps[0].args == [1]
            os.write(done_w, b"1" if ok else b"0")
            os.read(exit_r, 1)
            os._exit(0)
        child_ok = os.read(done_r, 1) == b"1"
        with redis.Redis.from_url(client_url(redis_url), decode_responses=True) as admin:
            scripting = [
                c for c in admin.client_list() if c["name"] == name and c["cmd"] == "evalsha"
            ]
        os.write(exit_w, b"x")
        os.waitpid(pid, 0)

        # Then the child's enqueue went through a connection of its own: the server saw
        # two clients run the script, and both jobs are stored
        assert child_ok
        assert len(scripting) == 2, scripting
        assert app.portal_call(_queued(app)) == 2
    finally:
        for fd in (done_r, done_w, exit_r, exit_w):
            os.close(fd)
        app.close()
