"""Transactional enqueue: jobs stored through the caller's psycopg connection exist
once its transaction commits and never when it rolls back."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

import conveyor.backends.postgres as postgres_module
from conveyor import Conveyor, JobHandle, State, Task
from conveyor.backends.postgres import PostgresBackend
from conveyor.exceptions import ConfigError, InvalidJob
from tests.migrations import schema_stopped_at
from tests.pg import fresh_schema, libpq_url


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


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize(
    ("spoil", "words"),
    [("close", "is closed"), ("fail", "transaction has failed")],
    ids=["closed", "failed-transaction"],
)
def test_a_connection_that_cannot_take_the_job_is_refused_naming_the_field(
    app: Conveyor, pg_url: str, kind: str, spoil: str, words: str
) -> None:
    task = app.get_task("send_welcome")

    def spoiled(conn: psycopg.Connection[Any]) -> None:
        if spoil == "close":
            conn.close()
        else:
            with contextlib.suppress(psycopg.errors.DivisionByZero):
                conn.execute("SELECT 1/0")

    async def spoiled_async(conn: psycopg.AsyncConnection[Any]) -> None:
        if spoil == "close":
            await conn.close()
        else:
            with contextlib.suppress(psycopg.errors.DivisionByZero):
                await conn.execute("SELECT 1/0")

    async def enqueue_async() -> None:
        async with await psycopg.AsyncConnection.connect(libpq_url(pg_url)) as conn:
            await spoiled_async(conn)
            await task.with_options(connection=conn).enqueue_async(1)

    # Given the application's connection, closed or with a failed transaction
    with pytest.raises(ConfigError) as refused:
        # When the app enqueues through it
        if kind == "sync":
            with psycopg.connect(libpq_url(pg_url)) as conn:
                spoiled(conn)
                task.with_options(connection=conn).enqueue(1)
        else:
            asyncio.run(enqueue_async())
    # Then the enqueue is refused naming the field and what is wrong, and nothing stored
    assert refused.value.field == "connection"
    assert words in str(refused.value)
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


class Connection:
    """Another library's connection of the same name (SQLAlchemy's, psycopg2's ...)."""


def test_another_librarys_connection_is_named_in_full(app: Conveyor) -> None:
    task = app.get_task("send_welcome")
    # When the wrapper of another library is passed instead of its psycopg connection
    with pytest.raises(ConfigError) as refused:
        task.with_options(connection=Connection()).enqueue(1)
    # Then the message tells which class it got, not only a name psycopg's shares
    assert f"got {__name__}.Connection" in str(refused.value)


def _stored(url: str) -> int:
    schema = PostgresBackend(url).schema
    with psycopg.connect(libpq_url(url)) as conn:
        row = conn.execute(f'SELECT count(*) FROM "{schema}".jobs').fetchone()
    return row[0] if row else 0


def test_a_schema_older_than_the_code_is_refused_with_the_command_to_run() -> None:
    # Given a schema an older conveyor made (version 5)
    with fresh_schema(migrate=False) as url:
        with schema_stopped_at(postgres_module, 5):
            asyncio.run(PostgresBackend(url).migrate())
        app = Conveyor(url)

        @app.task(name="send_welcome")
        def send_welcome(user_id: int) -> None: ...

        async def enqueue_async(jobs: list[list[int]]) -> None:
            async with await psycopg.AsyncConnection.connect(libpq_url(url)) as conn:
                await send_welcome.with_options(connection=conn).enqueue_many_async(jobs)
                await conn.commit()

        try:
            for jobs in ([[1]], [[1], [2]]):
                # When this conveyor enqueues one job or several through the caller's
                # connection, sync or async
                with psycopg.connect(libpq_url(url)) as conn:
                    with pytest.raises(ConfigError) as refused:
                        send_welcome.with_options(connection=conn).enqueue_many(jobs)
                    conn.commit()
                # Then each is refused, saying what to run, and nothing is stored
                assert "conveyor migrate" in str(refused.value)
                with pytest.raises(ConfigError, match="conveyor migrate"):
                    asyncio.run(enqueue_async(jobs))
            assert _stored(url) == 0
        finally:
            app.close()


