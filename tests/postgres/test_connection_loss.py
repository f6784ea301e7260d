"""Connection loss, end to end: real `conveyor worker` processes talk to PostgreSQL
through a TCP proxy (tests/postgres/proxy.py) that the test cuts and restores, or the
server terminates their sessions. The promise under test: a worker whose database goes
away keeps its running jobs' results until it can write them or its lease is gone,
reconnects with backoff, logs clearly, and loses nothing; wake-ups reconnect, and
polling keeps jobs flowing while notifications are lost.

Runs are counted in files the task itself writes (tests/worker/conftest.py), apart
from anything the store says. The test's own app talks to the server directly, so it
can enqueue and look while the worker is cut off.
"""

from __future__ import annotations

import http.server
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit

import psycopg
import pytest

from conveyor import State
from conveyor.backends import redact_url
from conveyor.job import Job
from tests.pg import fresh_schema, libpq_url
from tests.postgres.proxy import TcpProxy
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

#: In the worker's URL: trust authentication never asks for it, so it is there only to
#: show that no log line leaks it.
PASSWORD = "s3cret-pw"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WorkerEnv]:
    """Worker processes on a fresh schema (the test's app connects directly)."""
    with fresh_schema() as url:
        worker_env = WorkerEnv(tmp_path, monkeypatch, url)
        try:
            yield worker_env
        finally:
            if os.environ.get("SHOW_WORKER_LOGS"):  # to read what a passing test did
                print(worker_env.logs())
            worker_env.stop_all()
            worker_env.app.close()
            sys.modules.pop("e2e_tasks", None)


@pytest.fixture
def proxy(env: WorkerEnv) -> Iterator[TcpProxy]:
    server = urlsplit(env.url)
    with TcpProxy(server.hostname or "127.0.0.1", server.port or 5432) as tcp:
        yield tcp


def through(proxy: TcpProxy, url: str, application_name: str) -> str:
    """``url`` through the proxy, with a password and an application_name."""
    parts = urlsplit(url)
    options = dict(parse_qsl(parts.query), application_name=application_name)
    netloc = f"{parts.username or 'postgres'}:{PASSWORD}@{proxy.host}:{proxy.port}"
    return parts._replace(netloc=netloc, query=urlencode(options)).geturl()


def heartbeat(env: WorkerEnv) -> float | None:
    """When the (only) worker's lease keeper last went round."""

    async def last() -> float | None:
        workers = await (await env.app.backend()).list_workers()
        return workers[0].heartbeat_at if workers else None

    return env.app.portal_call(last())


def recovery(line: str, where: str) -> bool:
    """A line saying that something works again on the store at ``where``."""
    return any(
        said in line
        for said in (
            f"claims work again on {where} after",
            f"lease keeping works again on {where} after",
            f"outcome(s) on {where} after",
            f"listening for new jobs on {where} again",
        )
    )


def schema_of(env: WorkerEnv) -> str:
    return dict(parse_qsl(urlsplit(env.url).query))["schema"]


# ---------------------------------------------------------------------------------------
def test_a_cut_shorter_than_the_lease_keeps_the_results_and_runs_nothing_twice(
    env: WorkerEnv, proxy: TcpProxy
) -> None:
    # Given a worker, through the proxy, running 6 jobs of 1 s each with a 10 s lease
    # (and 2 free slots, so that it also claims and listens)
    handles = env.tasks.timed.enqueue_many([[i, 1.0] for i in range(6)])
    url = through(proxy, env.url, "conveyor-cut-short")
    proc = env.start_worker("-c", "8", "--lease", "10", url=url)
    env.wait_until("6 jobs running", lambda: len(runs(env)) == 6, 20)

    # When the store goes away for 3 s (the jobs finish meanwhile) and comes back
    closed = proxy.cut()
    time.sleep(3.0)
    assert not any(h.refresh().state is State.SUCCEEDED for h in handles)
    proxy.restore()
    restored = time.monotonic()
    env.wait_until("all succeeded", lambda: all_succeeded(handles), 15)
    written_in = time.monotonic() - restored

    # Then every job succeeded once, on its first attempt, with its result
    jobs = jobs_of(handles)
    assert [j.result for j in jobs] == list(range(6))
    assert [j.attempts for j in jobs] == [1] * 6
    assert runs(env) == Counter(str(i) for i in range(6))
    found = figures(env)
    assert found["running"] == found["cancelling"] == 0
    assert (found["processed"], found["failed"]) == (6, 0)
    # And the log names the store (without the password) in a warning or an error, then
    # the recovery (a cut shorter than the pool's 5 s wait for a connection may show only
    # the lost listening connection: the claims and outcome writes wait it out)
    where = redact_url(url)
    assert ":***@" in where
    assert PASSWORD not in env.logs()
    # (the results may be written before anything logs its recovery: a write that waited
    # for the pool through the cut fails nothing, and the listener's retry may come later)
    env.wait_until(
        "a line saying the store works again",
        lambda: any(recovery(line, where) for line in env.logs().splitlines()),
        15,
    )
    lines = env.logs().splitlines()
    errors = [
        n
        for n, line in enumerate(lines)
        if (" ERROR " in line or " WARNING " in line) and where in line
    ]
    back = [n for n, line in enumerate(lines) if " WARNING " in line and recovery(line, where)]
    assert errors and back and errors[0] < back[-1], env.logs()
    assert "Traceback" not in env.logs()
    stop(proc)
    print(f"\ncut closed {closed} connection(s); results written {written_in:.2f}s after restore")


