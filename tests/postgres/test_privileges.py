"""A role without the rights conveyor needs on its schema: a clear error naming the
store and what to grant, never a driver's traceback."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from conveyor.backends.postgres import PostgresBackend
from conveyor.exceptions import BackendUnavailable, ConfigError
from conveyor.testing.harness import make_job
from tests.pg import libpq_url
from tests.postgres.proxy import free_port


@pytest.fixture
def as_role(pg_url: str) -> Iterator[tuple[str, str]]:
    """A URL of the test's schema as a new role with no right on it, and the role."""
    schema = PostgresBackend(pg_url).schema
    role = f"{schema}_user"
    with psycopg.connect(libpq_url(pg_url), autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
    parts = urlsplit(pg_url)
    host = parts.netloc.rpartition("@")[2]
    try:
        yield parts._replace(netloc=f"{role}@{host}").geturl(), role
    finally:
        with psycopg.connect(libpq_url(pg_url), autocommit=True) as conn:
            conn.execute(f'DROP OWNED BY "{role}"')
            conn.execute(f'DROP ROLE "{role}"')


def _cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "conveyor", *args]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def _grant(pg_url: str, role: str, *grants: str) -> None:
    """USAGE on the test's schema and ``grants`` (``{schema}`` stands for it) to ``role``."""
    schema = PostgresBackend(pg_url).schema
    with psycopg.connect(libpq_url(pg_url), autocommit=True) as conn:
        for grant in (f'GRANT USAGE ON SCHEMA "{schema}"', *grants):
            conn.execute(f'{grant.format(schema=schema)} TO "{role}"')


def _enqueue_one(url: str) -> None:
    async def enqueue() -> None:
        backend = PostgresBackend(url)
        await backend.open()
        try:
            await backend.enqueue([make_job()])
        finally:
            await backend.close()

    asyncio.run(enqueue())


def test_a_role_that_may_not_use_the_schema_is_refused_at_start_saying_what_to_grant(
    as_role: tuple[str, str],
) -> None:
    # Given a role with no right on conveyor's schema
    url, _ = as_role
    # When a store is opened with it, or a command runs with it
    with pytest.raises(ConfigError) as refused:
        asyncio.run(PostgresBackend(url).check())
    stats = _cli("stats", "--url", url)
    # Then each says so, naming the field, the schema and what to grant
    assert refused.value.field == "url"
    assert "permission denied for schema" in str(refused.value)
    assert "GRANT USAGE" in str(refused.value)
    assert stats.returncode == 2, stats.stderr
    assert stats.stderr.startswith("error: url: "), stats.stderr
    assert "Traceback" not in stats.stderr and "InsufficientPrivilege" not in stats.stderr


def test_a_role_missing_a_right_on_a_table_meets_a_store_refusal_not_a_driver_error(
    pg_url: str, as_role: tuple[str, str]
) -> None:
    # Given a role that may read the schema's version but not write its tables
    url, role = as_role
    _grant(pg_url, role, 'GRANT SELECT ON "{schema}".schema_version')

    # When it enqueues, or a command lists the workers
    with pytest.raises(BackendUnavailable) as refused:
        _enqueue_one(url)
    workers = _cli("workers", "--url", url)
    # Then the store's refusal says what was denied, as for a store that is away
    assert "permission denied for table" in str(refused.value)
    assert workers.returncode == 1, workers.stderr
    assert "permission denied for table workers" in workers.stderr
    assert "Traceback" not in workers.stderr and "InsufficientPrivilege" not in workers.stderr


def test_migrate_by_a_role_that_may_not_create_the_schema_is_a_bad_config_not_an_outage(
    as_role: tuple[str, str],
) -> None:
    # Given a role with no right to create the schema, which is not there
    url, _ = as_role
    missing = url.replace("schema=", "schema=missing_", 1)
    # When it runs conveyor migrate
    migrate = _cli("migrate", "--url", missing)
    # Then the command names the URL and what was denied, as a configuration to fix
    assert migrate.returncode == 2, migrate.stderr
    assert migrate.stderr.startswith("error: url: "), migrate.stderr
    assert "permission denied for database" in migrate.stderr


def test_a_worker_or_api_whose_role_lacks_table_rights_stops_at_start_naming_them(
    pg_url: str, as_role: tuple[str, str], tmp_path: Path
) -> None:
    # Given a role that may read, add and change but not delete rows of conveyor's
    # tables: enough for an app that enqueues jobs, not for a worker
    url, role = as_role
    schema = PostgresBackend(pg_url).schema
    _grant(pg_url, role, 'GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA "{schema}"')
    (tmp_path / "tasks.py").write_text(
        f"from conveyor import Conveyor\napp = Conveyor({url!r})\n\n"
        "@app.task\ndef noop() -> None: ...\n"
    )
    # When a worker starts with it (one process, and a supervisor of two), and the API
    started = [
        _cli("worker", "-i", "tasks", "--processes", "1", cwd=tmp_path),
        _cli("worker", "-i", "tasks", "--processes", "2", cwd=tmp_path),
        _cli(
            "api",
            "-i",
            "tasks",
            "--port",
            str(free_port()),
            cwd=tmp_path,
            env={"CONVEYOR_ADMIN_KEYS": "an-admin-key-of-the-test"},
        ),
    ]
    # Then each stops at once with a configuration error naming every right it lacks
    # and what to grant, instead of retrying refused claims
    for command in started:
        assert command.returncode == 2, command.stderr
        said = command.stderr.splitlines()[-1]
        assert said.startswith("error: url: this role lacks rights"), said
        assert "jobs (DELETE); minute_counts (DELETE); queues (DELETE)" in said
        assert f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "{schema}"' in said
    # And an app's enqueue with that role is not refused
    _enqueue_one(url)
