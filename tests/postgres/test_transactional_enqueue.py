"""Transactional enqueue: jobs stored through the caller's psycopg connection exist
once its transaction commits and never when it rolls back."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import psycopg
import pytest

from conveyor import Conveyor, State
from conveyor.exceptions import ConfigError, InvalidJob
from tests.pg import libpq_url


@pytest.fixture
def app(pg_url: str) -> Iterator[Conveyor]:
    app = Conveyor(pg_url)

    @app.task(name="send_welcome")
    def send_welcome(user_id: int) -> None: ...

    yield app
    app.close()


def count_jobs(app: Conveyor) -> int:
    return app.portal_call(_count(app))


async def _count(app: Conveyor) -> int:
    backend = await app.backend()
    return len((await backend.list_jobs(None, None, 1000)).jobs)


def test_a_committed_transaction_stores_its_jobs(app: Conveyor, pg_url: str) -> None:
    task = app.get_task("send_welcome")
    with psycopg.connect(libpq_url(pg_url)) as conn:
        # Given the application's own transaction
        conn.execute("CREATE TEMP TABLE users (id int)")
        conn.execute("INSERT INTO users VALUES (7)")
        # When it enqueues through its connection
        handle = task.with_options(connection=conn).enqueue(7)
        # Then nobody else sees the job before the commit
        assert count_jobs(app) == 0
        conn.commit()
    # And everybody does after it
    assert handle.refresh().state is State.QUEUED
    assert count_jobs(app) == 1


def test_a_rolled_back_transaction_stores_nothing(app: Conveyor, pg_url: str) -> None:
    task = app.get_task("send_welcome")
    with psycopg.connect(libpq_url(pg_url)) as conn:
        task.with_options(connection=conn).enqueue_many([[1], [2], [3]])
        conn.rollback()
    assert count_jobs(app) == 0


def test_an_exception_in_the_transaction_block_enqueues_nothing(app: Conveyor, pg_url: str) -> None:
    task = app.get_task("send_welcome")
    with (
        psycopg.connect(libpq_url(pg_url)) as conn,
        pytest.raises(RuntimeError),
        conn.transaction(),
    ):
        task.with_options(connection=conn).enqueue(1)
        raise RuntimeError("the order could not be saved")
    assert count_jobs(app) == 0


def test_async_connection_commit_and_rollback(app: Conveyor, pg_url: str) -> None:
    task = app.get_task("send_welcome")

    async def scenario() -> tuple[str, int]:
        conn = await psycopg.AsyncConnection.connect(libpq_url(pg_url))
        async with conn:
            async with conn.transaction():
                kept = await task.with_options(connection=conn).enqueue_async(1)
            with pytest.raises(ZeroDivisionError):
                async with conn.transaction():
                    await task.with_options(connection=conn).enqueue_many_async([[2], [3]])
                    1 / 0  # noqa: B018
        backend = await app.backend()
        return kept.id, len((await backend.list_jobs(None, None, 100)).jobs)

    kept_id, total = app.portal_call(scenario())
    assert total == 1
    assert app.job(kept_id).state is State.QUEUED


def test_a_unique_key_held_in_the_same_transaction_returns_that_job(
    app: Conveyor, pg_url: str
) -> None:
    task = app.get_task("send_welcome").with_options(unique_key="welcome-7")
    with psycopg.connect(libpq_url(pg_url)) as conn:
        first = task.with_options(connection=conn).enqueue(7)
        second = task.with_options(connection=conn).enqueue(7)
        conn.commit()
    assert second.id == first.id
    assert count_jobs(app) == 1


def test_a_worker_waiting_on_the_queue_wakes_only_at_the_commit(app: Conveyor, pg_url: str) -> None:
    task = app.get_task("send_welcome")

    async def scenario() -> tuple[bool, bool]:
        backend = await app.backend()
        assert await backend.claim(["default"], "w", 1, 30) == []
        # The listening connection is up once a first wait has returned.
        await backend.wait(["default"], 0.2)
        conn = await psycopg.AsyncConnection.connect(libpq_url(pg_url))
        async with conn:
            await task.with_options(connection=conn).enqueue_async(1)
            before_commit = await backend.wait(["default"], 0.3)
            await conn.commit()
            after_commit = await backend.wait(["default"], 5.0)
        return before_commit, after_commit

    before_commit, after_commit = app.portal_call(scenario())
    assert before_commit is False
    assert after_commit is True


def test_the_wrong_kind_of_connection_is_refused_and_names_the_field(
    app: Conveyor, pg_url: str
) -> None:
    task = app.get_task("send_welcome")
    with pytest.raises(ConfigError) as refused:
        task.with_options(connection=object()).enqueue(1)
    assert refused.value.field == "connection"

    async def async_with_sync_connection() -> None:
        with psycopg.connect(libpq_url(pg_url)) as conn:
            await task.with_options(connection=conn).enqueue_async(1)

    with pytest.raises(ConfigError, match="AsyncConnection"):
        asyncio.run(async_with_sync_connection())
    assert count_jobs(app) == 0


def test_a_connection_keyword_meant_for_the_store_gets_a_hint(app: Conveyor) -> None:
    with pytest.raises(InvalidJob, match=r"with_options\(connection=conn\)"):
        app.get_task("send_welcome").enqueue(7, connection=object())


def test_a_sqlite_app_refuses_a_connection(tmp_path: object) -> None:
    app = Conveyor(f"sqlite:///{tmp_path}/jobs.db")

    @app.task
    def noop() -> None: ...

    try:
        with pytest.raises(ConfigError, match="PostgreSQL") as refused:
            noop.with_options(connection=object()).enqueue()
        assert refused.value.field == "connection"
    finally:
        app.close()
