"""A Redis server that answers with an error (out of memory here; a replica read-only
after a failover, a failed RDB save alike) is the store's trouble: the worker waits it
out as it waits out a server that is down, and the job it runs is not failed for it."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from conveyor import BackendUnavailable, Conveyor, State, current_context
from conveyor.backends.redis import RedisBackend
from conveyor.job import Outcome
from conveyor.testing.harness import make_job
from conveyor.worker.runtime import Worker
from tests.redis.server import RedisServer
from tests.worker.test_runtime import run_with_worker


def test_a_job_whose_progress_redis_refuses_for_memory_is_not_failed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
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

        # Then the job succeeds at its first attempt (its lease of 0.9 s kept through the
        # 1.5 s), its progress saved once Redis took writes again
        with caplog.at_level(logging.ERROR, logger="conveyor.worker"):
            result, job = run_with_worker(app, scenario, lease=0.9)
        assert result == "done"
        assert (job.state, job.attempts) == (State.SUCCEEDED, 1)
        # and the log names what Redis refused: the heartbeat, not the lease extensions
        failed = [r.getMessage() for r in caplog.records if "lease keeping" in r.getMessage()]
        assert failed, caplog.text
        assert all("at the worker's heartbeat: " in m for m in failed), failed


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


def test_out_of_memory_claims_nothing_and_keeps_the_leases_of_running_jobs(
    tmp_path: Path,
) -> None:
    with RedisServer(tmp_path / "redis", "--maxmemory-policy", "noeviction") as server:
        backend = RedisBackend(server.url(prefix="refusals"))

        async def scenario() -> None:
            await backend.open()
            try:
                # Given a job that a worker runs, and another one waiting
                await backend.enqueue([make_job(task="runs")])
                (running,) = await backend.claim(["default"], "w1", 1, 30.0)
                (waiting,) = await backend.enqueue([make_job(task="waits")])
                # When Redis is out of memory (maxmemory reached, noeviction)
                with server.client() as client:
                    client.config_set("maxmemory", 1)
                try:
                    # Then a claim is refused with Redis' reason, and takes nothing: a
                    # job claimed now could neither keep its lease nor record its outcome
                    with pytest.raises(BackendUnavailable, match="maxmemory"):
                        await backend.claim(["default"], "w2", 1, 30.0)
                    # And the lease of the running job is still extended: it takes no
                    # more memory, and a lease that ran out would have the job run twice
                    status = await backend.extend([running.id], "w1", 60.0)
                    assert status.extended == [running.id]
                    # And a worker that stops can give its job back
                    assert await backend.release([running]) == 1
                finally:
                    with server.client() as client:
                        client.config_set("maxmemory", 0)
                assert (await backend.get(waiting.id)).state is State.QUEUED
                assert (await backend.get(waiting.id)).attempts == 0
                given_back = await backend.get(running.id)
                assert (given_back.state, given_back.attempts) == (State.QUEUED, 0)
            finally:
                await backend.close()

        asyncio.run(scenario())


def test_out_of_memory_prune_and_empty_still_remove_jobs(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis", "--maxmemory-policy", "noeviction") as server:
        backend = RedisBackend(server.url(prefix="refusals"))

        async def scenario() -> tuple[int, int, dict[str, int]]:
            await backend.open()
            try:
                # Given two succeeded jobs and a waiting one, and Redis out of memory
                await backend.enqueue([make_job(), make_job()])
                done = await backend.claim(["default"], "w1", 2, 30.0)
                await backend.finish([(job, Outcome.succeeded()) for job in done])
                await backend.enqueue([make_job("other")])
                with server.client() as client:
                    client.config_set("maxmemory", 1)
                try:
                    # When finished jobs are pruned and a queue emptied
                    pruned = await backend.prune(await backend.now() + 1)
                    emptied = await backend.empty_queue("other")
                finally:
                    with server.client() as client:
                        client.config_set("maxmemory", 0)
                return pruned, emptied, (await backend.stats()).counts
            finally:
                await backend.close()

        # Then both work (they free memory: the way out), and remove the jobs
        pruned, emptied, counts = asyncio.run(scenario())
        assert (pruned, emptied) == (2, 1)
        assert sum(counts.values()) == 0
