"""The PostgreSQL schema: `conveyor migrate`, version checks, and claims that stay on
their index however many jobs are finished or waiting."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import subprocess
import sys
from urllib.parse import urlsplit

import psycopg
import pytest

from conveyor import Conveyor
from conveyor.backends.postgres import SCHEMA_VERSION, PostgresBackend
from conveyor.exceptions import BackendUnavailable, ConfigError
from conveyor.job import Outcome
from conveyor.testing.harness import make_job
from tests.api.server import running_api
from tests.pg import fresh_schema, libpq_url


def _migrate(url: str, results: multiprocessing.Queue[tuple[int, int] | str]) -> None:
    try:
        results.put(asyncio.run(PostgresBackend(url).migrate()))
    except BaseException as exc:
        results.put(f"{type(exc).__name__}: {exc}")


def test_migrate_from_four_processes_at_once_migrates_once() -> None:
    with fresh_schema(migrate=False) as url:
        ctx = multiprocessing.get_context("spawn")
        results: multiprocessing.Queue[tuple[int, int] | str] = ctx.Queue()
        procs = [ctx.Process(target=_migrate, args=(url, results)) for _ in range(4)]
        for p in procs:
            p.start()
        answers = [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(30)
        # Exactly one found nothing and migrated; the others found it done.
        assert sorted(answers) == [(0, SCHEMA_VERSION)] + [(SCHEMA_VERSION, SCHEMA_VERSION)] * 3
        with psycopg.connect(libpq_url(url)) as conn:
            schema = PostgresBackend(url).schema
            rows = conn.execute(
                f'SELECT version FROM "{schema}".schema_version ORDER BY version'
            ).fetchall()
        assert rows == [(version,) for version in range(1, SCHEMA_VERSION + 1)]


def test_a_missing_schema_is_refused_with_the_command_to_run() -> None:
    with fresh_schema(migrate=False) as url:
        backend = PostgresBackend(url.replace("@", ":hunter2@", 1))
        with pytest.raises(ConfigError) as refused:
            asyncio.run(backend.open())
        message = str(refused.value)
        assert "conveyor migrate" in message
        assert "does not exist" in message
        assert "hunter2" not in message


def test_a_supervised_worker_on_a_missing_schema_exits_2_before_forking(tmp_path) -> None:
    # Given a schema that was never migrated and a worker of two processes
    (tmp_path / "tasks.py").write_text("")
    with fresh_schema(migrate=False) as url:
        command = [sys.executable, "-m", "conveyor", "worker", "-i", "tasks.py"]
        command += ["--url", url, "--processes", "2", "-v"]
        # When it starts
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    # Then the supervisor's check refuses at once, naming the command to run, and no
    # worker process was started
    assert result.returncode == 2, result.stderr
    assert "conveyor migrate" in result.stderr
    assert "started worker process" not in result.stderr


def test_the_api_on_a_missing_schema_refuses_to_start(tmp_path) -> None:
    # Given a schema that was never migrated
    with fresh_schema(migrate=False) as url:
        command = [sys.executable, "-m", "conveyor", "api", "--url", url, "--port", "1"]
        environment = {**os.environ, "CONVEYOR_ADMIN_KEYS": "admin-key-0123456789abcdef"}
        # When the API is started on it (on a port it could not have: nothing may get
        # that far)
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=60, cwd=tmp_path, env=environment
        )
    # Then it exits 2, naming the command to run
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: url: ")
    assert "conveyor migrate" in result.stderr


def test_an_api_serving_a_missing_schema_answers_503_problems() -> None:
    # Given the API of an app whose schema is missing (served by the app itself, not by
    # `conveyor api`, which refuses to start)
    with fresh_schema(migrate=False) as url, running_api(url) as api:
        # When a client asks for jobs
        answer = api.client("acme").get("/v1/jobs")
        health = api.client(None).get("/healthz")
    # Then the store's problem is a 503 problem, not a 500
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert health.status_code == 503
    assert "conveyor migrate" in health.json()["detail"]


def test_a_schema_newer_than_the_code_is_refused(pg_url: str) -> None:
    schema = PostgresBackend(pg_url).schema
    with psycopg.connect(libpq_url(pg_url), autocommit=True) as conn:
        conn.execute(f'INSERT INTO "{schema}".schema_version (version) VALUES (999)')
    with pytest.raises(ConfigError, match="newer than this conveyor"):
        asyncio.run(PostgresBackend(pg_url).open())
    with pytest.raises(ConfigError, match="newer than this conveyor"):
        asyncio.run(PostgresBackend(pg_url).check())
    with pytest.raises(ConfigError, match="newer than this conveyor"):
        asyncio.run(PostgresBackend(pg_url).migrate())


def test_a_statement_timeout_met_while_reading_the_schema_is_a_store_failure(
    pg_url: str,
) -> None:
    # Given a URL whose sessions cancel statements after 200 ms, and the schema's
    # version table locked by another transaction meanwhile
    schema = PostgresBackend(pg_url).schema
    url = pg_url + "&options=-c%20statement_timeout%3D200ms"
    with psycopg.connect(libpq_url(pg_url)) as locker:
        locker.execute(f'LOCK TABLE "{schema}".schema_version IN ACCESS EXCLUSIVE MODE')
        # When the store checks the schema as it opens, a synchronous enqueue opens its
        # connection, and a command starts on it
        with pytest.raises(BackendUnavailable) as refused:
            asyncio.run(PostgresBackend(url).check())
        app = Conveyor(url)
        try:
            with pytest.raises(BackendUnavailable, match="statement timeout"):
                app.task(name="send_welcome")(lambda: None).enqueue()
        finally:
            app.close()
        command = [sys.executable, "-m", "conveyor", "stats", "--url", url]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        locker.rollback()
    # Then the cancelled statement is a store failure, named, and the command exits
    # with code 1, not with the driver's traceback
    assert "statement timeout" in str(refused.value)
    assert result.returncode == 1, result.stderr
    assert "statement timeout" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_migrate_command_reports_what_it_did() -> None:
    with fresh_schema(migrate=False) as url:
        command = [sys.executable, "-m", "conveyor", "migrate", "--url", url]
        first = subprocess.run(command, capture_output=True, text=True, timeout=60)
        again = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert f"from version 0 to {SCHEMA_VERSION}" in first.stdout
    assert again.returncode == 0, again.stderr
    assert "up to date" in again.stdout


def test_migrate_needs_no_right_to_create_schemas_when_the_schema_is_there() -> None:
    with fresh_schema(migrate=False) as url:
        schema = PostgresBackend(url).schema
        role = f"{schema}_owner"
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            # Given an empty schema an administrator made for a role of its own, which
            # may not create schemas in the database
            conn.execute(f"CREATE ROLE \"{role}\" LOGIN PASSWORD 'owner-pw'")
            conn.execute(f'CREATE SCHEMA "{schema}" AUTHORIZATION "{role}"')
            assert conn.execute(
                "SELECT NOT has_database_privilege(%s, current_database(), 'CREATE')", [role]
            ).fetchone() == (True,)
        try:
            parts = urlsplit(url)
            host = parts.netloc.rpartition("@")[2]
            as_owner = parts._replace(netloc=f"{role}:owner-pw@{host}").geturl()
            # When that role runs `conveyor migrate`, twice
            command = [sys.executable, "-m", "conveyor", "migrate", "--url", as_owner]
            first = subprocess.run(command, capture_output=True, text=True, timeout=60)
            again = subprocess.run(command, capture_output=True, text=True, timeout=60)
        finally:
            with psycopg.connect(libpq_url(url), autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                conn.execute(f'DROP ROLE "{role}"')
    # Then the schema is migrated, and found up to date the second time
    assert first.returncode == 0, first.stderr
    assert f"from version 0 to {SCHEMA_VERSION}" in first.stdout
    assert again.returncode == 0, again.stderr
    assert "up to date" in again.stdout


def _scans(conn: psycopg.Connection, schema: str) -> tuple[int, int]:
    """(sequential scans of jobs, scans of its claim index) so far."""
    conn.execute("SELECT pg_stat_force_next_flush()")
    row = conn.execute(
        "SELECT t.seq_scan, i.idx_scan FROM pg_stat_user_tables t "
        "JOIN pg_stat_user_indexes i ON i.relid = t.relid "
        "WHERE t.schemaname = %s AND t.relname = 'jobs' AND i.indexrelname = 'jobs_ready'",
        [schema],
    ).fetchone()
    assert row is not None
    return row[0], row[1]


def test_claims_use_the_ready_index_beside_many_finished_jobs(pg_url: str) -> None:
    backend = PostgresBackend(pg_url)
    schema = backend.schema

    async def fill() -> None:
        await backend.open()
        try:
            for _ in range(20):  # 20,000 jobs, then all but 10 finished
                await backend.enqueue([make_job() for _ in range(1000)])
            while claimed := await backend.claim(["default"], "w", 1000, 60):
                await backend.finish([(job, Outcome.succeeded()) for job in claimed])
            await backend.enqueue([make_job() for _ in range(10)])
        finally:
            await backend.close()

    asyncio.run(fill())
    with psycopg.connect(libpq_url(pg_url), autocommit=True) as conn:
        conn.execute(f'ANALYZE "{schema}".jobs')
        seq_before, idx_before = _scans(conn, schema)
        rows = conn.execute(
            f"SELECT id FROM \"{schema}\".claim(ARRAY['default'], 'w2', 10, 60.0)"
        ).fetchall()
        seq_after, idx_after = _scans(conn, schema)
    assert len(rows) == 10
    assert idx_after > idx_before, "the claim did not use jobs_ready"
    assert seq_after == seq_before, "the claim scanned the whole jobs table"