@pytest.mark.parametrize("taken_back", [True, False], ids=["leases-taken-back", "nobody-took"])
def test_a_cut_longer_than_the_lease_never_double_counts_and_loses_nothing(
    env: WorkerEnv, proxy: TcpProxy, taken_back: bool
) -> None:
    # Given a worker, through the proxy, running 4 jobs of 1 s each with a 2 s lease
    handles = env.tasks.timed.enqueue_many([[i, 1.0] for i in range(4)])
    url = through(proxy, env.url, "conveyor-cut-long")
    proc = env.start_worker("-c", "4", "--lease", "2", url=url)
    env.wait_until("4 jobs running", lambda: len(runs(env)) == 4, 20)

    # When the store goes away for 5 s; meanwhile their leases expire, and (in one
    # case) are taken back as any other worker's recovery would: each job waits for
    # its next attempt
    proxy.cut()
    back_at = time.monotonic() + 5.0
    recovered: list[Job] = []
    while taken_back and len(recovered) < 4 and time.monotonic() < back_at:
        time.sleep(0.25)
        recovered += recover_expired(env)
    time.sleep(max(0.0, back_at - time.monotonic()))
    assert len(recovered) == (4 if taken_back else 0)
    proxy.restore()
    restored = time.monotonic()
    env.wait_until("all succeeded", lambda: all_succeeded(handles), 15)
    done_in = time.monotonic() - restored

    # Then every job succeeded with its result, and every attempt is counted once
    jobs = jobs_of(handles)
    assert [j.result for j in jobs] == list(range(4))
    found = figures(env)
    assert found["running"] == found["cancelling"] == 0
    if taken_back:
        # the results held through the cut were refused (their leases were gone), and
        # each job ran again: at least once, never counted twice
        assert runs(env) == Counter({str(i): 2 for i in range(4)})
        assert [j.attempts for j in jobs] == [2] * 4
        assert all([e["type"] for e in j.errors] == ["LeaseExpired"] for j in jobs)
        assert (found["processed"], found["failed"]) == (8, 4)
        assert len(log_lines(env, "lease lost before its outcome was recorded")) == 4
    else:
        # nobody took the jobs: the worker's leases were still its own, and the
        # results it kept are written
        assert runs(env) == Counter(str(i) for i in range(4))
        assert [j.attempts for j in jobs] == [1] * 4
        assert (found["processed"], found["failed"]) == (4, 0)
    assert PASSWORD not in env.logs()
    assert "Traceback" not in env.logs()
    stop(proc)
    print(f"\nall succeeded {done_in:.2f}s after restore")


def test_a_job_taken_back_while_its_first_run_goes_on_here_runs_again_cleanly(
    env: WorkerEnv,
) -> None:
    # Given a worker running a 4 s job (its lease keeper goes round every 2 s)
    handle = env.tasks.timed.enqueue(0, 4.0)
    proc = env.start_worker("-c", "4", "--lease", "6", "--interval", "0.2")
    env.wait_until("the job running", lambda: len(runs(env)) == 1, 20)

    # When its lease runs out and the job is taken back while the run goes on, as
    # after an outage longer than the lease (here without the outage, and just after
    # a heartbeat, so that the claim surely comes before the keeper's next look)
    beat = heartbeat(env)
    env.wait_until("a heartbeat", lambda: heartbeat(env) != beat, 10)
    with psycopg.connect(libpq_url(env.url), autocommit=True) as conn:
        expired = conn.execute(
            f'UPDATE "{schema_of(env)}".jobs SET lease_until = 0 '
            "WHERE id = %s AND state = 'running'",
            [handle.id],
        )
        assert expired.rowcount == 1
    assert len(recover_expired(env)) == 1

    # Then the worker claims it again, stops the old run, and records the new one's
    # outcome only
    env.wait_until("a second run", lambda: runs(env)["0"] == 2, 10)
    env.wait_until("succeeded", lambda: handle.refresh().state is State.SUCCEEDED, 15)
    job = handle.job
    assert job.attempts == 2 and job.result == 0
    assert log_lines(env, handle.id, "claimed again while its attempt 1 still runs here")
    stop(proc)
    assert "Traceback" not in env.logs(), env.logs()
    assert log_lines(env, "stopped after 1 job(s)"), env.logs()


