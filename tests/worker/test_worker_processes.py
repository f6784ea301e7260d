"""The worker end to end: real `conveyor worker` processes on a real SQLite file."""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter

import psycopg
import pytest
import redis

from conveyor import State
from conveyor.backends.postgres_url import parse_postgres_url
from conveyor.backends.redis_url import parse_redis_url
from tests.pg import libpq_url
from tests.rd import client_url

from .conftest import WorkerEnv

pytestmark = pytest.mark.slow


def test_2000_jobs_across_two_processes_each_run_exactly_once(worker_env: WorkerEnv) -> None:
    # Given 2,000 jobs waiting
    tasks = worker_env.tasks
    handles = tasks.record.enqueue_many([[i] for i in range(2000)])
    assert len(handles) == 2000

    # When one worker with two processes drains them
    proc = worker_env.start_worker("-c", "4", "--processes", "2")
    worker_env.wait_until("2000 runs", lambda: len(worker_env.lines("runs")) >= 2000, 120)
    worker_env.wait_until(
        "2000 succeeded",
        lambda: tasks.app.portal_call(_count(tasks.app, State.SUCCEEDED)) == 2000,
    )
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0

    # Then every job ran exactly once, and both processes took part
    runs = Counter(worker_env.lines("runs"))
    assert set(runs) == {str(i) for i in range(2000)}
    assert max(runs.values()) == 1
    assert len(worker_env.files("runs")) == 2


def test_kill_9_mid_job_the_job_runs_again_after_its_lease(worker_env: WorkerEnv) -> None:
    # Given a worker running a job that hangs on its first attempt
    tasks = worker_env.tasks
    handle = tasks.hang_once.enqueue(60)
    first = worker_env.start_worker("--lease", "1.5")
    worker_env.wait_until("first attempt started", lambda: worker_env.lines("started") == ["1"])

    # When the worker is killed with SIGKILL and another worker starts
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    assert handle.refresh().state is State.RUNNING
    worker_env.start_worker("--lease", "1.5")

    # Then the job runs again once its lease has expired, and succeeds
    assert handle.wait(timeout=30) == "done"
    job = handle.job
    assert job.attempts == 2
    assert sorted(worker_env.lines("started")) == ["1", "2"]
    assert any("lease expired" in e["message"] for e in job.errors)


def test_kill_9_of_a_waiting_worker_loses_no_job_enqueued_after_it(
    worker_env: WorkerEnv,
) -> None:
    # Given a worker that ran a job and waits for the next (on Redis and PostgreSQL:
    # registered for the hand-off of the next job enqueued, for its 5 s interval)
    tasks = worker_env.tasks
    first = worker_env.start_worker("--lease", "1.5", "--interval", "5")
    tasks.record.enqueue(0)
    worker_env.wait_until("first job ran", lambda: worker_env.lines("runs") == ["0"])
    worker_env.wait_until(
        "first job recorded", lambda: tasks.app.portal_call(_count(tasks.app, State.SUCCEEDED))
    )
    if not worker_env.url.startswith("sqlite"):
        worker_env.wait_until("worker registered for a hand-off", lambda: _waiters(worker_env))

    # When the worker is killed with SIGKILL, a job is enqueued at once, and another
    # worker starts
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    handle = tasks.record.enqueue(1)
    worker_env.start_worker("--lease", "1.5")

    # Then the job runs once, on its first attempt, with no error recorded
    assert handle.wait(timeout=30) == 1
    job = handle.job
    assert (job.attempts, job.errors) == (1, [])
    assert sorted(worker_env.lines("runs")) == ["0", "1"]


def test_workers_stopped_and_killed_while_jobs_arrive_lose_none_and_count_each_run_once(
    worker_env: WorkerEnv,
) -> None:
    # Given workers that get jobs while they wait (on Redis and PostgreSQL: handed
    # over) and are then stopped with SIGTERM, or killed with SIGKILL every third
    # time, with more jobs enqueued while they stop
    tasks = worker_env.tasks
    rng = random.Random(7)
    handles = []
    for cycle in range(6):
        proc = worker_env.start_worker(
            "-c", "4", "--processes", "2", "--lease", "2", "--interval", "5"
        )
        time.sleep(rng.uniform(0.4, 0.7))  # up, and waiting
        for _ in range(rng.randint(4, 8)):
            handles.append(tasks.record.enqueue(len(handles)))
            time.sleep(rng.uniform(0, 0.01))
        os.killpg(proc.pid, signal.SIGKILL if cycle % 3 == 2 else signal.SIGTERM)
        for _ in range(rng.randint(0, 3)):
            handles.append(tasks.record.enqueue(len(handles)))
        proc.wait(30)

    # When one more worker runs until every job has ended
    worker_env.start_worker("--lease", "2")
    worker_env.wait_until(
        "every job succeeded",
        lambda: all(h.refresh().state is State.SUCCEEDED for h in handles),
        60,
    )

    # Then each job ran, and each counted exactly the attempts it ran: a job handed to
    # or claimed by a worker that stopped or died before starting it cost none
    runs = Counter(worker_env.lines("runs"))
    for i, handle in enumerate(handles):
        assert runs[str(i)] >= 1, f"job {i} never ran"
        assert handle.job.attempts == runs[str(i)], (i, handle.job.attempts, runs[str(i)])


