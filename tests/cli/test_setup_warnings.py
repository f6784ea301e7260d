"""A warning about the store's set-up (a Redis that keeps nothing on disk, a PostgreSQL
jobs table autovacuum skips) is for the long-running processes, as Sidekiq's server
gives it: a worker says it as it starts; a short command (`conveyor stats`, `jobs list`,
...) does not repeat it on every call."""

from __future__ import annotations

import logging
from pathlib import Path

import psycopg
import pytest

from conveyor.backends.postgres import PostgresBackend
from tests.pg import libpq_url
from tests.redis.server import RedisServer

from .conftest import Cli, Processes

NO_PERSISTENCE = "no persistence"
NO_VACUUM = "autovacuum is off for"


def short_commands_say(cli: Cli, caplog: pytest.LogCaptureFixture, words: str) -> list[str]:
    """What the commands that look at or steer the store say with ``words`` in it, on
    stderr or in the log."""
    caplog.set_level(logging.WARNING, logger="conveyor")
    said = []
    for command in (
        ("stats",),
        ("jobs", "list"),
        ("queues", "list"),
        ("workers",),
        ("migrate",),
        ("enqueue", "-i", str(cli.tasks_file), "add", "[1, 2]"),
    ):
        result = cli.ok(*command)
        said += [line for line in result.stderr.splitlines() if words in line]
    return said + [r.getMessage() for r in caplog.records if words in r.getMessage()]


def test_short_commands_on_a_redis_without_persistence_do_not_warn_and_a_worker_does(
    tmp_path: Path, processes: Processes, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a Redis that keeps nothing on disk (a private one: its URL is new to this
    # process, whose warnings are given once per URL)
    with RedisServer(tmp_path / "redis", "--appendonly", "no") as server:
        url = server.url(prefix="setup_warnings")
        cli = Cli(tmp_path, url)

        # When the commands that look at or steer the store run
        # Then none of them warns, on stderr or in the log
        assert short_commands_say(cli, caplog, NO_PERSISTENCE) == []

        # When a worker starts on it
        worker = processes.start("worker", "--url", url, "-i", str(cli.tasks_file))

        # Then the worker says it, once
        processes.wait_until(
            "the worker's warning", lambda: NO_PERSISTENCE in processes.stderr(worker)
        )
        processes.wait_until("the worker started", lambda: "started" in processes.stderr(worker))
        assert processes.stderr(worker).count(NO_PERSISTENCE) == 1


def test_short_commands_on_a_table_autovacuum_skips_do_not_warn_and_a_worker_does(
    tmp_path: Path, pg_url: str, processes: Processes, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a PostgreSQL jobs table whose autovacuum is disabled (a fresh schema: its
    # warnings are given once per schema and process)
    schema = PostgresBackend(pg_url).schema
    with psycopg.connect(libpq_url(pg_url), autocommit=True) as conn:
        conn.execute(f'ALTER TABLE "{schema}".jobs SET (autovacuum_enabled = off)')
    cli = Cli(tmp_path, pg_url)

    # When the commands that look at or steer the store run
    # Then none of them warns
    assert short_commands_say(cli, caplog, NO_VACUUM) == []

    # When a worker starts on it; Then it says it, once
    worker = processes.start("worker", "--url", pg_url, "-i", str(cli.tasks_file))
    processes.wait_until("the worker's warning", lambda: NO_VACUUM in processes.stderr(worker))
    processes.wait_until("the worker started", lambda: "started" in processes.stderr(worker))
    assert processes.stderr(worker).count(NO_VACUUM) == 1