def test_jobs_enqueued_while_the_worker_is_cut_off_run_after_restore(
    env: WorkerEnv, proxy: TcpProxy
) -> None:
    # Given an idle worker that claims only when woken, or every 30 s
    url = through(proxy, env.url, "conveyor-cut-listen")
    proc = env.start_worker("-c", "4", "--interval", "30", url=url)
    assert env.tasks.record.enqueue(-1).wait(timeout=15) == -1

    # When its connections are cut, jobs are enqueued meanwhile, and the store is back
    proxy.cut()
    handles = env.tasks.record.enqueue_many([[i] for i in range(5)])
    time.sleep(3.0)
    assert sum(runs(env).values()) == 1
    proxy.restore()
    restored = time.monotonic()

    # Then they run (the worker polls while it cannot listen)
    env.wait_until("5 succeeded", lambda: all_succeeded(handles), 15)
    picked_up_in = time.monotonic() - restored
    # And it listens again: a new job runs long before the 30 s interval
    env.wait_until("listening again", lambda: bool(log_lines(env, "listening", "again")), 15)
    enqueued = time.monotonic()
    assert env.tasks.record.enqueue(99).wait(timeout=10) == 99
    woken_in = time.monotonic() - enqueued
    assert runs(env) == Counter(str(i) for i in [-1, *range(5), 99])
    stop(proc)
    print(f"\npicked up {picked_up_in:.2f}s after restore; then woken in {woken_in:.3f}s")


def test_a_lost_notification_is_covered_by_polling(env: WorkerEnv) -> None:
    # Given an idle worker (claims every 1 s without a wake-up)
    proc = env.start_worker("-c", "2", "--interval", "1")
    assert env.tasks.record.enqueue(-1).wait(timeout=15) == -1

    # When a job becomes ready without any NOTIFY (made ready by hand)
    handle = env.tasks.record.with_options(delay=3600).enqueue(7)
    started = time.monotonic()
    with psycopg.connect(libpq_url(env.url), autocommit=True) as conn:
        conn.execute(
            f"UPDATE \"{schema_of(env)}\".jobs SET state = 'queued', run_at = 0 WHERE id = %s",
            [handle.id],
        )

    # Then the worker finds it by polling
    assert handle.wait(timeout=10) == 7
    print(f"\nfound without a notification in {time.monotonic() - started:.2f}s")
    stop(proc)


def test_terminated_sessions_while_jobs_flow_lose_nothing_and_run_nothing_twice(
    env: WorkerEnv,
) -> None:
    # Given a worker draining 300 short jobs, its sessions named by application_name
    name = "conveyor-terminated"
    parts = urlsplit(env.url)
    url = parts._replace(
        query=urlencode({**dict(parse_qsl(parts.query)), "application_name": name})
    ).geturl()
    handles = env.tasks.timed.enqueue_many([[i, 0.02] for i in range(300)])
    proc = env.start_worker("-c", "4", "--lease", "3", url=url)

    # When the server terminates every session of the worker, three times as jobs flow
    terminated = 0
    with psycopg.connect(libpq_url(env.url), autocommit=True) as admin:
        for at in (20, 100, 200):
            env.wait_until(f"{at} runs", lambda at=at: len(runs(env)) >= at, 20)
            terminated += len(
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = %s",
                    [name],
                ).fetchall()
            )

    # Then every job succeeded, each ran once, on its first attempt
    env.wait_until("300 succeeded", lambda: figures(env)["succeeded"] == 300, 30)
    assert runs(env) == Counter(str(i) for i in range(300))
    assert {j.attempts for j in jobs_of(handles)} == {1}
    found = figures(env)
    assert (found["processed"], found["failed"]) == (300, 0)
    assert terminated >= 3
    assert "Traceback" not in env.logs()
    stop(proc)
    print(f"\nterminated {terminated} session(s) in 3 rounds")