def test_a_connection_to_a_database_without_the_schema_is_refused(
    app: Conveyor, pg_url: str
) -> None:
    # Given a connection to another database of the server, where the schema is not
    conninfo = psycopg.conninfo.conninfo_to_dict(libpq_url(pg_url))
    other = psycopg.conninfo.make_conninfo(**{**conninfo, "dbname": "postgres"})
    # When the app enqueues through it
    with psycopg.connect(other) as conn, pytest.raises(ConfigError) as refused:
        app.get_task("send_welcome").with_options(connection=conn).enqueue(1)
    # Then the message names the database the connection reached, and says it is not
    # the app's (whose schema is there: `conveyor migrate` at the app's URL would do
    # nothing)
    message = str(refused.value)
    assert "this connection reaches database 'postgres'" in message
    assert "which has no conveyor schema" in message
    assert "not the database of the app's URL" in message
    assert "conveyor migrate" not in message


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_refused_connection_keeps_the_callers_transaction_going(
    app: Conveyor, pg_url: str, kind: str
) -> None:
    # Given a transaction, with work of its own, on a database without the schema
    conninfo = psycopg.conninfo.conninfo_to_dict(libpq_url(pg_url))
    other = psycopg.conninfo.make_conninfo(**{**conninfo, "dbname": "postgres"})
    task = app.get_task("send_welcome")

    async def enqueue_async() -> tuple[int] | None:
        async with await psycopg.AsyncConnection.connect(other) as conn:
            await conn.execute("CREATE TEMP TABLE orders (id int)")
            await conn.execute("INSERT INTO orders VALUES (7)")
            with pytest.raises(ConfigError):
                await task.with_options(connection=conn).enqueue_async(7)
            cur = await conn.execute("SELECT count(*) FROM orders")
            return await cur.fetchone()

    # When the app refuses to enqueue through it
    if kind == "sync":
        with psycopg.connect(other) as conn:
            conn.execute("CREATE TEMP TABLE orders (id int)")
            conn.execute("INSERT INTO orders VALUES (7)")
            with pytest.raises(ConfigError):
                task.with_options(connection=conn).enqueue(7)
            # Then the transaction goes on, its work intact
            counted = conn.execute("SELECT count(*) FROM orders").fetchone()
    else:
        counted = asyncio.run(enqueue_async())
    assert counted == (1,)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_connection_to_another_database_with_a_conveyor_schema_is_refused(
    pg_url: str, kind: str
) -> None:
    # Given another database of the server with a conveyor schema of the same name
    schema = PostgresBackend(pg_url).schema
    conninfo = psycopg.conninfo.conninfo_to_dict(libpq_url(pg_url))
    other = psycopg.conninfo.make_conninfo(**{**conninfo, "dbname": "postgres"})
    other_url = pg_url.replace("/test?", "/postgres?", 1)
    assert other_url != pg_url
    asyncio.run(PostgresBackend(other_url).migrate())
    app = Conveyor(pg_url)
    task = app.task(name="send_welcome")(lambda user_id: None)

    async def enqueue_async() -> None:
        async with await psycopg.AsyncConnection.connect(other) as conn:
            await task.with_options(connection=conn).enqueue_async(1)
            await conn.commit()

    try:
        # When the app enqueues through a connection to it (its first such enqueue)
        with pytest.raises(ConfigError) as refused:
            if kind == "sync":
                with psycopg.connect(other) as conn:
                    task.with_options(connection=conn).enqueue(1)
                    conn.commit()
            else:
                asyncio.run(enqueue_async())
        # Then it is refused naming the field and the database it reached
        assert refused.value.field == "connection"
        assert "'postgres'" in str(refused.value)
        assert "not the database of the app's URL" in str(refused.value)
        # And no job is stored there, nor in the app's database
        with psycopg.connect(other) as conn:
            assert conn.execute(f'SELECT count(*) FROM "{schema}".jobs').fetchone() == (0,)
        assert count_jobs(app) == 0
    finally:
        app.close()
        with psycopg.connect(other, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_a_connection_that_makes_dict_rows_enqueues_like_any(app: Conveyor, pg_url: str) -> None:
    async def enqueue_async(task: Task) -> str:
        async with await psycopg.AsyncConnection.connect(
            libpq_url(pg_url), row_factory=dict_row
        ) as conn:
            handle = await task.with_options(connection=conn).enqueue_async(2)
            await conn.commit()
        return handle.id

    # Given the application's connections, which make dicts of rows
    with psycopg.connect(libpq_url(pg_url), row_factory=dict_row) as conn:
        # When it enqueues through them, sync and async (each the app's first time)
        first = app.get_task("send_welcome").with_options(connection=conn).enqueue(1)
        conn.commit()
    other = Conveyor(pg_url)
    try:
        second = asyncio.run(enqueue_async(other.task(name="send_welcome")(lambda user_id: None)))
    finally:
        other.close()
    # Then both jobs are stored
    assert first.refresh().state is State.QUEUED
    assert app.job(second).state is State.QUEUED


@pytest.mark.parametrize(
    ("sync_cursor", "async_cursor"),
    [
        (psycopg.ClientCursor, psycopg.AsyncClientCursor),  # Django's, by default
        (psycopg.RawCursor, psycopg.AsyncRawCursor),
    ],
    ids=["client-side-binding", "raw-placeholders"],
)
def test_a_connection_with_another_kind_of_cursor_enqueues_like_any(
    app: Conveyor, pg_url: str, sync_cursor: type, async_cursor: type
) -> None:
    task = app.get_task("send_welcome")

    async def enqueue_async() -> list[str]:
        async with await psycopg.AsyncConnection.connect(
            libpq_url(pg_url), cursor_factory=async_cursor
        ) as conn:
            handles = [await task.with_options(connection=conn, unique_key="a").enqueue_async(3)]
            handles += await task.with_options(connection=conn).enqueue_many_async([[4], [5]])
            await conn.commit()
        return [h.id for h in handles]

    # Given the application's connections, whose cursors are not psycopg's default
    with psycopg.connect(libpq_url(pg_url), cursor_factory=sync_cursor) as conn:
        # When it enqueues through them: one job, one with a unique key, a batch
        ids = [task.with_options(connection=conn).enqueue(1).id]
        ids.append(task.with_options(connection=conn, unique_key="s").enqueue(2).id)
        ids += [h.id for h in task.with_options(connection=conn).enqueue_many([[6], [7]])]
        conn.commit()
    ids += asyncio.run(enqueue_async())
    # Then every job is stored
    assert [app.job(i).state for i in ids] == [State.QUEUED] * 7


def _report() -> None: ...


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_transaction_that_enqueues_into_a_new_queue_holds_up_no_other_producer(
    pg_url: str, kind: str
) -> None:
    # Given two producers of a queue nobody used before, in two processes (two apps,
    # each on its own connections)
    app, other = Conveyor(pg_url), Conveyor(pg_url)
    task = app.task(name="report", queue="reports-2026")(_report)
    other_task = other.task(name="report", queue="reports-2026")(_report)

    def enqueue_meanwhile() -> JobHandle | None:
        # In a thread, given 20 s: it used to wait on the open transaction's new queue
        # row for as long as the transaction lasted (None then)
        handles: list[JobHandle] = []
        producer = threading.Thread(target=lambda: handles.append(other_task.enqueue()))
        producer.start()
        producer.join(20)
        return handles[0] if handles else None

    try:
        # When the first enqueues in an application's transaction, left open, and the
        # other enqueues meanwhile
        if kind == "sync":
            with psycopg.connect(libpq_url(pg_url)) as conn:
                task.with_options(connection=conn).enqueue()
                meanwhile = enqueue_meanwhile()
                conn.rollback()
        else:

            async def in_a_transaction() -> JobHandle | None:
                async with await psycopg.AsyncConnection.connect(libpq_url(pg_url)) as conn:
                    await task.with_options(connection=conn).enqueue_async()
                    handle = await asyncio.to_thread(enqueue_meanwhile)
                    await conn.rollback()
                    return handle

            meanwhile = asyncio.run(in_a_transaction())

        # Then the other's job was stored while the transaction was open, and the
        # transaction's never
        assert meanwhile is not None, "the other producer waited for the transaction"
        assert meanwhile.refresh().state is State.QUEUED
        assert count_jobs(app) == 1
    finally:
        other.close()
        app.close()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_queue_row_the_transaction_wrote_itself_does_not_stop_it(pg_url: str, kind: str) -> None:
    # Given an application's transaction that wrote a new queue's row itself (as an
    # enqueue does when conveyor's own connection is away or busy), not committed
    app = Conveyor(pg_url)
    task = app.task(name="report", queue="reports-2027")(_report)
    queues = f'"{PostgresBackend(pg_url).schema}".queues'
    insert = f"INSERT INTO {queues} (name, paused, created_at) VALUES ('reports-2027', false, 0)"

    def enqueue_in_a_thread(enqueue: Callable[[], object]) -> bool:
        # Given 20 s: the row written apart used to wait on this very transaction
        done = threading.Event()
        threading.Thread(target=lambda: (enqueue(), done.set()), daemon=True).start()
        return done.wait(20)

    try:
        # When it enqueues into that queue
        if kind == "sync":
            with psycopg.connect(libpq_url(pg_url)) as conn:
                conn.execute(insert)
                stored = enqueue_in_a_thread(task.with_options(connection=conn).enqueue)
                conn.commit()
        else:

            async def in_a_transaction() -> bool:
                async with await psycopg.AsyncConnection.connect(libpq_url(pg_url)) as conn:
                    await conn.execute(insert)
                    enqueue = task.with_options(connection=conn).enqueue_async
                    stored = await asyncio.wait_for(enqueue(), 20)
                    await conn.commit()
                    return stored is not None

            stored = asyncio.run(in_a_transaction())

        # Then the job is stored, in the transaction
        assert stored, "the enqueue waited on its own transaction"
        assert count_jobs(app) == 1
    finally:
        app.close()


def test_a_queue_row_held_by_the_transaction_keeps_conveyors_connection(pg_url: str) -> None:
    # Given an app whose own connection is open (an enqueue of its own), and an
    # application's transaction that wrote a new queue's row itself, not committed
    app = Conveyor(pg_url)
    own = app.task(name="own", queue="own")(_report)
    task = app.task(name="report", queue="reports-2028")(_report)
    queues = f'"{PostgresBackend(pg_url).schema}".queues'
    insert = f"INSERT INTO {queues} (name, paused, created_at) VALUES ('reports-2028', false, 0)"
    own.enqueue()
    backend = app._blocking
    assert isinstance(backend, PostgresBackend) and backend._sync_conn is not None
    session = backend._sync_conn.info.backend_pid
    try:
        with psycopg.connect(libpq_url(pg_url)) as conn:
            conn.execute(insert)
            # When it enqueues into that queue, twice (the row written apart waits for
            # the transaction's, and gives up)
            task.with_options(connection=conn).enqueue()
            task.with_options(connection=conn).enqueue()
            conn.commit()
        # Then both jobs are stored, and conveyor's connection is the one it had: a lock
        # given up on is no store failure (it was closed, then opened again each time)
        assert count_jobs(app) == 3
        assert backend._sync_conn is not None
        assert backend._sync_conn.info.backend_pid == session
    finally:
        app.close()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_batch_into_many_new_queues_creates_them_all_apart(pg_url: str, kind: str) -> None:
    # Given a task, and a batch of jobs into 20 queues nobody used before
    app = Conveyor(pg_url)
    task = app.task(name="report")(_report)
    jobs = [task.with_options(queue=f"batch-{n}").prepare() for n in range(20)]
    queues = f'"{PostgresBackend(pg_url).schema}".queues'

    def queues_seen_elsewhere() -> int:
        with psycopg.connect(libpq_url(pg_url), autocommit=True) as other:
            row = other.execute(f"SELECT count(*) FROM {queues} WHERE name LIKE 'batch-%'")
            return int(row.fetchone()[0])  # type: ignore[index]

    try:
        # When they are enqueued in an application's transaction, still open
        if kind == "sync":
            with psycopg.connect(libpq_url(pg_url)) as conn:
                app.enqueue_jobs(jobs, connection=conn)
                seen = queues_seen_elsewhere()
                conn.rollback()
        else:

            async def in_a_transaction() -> int:
                async with await psycopg.AsyncConnection.connect(libpq_url(pg_url)) as conn:
                    await app.enqueue_jobs_async(jobs, connection=conn)
                    seen = await asyncio.to_thread(queues_seen_elsewhere)
                    await conn.rollback()
                    return seen

            seen = asyncio.run(in_a_transaction())

        # Then every queue was there for others already (created apart, committed)
        assert seen == 20
    finally:
        app.close()
