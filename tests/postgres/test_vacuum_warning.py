"""A store whose jobs table vacuum cannot keep small says so when a long-running process
(a worker, the API) starts on it; a producer that only enqueues, or a short command, is
not told (tests/cli/test_setup_warnings.py)."""

from __future__ import annotations

import asyncio
import logging

import psycopg
import pytest

from conveyor import Conveyor
from conveyor.backends.postgres import PostgresBackend
from conveyor.backends.postgres_vacuum import SchemaState, vacuum_warnings
from tests.pg import libpq_url

LOGGER = "conveyor.backends.postgres"


def _server_autovacuum(url: str) -> bool:
    with psycopg.connect(libpq_url(url)) as conn:
        row = conn.execute("SHOW autovacuum").fetchone()
    assert row is not None
    return bool(row[0] == "on")


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == LOGGER and r.levelno == logging.WARNING and "autovacuum" in r.getMessage()
    ]


def _open_and_close(url: str) -> None:
    async def scenario() -> None:
        backend = PostgresBackend(url)
        await backend.open()
        await backend.warn_about_setup()  # what a worker does as it starts
        await backend.close()

    asyncio.run(scenario())


def test_each_setting_that_stops_vacuum_is_one_warning_naming_the_table() -> None:
    # Given the four combinations of the server's and the table's setting,
    on = vacuum_warnings("s", SchemaState(6, True, True))
    server_off = vacuum_warnings("s", SchemaState(6, False, True))
    table_off = vacuum_warnings("s", SchemaState(6, True, False))
    both_off = vacuum_warnings("s", SchemaState(6, False, False))

    # Then only settings that stop autovacuum are told, each with what to do.
    assert on == []
    assert len(server_off) == 1 and "off on this server" in server_off[0]
    assert "VACUUM s.jobs" in server_off[0]
    assert len(table_off) == 1 and "off for s.jobs" in table_off[0]
    assert "ALTER TABLE s.jobs RESET (autovacuum_enabled)" in table_off[0]
    assert both_off == server_off + table_off


def test_a_worker_is_warned_once_when_its_jobs_table_has_autovacuum_disabled(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a jobs table whose autovacuum is disabled,
    schema = PostgresBackend(pg_url).schema
    with psycopg.connect(libpq_url(pg_url), autocommit=True) as conn:
        conn.execute(f'ALTER TABLE "{schema}".jobs SET (autovacuum_enabled = off)')
    caplog.set_level(logging.WARNING, logger=LOGGER)

    # When a process opens the store twice as a worker does,
    _open_and_close(pg_url)
    _open_and_close(pg_url)

    # Then one warning names the table and the remedy, and the server's own setting
    # is told as well when it is off (once, however often the store is opened).
    told = _warnings(caplog)
    table = [w for w in told if f"off for {schema}.jobs" in w]
    server = [w for w in told if "off on this server" in w]
    assert len(table) == 1
    assert "RESET (autovacuum_enabled)" in table[0]
    assert len(server) == (0 if _server_autovacuum(pg_url) else 1)


def test_a_producer_that_only_enqueues_is_not_told_the_workers_are(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a jobs table whose autovacuum is disabled,
    schema = PostgresBackend(pg_url).schema
    with psycopg.connect(libpq_url(pg_url), autocommit=True) as conn:
        conn.execute(f'ALTER TABLE "{schema}".jobs SET (autovacuum_enabled = off)')
    app = Conveyor(pg_url)

    @app.task(name="t")
    def t() -> None:
        return None

    caplog.set_level(logging.WARNING, logger=LOGGER)

    # When a synchronous producer enqueues (its own connection, no worker), and an
    # asynchronous one (the app's pool),
    try:
        t.enqueue()
        app.portal_call(t.enqueue_async())
    finally:
        app.close()

    # Then nothing is said: the claims that slow down are the workers', who are told
    # as they start (a web application's log would repeat it at every deployment)
    assert _warnings(caplog) == []
