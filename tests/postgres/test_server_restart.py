"""PostgreSQL itself restarted under a real `conveyor worker` process: a throwaway cluster
(tests/postgres/cluster.py) stopped in ``fast`` mode (sessions ended, a checkpoint) or
``immediate`` mode (a crash: recovery at the start, unlogged tables emptied) while jobs
run, down for a few seconds, and started again. The promise under test: the worker keeps
its jobs' results and writes them once the server is back, each job runs once, the
library's enqueue raises BackendUnavailable meanwhile, the log says what broke and that
it works again, and LISTEN/NOTIFY wake-ups come back (a job enqueued after the restart
starts long before the worker's 30 s polling interval).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from conveyor.backends import redact_url
from conveyor.backends.postgres import PostgresBackend
from conveyor.exceptions import BackendUnavailable
from tests.postgres.cluster import PgCluster
from tests.worker.conftest import WorkerEnv
from tests.worker.outage import all_succeeded, figures, jobs_of, log_lines, runs, stop

pytestmark = pytest.mark.slow


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[WorkerEnv, PgCluster]]:
    with PgCluster() as cluster:
        url = cluster.url(schema="conveyor_t")
        asyncio.run(PostgresBackend(url).migrate())
        worker_env = WorkerEnv(tmp_path, monkeypatch, url)
        try:
            yield worker_env, cluster
        finally:
            worker_env.stop_all()
            worker_env.app.close()
            sys.modules.pop("e2e_tasks", None)


def answered(check: Callable[[], bool]) -> Callable[[], bool]:
    """``check``, False while the test's own connections still find the server gone."""

    def run() -> bool:
        try:
            return check()
        except BackendUnavailable:
            return False

    return run


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_a_server_restart_loses_nothing_and_wake_ups_come_back(
    env: tuple[WorkerEnv, PgCluster], mode: str
) -> None:
    worker_env, cluster = env
    # Given a worker that claims when woken, or every 30 s, running 4 jobs of 2 s
    handles = worker_env.tasks.timed.enqueue_many([[i, 2.0] for i in range(4)])
    proc = worker_env.start_worker("-c", "8", "--lease", "30", "--interval", "30")
    worker_env.wait_until("4 running", lambda: len(runs(worker_env)) == 4, 20)
    # (claims commit without waiting for the WAL flush: on disk now, as they would be
    # within a fraction of a second; a crash may forget a claim younger than that)
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute("CHECKPOINT")

    # When the server stops, the library enqueues meanwhile, and it starts again
    cluster.stop(mode)
    with pytest.raises(BackendUnavailable):
        worker_env.tasks.record.enqueue(-1)
    time.sleep(3.0)
    cluster.start()

    # Then each job succeeded once, on its first attempt, with its result
    worker_env.wait_until("all succeeded", answered(lambda: all_succeeded(handles)), 30)
    jobs = jobs_of(handles)
    assert [j.result for j in jobs] == list(range(4))
    assert [j.attempts for j in jobs] == [1] * 4
    found = figures(worker_env)
    assert (found["running"], found["processed"], found["failed"]) == (0, 4, 0)
    # And the worker listens again: a job enqueued now starts long before the 30 s
    # interval (handed over, or claimed on a notification)
    where = redact_url(worker_env.url)
    worker_env.wait_until(
        "listening again",
        lambda: log_lines(worker_env, f"listening for new jobs on {where} again"),
        20,
    )
    assert worker_env.tasks.record.enqueue(99).wait(timeout=15) == 99
    assert runs(worker_env) == Counter([*(str(i) for i in range(4)), "99"])
    # And the log named the store in a warning or an error before it said it works again
    # (an outage shorter than the pool's 5 s wait for a connection may show only the
    # lost notification connection: the claims and outcome writes wait it out)
    lines = worker_env.logs().splitlines()
    errors = [
        n
        for n, line in enumerate(lines)
        if (" ERROR " in line or " WARNING " in line) and where in line
    ]
    said_back = ("work again on", "works again on", "outcome(s) on", "listening for new jobs on")
    back = [n for n, line in enumerate(lines) if any(f"{s} {where}" in line for s in said_back)]
    assert errors and back and errors[0] < back[-1], worker_env.logs()
    assert "Traceback" not in worker_env.logs(), worker_env.logs()
    stop(proc)