def test_sigterm_lets_running_jobs_finish(worker_env: WorkerEnv) -> None:
    # Given a worker running a 1-second job
    tasks = worker_env.tasks
    handle = tasks.sleep.enqueue(1.0)
    proc = worker_env.start_worker("--shutdown-timeout", "10")
    worker_env.wait_until("job started", lambda: len(worker_env.lines("started")) == 1)

    # When it gets SIGTERM
    proc.send_signal(signal.SIGTERM)

    # Then it finishes the job, then exits cleanly
    assert proc.wait(30) == 0
    assert handle.refresh().state is State.SUCCEEDED
    assert worker_env.lines("finished") == ["1.0"]
    assert tasks.app.portal_call(_workers(tasks.app)) == []


def test_sigterm_past_the_grace_period_releases_the_job_without_spending_an_attempt(
    worker_env: WorkerEnv,
) -> None:
    # Given a worker running a job that takes far longer than the grace period
    tasks = worker_env.tasks
    handle = tasks.sleep.enqueue(3.0)
    proc = worker_env.start_worker("--shutdown-timeout", "0.3")
    worker_env.wait_until("job started", lambda: len(worker_env.lines("started")) == 1)

    # When it gets SIGTERM
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0

    # Then the job is back in the queue, attempt not counted, and another worker runs it
    job = handle.refresh().job
    assert job.state is State.QUEUED
    assert job.attempts == 0
    worker_env.start_worker()
    assert handle.wait(timeout=30) == 3.0


def test_one_stop_sent_to_every_process_of_a_supervised_worker_is_graceful(
    worker_env: WorkerEnv,
) -> None:
    # Given a worker of two processes, each running a 1-second job
    tasks = worker_env.tasks
    handles = [tasks.sleep.enqueue(1.0), tasks.sleep.enqueue(1.0)]
    proc = worker_env.start_worker("-c", "1", "--processes", "2", "--shutdown-timeout", "20")
    worker_env.wait_until("both jobs started", lambda: len(worker_env.lines("started")) == 2)

    # When one SIGTERM reaches the supervisor and its processes alike (systemd's default
    # KillMode=control-group, pkill): each process hears it from the sender and again
    # from the supervisor
    for pid in [proc.pid, *_children(proc.pid)]:
        os.kill(pid, signal.SIGTERM)

    # Then that is still one stop, the graceful one: the jobs finish, nothing is given back
    assert proc.wait(30) == 0
    assert [h.refresh().state for h in handles] == [State.SUCCEEDED, State.SUCCEEDED]
    assert worker_env.lines("finished") == ["1.0", "1.0"]
    assert "second stop request" not in worker_env.logs()


def test_a_second_stop_to_the_supervisor_stops_its_processes_now(worker_env: WorkerEnv) -> None:
    # Given a worker of two processes running a job far longer than its grace period
    tasks = worker_env.tasks
    handle = tasks.sleep.enqueue(60.0)
    proc = worker_env.start_worker("--processes", "2", "--shutdown-timeout", "60")
    worker_env.wait_until("job started", lambda: len(worker_env.lines("started")) == 1)

    # When the supervisor gets a stop signal, and a second one once it passed the first on
    proc.send_signal(signal.SIGTERM)
    worker_env.wait_until(
        "the first stop passed on", lambda: "stopping: waiting" in worker_env.logs()
    )
    proc.send_signal(signal.SIGINT)

    # Then its processes stop now: the job is given back without spending an attempt
    assert proc.wait(30) == 0
    assert "second stop request: cancelling 1 running job(s) now" in worker_env.logs()
    job = handle.refresh().job
    assert (job.state, job.attempts) == (State.QUEUED, 0)


def test_a_job_that_always_raises_ends_poisoned_with_its_error_history(
    worker_env: WorkerEnv,
) -> None:
    # Given a task that always raises, with 3 attempts and 1 s, 2 s backoff
    tasks = worker_env.tasks
    handle = tasks.always_fails.enqueue()
    worker_env.start_worker("--interval", "0.2")

    # When the worker has tried it max_attempts times
    worker_env.wait_until("poisoned", lambda: handle.refresh().state is State.POISONED, 30)

    # Then every attempt is in its error history, with the traceback
    job = handle.job
    assert job.attempts == 3
    assert [e["attempt"] for e in job.errors] == [1, 2, 3]
    assert all("this task always fails" in e["message"] for e in job.errors)
    assert "RuntimeError" in job.errors[-1]["traceback"]


def _waiters(worker_env: WorkerEnv) -> int:
    """Workers registered for hand-offs (Redis: backends/lua/ready.lua; PostgreSQL:
    0006_hand_offs.sql)."""
    if worker_env.url.startswith("postgres"):
        schema = parse_postgres_url(worker_env.url).schema
        with psycopg.connect(libpq_url(worker_env.url)) as conn:
            row = conn.execute(f'SELECT count(*) FROM "{schema}".waiters').fetchone()
            return int(row[0]) if row else 0
    prefix = parse_redis_url(worker_env.url).prefix
    with redis.Redis.from_url(client_url(worker_env.url)) as client:
        return int(client.hlen(f"{prefix}waiters"))


async def _count(app, state: State) -> int:
    backend = await app.backend()
    return (await backend.stats()).counts[state.value]


async def _workers(app) -> list:
    backend = await app.backend()
    return await backend.list_workers()


def _children(pid: int) -> list[int]:
    """The processes ``pid`` started (Linux: its threads' children lists)."""
    children: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as listing:
            children.extend(int(child) for child in listing.read().split())
    return children
