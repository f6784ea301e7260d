"""A store that has become read-only (a primary demoted to a standby by a failover, a
database set read-only for maintenance or a full disk): a store failure like a lost
connection, never a crash, and work resumes on new sessions once it is writable."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from conveyor import Conveyor
from conveyor.exceptions import BackendUnavailable
from tests.pg import fresh_schema, libpq_url
from tests.worker.conftest import WorkerEnv
from tests.worker.outage import log_lines, runs, stop


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WorkerEnv]:
    with fresh_schema() as url:
        worker_env = WorkerEnv(tmp_path, monkeypatch, url)
        try:
            yield worker_env
        finally:
            worker_env.stop_all()
            worker_env.app.close()
            sys.modules.pop("e2e_tasks", None)


@pytest.fixture
def read_only(env: WorkerEnv) -> Iterator[tuple[str, str]]:
    """(a URL whose sessions are read-only, its role), on the env's schema."""
    schema = urlsplit(env.url).query.partition("schema=")[2].partition("&")[0]
    role = f"{schema}_ro"
    with psycopg.connect(libpq_url(env.url), autocommit=True) as admin:
        admin.execute(f"CREATE ROLE \"{role}\" LOGIN PASSWORD 'ro-pw'")
        admin.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"')
        admin.execute(f'GRANT ALL ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"')
        admin.execute(f'ALTER ROLE "{role}" SET default_transaction_read_only = on')
    parts = urlsplit(env.url)
    host = parts.netloc.rpartition("@")[2]
    try:
        yield parts._replace(netloc=f"{role}:ro-pw@{host}").geturl(), role
    finally:
        with psycopg.connect(libpq_url(env.url), autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE usename = %s",
                [role],
            )
            admin.execute(f'DROP OWNED BY "{role}"')
            admin.execute(f'DROP ROLE "{role}"')


def test_an_enqueue_to_a_read_only_store_raises_backend_unavailable(
    read_only: tuple[str, str],
) -> None:
    url, _ = read_only
    app = Conveyor(url)

    @app.task(name="record")
    def record(i: int) -> None: ...

    try:
        # When the app enqueues into a store that refuses writes, sync and async
        with pytest.raises(BackendUnavailable) as sync:
            record.enqueue(1)
        with pytest.raises(BackendUnavailable) as in_loop:
            app.portal_call(record.enqueue_async(2))
    finally:
        app.close()
    # Then it is told so as a store failure, naming the store and the reason
    for refused in (sync, in_loop):
        assert "read-only" in str(refused.value)
        assert "ro-pw" not in str(refused.value)


@pytest.mark.slow
def test_a_worker_outlives_a_read_only_store_and_resumes_once_it_is_writable(
    env: WorkerEnv, read_only: tuple[str, str]
) -> None:
    url, role = read_only
    # Given a worker at work on a store it may write to
    set_read_only(env, role, False)
    proc = env.start_worker("-c", "2", url=url)
    env.tasks.record.enqueue(0)
    env.wait_until("a first run", lambda: len(runs(env)) == 1, 30)
    # When its server becomes read-only under it (its sessions end and the next ones
    # land where writes are refused, as at a failover), with jobs waiting
    set_read_only(env, role, True)
    env.tasks.record.enqueue_many([[i] for i in range(1, 4)])
    env.wait_until(
        "a claim refused as read-only",
        lambda: any("read-only" in line for line in log_lines(env)),
        30,
    )
    # And the store becomes writable again
    set_read_only(env, role, False)
    # Then the same worker, still running, does the jobs
    env.wait_until("4 runs", lambda: len(runs(env)) == 4, 30)
    assert proc.poll() is None
    stop(proc)
    assert "Traceback" not in env.logs()


def set_read_only(env: WorkerEnv, role: str, read_only: bool) -> None:
    """New sessions of ``role`` read-only or not, and its current sessions ended."""
    change = "SET default_transaction_read_only = on" if read_only else "RESET ALL"
    with psycopg.connect(libpq_url(env.url), autocommit=True) as admin:
        admin.execute(f'ALTER ROLE "{role}" {change}')
        admin.execute(
            "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE usename = %s",
            [role],
        )


PROGRAM = """
import asyncio, sys
from conveyor import Conveyor
from conveyor.exceptions import BackendUnavailable

app = Conveyor(sys.argv[1])

@app.task(name="record")
def record(i): ...

async def main():
    try:
        await record.enqueue_async(1)
    except BackendUnavailable:
        print("refused")

asyncio.run(main())
print("ended")
"""


def test_an_asyncio_program_whose_store_failed_still_ends(
    read_only: tuple[str, str], tmp_path: Path
) -> None:
    url, _ = read_only
    (tmp_path / "program.py").write_text(PROGRAM)
    # When a program enqueues with asyncio.run, meets a store failure (the pool then
    # connects again in the background) and ends without closing the app
    done = subprocess.run(
        [sys.executable, "program.py", url],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Then asyncio.run returns and the program ends
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["refused", "ended"]