def test_after_a_long_outage_the_worker_reconnects_within_seconds(
    env: WorkerEnv, proxy: TcpProxy
) -> None:
    # Given a worker, through the proxy, running a job of 1 s
    handle = env.tasks.timed.enqueue(0, 1.0)
    url = through(proxy, env.url, "conveyor-long-outage")
    proc = env.start_worker("-c", "4", "--lease", "60", url=url)
    env.wait_until("the job running", lambda: len(runs(env)) == 1, 20)

    # When the store is away for 18 s (the outcome waits meanwhile)
    proxy.cut()
    time.sleep(18.0)
    assert handle.refresh().state is State.RUNNING
    proxy.restore()
    restored = time.monotonic()

    # Then the outcome is written within seconds: the connection pool's attempts did
    # not drift apart while the store was away (they did: 13 s after restore)
    env.wait_until("succeeded", lambda: handle.refresh().state is State.SUCCEEDED, 30)
    written_in = time.monotonic() - restored
    assert written_in < 6.0, env.logs()
    assert handle.job.attempts == 1
    stop(proc)
    print(f"\noutcome written {written_in:.2f}s after restore")


class _Callbacks(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.received.append(self.headers.get("idempotency-key") or "")
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def callbacks() -> Iterator[tuple[str, list[str]]]:
    """A local HTTP server that takes callbacks: its URL, and the keys it received."""
    _Callbacks.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Callbacks)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/done", _Callbacks.received
    finally:
        server.shutdown()
        server.server_close()


def test_an_outcome_stored_as_its_answer_was_lost_counts_as_written(
    env: WorkerEnv, proxy: TcpProxy, callbacks: tuple[str, list[str]], tmp_path: Path
) -> None:
    # Given a worker, through the proxy, running a job that has a callback URL
    url, received = callbacks
    go = tmp_path / "go"
    options = {"metadata": {"conveyor.http": {"callback": url}}}
    handle = env.tasks.wait_for_file.with_options(**options).enqueue(1, str(go))
    worker_url = through(proxy, env.url, "conveyor-lost-answer")
    env.env["CONVEYOR_HTTP_ALLOW"] = "127.0.0.0/8"  # the callback goes to this machine
    proc = env.start_worker("-c", "2", "--lease", "30", url=worker_url)
    env.wait_until("running", lambda: len(runs(env)) == 1, 20)

    # When the job ends while the server's answers are dropped: its outcome is stored,
    # and the worker never hears so; then the connections die, and come back
    proxy.mute()
    go.touch()
    env.wait_until("stored", lambda: handle.refresh().state is State.SUCCEEDED, 20)
    proxy.cut()
    proxy.restore()

    # Then the worker takes its outcome as written: the callback is sent, once, and
    # nothing says the lease was lost
    env.wait_until("the callback", lambda: len(received) == 1, 30)
    assert not log_lines(env, "lease lost"), env.logs()
    assert log_lines(env, handle.id, "stored by a write whose answer was lost"), env.logs()
    job = handle.refresh().job
    assert received == [f"{handle.id}:callback:{job.version}"]
    assert (job.attempts, job.result, runs(env)) == (1, 1, Counter({"1": 1}))
    stop(proc)


def test_a_job_held_through_a_cut_past_its_lease_does_not_start_while_another_holds_it(
    env: WorkerEnv, proxy: TcpProxy
) -> None:
    # Given a worker, through the proxy, with its one slot busy for 4 s and two more
    # jobs claimed ahead (--prefetch), on 2 s leases
    env.tasks.sleep.enqueue(4.0)
    held = env.tasks.timed.enqueue_many([[1, 0.1], [2, 0.1]])
    url = through(proxy, env.url, "conveyor-held-through-cut")
    proc = env.start_worker("-c", "1", "--prefetch", "2", "--lease", "2", url=url)
    env.wait_until("the busy job running", lambda: env.lines("started") == ["4.0"], 20)
    env.wait_until(
        "the other two claimed", lambda: {j.state for j in jobs_of(held)} == {State.RUNNING}, 20
    )

    # When the store goes away, the leases run out, the jobs are taken back and claimed
    # by another worker, and meanwhile the busy job ends and frees the slot
    proxy.cut()
    recovered: list[Job] = []

    def all_recovered() -> bool:
        recovered.extend(recover_expired(env))
        return len(recovered) >= 3

    env.wait_until("the leases recovered", all_recovered, 20)

    async def claim_elsewhere() -> list[Job]:
        backend = await env.app.backend()
        return await backend.claim(["default"], "another-worker", 10, 60.0)

    assert {j.id for j in env.app.portal_call(claim_elsewhere())} >= {h.id for h in held}
    env.wait_until("the busy job's end", lambda: env.lines("finished") == ["4.0"], 20)
    proxy.restore()
    env.wait_until(
        "the worker's leases looked at again",
        lambda: bool(log_lines(env, "lease keeping works again on")),
        30,
    )

    # Then the worker never started the jobs it held: the other worker holds them
    assert runs(env) == Counter(), env.logs()
    assert {j.worker_id for j in jobs_of(held)} == {"another-worker"}
    assert "Traceback" not in env.logs()
    stop(proc)
