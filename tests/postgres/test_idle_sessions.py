"""Connections the server ended while they sat idle (a restart, an administrator's
pg_terminate_backend, idle_session_timeout): the next call takes a fresh one instead
of failing on the dead one."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from conveyor import Conveyor, State
from tests.pg import libpq_url


@pytest.fixture
def name() -> str:
    return f"conveyor-idle-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def app(pg_url: str, name: str) -> Iterator[Conveyor]:
    app = Conveyor(f"{pg_url}&application_name={name}")

    @app.task(name="send_welcome")
    def send_welcome(user_id: int) -> None: ...

    yield app
    app.close()


def end_sessions(pg_url: str, name: str) -> int:
    """Terminate the sessions named ``name``, waiting until each has ended."""
    with psycopg.connect(libpq_url(pg_url), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity "
            "WHERE application_name = %s",
            [name],
        ).fetchall()
    assert all(ended for (ended,) in rows)
    return len(rows)


def test_a_sync_enqueue_after_the_server_ended_its_idle_session_succeeds(
    app: Conveyor, pg_url: str, name: str
) -> None:
    task = app.get_task("send_welcome")
    # Given an app whose connection is idle after an enqueue
    task.enqueue(1)
    # When the server ends its sessions
    assert end_sessions(pg_url, name) >= 1
    # Then the next enqueue stores its job all the same
    assert task.enqueue(2).refresh().state is State.QUEUED


def test_an_async_enqueue_after_the_server_ended_the_idle_pool_succeeds(
    app: Conveyor, pg_url: str, name: str
) -> None:
    task = app.get_task("send_welcome")

    async def enqueue(user_id: int) -> str:
        return (await task.enqueue_async(user_id)).id

    async def enqueue_at_once(count: int) -> None:
        await asyncio.gather(*(enqueue(n) for n in range(count)))

    # Given an app whose pool holds several connections (two at least), idle after
    # enqueues
    app.portal_call(enqueue_at_once(8))
    # When the server ends its sessions
    assert end_sessions(pg_url, name) >= 2
    # Then the next enqueue, and the next read, work all the same
    job_id = app.portal_call(enqueue(2))
    assert app.job(job_id).state is State.QUEUED
