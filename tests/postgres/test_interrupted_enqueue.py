"""A synchronous enqueue interrupted by an exception of the caller's own (a signal
handler's time limit: Celery's soft time limit, RQ's job timeout, SIGALRM) while its
statement runs: the statement does not go on behind the caller's back, and the next
enqueue works."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from types import FrameType

import psycopg
import pytest

from conveyor import Conveyor, State
from conveyor.backends.postgres import PostgresBackend
from tests.pg import libpq_url, with_schema

APPLICATION = "conveyor-interrupted-enqueue"


class TimeLimit(Exception):
    """What a signal handler of the caller's raises."""


def _raise_time_limit(signum: int, frame: FrameType | None) -> None:
    raise TimeLimit


@pytest.fixture
def alarm() -> Iterator[None]:
    previous = signal.signal(signal.SIGALRM, _raise_time_limit)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _active(admin: psycopg.Connection) -> int:
    row = admin.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND state = 'active'",
        [APPLICATION],
    ).fetchone()
    return int(row[0]) if row else 0


def test_an_enqueue_interrupted_mid_statement_stores_nothing_and_the_next_works(
    pg_url: str, alarm: None
) -> None:
    schema = PostgresBackend(pg_url).schema
    url = with_schema(pg_url, schema) + f"&application_name={APPLICATION}"
    app = Conveyor(url)
    task = app.task(name="report")(lambda n: None)
    try:
        task.enqueue(0)  # the app's connection is open
        with psycopg.connect(libpq_url(pg_url), autocommit=True) as admin:
            with psycopg.connect(libpq_url(pg_url)) as holder:
                # Given an open transaction that holds a unique key
                task.with_options(connection=holder, unique_key="k").enqueue(1)
                # When an enqueue of that key, waiting for the transaction, is
                # interrupted by the caller's signal handler
                signal.setitimer(signal.ITIMER_REAL, 0.3)
                with pytest.raises(TimeLimit):
                    task.with_options(unique_key="k").enqueue(2)
                # (once the server has ended the interrupted statement, if it does)
                deadline = time.monotonic() + 10
                while _active(admin) and time.monotonic() < deadline:
                    time.sleep(0.01)
                holder.rollback()
            # Then the next enqueue works
            assert task.enqueue(3).refresh().state is State.QUEUED
            # And the interrupted one stored nothing
            stored = admin.execute(
                f'SELECT count(*) FROM "{schema}".jobs WHERE unique_key = %s', ["k"]
            ).fetchone()
            assert stored == (0,)
    finally:
        app.close()
