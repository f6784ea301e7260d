"""Connection loss, end to end: a real `conveyor worker` process on a private
redis-server (append-only file, fsync on every write) that the test kills with SIGKILL
and starts again on the same port and folder. The promise under test: a worker whose
Redis goes away keeps its running jobs' results until it can write them or its lease
is gone, reconnects with backoff, logs clearly, and loses nothing; an idle worker
polls while Redis is down and blocks on its wake-up lists again once it is back.

Runs are counted in files the task itself writes (tests/worker/conftest.py), apart
from anything the store says. While Redis is down nobody reaches it, the test
included; the test looks before the kill and after the restart. A restart also
empties Redis' script cache: the last test checks that a big batch enqueued right
after one is stored.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from conveyor import State
from conveyor.backends import redact_url
from conveyor.exceptions import BackendUnavailable
from conveyor.handle import JobHandle
from tests.redis.server import RedisServer
from tests.worker.conftest import WorkerEnv
from tests.worker.outage import (
    all_succeeded,
    figures,
    jobs_of,
    log_lines,
    recover_expired,
    runs,
    stop,
)

pytestmark = pytest.mark.slow

T = TypeVar("T")

#: The server asks for it, so the worker's URL carries it: no log line may show it.
PASSWORD = "s3cret-pw"
#: How long Redis stays down: longer than the worker's first retries, shorter than
#: the 10 s leases of the tests where the leases must outlive the outage.
OUTAGE_S = 2.5


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    settings = ("--appendonly", "yes", "--appendfsync", "always")
    with RedisServer(tmp_path / "redis", *settings, password=PASSWORD) as redis_server:
        yield redis_server


@pytest.fixture
def env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: RedisServer
) -> Iterator[WorkerEnv]:
    """Worker processes on the private server; the test's app uses the same URL."""
    url = server.url(prefix=f"conveyor_t_{uuid.uuid4().hex[:12]}")
    worker_env = WorkerEnv(tmp_path, monkeypatch, url)
    try:
        yield worker_env
    finally:
        if os.environ.get("SHOW_WORKER_LOGS"):  # to read what a passing test did
            print(worker_env.logs())
        worker_env.stop_all()
        worker_env.app.close()
        sys.modules.pop("e2e_tasks", None)


def outage(server: RedisServer, seconds: float = OUTAGE_S) -> None:
    """Redis dies (SIGKILL: no shutdown, every connection dropped), stays away for
    ``seconds``, and starts again on the same port, reading back its AOF."""
    server.kill()
    time.sleep(seconds)
    server.start()


def answered(check: Callable[[], bool]) -> Callable[[], bool]:
    """``check``, False while the test's own connections still find Redis gone (the
    first call on each connection from before a restart fails; the next reconnects)."""

    def run() -> bool:
        try:
            return check()
        except BackendUnavailable:
            return False

    return run


