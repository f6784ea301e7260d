"""A Redis that stops answering (SIGSTOP: the process is there, its socket open, no
answer comes) fails a call at the URL's ``socket_timeout`` instead of hanging it, on
the asyncio connections whose small commands are sent without a timeout of their own
(conveyor.backends.redis_packing: the read of the answer keeps it) and on the sync
connection of sync enqueues; and once the server answers again, so do the calls."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from conveyor import Conveyor
from conveyor.backends.redis import RedisBackend
from conveyor.exceptions import BackendUnavailable
from conveyor.testing.harness import make_job
from tests.redis.server import RedisServer

pytestmark = pytest.mark.timeout(60)


def test_calls_to_a_server_that_stops_answering_fail_at_the_socket_timeout(
    tmp_path: Path,
) -> None:
    with RedisServer(tmp_path / "redis") as server:
        url = server.url(prefix="t", socket_timeout="1")
        assert server.proc is not None
        pid = server.proc.pid
        backend = RedisBackend(url)
        # A batch of about 200 KB: its write goes as redis-py sends it, with the timeout.
        big = [make_job(args=["x" * 1000]) for _ in range(200)]

        async def run() -> list[str]:
            await backend.open()
            try:
                (job,) = await backend.enqueue([make_job()])
                failures: list[str] = []
                # Given a server that stops answering
                os.kill(pid, signal.SIGSTOP)
                try:
                    # When a small read, a small write and a big write are sent to it
                    for call in (backend.get(job.id), backend.enqueue([make_job()])):
                        with pytest.raises(BackendUnavailable) as small:
                            await call
                        failures.append(str(small.value))
                    with pytest.raises(BackendUnavailable) as large:
                        await backend.enqueue(big)
                    failures.append(str(large.value))
                finally:
                    os.kill(pid, signal.SIGCONT)
                # Then, the server back, the job is read again
                assert (await backend.get(job.id)).id == job.id
                return failures
            finally:
                await backend.close()

        failures = asyncio.run(run())

        # Then each call failed, saying that the read timed out
        assert len(failures) == 3
        assert all("Timeout" in failure for failure in failures), failures


def test_a_sync_enqueue_to_a_server_that_stops_answering_fails_then_gets_through(
    tmp_path: Path,
) -> None:
    with RedisServer(tmp_path / "redis") as server:
        app = Conveyor(server.url(prefix="t", socket_timeout="1"))

        @app.task(name="record")
        def record(n: int) -> None: ...

        assert server.proc is not None
        pid = server.proc.pid
        try:
            record.enqueue(1)
            # Given a server that stops answering
            os.kill(pid, signal.SIGSTOP)
            try:
                # When a sync enqueue is sent to it
                with pytest.raises(BackendUnavailable, match="Timeout"):
                    record.enqueue(2)
            finally:
                os.kill(pid, signal.SIGCONT)
            # Then it failed, and once the server answers the next one is stored
            assert record.enqueue(3).refresh().job.steps[0].args == [3]
        finally:
            app.close()
