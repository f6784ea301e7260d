"""A Redis server that answers with an error (out of memory here; a replica read-only
after a failover, a failed RDB save alike) is the store's trouble: the worker waits it
out as it waits out a server that is down, and the job it runs is not failed for it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from conveyor import BackendUnavailable, Conveyor, State, current_context
from conveyor.worker.runtime import Worker
from tests.redis.server import RedisServer
from tests.worker.test_runtime import run_with_worker


def test_a_job_whose_progress_redis_refuses_for_memory_is_not_failed(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis") as server:
        app = Conveyor(server.url(prefix="refusals"))
        reported, go_on = asyncio.Event(), asyncio.Event()

        # Given a job that reports progress, then runs on
        @app.task(name="reports", max_attempts=3)
        async def reports() -> str:
            current_context().progress(1, 2, "half")
            reported.set()
            await go_on.wait()
            return "done"

        async def scenario(worker: Worker) -> Any:
            handle = await reports.enqueue_async()
            await reported.wait()
            # When Redis refuses every write (out of memory) while the worker would
            # save that progress
            with server.client() as client:
                client.config_set("maxmemory-policy", "noeviction")
                client.config_set("maxmemory", 1)
                await asyncio.sleep(1.5)  # (the worker saves progress every 0.5 s)
                client.config_set("maxmemory", 0)
            go_on.set()
            result = await handle.wait_async(20)
            return result, (await handle.refresh_async()).job

        # Then the job succeeds at its first attempt, its progress saved once Redis
        # took writes again
        result, job = run_with_worker(app, scenario)
        assert result == "done"
        assert (job.state, job.attempts) == (State.SUCCEEDED, 1)


def _keys(server: RedisServer) -> set[str]:
    with server.client() as client:
        return set(client.keys("{refusals}:*"))


def test_an_enqueue_redis_has_no_memory_for_is_refused_and_stores_nothing(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis", "--maxmemory-policy", "noeviction") as server:
        app = Conveyor(server.url(prefix="refusals"))

        @app.task(name="noted")
        def noted(text: str) -> str:
            return text

        async def enqueue_async(text: str) -> None:
            try:
                await noted.enqueue_async(text)
            finally:
                await app.aclose()

        # Given a store that holds one job, and a Redis then out of memory (noeviction)
        noted.enqueue("first")
        before = _keys(server)
        with server.client() as client:
            client.config_set("maxmemory", 1)
        try:
            # When jobs that are ready at once are enqueued, sync and async
            for enqueue in (
                lambda: noted.enqueue("x" * 1000),
                lambda: asyncio.run(enqueue_async("y" * 1000)),
            ):
                # Then each enqueue fails with Redis' reason, as a delayed one does
                try:
                    enqueue()
                except BackendUnavailable as exc:
                    assert "maxmemory" in str(exc)
                else:
                    raise AssertionError("an enqueue past maxmemory was stored")
            # And nothing was written
            assert _keys(server) == before
        finally:
            with server.client() as client:
                client.config_set("maxmemory", 0)
            app.close()