def answered_list(call: Callable[[], list[T]], timeout: float = 10.0) -> list[T]:
    """``call()`` once it gets through (see :func:`answered`): only for calls that are
    safe to send again (a recovery, or an enqueue, whose job ids make it idempotent)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except BackendUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def recovery(line: str, where: str) -> bool:
    """A line saying that something works again on the store at ``where``."""
    return any(
        said in line
        for said in (
            f"claims work again on {where} after",
            f"lease keeping works again on {where} after",
            f"outcome(s) on {where} after",
        )
    )


def assert_logged_loss_then_recovery(env: WorkerEnv) -> None:
    """An ERROR naming the store (password hidden), later a WARNING that it works
    again, no traceback."""
    where = redact_url(env.url)
    assert ":***@" in where
    # (what the test waited for may be done before anything logs its recovery)
    env.wait_until(
        "a line saying the store works again",
        lambda: any(recovery(line, where) for line in env.logs().splitlines()),
        15,
    )
    logs = env.logs()
    assert PASSWORD not in logs
    assert "Traceback" not in logs, logs
    lines = logs.splitlines()
    errors = [n for n, line in enumerate(lines) if " ERROR " in line and where in line]
    back = [n for n, line in enumerate(lines) if " WARNING " in line and recovery(line, where)]
    assert errors and back and errors[0] < back[-1], logs


def waiters(server: RedisServer) -> int:
    """Connections blocked in BLPOP: idle workers waiting on their wake-up lists."""
    with server.client() as client:
        return sum(1 for c in client.client_list() if c.get("cmd") == "blpop")


# ---------------------------------------------------------------------------------------
def test_a_restart_shorter_than_the_lease_keeps_the_results_and_runs_nothing_twice(
    env: WorkerEnv, server: RedisServer
) -> None:
    # Given a worker running 6 jobs of 1 s each with 10 s leases, with 2 free slots so
    # that it also listens for wake-ups (it claims otherwise only every 30 s), and 4
    # more jobs scheduled to be due during the outage
    handles = env.tasks.timed.enqueue_many([[i, 1.0] for i in range(6)])
    proc = env.start_worker("-c", "8", "--lease", "10", "--interval", "30")
    env.wait_until("6 jobs running", lambda: len(runs(env)) == 6, 20)
    env.wait_until("waiting for work", lambda: waiters(server) == 1, 10)
    later = env.tasks.timed.with_options(delay=1.0).enqueue_many([[i, 0.2] for i in range(6, 10)])

    # When Redis dies while they run (they finish meanwhile) and starts again
    outage(server)
    restarted = time.monotonic()
    env.wait_until("all succeeded", answered(lambda: all_succeeded(handles + later)), 30)
    done_in = time.monotonic() - restarted

    # Then every job succeeded once, on its first attempt, with its result: the 6
    # outcomes held through the outage were written, the scheduled jobs survived the
    # restart (the AOF) and ran once due
    jobs = jobs_of(handles + later)
    assert [j.result for j in jobs] == list(range(10))
    assert [j.attempts for j in jobs] == [1] * 10
    assert runs(env) == Counter(str(i) for i in range(10))
    found = figures(env)
    assert found["running"] == found["cancelling"] == found["queued"] == 0
    assert (found["processed"], found["failed"]) == (10, 0)
    # And the log says the store was unreachable, then that it works again
    assert_logged_loss_then_recovery(env)

    # And it waits on its wake-up list again: a new job is woken up at once, not
    # after 30 s
    env.wait_until("waiting again", lambda: waiters(server) == 1, 10)
    enqueued = time.monotonic()
    assert env.tasks.timed.enqueue(99, 0.0).wait(timeout=10) == 99
    woken_in = time.monotonic() - enqueued
    stop(proc)
    print(f"\nall done {done_in:.2f}s after the restart; a new job ran in {woken_in:.3f}s")


@pytest.mark.parametrize("taken_back", [True, False], ids=["leases-taken-back", "nobody-took"])
def test_a_restart_longer_than_the_lease_never_double_counts_and_loses_nothing(
    env: WorkerEnv, server: RedisServer, taken_back: bool
) -> None:
    # Given a worker running 4 jobs of 1 s each with a 2 s lease
    handles = env.tasks.timed.enqueue_many([[i, 1.0] for i in range(4)])
    proc = env.start_worker("-c", "4", "--lease", "2")
    env.wait_until("4 jobs running", lambda: len(runs(env)) == 4, 20)

    # When Redis is away for 4 s: the jobs end, their leases run out. In one case
    # another worker's recovery takes them back before this worker reaches Redis
    # again (the worker is frozen over the restart to fix that order); in the other
    # nobody does, and the worker's own lease keeper extends them first
    server.kill()
    time.sleep(4.0)
    if taken_back:
        os.killpg(proc.pid, signal.SIGSTOP)
    server.start()
    recovered = answered_list(lambda: recover_expired(env)) if taken_back else []
    if taken_back:
        os.killpg(proc.pid, signal.SIGCONT)
    assert len(recovered) == (4 if taken_back else 0)
    env.wait_until("all succeeded", answered(lambda: all_succeeded(handles)), 30)

    # Then every job succeeded with its result, and every attempt is counted once
    jobs = jobs_of(handles)
    assert [j.result for j in jobs] == list(range(4))
    found = figures(env)
    assert found["running"] == found["cancelling"] == found["queued"] == 0
    if taken_back:
        # the results held through the outage were refused (their leases were gone),
        # and each job ran again: at least once, never counted twice
        assert runs(env) == Counter({str(i): 2 for i in range(4)})
        assert [j.attempts for j in jobs] == [2] * 4
        assert all([e["type"] for e in j.errors] == ["LeaseExpired"] for j in jobs)
        assert (found["processed"], found["failed"]) == (8, 4)
        assert len(log_lines(env, "lease lost before its outcome was recorded")) == 4
    else:
        # the worker's leases were still its own: the results it kept are written
        assert runs(env) == Counter(str(i) for i in range(4))
        assert [j.attempts for j in jobs] == [1] * 4
        assert (found["processed"], found["failed"]) == (4, 0)
    assert PASSWORD not in env.logs()
    assert "Traceback" not in env.logs()
    stop(proc)


def test_an_idle_worker_picks_up_jobs_after_a_restart_and_enqueue_meanwhile_raises(
    env: WorkerEnv, server: RedisServer
) -> None:
    # Given an idle worker that claims only when woken, or every 30 s
    proc = env.start_worker("-c", "4", "--interval", "30")
    assert env.tasks.record.enqueue(-1).wait(timeout=15) == -1
    env.wait_until("waiting for work", lambda: waiters(server) == 1, 10)

    # When Redis dies, a job is enqueued meanwhile, and Redis is back
    server.kill()
    with pytest.raises(BackendUnavailable) as refused:
        env.tasks.record.enqueue(-2)  # refused, never half-stored
    assert PASSWORD not in str(refused.value)
    time.sleep(OUTAGE_S)
    server.start()
    handles = answered_list(lambda: env.tasks.record.enqueue_many([[i] for i in range(5)]))
    restarted = time.monotonic()

    # Then jobs enqueued after the restart run long before the 30 s interval: the
    # worker's failed claims are retried with a growing pause (at most 5 s), and it
    # polls every second while Redis is down
    env.wait_until("5 succeeded", answered(lambda: all_succeeded(handles)), 15)
    picked_up_in = time.monotonic() - restarted
    # And it listens again: a new job is woken up at once
    env.wait_until("waiting again", lambda: waiters(server) == 1, 10)
    enqueued = time.monotonic()
    assert env.tasks.record.enqueue(99).wait(timeout=10) == 99
    woken_in = time.monotonic() - enqueued
    assert runs(env) == Counter(str(i) for i in [-1, *range(5), 99])
    assert figures(env)["succeeded"] == 7
    assert_logged_loss_then_recovery(env)
    stop(proc)
    print(f"\npicked up {picked_up_in:.2f}s after the restart; then woken in {woken_in:.3f}s")


def test_a_crash_while_jobs_flow_loses_nothing_and_leaves_nothing_running(
    env: WorkerEnv, server: RedisServer
) -> None:
    # Given a worker draining 200 short jobs, with 3 s leases
    handles = env.tasks.timed.enqueue_many([[i, 0.02] for i in range(200)])
    proc = env.start_worker("-c", "4", "--lease", "3")

    # When Redis is killed in mid-flow, twice: a claim or an outcome may be on the
    # wire, executed by Redis (and in its AOF, fsynced before it answers) with the
    # answer lost, or never executed
    for at in (40, 120):
        env.wait_until(f"{at} runs", lambda at=at: len(runs(env)) >= at, 30)
        outage(server, 1.0)

    # Then every job succeeded, nothing is left running, and every attempt is counted
    # once. A job whose claim was executed but whose answer was lost never started
    # here: its lease ran out, it was recovered (attempt counted as failed) and ran
    # again; an outcome whose answer was lost is refused when sent again, harmlessly
    seen: list[object] = []  # what the store last said, for the message of a timeout

    def all_200_succeeded() -> bool:
        try:
            found = figures(env)
        except BackendUnavailable as exc:  # the test's own connection, from before
            seen[:] = [exc]
            return False
        seen[:] = [found]
        return found["succeeded"] == 200

    try:
        env.wait_until("200 succeeded", all_200_succeeded, 60)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- the store last said: {seen}") from None
    jobs = jobs_of(handles)
    assert [j.result for j in jobs] == list(range(200))
    ran = runs(env)
    assert set(ran) == {str(i) for i in range(200)}
    for job, i in zip(jobs, range(200), strict=True):
        # each run is an attempt; an attempt without a run is one recovered unseen
        assert ran[str(i)] <= job.attempts, (i, job)
        unseen = job.attempts - ran[str(i)]
        assert [e["type"] for e in job.errors].count("LeaseExpired") >= unseen, (i, job)
    attempts = sum(j.attempts for j in jobs)
    found = figures(env)
    assert found["running"] == found["cancelling"] == found["queued"] == 0
    assert (found["processed"], found["failed"]) == (attempts, attempts - 200)
    assert_logged_loss_then_recovery(env)
    stop(proc)
    rerun = sum(1 for j in jobs if j.attempts > 1)
    print(f"\n{rerun} job(s) ran again after a lost answer; {attempts} attempts in all")


def test_after_a_long_outage_the_worker_is_back_within_seconds(
    env: WorkerEnv, server: RedisServer
) -> None:
    # Given a worker running a job of 1 s, and 3 more waiting
    handle = env.tasks.timed.enqueue(0, 1.0)
    proc = env.start_worker("-c", "1", "--lease", "60")
    env.wait_until("the job running", lambda: len(runs(env)) == 1, 20)
    waiting = env.tasks.timed.enqueue_many([[i, 0.0] for i in range(1, 4)])

    # When Redis is away for 15 s (the outcome waits meanwhile, claims back off)
    outage(server, 15.0)
    restarted = time.monotonic()

    # Then the outcome is written within seconds (the worker's attempts did not drift
    # apart while Redis was away), and the waiting jobs run
    env.wait_until("succeeded", answered(lambda: all_succeeded([handle])), 30)
    written_in = time.monotonic() - restarted
    assert written_in < 6.0, env.logs()
    assert handle.job.attempts == 1
    env.wait_until("all succeeded", answered(lambda: all_succeeded(waiting)), 30)
    assert runs(env) == Counter(str(i) for i in range(4))
    stop(proc)
    print(f"\noutcome written {written_in:.2f}s after the restart")


def test_a_batch_over_one_script_call_is_stored_once_right_after_a_restart(
    env: WorkerEnv, server: RedisServer
) -> None:
    # Given an app whose connection loaded the scripts (at open)
    assert figures(env)["queued"] == 0

    # When Redis restarts (its script cache is not persisted) and the app's first
    # enqueue is a batch of over 1,000 jobs: several script calls in one MULTI/EXEC,
    # which Redis answers NOSCRIPT for (the single-call path reloads on its own)
    outage(server, 0.5)
    handles = answered_list(lambda: env.tasks.record.enqueue_many([[i] for i in range(1001)]))

    # Then the batch is stored, once
    assert len({h.id for h in handles}) == 1001
    assert figures(env)["queued"] == 1001


def test_the_first_enqueue_after_a_restart_gets_through(
    env: WorkerEnv, server: RedisServer
) -> None:
    # Given an app whose connections to Redis were opened before a restart
    app = env.app
    first = env.tasks.record.enqueue(1)
    app.portal_call(_enqueue_async(env))
    server.kill()
    time.sleep(OUTAGE_S)
    server.start()

    # When it enqueues again, sync and async: the dead connections fail, and the
    # enqueue is sent once more on a new one (job ids make that safe)
    second = env.tasks.record.enqueue(2)
    third = app.portal_call(_enqueue_async(env))

    # Then both are stored once, without the caller seeing the restart
    handles = [first, second, third]
    assert len({h.id for h in handles}) == 3
    assert {h.refresh().state for h in handles} == {State.QUEUED}
    assert figures(env)["queued"] == 4


async def _enqueue_async(env: WorkerEnv) -> JobHandle:
    return await env.tasks.record.enqueue_async(3)
