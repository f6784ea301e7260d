"""PostgreSQL backend: many workers on many machines share one database.

The database is the source of truth. Claims are one round trip (the ``claim``
function of the schema: due jobs made ready, then ``FOR UPDATE SKIP LOCKED`` per
queue), every time comes from the database clock, and every outcome is a
compare-and-set on the lease holder. Wake-ups ride on LISTEN/NOTIFY
(:mod:`conveyor.backends.postgres_notify`), with polling as the fallback.

The schema is created and upgraded by ``conveyor migrate`` (numbered ``.sql``
files in ``sql/postgres``, a ``schema_version`` table, an advisory lock so that
several processes may run it at once); ``open()`` refuses a schema older than
this code.

Jobs may also be stored through the caller's own psycopg connection, inside the
caller's transaction (:meth:`PostgresBackend.enqueue_in`): a rolled-back
transaction enqueues nothing, a committed one always does.

URL: ``postgresql://user:password@host:port/database`` (``postgres://`` too), with
libpq's options as query parameters (``sslmode``, ``application_name``,
``connect_timeout`` ...) and conveyor's own: ``schema`` (default ``conveyor``),
``pool_size`` (connections per process, default 10), ``poll`` (seconds between
checks of a watched job, default 0.05).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import threading
import time
import zlib
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import psycopg
from psycopg import pq, sql
from psycopg.types.string import TextLoader
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from conveyor.backends import redact_url, scrub
from conveyor.backends.base import (
    Backend,
    JobFilter,
    JobHead,
    LeaseStatus,
    MinuteCount,
    Page,
    QueueInfo,
    RetriedAll,
    Stats,
    WorkerInfo,
    could_exist,
    delete_refused,
    known_id,
    known_queue,
    matches_nothing,
    unique_key_of,
)
from conveyor.backends.postgres_claims import ClaimStart
from conveyor.backends.postgres_enqueue import Inserter, tuple_cursor, tuple_cursor_async
from conveyor.backends.postgres_handoff import HandOffs
from conveyor.backends.postgres_notify import Notifications
from conveyor.backends.postgres_url import one_line, parse_postgres_url, refused_for_url
from conveyor.backends.postgres_vacuum import (
    MISSING,
    SchemaState,
    exists_query,
    state_of,
    state_query,
    warn_once,
)
from conveyor.backends.rows import (
    RETRYABLE,
    Row,
    dumps,
    finish_batch,
    held_params,
    loads,
    retried_steps,
    retry_filter,
    row_to_job,
    row_to_worker,
)
from conveyor.backends.sqlfiles import load_migrations, load_queries
from conveyor.exceptions import (
    BackendUnavailable,
    ConfigError,
    JobNotFound,
    JobStateError,
    QueueNotFound,
    UniqueKeyHeld,
)
from conveyor.forks import ForkGuard, keep_from_parent
from conveyor.job import FINAL_STATES, Job, Outcome, State, id_ceiling, id_floor

_SQL_PACKAGE = "conveyor.backends.sql.postgres"
MIGRATIONS = load_migrations(_SQL_PACKAGE)
SCHEMA_VERSION = MIGRATIONS[-1][0]

#: Driver errors that say the store cannot be used now, not that a statement is wrong:
#: calls fail with BackendUnavailable, and a worker retries them.
_STORE_FAILURES = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg.errors.ReadOnlySqlTransaction,
    # A right the role lacks (a GRANT missing or revoked): the store refuses this role
    # now, as a read-only server does, until someone grants it.
    psycopg.errors.InsufficientPrivilege,
    PoolTimeout,
)
#: A queue's row written apart from a caller's transaction waits no longer than this
#: for a transaction that wrote the same new row, uncommitted (the caller's own, say,
#: which wrote it when conveyor's connection was busy: the wait would never end).
_APART_LOCK_TIMEOUT = "SET LOCAL lock_timeout = '100ms'"
_ALL_STATES = [s.value for s in State]
_TUPLES_OK = pq.ExecStatus.TUPLES_OK
_SHARDS = 16
#: conveyor's statements are written for READ COMMITTED (each sees what committed
#: before it began: an enqueue that waited for a unique key's turn sees the job the
#: key's holder stored). Set on its sessions where the role or database makes another
#: level the default, under which claims, outcomes and such enqueues failed with
#: serialization errors, taken for store failures.
_READ_COMMITTED = "SET default_transaction_isolation TO 'read committed'"
#: Seconds to wait for a pooled connection before the store counts as down.
_CHECKOUT_TIMEOUT = 5.0
#: Seconds one run of the pool's reconnection attempts lasts before a fresh run starts
#: (see PostgresBackend._reconnect_failed): attempts are then never more than about
#: 2 s apart, however long the database is away.
_RECONNECT_S = 5.0


@functools.cache
def queries_for(schema: str) -> dict[str, str]:
    """The named queries with ``{schema}`` filled in (quoted)."""
    quoted = f'"{schema}"'
    return {
        name: text.replace("{schema}", quoted) for name, text in load_queries(_SQL_PACKAGE).items()
    }


async def _check(pool: AsyncConnectionPool[Any]) -> None:
    with contextlib.suppress(Exception):
        await pool.check()


def _hung_up(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    """Whether the server ended this connection while it sat idle (a restart,
    pg_terminate_backend, idle_session_timeout): its farewell and the end of the stream
    then wait on the socket. Two reads tell, without a round trip (libpq's socket never
    blocks, and a live idle connection of conveyor's has nothing to read): the first
    takes the farewell, the second meets the end. Unchecked, the first call after such
    an end failed with the server's farewell."""
    if conn.closed or conn.broken:
        return True
    try:
        for _ in range(2):
            conn.pgconn.consume_input()
    except psycopg.Error:
        return True
    return conn.pgconn.status != pq.ConnStatus.OK


def _abandon(conn: psycopg.Connection[Any]) -> None:
    """Cancel what ``conn`` is running, and close it."""
    with contextlib.suppress(Exception):
        conn.cancel_safe(timeout=_CHECKOUT_TIMEOUT)
    with contextlib.suppress(Exception):
        conn.close()


def _leads_to(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> tuple[str, int, str]:
    """Where a connection leads, as libpq knows it (no round trip)."""
    info = conn.info
    return info.host, info.port, info.dbname


def _check_joinable(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
    """Refuse a caller's connection that cannot take a job (no round trip): a closed
    one, or one whose transaction an earlier statement failed. Its own statement
    would fail with psycopg's error; this one names the field and what to do."""
    if conn.closed:
        raise ConfigError("connection", "is closed; nothing was stored")
    if conn.info.transaction_status == pq.TransactionStatus.INERROR:
        raise ConfigError(
            "connection",
            "its transaction has failed (an earlier statement's error): roll it back "
            "before enqueueing through it; nothing was stored",
        )


def _class_name(value: object) -> str:
    """``module.Class`` of ``value``: other libraries' connections share psycopg's names."""
    kind = type(value)
    return f"{kind.__module__}.{kind.__qualname__}"


def _configure_connection(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
    # JSON columns come back as text, as on SQLite: one row decoder serves both.
    conn.adapters.register_loader("jsonb", TextLoader)


def _shard(worker_id: str | None) -> int:
    if worker_id is None:
        return random.randrange(_SHARDS)
    return zlib.crc32(worker_id.encode()) % _SHARDS


class PostgresBackend(Backend):
    schemes = ("postgresql", "postgres")

    def __init__(self, url: str) -> None:
        self.url = url
        self.settings = parse_postgres_url(url)
        self.schema = self.settings.schema
        self.where = redact_url(url)
        self.channel = f"{self.schema}_jobs"
        self._q = queries_for(self.schema)
        self._inserter = Inserter(self._q, self.channel)
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None = None
        self._notes: Notifications | None = None
        #: per queue list, what the notifications had shown when a claim started
        self._seen: dict[tuple[str, ...], tuple[int, ...]] = {}
        self._sync_conn: psycopg.Connection[Any] | None = None
        #: (host, port, database) where a caller's connection found the schema at
        #: this code's version
        self._caller_schema_seen: set[tuple[str, int, str]] = set()
        #: the schema the URL leads to (version, identity, vacuum settings), as one of
        #: conveyor's own connections last read it (never a caller's connection's)
        self._schema_state: SchemaState | None = None
        #: whether the sessions need _READ_COMMITTED (learnt with the schema's version)
        self._pin_isolation = False
        self._checking: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self._claim_start = ClaimStart()
        self._hand_offs = HandOffs(self.schema)
        self._sync_lock = threading.Lock()
        self._fork = ForkGuard()

    # -- lifecycle -------------------------------------------------------------
    @property
    def _connect_kwargs(self) -> dict[str, Any]:
        return {"prepare_threshold": 5}

    async def open(self) -> None:
        if self._pool is not None:
            return
        await self.check()
        pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
            self.settings.conninfo,
            min_size=min(2, self.settings.pool_size),
            max_size=self.settings.pool_size,
            kwargs={"autocommit": True, **self._connect_kwargs},
            configure=self._configure_async,
            check=self._check_idle,
            timeout=_CHECKOUT_TIMEOUT,
            reconnect_timeout=_RECONNECT_S,
            reconnect_failed=self._reconnect_failed,
            name=f"conveyor-{self.schema}",
            open=False,
        )
        try:
            await pool.open(wait=True, timeout=self.settings.connect_timeout)
        except PoolTimeout as exc:
            await pool.close()
            raise BackendUnavailable(
                f"cannot connect to PostgreSQL at {self.where}: {self._said(exc)}"
            ) from None
        self._pool = pool
        self._closer = asyncio.get_running_loop().create_task(self._close_with_the_loop(pool))

    async def _close_with_the_loop(self, pool: AsyncConnectionPool[Any]) -> None:
        """Close the store when its event loop ends with it open (``asyncio.run``
        cancels every task of the loop then). A task of the pool cancelled while it
        connects again, after a failure, swallows the cancellation and waits for work
        for ever: ``asyncio.run`` of a program that met a store failure and did not
        close the app never returned."""
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            if self._pool is pool:
                await self.close()

    async def check(self) -> None:
        """One connection of its own, without the pool: the server's own error when it
        cannot be reached, and the schema's version. 6.3-6.6 ms in a fresh process here,
        against 11.8-13.3 for opening the pool and closing it again (a supervisor's
        check before it forks its workers). What only the pool would meet (a server at
        its max_connections) shows in the workers' own ``open``."""
        try:
            conn = await psycopg.AsyncConnection.connect(self.settings.conninfo, autocommit=True)
        except psycopg.Error as exc:
            raise self._cannot_connect(exc) from None
        async with conn:
            try:
                state = await _schema_state_async(conn, self.schema)
            except psycopg.errors.InsufficientPrivilege as exc:
                raise self._not_granted(exc) from None
            except _STORE_FAILURES as exc:
                # The schema's statement failed (the session ended, statement_timeout):
                # a store failure as anywhere else, not the driver's own exception.
                raise self._unavailable(exc) from None
        self._check_schema(state)
        self._pin_isolation = state.isolation != "read committed"

    async def _configure_async(self, conn: psycopg.AsyncConnection[Any]) -> None:
        _configure_connection(conn)
        if self._pin_isolation:
            await conn.execute(_READ_COMMITTED)

    async def _check_idle(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """The pool's look at a connection it lends: one the server ended while it sat
        idle is replaced (the pool takes another at once), and the others idle beside
        it are looked at too (a restart ends them all)."""
        if _hung_up(conn):
            if self._pool is not None:
                self._check_in_background(self._pool)
            raise psycopg.OperationalError("the server ended the connection while it was idle")

    @staticmethod
    async def _reconnect_failed(pool: AsyncConnectionPool[Any]) -> None:
        """Start a fresh run of reconnection attempts when one gives up.

        psycopg_pool replaces a lost connection with attempts whose pause doubles
        without a cap (1, 2, 4, 8 ... s) for ``reconnect_timeout``: after an 18 s
        outage the next attempt came 13 s after the database was back (an end-to-end
        test measured it), while the worker's claims and outcomes waited on the pool.
        Each run now gives up after ``_RECONNECT_S`` and a new one starts here at
        once (``check()`` grows a pool that has no connection), so a worker is back
        within about 2 s of its database, after an outage of any length.
        """
        if not pool.closed:
            with contextlib.suppress(Exception):
                await pool.check()

    def _check_schema(self, state: SchemaState) -> None:
        """Refuse a schema of another version, as one of conveyor's own connections read
        it; keep it (its identity for callers' connections, its vacuum settings for
        ``warn_about_setup``)."""
        self._check_version(state.version)
        self._schema_state = state

    @property
    def _home(self) -> tuple[str, str] | None:
        """The identity of the schema the URL leads to, once conveyor has read it."""
        return None if self._schema_state is None else self._schema_state.identity

    async def warn_about_setup(self) -> None:
        """Warn (once per schema and process) when vacuum cannot keep the jobs table
        small (see conveyor.backends.postgres_vacuum)."""
        if self._schema_state is None:
            await self.check()  # (reads the settings with the schema's version)
        if self._schema_state is not None:
            warn_once(self.where, self.schema, self._schema_state)

    async def check_rights(self) -> None:
        """ConfigError naming the rights on the schema's tables (and claim()) that the
        URL's role lacks, read with the schema's version. Only the long-running
        processes ask: a producer's role may be granted less, and a right revoked
        while they run is met as the store refusing them, until granted again."""
        if self._schema_state is None:
            await self.check()
        if self._schema_state is not None and self._schema_state.missing_rights:
            quoted = f'"{self.schema}"'
            raise ConfigError(
                "url",
                f"this role lacks rights on the conveyor schema {self.schema!r} at "
                f"{self.where} that workers and the API use: "
                f"{self._schema_state.missing_rights}; GRANT SELECT, INSERT, UPDATE, DELETE "
                f"ON ALL TABLES IN SCHEMA {quoted} and EXECUTE ON ALL FUNCTIONS IN SCHEMA "
                f"{quoted} to it, or connect as the schema's owner",
            )

    def _not_granted(self, exc: psycopg.Error) -> ConfigError:
        """The role of the URL may not read the schema: a configuration to fix."""
        quoted = f'"{self.schema}"'
        return ConfigError(
            "url",
            f"the conveyor schema {self.schema!r} at {self.where} is not open to this "
            f"role: {self._said(exc)}; GRANT USAGE ON SCHEMA {quoted} and SELECT, INSERT, "
            f"UPDATE, DELETE ON ALL TABLES IN SCHEMA {quoted} to it, or connect as the "
            "schema's owner",
        )

    def _check_version(self, version: int) -> None:
        if version < SCHEMA_VERSION:
            found = f"is at version {version}" if version else "does not exist"
            raise ConfigError(
                "url",
                f"the conveyor schema {self.schema!r} at {self.where} {found}; this conveyor "
                f"needs version {SCHEMA_VERSION}: run `conveyor migrate --url '{self.where}'`",
            )
        if version > SCHEMA_VERSION:
            raise ConfigError(
                "url",
                f"the conveyor schema {self.schema!r} at {self.where} is at version {version}, "
                f"newer than this conveyor's {SCHEMA_VERSION}: upgrade conveyor",
            )

    async def close(self) -> None:
        if self._notes is not None:
            await self._notes.stop()
            self._notes = None
        pool, self._pool = self._pool, None
        closer, self._closer = self._closer, None
        if closer is not None and closer is not asyncio.current_task():
            closer.cancel()
            await asyncio.gather(closer, return_exceptions=True)
        if pool is not None:
            await pool.close()
        if self._checking is not None:
            await asyncio.gather(self._checking, return_exceptions=True)
            self._checking = None
        self._fork.check(self._forget_parent)  # a child closes its own, not its parent's
        with self._sync_lock:
            conn, self._sync_conn = self._sync_conn, None
            if conn is not None:
                conn.close()

    async def migrate(self) -> tuple[int, int]:
        """Create or upgrade the schema, in one transaction under an advisory lock
        (several processes may run it at once: one migrates, the others then find
        it done). Returns the version before and after."""
        try:
            conn = await psycopg.AsyncConnection.connect(self.settings.conninfo)
        except psycopg.Error as exc:
            raise self._cannot_connect(exc) from None
        schema = sql.Identifier(self.schema)
        quoted = f'"{self.schema}"'
        try:
            async with conn, conn.transaction():
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtext(%s))",
                    [f"conveyor.migrate:{self.schema}"],
                )
                # Only when missing: CREATE SCHEMA IF NOT EXISTS wants the right to create
                # schemas in the database even when the schema is there, which the owner
                # of a schema an administrator made need not have.
                cur = await conn.execute(
                    "SELECT 1 FROM pg_namespace WHERE nspname = %s", [self.schema]
                )
                if await cur.fetchone() is None:
                    await conn.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
                await conn.execute(
                    sql.SQL(
                        "CREATE TABLE IF NOT EXISTS {}.schema_version ("
                        "version integer PRIMARY KEY, "
                        "applied_at timestamptz NOT NULL DEFAULT now())"
                    ).format(schema)
                )
                cur = await conn.execute(
                    sql.SQL("SELECT coalesce(max(version), 0) FROM {}.schema_version").format(
                        schema
                    )
                )
                row = await cur.fetchone()
                before = int(row[0]) if row else 0
                if before > SCHEMA_VERSION:
                    self._check_version(before)
                for number, script in MIGRATIONS:
                    if number > before:
                        await conn.execute(script.replace("{schema}", quoted).encode())
                        await conn.execute(
                            sql.SQL("INSERT INTO {}.schema_version (version) VALUES (%s)").format(
                                schema
                            ),
                            [number],
                        )
        except psycopg.errors.InsufficientPrivilege as exc:
            # The role's rights, not an outage: a configuration to fix (exit code 2).
            raise ConfigError(
                "url",
                f"cannot migrate the conveyor schema {self.schema!r} at {self.where}: "
                f"{self._said(exc)}; the role needs the right to create schemas in the "
                f"database, or to own the schema (CREATE SCHEMA {quoted} AUTHORIZATION "
                "<role>, by an administrator)",
            ) from None
        except psycopg.Error as exc:
            raise BackendUnavailable(
                f"cannot migrate the conveyor schema {self.schema!r} at {self.where}: "
                f"{self._said(exc)}"
            ) from None
        return before, max(before, SCHEMA_VERSION)

    async def now(self) -> float:
        row = await self._fetchone("now", {})
        return float(row[0]) if row else 0.0

    # -- plumbing ----------------------------------------------------------------
    def _said(self, exc: BaseException) -> str:
        """A driver's message on one line, without the URL's password (libpq may quote
        the part of a URL it could not read)."""
        return scrub(one_line(exc), self.url)

    def _cannot_connect(self, exc: BaseException) -> BackendUnavailable | ConfigError:
        """A connection the server refused: ConfigError for what of the URL it refused
        (a database or role it does not have, a wrong password, a role that may not log
        in: a worker would wait for ever on a URL to fix); BackendUnavailable for the
        rest (not answering, starting up, full, ...)."""
        said = self._said(exc)
        refused = refused_for_url(said)
        if refused is not None:
            return ConfigError("url", f"the PostgreSQL server at {self.where} refused: {refused}")
        return BackendUnavailable(f"cannot connect to PostgreSQL at {self.where}: {said}")

    def _unavailable(self, exc: BaseException) -> BackendUnavailable:
        return BackendUnavailable(f"PostgreSQL at {self.where}: {self._said(exc)}")

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        pool = self._pool
        if pool is None:
            raise BackendUnavailable(f"PostgreSQL backend {self.where} is not open")
        try:
            async with pool.connection() as conn:
                try:
                    yield conn
                except psycopg.errors.ReadOnlySqlTransaction:
                    # A server that refuses writes (a primary demoted by a failover, a
                    # database set read-only): the next connection may reach a writable
                    # one (the new primary, or the same one writable again).
                    await conn.close()
                    raise
        except psycopg.errors.ProgramLimitExceeded as exc:
            # Not the server's trouble but the data's: a value past one of its limits (a
            # jsonb value over 256 MB). A BackendUnavailable would have it written again,
            # for ever; a ValueError is what any store's refusal of a job's data is (the
            # worker poisons that job, and writes the others of its batch one by one).
            raise ValueError(f"PostgreSQL at {self.where}: {self._said(exc)}") from exc
        except _STORE_FAILURES as exc:
            # After a server restart every idle connection is dead: drop them all
            # now rather than failing once per connection. In the background and
            # never cut short: a check cancelled midway would keep the connections
            # it had taken out, and the pool would shrink for good. An error the
            # server answered (a deadlock, a cancelled statement) says nothing of
            # the connections.
            sqlstate: str | None = getattr(exc, "sqlstate", None)
            if sqlstate is None or sqlstate[:2] in ("08", "57"):
                self._check_in_background(pool)
            raise self._unavailable(exc) from exc

    def _check_in_background(self, pool: AsyncConnectionPool[Any]) -> None:
        if self._checking is None or self._checking.done():
            self._checking = asyncio.get_running_loop().create_task(_check(pool))

    async def _fetch(self, query: str, params: dict[str, Any]) -> list[Row]:
        async with self._connection() as conn:
            cur = await conn.execute(self._q[query], params)
            # Whether rows came back, from the result's status: `cur.description` would
            # make a Column object per column to answer it (25 for a claim: 0.2 of the
            # 0.6 ms of an empty claim through the backend here).
            result = cur.pgresult
            return await cur.fetchall() if result and result.status == _TUPLES_OK else []

    async def _fetchone(self, query: str, params: dict[str, Any]) -> Row | None:
        rows = await self._fetch(query, params)
        return rows[0] if rows else None

    async def _rowcount(self, query: str, params: dict[str, Any]) -> int:
        async with self._connection() as conn:
            cur = await conn.execute(self._q[query], params)
            return cur.rowcount

    async def _notify(self, conn: psycopg.AsyncConnection[Any], queues: set[str]) -> None:
        if queues:
            await conn.execute(
                self._q["notify_queues"], {"channel": self.channel, "queues": sorted(queues)}
            )

    # -- enqueue -------------------------------------------------------------------
    def enqueue_blocking(self, jobs: Sequence[Job]) -> list[Job] | None:
        with self._sync_connection() as conn:
            return self._inserter.insert_sync(conn, jobs)

    @contextlib.contextmanager
    def _sync_connection(self, wait: bool = True) -> Iterator[psycopg.Connection[Any]]:
        """The connection of calls without an event loop (autocommit), for one call at a
        time; the store's failures as BackendUnavailable (it is opened anew next time).
        Without ``wait``, BackendUnavailable at once while another call has it."""
        self._fork.check(self._forget_parent)
        if not self._sync_lock.acquire(blocking=wait):
            raise BackendUnavailable("the connection is busy")
        try:
            conn = self._sync_conn
            if conn is None or _hung_up(conn):
                if conn is not None:
                    conn.close()
                conn = self._sync_conn = self._connect_sync()
            try:
                yield conn
            except _STORE_FAILURES as exc:
                with contextlib.suppress(psycopg.Error):
                    conn.close()
                self._sync_conn = None
                raise self._unavailable(exc) from exc
            except BaseException:
                if conn.info.transaction_status != pq.TransactionStatus.IDLE:
                    # An exception of the caller's raised mid-statement (a signal
                    # handler's time limit: Celery's, RQ's, SIGALRM; psycopg cancels
                    # only on KeyboardInterrupt and SystemExit): the statement went on
                    # on the server, storing the job behind the caller's back, and the
                    # next call failed on the busy connection. Cancelled, and a new
                    # connection next time.
                    self._sync_conn = None
                    _abandon(conn)
                raise
        finally:
            self._sync_lock.release()

    def _forget_parent(self) -> None:
        """In a forked child: the sync connection is the parent's (its socket shared;
        closing it would end the parent's session): kept unused, opened again here."""
        keep_from_parent(self._sync_conn)
        self._sync_conn = None
        self._sync_lock = threading.Lock()

    def _connect_sync(self) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.Connection.connect(
                self.settings.conninfo, autocommit=True, **self._connect_kwargs
            )
        except psycopg.Error as exc:
            raise self._cannot_connect(exc) from None
        try:
            state = _schema_state_sync(conn, self.schema)
            self._check_schema(state)
            if state.isolation != "read committed":
                conn.execute(_READ_COMMITTED)
        except psycopg.errors.InsufficientPrivilege as exc:
            conn.close()
            raise self._not_granted(exc) from None
        except _STORE_FAILURES as exc:
            conn.close()
            raise self._unavailable(exc) from None
        except BaseException:
            conn.close()
            raise
        _configure_connection(conn)
        return conn

    async def enqueue(self, jobs: Sequence[Job]) -> list[Job]:
        async with self._connection() as conn:
            return await self._inserter.insert_async(conn, jobs)

    async def enqueue_once(self, job: Job) -> Job:
        key = unique_key_of(job)
        async with self._connection() as conn, conn.transaction():
            # The key's lock, held to the commit: the calls of one key take turns, and
            # each finds the job the one before committed, finished or not.
            await conn.execute(self._q["lock_unique_key"], {"key": key})
            cur = await conn.execute(self._q["newest_by_unique_key"], {"key": key})
            row = await cur.fetchone()
            if row is not None:
                return row_to_job(row)
            (stored,) = await self._inserter.insert_async(conn, [job])
            return stored

    def enqueue_in(self, connection: Any, jobs: Sequence[Job]) -> list[Job]:
        """Store ``jobs`` through the caller's ``psycopg.Connection``, inside its
        transaction: they exist once it commits, never if it rolls back."""
        if not isinstance(connection, psycopg.Connection):
            raise ConfigError(
                "connection",
                f"expected a psycopg.Connection, got {_class_name(connection)} "
                "(an AsyncConnection goes with enqueue_async)",
            )
        _check_joinable(connection)
        if _leads_to(connection) not in self._caller_schema_seen:
            state = _schema_state_sync(connection, self.schema)
            if self._home is None:
                # Not waiting for another thread's call: it may wait on this very
                # transaction (a unique key it holds).
                with contextlib.suppress(BackendUnavailable), self._sync_connection(wait=False):
                    pass
            self._check_caller_schema(connection, state)
        if unknown := self._inserter.unknown_queues(jobs):
            self._create_queues_blocking(unknown)
        return self._inserter.insert_sync(connection, jobs, own=False)

    async def enqueue_in_async(self, connection: Any, jobs: Sequence[Job]) -> list[Job]:
        if not isinstance(connection, psycopg.AsyncConnection):
            raise ConfigError(
                "connection",
                f"expected a psycopg.AsyncConnection, got {_class_name(connection)} "
                "(a Connection goes with enqueue)",
            )
        _check_joinable(connection)
        if _leads_to(connection) not in self._caller_schema_seen:
            state = await _schema_state_async(connection, self.schema)
            if self._home is None:
                with contextlib.suppress(BackendUnavailable):
                    await self.check()
            self._check_caller_schema(connection, state)
        if unknown := self._inserter.unknown_queues(jobs):
            await self._create_queues_apart(unknown)
        return await self._inserter.insert_async(connection, jobs, own=False)

    async def _create_queues_apart(self, names: list[str]) -> None:
        """``_create_queues_blocking`` for an asyncio caller, on a connection of its own
        (the backend that lends the caller its statements opens no pool): once per
        queue and process, one connection for all the queues of a call."""
        try:
            async with await psycopg.AsyncConnection.connect(
                self.settings.conninfo, autocommit=True, **self._connect_kwargs
            ) as conn:
                for name in names:
                    try:
                        async with conn.transaction():
                            await conn.execute(_APART_LOCK_TIMEOUT)
                            await conn.execute(self._q["ensure_queue"], {"name": name})
                    except psycopg.errors.LockNotAvailable:
                        continue
                    self._inserter.remember_queue(name)
        except psycopg.Error:
            return

    def _create_queues_blocking(self, names: list[str]) -> None:
        """Queues' rows, written and committed on conveyor's own connection before a
        caller's transaction enqueues into them. Written in that transaction, a new
        row's lock held every other producer of the queue (``ON CONFLICT`` waits for
        the transaction that inserted the key) until the transaction ended, however
        long it lasted. A row stays if the transaction rolls back: an empty queue.
        When conveyor's own connection fails, or another thread's call has it (which may
        wait on this very transaction: a unique key it holds), or another transaction
        holds the new row (see _APART_LOCK_TIMEOUT), the transaction writes the row as
        before."""
        try:
            with self._sync_connection(wait=False) as conn:
                for name in names:
                    try:
                        with conn.transaction():
                            conn.execute(_APART_LOCK_TIMEOUT)
                            conn.execute(self._q["ensure_queue"], {"name": name})
                    except psycopg.errors.LockNotAvailable:
                        # The row's, not the store's: the connection is kept (taken for
                        # a store failure, it was closed, and opened anew next call).
                        continue
                    self._inserter.remember_queue(name)
        except (BackendUnavailable, psycopg.Error):
            return

    def _check_caller_schema(
        self, connection: psycopg.Connection[Any] | psycopg.AsyncConnection[Any], state: SchemaState
    ) -> None:
        """Refuse, as ``open`` does, a schema of another version where the caller's
        connection leads; once per database and process. An older schema's statements
        differ: a single job failed on a missing table, a batch was stored where no
        worker of this version would take it. The caller's transaction goes on after a
        refusal (the schema's table is looked for before it is read).

        Refuse too a connection to another database that has a conveyor schema of its
        own: its jobs were stored where no worker of the app's URL looks. Told apart by
        the schema's identity, not by host names (an alias, a pooler, a socket lead to
        the same database); while conveyor's own connection cannot read that (the
        store down), the check waits for the next call."""
        info = connection.info
        where = f"this connection reaches database {info.dbname!r} on {info.host}:{info.port}"
        if self._home is not None and state.identity != self._home:
            # The app's database has the schema at this version (conveyor read it there):
            # one without it, or with another, is another database, whatever its name
            # and host. Running `conveyor migrate` at the app's URL would change nothing.
            found = "no conveyor schema" if state.version == 0 else "a conveyor schema of its own"
            raise ConfigError(
                "connection",
                f"{where}, which has {found} {self.schema!r}, not the database of the app's "
                f"URL ({self.where}): its jobs would be stored where no worker of the app "
                "looks",
            )
        try:
            self._check_version(state.version)
        except ConfigError as exc:
            raise ConfigError(
                "connection",
                f"{exc.problem} ({where}; it must reach the database of the app's URL)",
            ) from None
        if self._home is not None:
            self._caller_schema_seen.add(_leads_to(connection))

    # -- claims and outcomes ---------------------------------------------------------
    async def claim(
        self, queues: Sequence[str], worker_id: str, limit: int, lease: float
    ) -> list[Job]:
        if limit <= 0 or not queues:
            return []
        names = list(queues)
        if self._notes is not None:
            # Before the claim's snapshot: a job enqueued after it wakes the next wait.
            self._seen[tuple(names)] = self._notes.mark(names)
        started = time.monotonic()
        after = self._claim_start.params(names, started)
        rows = await self._fetch(
            "claim",
            {"queues": names, "worker": worker_id, "limit": limit, "lease": lease, **after},
        )
        jobs = self._hand_offs.claimed(worker_id, [row_to_job(r) for r in rows])
        order = {name: i for i, name in enumerate(names)}
        jobs.sort(key=lambda j: (order[j.queue], j.priority, j.run_at, j.id))
        ended = time.monotonic()
        self._claim_start.record(after, jobs, ended - started, ended)
        return jobs

    async def extend(self, job_ids: Sequence[str], worker_id: str, lease: float) -> LeaseStatus:
        ids = list(job_ids)
        if not ids:
            return LeaseStatus([], [], [])
        rows = await self._fetch("extend_leases", {"ids": ids, "worker": worker_id, "lease": lease})
        held = {r[0]: r[1] for r in rows}
        extended = {r[0] for r in rows if r[2]}
        return LeaseStatus(
            extended=[i for i in ids if i in extended],
            cancelling=[i for i in ids if held.get(i) == State.CANCELLING.value],
            lost=[i for i in ids if i not in held],
        )

    async def save(self, job: Job) -> bool:
        row = await self._fetchone("save_running", held_params(job, 0.0))
        if row is None:
            return False
        job.version += 1
        job.updated_at = row[0]
        return True

    async def finish(self, items: Sequence[tuple[Job, Outcome]]) -> list[bool]:
        if not items:
            return []
        # In id order: two outcome batches of one worker that meet (one still running on
        # the server after its answer was lost, and its retry) lock rows in one order.
        # The lease keeper's extension, which locks rows of the same jobs, skips locked
        # rows instead of waiting (queries.sql, extend_leases).
        batch = finish_batch(sorted(items, key=lambda item: item[0].id))
        rows = await self._fetch(
            "finish_batch",
            {"batch": batch, "shard": _shard(items[0][0].worker_id), "channel": self.channel},
        )
        written = {r[0] for r in rows}
        return [job.id in written for job, _ in items]

    async def release(self, jobs: Sequence[Job]) -> int:
        if not jobs:
            return 0
        count = 0
        ready: set[str] = set()
        async with self._connection() as conn, conn.transaction():
            for job in jobs:
                cur = await conn.execute(self._q["release_job"], held_params(job, 0.0))
                row = await cur.fetchone()
                if row is not None:
                    count += 1
                    if row[1] == State.QUEUED.value:
                        ready.add(row[0])
            await self._notify(conn, ready)
        return count

    # -- reading -------------------------------------------------------------------
    async def get(self, job_id: str) -> Job:
        known_id(job_id)
        row = await self._fetchone("get_job", {"id": job_id})
        if row is None:
            raise JobNotFound(job_id)
        return row_to_job(row)

    async def head(self, job_id: str) -> JobHead:
        known_id(job_id)
        r = await self._fetchone("job_head", {"id": job_id})
        if r is None:
            raise JobNotFound(job_id)
        return JobHead(r[0], r[1], State(r[2]), r[3], loads(r[4]) if r[4] else {})

    async def find_unique(self, unique_key: str) -> Job | None:
        row = await self._fetchone("newest_by_unique_key", {"key": unique_key})
        return row_to_job(row) if row is not None else None

    async def list_jobs(
        self, filter: JobFilter | None = None, cursor: str | None = None, limit: int = 50
    ) -> Page:
        if matches_nothing(filter, cursor):
            return Page([], None)
        where: list[sql.Composable] = []
        params: dict[str, Any] = {"limit": limit + 1}
        states = filter.states if filter is not None else None
        if states:
            # Literal states (from the enum): the planner matches them against the
            # partial indexes' conditions, which a parameter would hide.
            where.append(
                sql.SQL("state IN ({})").format(
                    sql.SQL(", ").join(sql.Literal(s.value) for s in sorted(states))
                )
            )
        if filter is not None:
            for column in ("queue", "task", "tenant"):
                value = getattr(filter, column)
                if value is not None:
                    where.append(
                        sql.SQL("{} = {}").format(sql.Identifier(column), sql.Placeholder(column))
                    )
                    params[column] = value
        if cursor:
            where.append(sql.SQL("id < %(cursor)s"))
            params["cursor"] = cursor
        query = sql.SQL("SELECT * FROM {}.jobs").format(sql.Identifier(self.schema))
        if where:
            query += sql.SQL(" WHERE ") + sql.SQL(" AND ").join(where)
        query += sql.SQL(" ORDER BY id DESC LIMIT %(limit)s")
        async with self._connection() as conn:
            cur = await conn.execute(query, params)
            rows = await cur.fetchall()
        jobs = [row_to_job(r) for r in rows[:limit]]
        more = len(rows) > limit
        return Page(jobs, jobs[-1].id if more and jobs else None)

    # -- changes by hand -------------------------------------------------------------
    async def cancel(self, job_id: str, reason: str = "cancelled") -> Job:
        known_id(job_id)
        row = await self._fetchone("cancel_job", {"id": job_id, "reason": reason})
        if row is not None:
            return row_to_job(row)
        return await self.get(job_id)

    async def delete(self, job_id: str, states: Sequence[State] | None = None) -> bool:
        if not could_exist(job_id):
            return False
        wanted = None if states is None else [s.value for s in states]
        if await self._fetchone("delete_job", {"id": job_id, "states": wanted}) is not None:
            return True
        row = await self._fetchone("job_state", {"id": job_id})
        if row is not None:
            raise delete_refused(job_id, row[0], states)
        return False

    async def retry(self, job_id: str) -> Job:
        known_id(job_id)
        async with self._connection() as conn, conn.transaction():
            cur = await conn.execute(self._q["lock_job"], {"id": job_id})
            row = await cur.fetchone()
            if row is None:
                raise JobNotFound(job_id)
            job = row_to_job(row)
            if job.state not in RETRYABLE:
                raise JobStateError(job_id, job.state.value, "retry (only poisoned or cancelled)")
            retried = await self._retry_one(conn, job)
            await self._notify(conn, {job.queue})
        return retried

    async def _retry_one(self, conn: psycopg.AsyncConnection[Any], job: Job) -> Job:
        """Back to queued, resuming at the failed step (inside the caller's transaction)."""
        steps = retried_steps(job)
        try:
            async with conn.transaction():  # a savepoint: a refusal leaves the rest intact
                cur = await conn.execute(self._q["retry_job"], {"id": job.id, "steps": steps})
                row = await cur.fetchone()
        except psycopg.errors.UniqueViolation:
            raise UniqueKeyHeld(job.id, job.state.value, job.unique_key) from None
        if row is None:
            raise JobStateError(job.id, job.state.value, "retry (only poisoned or cancelled)")
        return row_to_job(row)

    async def retry_all(self, filter: JobFilter) -> RetriedAll:
        wanted = retry_filter(filter)
        retried = held = 0
        cursor: str | None = None
        while True:
            page = await self.list_jobs(wanted, cursor, 500)
            queues: set[str] = set()
            async with self._connection() as conn, conn.transaction():
                for job in page.jobs:
                    try:
                        await self._retry_one(conn, job)
                    except UniqueKeyHeld:
                        held += 1
                        continue
                    except JobStateError:
                        continue
                    retried += 1
                    queues.add(job.queue)
                await self._notify(conn, queues)
            if page.next_cursor is None:
                return RetriedAll(retried, held)
            cursor = page.next_cursor

    async def recover_expired(self) -> list[Job]:
        rows = await self._fetch(
            "recover_expired", {"shard": _shard(None), "channel": self.channel}
        )
        return [row_to_job(r) for r in rows]

    async def prune(self, before: float, states: Sequence[State] | None = None) -> int:
        wanted = [s.value for s in (states or FINAL_STATES) if s in FINAL_STATES]
        # A minute of slack covers ids minted a moment before their job was stored.
        params = {
            "states": wanted,
            "before": before,
            "cut": id_floor(before + 60.0),
            "above": id_ceiling(time.time()),
        }
        await self._rowcount("prune_minute_counts", {"keep": self.keep_counts})
        total = 0
        for query in ("prune_finished", "prune_finished_above"):
            while True:
                deleted = await self._rowcount(query, params)
                total += deleted
                if deleted == 0:
                    break
        return total

    # -- queues -------------------------------------------------------------------
    async def create_queue(self, name: str) -> None:
        await self._rowcount("ensure_queue", {"name": name})
        self._inserter.remember_queue(name)

    async def _set_paused(self, name: str, paused: bool) -> None:
        async with self._connection() as conn:
            cur = await conn.execute(self._q["set_queue_paused"], {"name": name, "paused": paused})
            if await cur.fetchone() is None:
                raise QueueNotFound(name)
            if not paused:
                await self._notify(conn, {name})

    async def pause_queue(self, name: str) -> None:
        known_queue(name)
        await self._set_paused(name, True)

    async def resume_queue(self, name: str) -> None:
        known_queue(name)
        await self._set_paused(name, False)

    async def _in_queue(self, name: str, delete: str) -> int:
        async with self._connection() as conn, conn.transaction():
            cur = await conn.execute(self._q["queue_exists"], {"name": name})
            if await cur.fetchone() is None:
                raise QueueNotFound(name)
            cur = await conn.execute(self._q[delete], {"name": name})
            deleted = cur.rowcount
            if delete == "drop_queue_jobs":
                await conn.execute(self._q["drop_queue"], {"name": name})
            return deleted

    async def empty_queue(self, name: str) -> int:
        known_queue(name)
        return await self._in_queue(name, "empty_queue")

    async def drop_queue(self, name: str) -> int:
        known_queue(name)
        self._inserter.forget_queue(name)
        return await self._in_queue(name, "drop_queue_jobs")

    async def list_queues(self) -> list[QueueInfo]:
        async with self._connection() as conn:
            cur = await conn.execute(self._q["count_by_queue_state"])
            counts: dict[str, dict[str, int]] = {}
            for queue, state, n in await cur.fetchall():
                counts.setdefault(queue, dict.fromkeys(_ALL_STATES, 0))[state] = n
            cur = await conn.execute(self._q["list_queues"])
            rows = await cur.fetchall()
        # A process that enqueued into a queue before it was dropped elsewhere does not
        # write its row again (see postgres_enqueue): such a queue is listed by its jobs.
        listed = {name for name, _, _ in rows}
        rows += [(name, False, 0.0) for name in counts if name not in listed]
        return [
            QueueInfo(
                name, bool(paused), counts.get(name, dict.fromkeys(_ALL_STATES, 0)), created_at
            )
            for name, paused, created_at in sorted(rows)
        ]

    # -- workers and counters -------------------------------------------------
    async def register_worker(self, worker: WorkerInfo) -> None:
        await self.heartbeat_worker(worker)

    async def heartbeat_worker(self, worker: WorkerInfo) -> None:
        row = await self._fetchone(
            "upsert_worker",
            {
                "id": worker.id,
                "host": worker.host,
                "pid": worker.pid,
                "queues": dumps(worker.queues),
                "concurrency": worker.concurrency,
                "processed": worker.processed,
                "failed": worker.failed,
                "running": dumps(worker.running),
            },
        )
        if row is not None:
            worker.started_at, worker.heartbeat_at = row

    async def unregister_worker(self, worker_id: str) -> None:
        await self._unpark(worker_id)
        await self._rowcount("delete_worker", {"id": worker_id})

    async def forget_worker(self, worker_id: str, silent_before: float) -> bool:
        forgotten = await self._rowcount(
            "forget_worker", {"id": worker_id, "before": silent_before}
        )
        if forgotten:
            await self._unpark(worker_id)
        return bool(forgotten)

    async def list_workers(self) -> list[WorkerInfo]:
        return [row_to_worker(r) for r in await self._fetch("list_workers", {})]

    async def stats(self) -> Stats:
        async with self._connection() as conn:
            cur = await conn.execute(self._q["counters"])
            counters = {name: int(value) for name, value in await cur.fetchall()}
            cur = await conn.execute(self._q["count_by_state"])
            counts = dict.fromkeys(_ALL_STATES, 0)
            counts.update({state: n for state, n in await cur.fetchall()})
            cur = await conn.execute(self._q["store_figures"])
            size, server_version, synchronous_commit = await cur.fetchone() or (0, "", "")
        return Stats(
            processed=counters.get("processed", 0),
            failed=counters.get("failed", 0),
            counts=counts,
            store={
                "backend": "postgresql",
                "url": self.where,
                "schema": self.schema,
                "schema_version": SCHEMA_VERSION,
                "size_bytes": size,
                "server_version": server_version,
                "synchronous_commit": synchronous_commit,
            },
        )

    # -- counts per minute --------------------------------------------------------
    async def minute_counts(self, since: float, queue: str | None = None) -> list[MinuteCount]:
        rows = await self._fetch("minute_counts", {"since": since, "queue": queue})
        return [
            MinuteCount(float(m), q, int(p), int(f), None if d is None else int(d))
            for m, q, p, f, d in rows
        ]

    async def sample_depth(self) -> None:
        row = await self._fetchone("depth_missing", {})
        if row is None or not row[0]:
            return
        # Two statements: one that also deleted could meet the rows its upsert changes.
        await self._rowcount("sample_depth", {})
        await self._rowcount("prune_minute_counts", {"keep": self.keep_counts})

    # -- wake-ups -----------------------------------------------------------------
    def _listener(self, worker_id: str | None = None) -> Notifications:
        """The notification listener (started on first use), listening on
        ``worker_id``'s hand-off channel too when given."""
        notes = self._notes
        if notes is None:
            notes = self._notes = Notifications(
                self.settings.conninfo, self._connect_kwargs, self.channel, self.where
            )
        if worker_id is not None:
            notes.listen_for(self._hand_offs.channel(worker_id))
        notes.start()
        return notes

    async def wait(self, queues: Sequence[str], timeout: float) -> bool:
        notes = self._listener()
        names = list(queues)
        seen = self._seen.get(tuple(names))
        if seen is None or seen[0] != notes.epoch or not notes.listening:
            # The last claim did not happen under this connection's LISTEN, so a
            # notification may have gone unheard: listen first, then look.
            if not await notes.connected(min(timeout, notes.fallback)):
                return True  # polling while the notification connection is down
            seen = notes.mark(names)
            row = await self._fetchone("ready_in", {"queues": names})
            if row is not None and row[0]:
                return True
        # No longer than until the next scheduled or retrying job is due: the
        # claim that follows makes it ready.
        row = await self._fetchone("next_due", {})
        if row is not None and row[0] is not None:
            timeout = min(timeout, max(0.005, row[0] - row[1]))
        return await notes.wait(names, seen, timeout)

    async def wait_for_jobs(
        self, queues: Sequence[str], worker_id: str, lease: float, timeout: float
    ) -> tuple[bool, list[Job]]:
        """``wait``, with the worker registered for hand-offs while it lasts
        (:mod:`conveyor.backends.postgres_handoff`): a job enqueued meanwhile comes
        claimed, in the notification that ends the wait. A cancelled wait gives back
        what was handed to it."""
        notes = self._listener(worker_id)
        channel = self._hand_offs.channel(worker_id)
        names = list(queues)
        seen = self._seen.get(tuple(names))
        if seen is None or seen[0] != notes.epoch or not notes.listening:
            # As in wait(): listen first; the registration's statement then looks.
            if not await notes.connected(min(timeout, notes.fallback)):
                return True, []
            seen = notes.mark(names)
        elif notes.mark(names) != seen:
            return True, []  # a job came since the claim
        token = self._hand_offs.new_wait(worker_id)
        notes.take(channel)  # earlier waits' hand-offs, which their claims answered
        on_the_way: list[str] = []  # ids of jobs handed over, from their notification on
        jobs: list[Job] = []
        try:
            row = await self._fetchone(
                "register_waiter",
                {
                    "worker": worker_id,
                    "queues": names,
                    "channel": channel,
                    "token": token,
                    "lease": lease,
                    "seconds": timeout,
                },
            )
            if row is None or row[0]:
                return True, []
            if row[1] is not None:
                # No longer than until the next scheduled or retrying job is due: the
                # claim that follows makes it ready.
                timeout = min(timeout, max(0.005, row[1] - row[2]))
            deadline = time.monotonic() + timeout
            while True:
                woke = await notes.wait(
                    names, seen, deadline - time.monotonic(), until=lambda: notes.handed(channel)
                )
                jobs = await self._handed(worker_id, notes.take(channel), on_the_way)
                if jobs or not woke or notes.mark(names) != seen or not notes.listening:
                    break
                # only an earlier wait's notification, come late: wait on
        except asyncio.CancelledError:
            # Cancelled at a stop, maybe while reading a handed job's row: that job
            # never reached the worker either.
            await asyncio.shield(self._unpark(worker_id, on_the_way))
            raise
        finally:
            self._hand_offs.end_wait(worker_id, jobs)
        return woke or bool(jobs), jobs

    async def _handed(
        self, worker_id: str, payloads: list[str], on_the_way: list[str]
    ) -> list[Job]:
        """The job the notifications brought (``on_the_way`` gets the ids first). The
        store learns that the worker took it from the claim that follows, which deletes
        the registration holding it: one statement less than a separate
        acknowledgement on the way to the job's start."""
        jobs, ids = self._hand_offs.received(worker_id, payloads)
        on_the_way.extend([*ids, *(job.id for job in jobs)])
        for job_id in ids:  # a row too long for its notification
            job = await self.get(job_id)
            if job.worker_id == worker_id and job.state in (State.RUNNING, State.CANCELLING):
                jobs.append(job)
        return jobs

    async def _unpark(self, worker_id: str, handed: Sequence[str] = ()) -> None:
        """The worker waits no more: its registration goes, and the job handed to it
        that it did not start (its registration's, and ``handed``) waits again, as it
        was."""
        if self._notes is not None:
            self._notes.take(self._hand_offs.channel(worker_id))
        row = await self._fetchone("unpark_waiter", {"worker": worker_id})
        ids = [*handed, row[0]] if row is not None and row[0] is not None else list(handed)
        taken = self._hand_offs.answered(worker_id)  # the worker's to run or release
        ids = [job_id for job_id in ids if job_id not in taken]
        if ids:
            await self._fetchone(
                "give_back_handed", {"worker": worker_id, "ids": ids, "channel": self.channel}
            )

    async def watch(self, job_id: str, version: int, timeout: float) -> Job | None:
        known_id(job_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            row = await self._fetchone("job_version", {"id": job_id})
            if row is None:
                raise JobNotFound(job_id)
            if row[0] > version:
                return await self.get(job_id)
            left = deadline - loop.time()
            if left <= 0:
                return None
            await asyncio.sleep(min(self.settings.poll, left))


async def _schema_state_async(conn: psycopg.AsyncConnection[Any], schema: str) -> SchemaState:
    # Tuples whatever the connection's row factory (a caller's may make dicts).
    cur = tuple_cursor_async(conn)
    await cur.execute(exists_query(schema))
    found = await cur.fetchone()
    if found is None or found[0] is None:
        return MISSING
    await cur.execute(state_query(schema))
    return state_of(await cur.fetchone())


def _schema_state_sync(conn: psycopg.Connection[Any], schema: str) -> SchemaState:
    cur = tuple_cursor(conn)
    cur.execute(exists_query(schema))
    found = cur.fetchone()
    if found is None or found[0] is None:
        return MISSING
    cur.execute(state_query(schema))
    return state_of(cur.fetchone())
