"""Conformance: wake-ups, races between instances and processes, and the rules explored
by a hypothesis state machine."""

from __future__ import annotations

import asyncio
import multiprocessing
import time

from conveyor.backends.base import Backend
from conveyor.job import State
from conveyor.testing.harness import (
    BackendFactory,
    async_test,
    backend_path,
    claim_in_subprocess,
    claim_one,
    claim_until_empty,
    collect_answers,
    enqueue_one,
    make_job,
)
from conveyor.testing.model import run_model

RACE_JOBS = 500


class ConcurrencyConformance:
    """Several instances on one store."""

    # -- wake-ups ----------------------------------------------------------------
    def test_wait_wakes_up_when_another_instance_enqueues(
        self, backend_factory: BackendFactory
    ) -> None:
        async def scenario() -> None:
            # Given a worker waiting on "mail" through its own backend instance
            producer = backend_factory.backend
            consumer = await backend_factory.open()
            started = time.monotonic()
            waiting = asyncio.create_task(consumer.wait(["mail"], 5.0))

            # When a producer enqueues into "mail" 0.2 s later
            await asyncio.sleep(0.2)
            await enqueue_one(producer, make_job("mail"))

            # Then the worker wakes up long before its timeout
            assert await asyncio.wait_for(waiting, 5.0) is True
            assert time.monotonic() - started < 2.0

        backend_factory.run(scenario())

    @async_test
    async def test_wait_wakes_up_when_the_same_instance_enqueues(self, backend: Backend) -> None:
        # Given a worker waiting on "mail" (an app and its worker share one backend)
        started = time.monotonic()
        waiting = asyncio.create_task(backend.wait(["mail"], 5.0))

        # When the same backend enqueues into "mail" 0.2 s later
        await asyncio.sleep(0.2)
        await enqueue_one(backend, make_job("mail"))

        # Then the worker wakes up long before its timeout
        assert await asyncio.wait_for(waiting, 5.0) is True
        assert time.monotonic() - started < 2.0

    @async_test
    async def test_wait_returns_false_after_the_timeout(self, backend: Backend) -> None:
        # Given nothing happens
        started = time.monotonic()

        # When a worker waits 0.3 s
        woke = await backend.wait(["mail"], 0.3)

        # Then it returns False, after the timeout
        assert woke is False
        assert time.monotonic() - started >= 0.25

    @async_test
    async def test_wait_returns_at_once_for_a_job_stored_before_it(self, backend: Backend) -> None:
        # Given a job stored after the worker's last claim and before its wait (a
        # worker goes from a claim that found too few jobs straight to the wait)
        assert await backend.claim(["mail"], "w1", 10, 30.0) == []
        await enqueue_one(backend, make_job("mail"))

        # When the worker waits on "mail" with a long timeout
        started = time.monotonic()
        woke = await backend.wait(["mail"], 5.0)

        # Then it returns at once, saying to claim
        assert woke is True
        assert time.monotonic() - started < 1.0

    @async_test
    async def test_wait_ends_when_a_scheduled_job_falls_due(self, backend: Backend) -> None:
        # Given a job scheduled 0.3 s from now, and nothing ready
        now = await backend.now()
        job = await enqueue_one(backend, make_job("mail", run_at=now + 0.3))

        # When the worker waits on "mail" with a long timeout
        started = time.monotonic()
        await backend.wait(["mail"], 5.0)

        # Then the wait ends about when the job is due, and the claim that follows takes it
        assert time.monotonic() - started < 2.0
        claimed = await backend.claim(["mail"], "w1", 10, 30.0)
        assert [j.id for j in claimed] == [job.id]

    @async_test
    async def test_wait_does_not_keep_waking_for_a_paused_queue(self, backend: Backend) -> None:
        # Given a paused queue with a job ready in it
        await enqueue_one(backend, make_job("mail"))
        await backend.pause_queue("mail")

        # When a worker waits on it twice (the first wait may end at once, as a
        # wake-up sent before the pause is spent)
        await backend.wait(["mail"], 0.3)
        started = time.monotonic()
        woke = await backend.wait(["mail"], 0.3)

        # Then the second wait lasts its timeout: nothing there can be claimed
        assert woke is False
        assert time.monotonic() - started >= 0.25

    def test_watch_returns_the_job_once_another_instance_changed_it(
        self, backend_factory: BackendFactory
    ) -> None:
        async def scenario() -> None:
            # Given a client watching a queued job through its own backend instance
            worker = backend_factory.backend
            watcher = await backend_factory.open()
            job = await enqueue_one(worker, make_job())
            started = time.monotonic()
            watching = asyncio.create_task(watcher.watch(job.id, job.version, 5.0))

            # When a worker claims the job 0.2 s later
            await asyncio.sleep(0.2)
            await claim_one(worker)

            # Then the watcher sees the new version long before its timeout
            seen = await asyncio.wait_for(watching, 5.0)
            assert seen is not None
            assert seen.version > job.version
            assert seen.state is State.RUNNING
            assert time.monotonic() - started < 2.0

        backend_factory.run(scenario())

    @async_test
    async def test_watch_returns_at_once_when_the_version_already_moved(
        self, backend: Backend
    ) -> None:
        # Given a job that changed since the client last saw it
        job = await enqueue_one(backend, make_job())
        await claim_one(backend)

        # When the client watches from the old version
        seen = await asyncio.wait_for(backend.watch(job.id, job.version, 5.0), 1.0)

        # Then it gets the current job at once
        assert seen is not None and seen.state is State.RUNNING

    @async_test
    async def test_watch_returns_none_after_the_timeout(self, backend: Backend) -> None:
        # Given a job nobody touches
        job = await enqueue_one(backend, make_job())
        started = time.monotonic()

        # When a client watches it for 0.3 s
        seen = await backend.watch(job.id, job.version, 0.3)

        # Then it gets None, after the timeout
        assert seen is None
        assert time.monotonic() - started >= 0.25

    # -- races -------------------------------------------------------------------
    def test_two_instances_claiming_at_once_take_each_job_once(
        self, backend_factory: BackendFactory
    ) -> None:
        async def scenario() -> None:
            # Given 500 ready jobs and two backend instances on the store
            first = backend_factory.backend
            second = await backend_factory.open()
            jobs = await first.enqueue([make_job("race") for _ in range(RACE_JOBS)])

            # When both claim in loops at the same time
            ids_1, ids_2 = await asyncio.gather(
                claim_until_empty(first, "race", "worker-1", seed=1),
                claim_until_empty(second, "race", "worker-2", seed=2),
            )

            # Then every job was claimed exactly once
            claimed = ids_1 + ids_2
            assert len(claimed) == len(set(claimed)), "a job was claimed twice"
            assert set(claimed) == {j.id for j in jobs}

        backend_factory.run(scenario())

    def test_two_processes_claiming_at_once_take_each_job_once(
        self, backend_factory: BackendFactory
    ) -> None:
        # Given 500 ready jobs
        backend = backend_factory.backend
        jobs = backend_factory.run(backend.enqueue([make_job("race") for _ in range(RACE_JOBS)]))

        # When two OS processes, each with its own backend, claim in loops at the same time
        ctx = multiprocessing.get_context("spawn")
        start = ctx.Barrier(2)
        results = ctx.Queue()
        processes = [
            ctx.Process(
                target=claim_in_subprocess,
                args=(backend_path(backend), backend.url, "race", f"proc-{n}", start, results),
            )
            for n in (1, 2)
        ]
        for process in processes:
            process.start()
        try:
            answers = collect_answers(processes, results, timeout=60.0)
        finally:
            for process in processes:
                process.join(10)
                if process.is_alive():
                    process.kill()
                    process.join()
            results.close()
            results.join_thread()

        # Then every job was claimed exactly once
        for worker_id, answer in answers.items():
            assert isinstance(answer, list), f"{worker_id} failed: {answer}"
        claimed = [i for ids in answers.values() for i in ids]
        assert len(claimed) == len(set(claimed)), "a job was claimed twice"
        assert set(claimed) == {j.id for j in jobs}

    # -- the rules, explored -----------------------------------------------------
    def test_random_sequences_of_operations_follow_the_rules(
        self, backend_factory: BackendFactory
    ) -> None:
        run_model(backend_factory)
