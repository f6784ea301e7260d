"""SQLite backend: the embedded default. One file, WAL mode, several worker processes.

Every write is one ``BEGIN IMMEDIATE`` transaction, so claims are atomic across
processes. Statements run on one thread per backend (SQLite connections are
blocking), and synchronous callers (``enqueue`` from a web request) may use the
same connection directly, under the same lock, without an event loop.

SQLite cannot push notifications to other processes, so wake-ups poll
``PRAGMA data_version`` on a second connection: it changes whenever any other
connection commits and costs a few microseconds to read, so a 2 ms poll gives
low pickup latency without running a query per poll. ``get`` and ``head`` read on
that second connection too, on the caller's thread: one row by its primary key costs
a few microseconds and a WAL reader never waits for a writer, while the hop to the
backend's thread costs far more (under an API's poll load, both threads then also
fight over the GIL: W5 in docs/benchmarks.md).

URL: ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``; options
as query parameters: ``synchronous`` (``normal``, the default, survives any
process crash; ``full`` also survives power loss, at one fsync per commit),
``busy_timeout`` (seconds a write waits for another program's write, default 30),
``poll`` (seconds between wake-up checks, default 0.002).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import itertools
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from conveyor.backends import MIN_POLL_S, number_option, url_options
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
from conveyor.backends.rows import (
    RETRYABLE,
    Row,
    dumps,
    held_params,
    loads,
    minute_of,
    outcome_rows,
    prepare_insert,
    retried_steps,
    retry_filter,
    row_to_job,
    row_to_worker,
    statements,
    tally,
)
from conveyor.backends.sqlfiles import load_migrations, load_queries
from conveyor.backends.sqlite_check import quick_check
from conveyor.backends.sqlite_writes import WriteTransactions, damaged, store_error
from conveyor.exceptions import (
    BackendCorrupt,
    BackendUnavailable,
    ConfigError,
    InvalidJob,
    JobNotFound,
    JobStateError,
    QueueNotFound,
    UniqueKeyHeld,
)
from conveyor.forks import ForkGuard, keep_from_parent
from conveyor.job import (
    FINAL_STATES,
    Job,
    Outcome,
    State,
    id_ceiling,
    id_floor,
)

T = TypeVar("T")

logger = logging.getLogger("conveyor.backends.sqlite")

_SQL_PACKAGE = "conveyor.backends.sql.sqlite"
Q = load_queries(_SQL_PACKAGE)
MIGRATIONS = load_migrations(_SQL_PACKAGE)
SCHEMA_VERSION = MIGRATIONS[-1][0]


def _id_taken(job: Job | None) -> InvalidJob:
    """The error of a batch refused for a job whose id is taken (``job``, when known)."""
    which = f"{job.id!r} is" if job is not None else "one of the batch's ids is"
    return InvalidJob("id", f"{which} taken by a stored job; no job was stored")


@functools.cache
def _rows_at_once(statement: str, rows: int) -> str:
    """``statement`` (one row of ``VALUES (?, ...)``) for ``rows`` rows, its ``:now``
    (if any) numbered after the rows' parameters."""
    head, rest = statement.split("VALUES", 1)
    values, tail = rest.split(")", 1)
    row = values.strip() + ")"
    text = f"{head}VALUES {', '.join([row] * rows)}{tail}"
    return text.replace(":now", f"?{row.count('?') * rows + 1}")


#: A batch's jobs go in by INSERTs of this many rows each (the rest one row at a
#: time): SQLite sets up a statement's run once per row of an executemany, and one
#: run of 100 rows costs 4.3 us a row against 6.0 (SQLite 3.40, 1,000 jobs).
_ROWS_PER_INSERT = 100
_INSERT_JOBS = _rows_at_once(Q["insert_job"], _ROWS_PER_INSERT)
#: Runs per finish_rows statement at most. A batch is padded to a multiple of
#: _FINISH_STEP with rows whose id is empty (they match no job), so that eight prepared
#: statements serve all sizes. Not NULLs: see _bind_null. Each padding row is one more
#: primary-key look-up under the write lock: padded to a power of two instead, the
#: outcomes of 75 jobs took 5.6 us a job against 5.0.
_FINISH_ROWS = 128
_FINISH_STEP = 16
_FINISH_PADDING = ("", "", 0, "", 0.0, 0, "", 0, "", "", "")
#: Bytes the write-ahead log keeps on disk once a checkpoint has emptied it. While any
#: reader holds an old snapshot (a backup, a long report) the log cannot restart and
#: grows with every write: 330 MB for a 200,000-job drain under a reader held 6 s.
#: SQLite then reuses the file from its start but never shrinks it: a long-running
#: store would keep its largest log for good. Beyond this size it is cut back.
_WAL_KEEP_BYTES = 64 * 1024 * 1024
#: Seconds a URL's busy_timeout may be: SQLite's busy timeout is a C int of milliseconds.
_BUSY_TIMEOUT_MIN = 0.001
_BUSY_TIMEOUT_MAX = 2_147_483
#: Seconds between looks at whether the URL's path still names the file this process
#: opened (one stat, a microsecond or two; see SQLiteBackend._follow_file).
_FILE_CHECK_S = 1.0


def _bind_null(value: None) -> None:
    return value


# sqlite3 passes each parameter that is not exactly an int, float, str or bytearray
# through its adapter registry first, and for None, which has no adapter, that look-up
# raises and discards an AttributeError: 3,100 instructions a None (a job's INSERT
# binds five, its outcome three). An adapter for None that hands it back costs a third
# of that; NULL is bound either way. One the application registered is left alone.
if (type(None), sqlite3.PrepareProtocol) not in sqlite3.adapters:
    sqlite3.register_adapter(type(None), _bind_null)

_ALL_STATES = [s.value for s in State]
_FINAL = [s.value for s in FINAL_STATES]
#: The states of two partial indexes, and their conditions word for word (SQLite uses
#: a partial index only for a query that repeats its condition; 0004_index_conditions.sql
#: says why jobs_listing's is ORs).
_LISTED = frozenset({State.RETRYING, State.SUCCEEDED, State.POISONED, State.CANCELLED})
_LISTED_CONDITION = (
    "(state = 'retrying' OR state = 'succeeded' OR state = 'poisoned' OR state = 'cancelled')"
)
_LEASED = frozenset({State.RUNNING, State.CANCELLING})
_LEASED_CONDITION = "state IN ('running', 'cancelling')"


def parse_sqlite_url(url: str) -> tuple[str, dict[str, str]]:
    """``sqlite:///rel.db?x=y`` → (``rel.db``, {x: y}); ConfigError naming the URL otherwise."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite":
        raise ConfigError("url", f"not a sqlite URL: {url!r}")
    if parts.netloc:
        raise ConfigError(
            "url",
            f"{url!r}: use sqlite:///relative/path.db or sqlite:////absolute/path.db "
            "(three slashes before the path)",
        )
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if not path or path == ":memory:":
        raise ConfigError(
            "url", f"{url!r}: a file path is needed (workers in other processes share it)"
        )
    if "\x00" in path:
        raise ConfigError("url", f"{url!r}: a NUL character cannot be in a file's path")
    if path != path.strip():
        # A stray space (a .env file's value, a YAML string) would name another file
        # than the same URL without it in another process: jobs never run, unsaid.
        raise ConfigError("url", f"{url!r}: the file's path begins or ends with white space")
    return path, url_options(parts.query, url)


def absolute_sqlite_url(url: str) -> str:
    """``url`` naming its file by an absolute path (relative to the working directory
    of now), its options as they are."""
    path, _ = parse_sqlite_url(url)
    absolute = os.path.abspath(path)
    if "#" in absolute or "?" in absolute:
        # A URL's path cannot hold them (the rest would be read as its fragment or
        # query: another file, or options): the URL as it is, relative.
        return url
    query = urlsplit(url).query
    return f"sqlite:///{absolute}" + (f"?{query}" if query else "")


class SQLiteBackend(Backend):
    schemes = ("sqlite",)

    def __init__(self, url: str) -> None:
        self.url = url
        path, options = parse_sqlite_url(url)
        # Resolved once: task code in a worker may change the working directory, and
        # a connection opened after that (a count read aside) made a new, empty file.
        self.path = os.path.abspath(path)
        self.synchronous = options.pop("synchronous", "normal").lower()
        if self.synchronous not in ("normal", "full", "extra"):
            raise ConfigError("url.synchronous", f"expected normal, full or extra in {url!r}")
        self.busy_timeout = number_option(options, "busy_timeout", 30.0, url)
        if not _BUSY_TIMEOUT_MIN <= self.busy_timeout <= _BUSY_TIMEOUT_MAX:
            # SQLite keeps whole milliseconds in a C int, and turns a value it cannot
            # keep into 0: every write would then fail at once when another one writes.
            raise ConfigError(
                "url.busy_timeout",
                f"must be from {_BUSY_TIMEOUT_MIN} to {_BUSY_TIMEOUT_MAX} seconds "
                f"(SQLite counts whole milliseconds) in {url!r}",
            )
        self._busy_pragma = f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}"
        self.poll_interval = number_option(options, "poll", 0.002, url, minimum=MIN_POLL_S)
        if options:
            raise ConfigError(
                "url",
                f"unknown option(s) {sorted(options)} in {url!r}; known: "
                "synchronous, busy_timeout, poll",
            )
        self._conn: sqlite3.Connection | None = None
        self._watch_conn: sqlite3.Connection | None = None
        self._lock = threading.RLock()
        self._watch_lock = threading.Lock()
        self._lock_fd: int | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._fork = ForkGuard()
        self._writes = WriteTransactions(self.path, self._db, self._writer_lock)
        self._versions = (SCHEMA_VERSION, SCHEMA_VERSION)
        self._file: tuple[int, int] | None = None  # (device, inode) of the file opened
        self._file_checked = 0.0
        self._following = False  # the file at the path is to be opened (_follow_file)

    # -- lifecycle -------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            raise ConfigError("url", f"{self.url!r}: directory {directory!r} does not exist")
        if os.path.isdir(self.path):
            raise ConfigError("url", f"{self.url!r}: {self.path!r} is a folder, not a file")
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise self._open_error(exc) from exc
        try:
            conn.execute(self._busy_pragma)
            self._refuse_foreign(conn)
            self._use_wal(conn)
            conn.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
            conn.execute(f"PRAGMA journal_size_limit={_WAL_KEEP_BYTES}")
            # A claim or an outcome batch updates many rows inside a transaction, so
            # SQLite keeps a statement journal for it; past 64 KiB that journal spills
            # to a temporary file, created and unlinked on every such statement (five
            # system calls, and the writes). In memory the W2n drain ran 3-10 % faster.
            conn.execute("PRAGMA temp_store=MEMORY")
        except BaseException as exc:
            conn.close()
            if not isinstance(exc, sqlite3.Error):
                raise
            raise self._open_error(exc) from exc
        return conn

    def _open_error(self, exc: sqlite3.Error) -> BackendUnavailable | BackendCorrupt:
        """The error of a file that would not open, with the likely reason when SQLite
        gives none ("unable to open database file")."""
        if (corrupt := damaged(self.path, exc)) is not None:
            return corrupt
        why = ""
        directory = os.path.dirname(self.path)
        if not os.access(directory, os.W_OK):
            name = os.path.basename(self.path)
            why = (
                f" (the folder {directory!r} cannot be written: in WAL mode SQLite makes "
                f"{name}-wal and {name}-shm beside the file, and conveyor {name}-lock)"
            )
        return BackendUnavailable(f"cannot open SQLite database {self.path!r}: {exc}{why}")

    def _refuse_foreign(self, conn: sqlite3.Connection) -> None:
        """ConfigError for a database another program made (tables, and no version of
        conveyor's schema: the application's own file given by mistake), before anything
        is changed in it: WAL mode, conveyor's tables and ``user_version`` (which other
        programs use as their schema's version too) would be there for good."""
        # One statement, one snapshot: a process making the file conveyor's meanwhile
        # sets the version and the tables in one transaction.
        version, tables = conn.execute(
            "SELECT (SELECT user_version FROM pragma_user_version), group_concat(name, ', ')"
            " FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        ).fetchone()
        if version == 0 and tables:
            raise ConfigError(
                "url",
                f"{self.url!r}: {self.path!r} is a SQLite database of another program "
                f"(tables: {tables}); conveyor keeps its jobs in a file of its own",
            )

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        """Switch a new file to WAL (it stays so). Switching needs a moment alone with
        the file and does not wait on the busy handler, so retry while others open it."""
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
                if mode.lower() != "wal":
                    conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _forget_parent(self) -> None:
        """In a forked child: the parent's connections, lock file and thread are not
        this process's (SQLite's locks are per process; the lock file's flock belongs
        to the open file, which parent and child share): kept unused, opened again."""
        keep_from_parent(self._conn, self._watch_conn, self._executor, self._lock_fd)
        self._conn = self._watch_conn = None
        self._lock_fd = None
        self._executor = None
        # Writes the parent had queued are the parent's to make.
        self._writes = WriteTransactions(self.path, self._db, self._writer_lock)
        self._lock = threading.RLock()
        self._watch_lock = threading.Lock()

    def open_blocking(self) -> None:
        """Open without an event loop (``open`` calls this on the backend's thread)."""
        with self._lock:
            if self._conn is not None:
                return
            conn = self._connect()
            watch: sqlite3.Connection | None = None
            try:
                self._versions = self._migrate(conn)
                watch = self._connect()
                lock_fd = self._open_lock_file()
            except BaseException:
                # All or nothing: a backend left half open would write without the lock
                # file on its next call, or not say again why it cannot open.
                for opened in (conn, watch):
                    if opened is not None:
                        opened.close()
                raise
            self._conn, self._watch_conn, self._lock_fd = conn, watch, lock_fd
            self._file = self._file_at_path()
            self._file_checked = time.monotonic()

    def _open_lock_file(self) -> int:
        name = self.path + "-lock"
        try:
            return os.open(name, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise BackendUnavailable(
                f"cannot open {name!r}, the lock file of SQLite database {self.path!r}: "
                f"{exc.strerror}"
            ) from exc

    def _file_at_path(self) -> tuple[int, int] | None:
        """(device, inode) of the file the path names now; None when there is none.
        When that cannot be told (a folder on the way not searchable for a moment), the
        file open: a look that failed is no reason to leave it."""
        try:
            found = os.stat(self.path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError:
            return self._file
        return found.st_dev, found.st_ino

    def _follow_file(self) -> None:
        """Open the file at the path again when it is no longer the one open (on the
        backend's thread or a synchronous caller's, with ``self._lock`` held).

        A file deleted or replaced while open (``rm`` to start over, a backup restored
        with ``mv``) stays open where it was, named by no path: a worker would claim from
        and write to it for as long as it ran, never seeing the jobs stored at its URL,
        and an API would store jobs there that nobody finds once it stops. Its
        connections are closed at once, not kept: the log and index files beside the
        path (``-wal``, ``-shm``) still serve the old file until its last connection
        closes, and every process that opens the new file meanwhile reads them as its
        own (SQLite: "How To Corrupt", 2.4)."""
        if self._following:
            # The file at the path could not be opened last time (its folder gone, say):
            # until it can, every call says why, and none runs on a closed backend.
            self.open_blocking()
            self._following = False
            return
        now = time.monotonic()
        if self._conn is None or now - self._file_checked < _FILE_CHECK_S:
            return
        self._file_checked = now
        if self._file_at_path() == self._file:
            return
        logger.error(
            "SQLite %r was deleted or replaced while open: opening the file now at that "
            "path (stop every process on a file before deleting or replacing it)",
            self.path,
        )
        with self._watch_lock:
            self._empty_old_log()
            self._close_connections()
        self._following = True
        self.open_blocking()
        self._following = False

    def _empty_old_log(self) -> None:
        """Copy the old file's write-ahead log into it and empty the log, which the path
        still names: SQLite does not remove the log of a file that was unlinked, and the
        first process to open the new file would read its pages as the new file's."""
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):  # busy: another process's turn
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _migrate(self, conn: sqlite3.Connection) -> tuple[int, int]:
        # The version is read before any write lock is asked for: a file that is
        # current (nearly every open) then opens while another program holds the lock
        # (a backup, a `BEGIN EXCLUSIVE` in the sqlite3 shell), as reads go on.
        try:
            current = self._schema_version(conn)
        except sqlite3.Error as exc:
            raise damaged(self.path, exc) or BackendUnavailable(
                f"cannot open SQLite database {self.path!r}: {exc}"
            ) from exc
        if current == SCHEMA_VERSION:
            return current, current
        try:
            conn.execute("BEGIN IMMEDIATE")
            current = self._schema_version(conn)  # another process may have migrated
            for number, script in MIGRATIONS:
                if number > current:
                    for statement in statements(script):
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version={number}")
            conn.execute("COMMIT")
            return current, max(current, SCHEMA_VERSION)
        except BaseException as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            if not isinstance(exc, sqlite3.Error):
                raise
            raise damaged(self.path, exc) or BackendUnavailable(
                f"cannot migrate SQLite database {self.path!r}: {exc}"
            ) from exc

    def _schema_version(self, conn: sqlite3.Connection) -> int:
        """The file's schema version; ConfigError when a newer conveyor made it."""
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise ConfigError(
                "url",
                f"{self.path!r} has schema version {version}, newer than this "
                f"conveyor's {SCHEMA_VERSION}: upgrade conveyor",
            )
        return int(version)

    async def migrate(self) -> tuple[int, int]:
        """Check the whole file (``PRAGMA quick_check``), then open it, which migrates (an
        embedded store upgrades itself); the versions it found. A damaged file is
        BackendCorrupt before anything in it is changed: opening reads only its first
        page, and would find a file whose other pages are damaged up to date."""
        await self._run(quick_check, self.path, self.busy_timeout)
        await self.open()
        return self._versions

    async def open(self) -> None:
        await self._run(self.open_blocking)

    async def close(self) -> None:
        self._fork.check(self._forget_parent)  # a child closes its own, not its parent's
        with self._lock, self._watch_lock:
            self._close_connections()
            self._following = False
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def _close_connections(self) -> None:
        """Close the connections and the lock file (both locks held)."""
        for conn in (self._conn, self._watch_conn):
            if conn is not None:
                conn.close()
        self._conn = self._watch_conn = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    async def now(self) -> float:
        return time.time()

    # -- plumbing ----------------------------------------------------------------
    def _thread(self) -> ThreadPoolExecutor:
        """The backend's thread, where its connection runs statements."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="conveyor-sqlite")
        return self._executor

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread(), self._call, fn, args)

    def _call(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        with self._lock:
            try:
                self._follow_file()
                return fn(*args)
            except sqlite3.Error as exc:
                raise store_error(self.path, exc) from exc

    async def _transact(self, fn: Callable[[sqlite3.Connection, float], T]) -> T:
        """``fn(conn, now)`` in a write transaction on the backend's thread: its own, or
        one that started before its turn and carried it (conveyor.backends.sqlite_writes).
        Either way the caller resumes at its turn on the thread, not sooner: see there."""
        done = self._writes.submit(fn)
        try:
            await self._run(self._writes.run_waiting)
        except asyncio.CancelledError:
            done.cancel()  # if it has not run yet, no transaction will run it now
            raise
        return cast(T, done.result())

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise BackendUnavailable(f"SQLite backend {self.path!r} is not open")
        return self._conn

    def _write(self, fn: Callable[[sqlite3.Connection, float], T]) -> T:
        """``fn(conn, now)`` in one IMMEDIATE transaction, which carries the writes
        waiting meanwhile (on the backend's thread or a synchronous caller's, with
        ``self._lock`` held)."""
        return self._writes.run(fn)

    @contextlib.contextmanager
    def _writer_lock(self) -> Iterator[Callable[[str, Sequence[Any]], sqlite3.Cursor]]:
        """Queue this process's writers on a lock file beside the database; yields
        ``first(sql, params)``, to run the write's first statement (the one that takes
        SQLite's own write lock: ``BEGIN IMMEDIATE``, or a lone INSERT).

        SQLite's busy handler waits for a busy write lock by sleeping and retrying
        (1 ms, 2 ms, 5 ms, ...), so two workers taking turns lose most of their time
        asleep. A blocking ``flock`` hands the lock over the moment it is free.
        Writers that do not take it (another program) still meet the busy handler.

        But a holder of the lock file waiting in the busy handler for such a program
        (a ``BEGIN EXCLUSIVE`` left open in the ``sqlite3`` shell, a backup) would keep
        every other process of the file waiting for the lock file meanwhile, each then
        waiting its own ``busy_timeout`` in turn: with five processes on a file and a
        2 s ``busy_timeout``, an API request was answered ``503`` after 8 to 12 s, and
        with the default 30 s, after minutes. So ``first`` runs its statement without
        waiting (``busy_timeout`` 0 for it: two PRAGMAs, about 4 µs a write); when another
        program has SQLite's lock, it lets the lock file go and waits in the busy handler
        as any writer of that program would, holding up no one.
        """
        conn = self._db()
        fd = self._lock_fd
        if fd is None:
            yield conn.execute
            return
        fcntl.flock(fd, fcntl.LOCK_EX)
        held = True

        def first(sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
            nonlocal held
            conn.execute("PRAGMA busy_timeout=0")
            try:
                return conn.execute(sql, params)
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                    raise
            finally:
                conn.execute(self._busy_pragma)
            fcntl.flock(fd, fcntl.LOCK_UN)
            held = False
            return conn.execute(sql, params)

        try:
            yield first
        finally:
            if held:
                fcntl.flock(fd, fcntl.LOCK_UN)

    # -- jobs -------------------------------------------------------------------
    def enqueue_blocking(self, jobs: Sequence[Job]) -> list[Job] | None:
        self._fork.check(self._forget_parent)
        with self._lock:
            if self._conn is None:
                self.open_blocking()
            try:
                self._follow_file()
                return self._enqueue(jobs)
            except sqlite3.Error as exc:
                raise store_error(self.path, exc) from exc

    async def enqueue(self, jobs: Sequence[Job]) -> list[Job]:
        return await self._run(self._enqueue, jobs)

    def _enqueue(self, jobs: Sequence[Job]) -> list[Job]:
        # insert_job skips a job whose id is taken, as it skips one whose unique key is
        # held (ON CONFLICT DO NOTHING covers every unique index): a job skipped without
        # a holder of its key had its id taken, and refuses the batch (InvalidJob; the
        # transaction rolls back). The row counts say so at no cost.
        if len(jobs) == 1 and jobs[0].unique_key is None:
            # One statement is its own transaction (the queue row comes from a trigger).
            now = time.time()
            with self._writer_lock() as first:
                inserted = first(Q["insert_job"], prepare_insert(jobs[0], now))
            if inserted.rowcount != 1:
                raise _id_taken(jobs[0])
            return [jobs[0]]
        return self._write(lambda conn, now: self._insert(conn, now, jobs))

    async def enqueue_once(self, job: Job) -> Job:
        key = unique_key_of(job)
        return await self._run(self._write, functools.partial(self._insert_once, key, job))

    def _insert_once(self, key: str, job: Job, conn: sqlite3.Connection, now: float) -> Job:
        # In the write transaction: no other process writes between look-up and insert.
        newest = conn.execute(Q["newest_by_unique_key"], (key,)).fetchone()
        if newest is not None:
            return row_to_job(newest)
        (stored,) = self._insert(conn, now, [job])
        return stored

    def _insert(self, conn: sqlite3.Connection, now: float, jobs: Sequence[Job]) -> list[Job]:
        stored: list[Job] = []
        plain: list[Row] = []
        for job in jobs:
            row = prepare_insert(job, now)
            if job.unique_key is None:
                plain.append(row)
                stored.append(job)
                continue
            if conn.execute(Q["insert_job"], row).rowcount == 1:
                stored.append(job)
            else:
                existing = conn.execute(Q["active_by_unique_key"], (job.unique_key,)).fetchone()
                if existing is None:
                    raise _id_taken(job)
                stored.append(row_to_job(existing))
        inserted = 0
        whole = len(plain) - len(plain) % _ROWS_PER_INSERT
        if whole:
            inserted += conn.executemany(
                _INSERT_JOBS,
                (
                    list(itertools.chain.from_iterable(plain[i : i + _ROWS_PER_INSERT]))
                    for i in range(0, whole, _ROWS_PER_INSERT)
                ),
            ).rowcount
        if whole < len(plain):
            inserted += conn.executemany(Q["insert_job"], plain[whole:]).rowcount
        if inserted != len(plain):
            raise _id_taken(None)
        return stored

    async def claim(
        self, queues: Sequence[str], worker_id: str, limit: int, lease: float
    ) -> list[Job]:
        if limit <= 0 or not queues:
            return []
        return await self._run(self._claim, list(queues), worker_id, limit, lease)

    def _claim(self, queues: list[str], worker_id: str, limit: int, lease: float) -> list[Job]:
        conn = self._db()
        # A read first: when nothing is ready, no write lock is taken, so idle
        # workers polling the file do not queue up behind each other's writes.
        now = time.time()
        probe = conn.execute(Q["ready_probe"], {"queues": dumps(queues), "now": now}).fetchone()
        if not probe[0]:
            return []

        def claim(conn: sqlite3.Connection, now: float) -> list[list[Row]]:
            conn.execute(Q["promote_due"], {"now": now})
            paused = {r[0] for r in conn.execute(Q["paused_queues"], (dumps(queues),))}
            batches: list[list[Row]] = []
            left = limit
            for queue in queues:
                if queue in paused:
                    continue
                rows = conn.execute(
                    Q["claim_queue"],
                    {
                        "worker": worker_id,
                        "lease_until": now + lease,
                        "now": now,
                        "queue": queue,
                        "limit": left,
                    },
                ).fetchall()
                batches.append(rows)
                left -= len(rows)
                if left <= 0:
                    break
            return batches

        # Rows become jobs after the commit: no Python work while the write lock is held.
        claimed: list[Job] = []
        for rows in self._write(claim):
            batch = [row_to_job(r) for r in rows]
            batch.sort(key=lambda j: (j.priority, j.run_at, j.id))
            claimed.extend(batch)
        return claimed

    async def extend(self, job_ids: Sequence[str], worker_id: str, lease: float) -> LeaseStatus:
        ids = list(job_ids)
        if not ids:
            return LeaseStatus([], [], [])

        def extend(conn: sqlite3.Connection, now: float) -> LeaseStatus:
            rows = conn.execute(
                Q["extend_lease"],
                {"lease_until": now + lease, "worker": worker_id, "ids": dumps(ids)},
            ).fetchall()
            held = {r[0]: r[1] for r in rows}
            return LeaseStatus(
                extended=[i for i in ids if i in held],
                cancelling=[i for i in ids if held.get(i) == State.CANCELLING.value],
                lost=[i for i in ids if i not in held],
            )

        return await self._transact(extend)

    async def save(self, job: Job) -> bool:
        # Encoded here, on the caller's loop: the job's task may change its steps while
        # the write waits for the store's thread.
        params = held_params(job, 0.0)

        def save(conn: sqlite3.Connection, now: float) -> float | None:
            params["now"] = now
            return now if conn.execute(Q["save_running"], params).rowcount else None

        saved_at = await self._transact(save)
        if saved_at is None:
            return False
        job.version += 1
        job.updated_at = saved_at
        return True

    async def finish(self, items: Sequence[tuple[Job, Outcome]]) -> list[bool]:
        if not items:
            return []
        rows, counts = outcome_rows(items, as_text=True)  # before the write lock
        runs = _finish_statements(rows)
        written = set(await self._transact(lambda conn, now: _finish(conn, now, runs, counts)))
        return [job.id in written for job, _ in items]

    async def release(self, jobs: Sequence[Job]) -> int:
        def release(conn: sqlite3.Connection, now: float) -> int:
            count = 0
            for job in jobs:
                count += conn.execute(Q["release_job"], held_params(job, now)).rowcount
            return count

        return await self._transact(release) if jobs else 0

    async def get(self, job_id: str) -> Job:
        known_id(job_id)
        await self._keep_to_file()
        return row_to_job(self._read_job(Q["get_job"], job_id))

    async def head(self, job_id: str) -> JobHead:
        known_id(job_id)
        await self._keep_to_file()
        r = self._read_job(Q["job_head"], job_id)
        return JobHead(r[0], r[1], State(r[2]), r[3], loads(r[4]) if r[4] else {})

    async def find_unique(self, unique_key: str) -> Job | None:
        await self._keep_to_file()
        rows = self._read_rows(Q["newest_by_unique_key"], unique_key)
        return row_to_job(rows[0]) if rows else None

    async def _keep_to_file(self) -> None:
        """Before a read on the caller's thread: at most once a second, a look at the
        path here, and a turn on the backend's thread, whose calls follow a file deleted
        or replaced at the path (_follow_file; a process that only reads, an API
        answering polls, makes no other call there), only when it names another file.
        Not always that turn: it waits behind the backend's write in progress, which
        waits up to busy_timeout while another program holds the write lock, and reads
        go on meanwhile. Nor reopening here: it waits for the connection's lock, which
        that write holds."""
        if self._following:
            await self._run(_nothing_to_do)
            return
        now = time.monotonic()
        if self._conn is None or now - self._file_checked < _FILE_CHECK_S:
            return
        if self._file_at_path() == self._file:
            self._file_checked = now
            return
        await self._run(_nothing_to_do)

    def _read_job(self, query: str, job_id: str) -> Row:
        """One job's row, read on the caller's thread (see the module's docstring)."""
        rows = self._read_rows(query, job_id)
        if not rows:
            raise JobNotFound(job_id)
        return rows[0]

    @contextlib.contextmanager
    def _watching(self) -> Iterator[sqlite3.Connection]:
        """The watch connection, for reads on the caller's thread (see the module's
        docstring); its errors as BackendUnavailable."""
        with self._watch_lock:
            if self._watch_conn is None:
                raise BackendUnavailable(f"SQLite backend {self.path!r} is not open")
            try:
                yield self._watch_conn
            except sqlite3.Error as exc:
                raise store_error(self.path, exc) from exc

    def _read_rows(self, query: str, param: str) -> list[Row]:
        """The rows of a read by one parameter, on the caller's thread."""
        with self._watching() as conn:
            # fetchall, not fetchone: the statement runs to its end, so no read
            # transaction stays open (one would hold back checkpoints).
            rows = conn.execute(query, (param,)).fetchall()
        return cast(list[Row], rows)

    def _get(self, job_id: str) -> Job:
        row = self._db().execute(Q["get_job"], (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(job_id)
        return row_to_job(row)

    async def list_jobs(
        self, filter: JobFilter | None = None, cursor: str | None = None, limit: int = 50
    ) -> Page:
        if matches_nothing(filter, cursor):
            return Page([], None)
        where: list[str] = []
        params: list[Any] = []
        if filter is not None:
            if filter.states is not None:
                where.append("state IN (SELECT value FROM json_each(?))")
                params.append(dumps([s.value for s in filter.states]))
            for column in ("queue", "task", "tenant"):
                value = getattr(filter, column)
                if value is not None:
                    where.append(f"{column} = ?")
                    params.append(value)
        if cursor:
            where.append("id < ?")
            params.append(cursor)
        # Each group of states is listed through the index that holds it (see
        # 0001_initial.sql); waiting jobs, or a mix, by walking the table from its
        # newest end (ids are time-ordered), where a backlog's newest jobs are.
        states = filter.states if filter is not None else None
        if states and states <= _LISTED:
            sql = "SELECT * FROM jobs INDEXED BY jobs_listing"
            where.append(_LISTED_CONDITION)
        elif states and states <= _LEASED:
            sql = "SELECT * FROM jobs INDEXED BY jobs_leases"
            where.append(_LEASED_CONDITION)
        else:
            sql = "SELECT * FROM jobs NOT INDEXED"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit + 1)

        def page(conn: sqlite3.Connection) -> Page:
            rows = conn.execute(sql, params).fetchall()
            jobs = [row_to_job(r) for r in rows[:limit]]
            more = len(rows) > limit
            return Page(jobs, jobs[-1].id if more and jobs else None)

        return await self._read_aside(page)

    async def cancel(self, job_id: str, reason: str = "cancelled") -> Job:
        known_id(job_id)

        def cancel(conn: sqlite3.Connection, now: float) -> Job:
            job = self._get(job_id)
            if job.state.is_waiting:
                error = {"attempt": job.attempts, "at": now, "type": "Cancelled", "message": reason}
                conn.execute(
                    Q["cancel_waiting"],
                    {"id": job_id, "now": now, "errors": dumps([*job.errors, error])},
                )
            elif job.state is State.RUNNING:
                conn.execute(Q["cancel_running"], {"id": job_id, "now": now})
            return self._get(job_id)

        return await self._transact(cancel)

    async def delete(self, job_id: str, states: Sequence[State] | None = None) -> bool:
        if not could_exist(job_id):
            return False

        def delete(conn: sqlite3.Connection, now: float) -> bool:
            # One write transaction: the state read is the state removed.
            row = conn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return False
            if states is not None and row[0] not in {s.value for s in states}:
                raise delete_refused(job_id, row[0], states)
            if conn.execute(Q["delete_job"], (job_id,)).rowcount:
                return True
            raise delete_refused(job_id, row[0], states)

        return await self._transact(delete)

    async def retry(self, job_id: str) -> Job:
        known_id(job_id)

        def retry(conn: sqlite3.Connection, now: float) -> Job:
            job = self._get(job_id)
            if job.state not in RETRYABLE:
                raise JobStateError(job_id, job.state.value, "retry (only poisoned or cancelled)")
            self._retry_one(conn, now, job)
            return self._get(job_id)

        return await self._transact(retry)

    def _retry_one(self, conn: sqlite3.Connection, now: float, job: Job) -> None:
        try:
            conn.execute(Q["retry_job"], {"id": job.id, "now": now, "steps": retried_steps(job)})
        except sqlite3.IntegrityError:
            raise UniqueKeyHeld(job.id, job.state.value, job.unique_key) from None

    async def retry_all(self, filter: JobFilter) -> RetriedAll:
        wanted = retry_filter(filter)
        retried = held = 0
        cursor: str | None = None
        while True:
            page = await self.list_jobs(wanted, cursor, 500)

            def retry_page(
                conn: sqlite3.Connection, now: float, jobs: list[Job] = page.jobs
            ) -> tuple[int, int]:
                done = kept = 0
                for job in jobs:
                    try:
                        self._retry_one(conn, now, job)
                        done += 1
                    except UniqueKeyHeld:
                        kept += 1
                    except JobStateError:
                        continue
                return done, kept

            done, kept = await self._transact(retry_page)
            retried, held = retried + done, held + kept
            if page.next_cursor is None:
                return RetriedAll(retried, held)
            cursor = page.next_cursor

    async def recover_expired(self) -> list[Job]:
        def recover(conn: sqlite3.Connection, now: float) -> list[Job]:
            recovered: list[Job] = []
            for row in conn.execute(Q["expired_leases"], (now,)).fetchall():
                job = row_to_job(row)
                step = job.steps[job.current_step].name if job.steps else None
                error = {
                    "attempt": job.attempts,
                    "step": step,
                    "at": now,
                    "type": "LeaseExpired",
                    "message": f"lease expired: worker {job.worker_id} stopped heartbeating",
                }
                if job.state is State.CANCELLING:
                    state, finished = State.CANCELLED, now
                elif job.attempts >= job.max_attempts:
                    state, finished = State.POISONED, now
                else:
                    state, finished = State.QUEUED, None
                changed = conn.execute(
                    Q["recover_job"],
                    {
                        "state": state.value,
                        "run_at": now if state is State.QUEUED else job.run_at,
                        "errors": dumps([*job.errors, error]),
                        "finished_at": finished,
                        "now": now,
                        "id": job.id,
                        "worker": job.worker_id,
                        "attempts": job.attempts,
                    },
                ).rowcount
                if changed:
                    # The lost run counts as worked and failed, as a raising task would.
                    conn.execute(Q["add_counter"], (1, "processed"))
                    conn.execute(Q["add_counter"], (1, "failed"))
                    conn.execute(Q["add_minute_counts"], (minute_of(now), job.queue, 1, 1))
                    recovered.append(row_to_job(conn.execute(Q["get_job"], (job.id,)).fetchone()))
            return recovered

        return await self._transact(recover)

    async def prune(self, before: float, states: Sequence[State] | None = None) -> int:
        wanted = [s.value for s in (states or FINAL_STATES) if s in FINAL_STATES]
        # A minute of slack covers ids minted a moment before their job was stored.
        params = {
            "states": dumps(wanted),
            "before": before,
            "cut": id_floor(before + 60.0),
            "above": id_ceiling(time.time()),
        }
        await self._transact(self._prune_minute_counts)
        total = 0
        for query in (Q["prune_finished"], Q["prune_finished_above"]):

            def prune_some(conn: sqlite3.Connection, now: float, query: str = query) -> int:
                return conn.execute(query, params).rowcount

            while True:
                deleted = await self._transact(prune_some)
                total += deleted
                if deleted == 0:
                    break
        return total

    # -- queues -------------------------------------------------------------------
    async def create_queue(self, name: str) -> None:
        await self._transact(lambda conn, now: conn.execute(Q["ensure_queue"], (name, now)))

    def _require_queue(self, conn: sqlite3.Connection, name: str) -> None:
        if conn.execute(Q["queue_exists"], {"name": name}).fetchone() is None:
            raise QueueNotFound(name)

    async def _set_paused(self, name: str, paused: bool) -> None:
        def set_paused(conn: sqlite3.Connection, now: float) -> None:
            self._require_queue(conn, name)
            # (an upsert: a queue listed by its jobs alone gets its row back)
            conn.execute(Q["set_queue_paused"], {"name": name, "paused": int(paused), "now": now})

        await self._transact(set_paused)

    async def pause_queue(self, name: str) -> None:
        known_queue(name)
        await self._set_paused(name, True)

    async def resume_queue(self, name: str) -> None:
        known_queue(name)
        await self._set_paused(name, False)

    async def empty_queue(self, name: str) -> int:
        known_queue(name)

        def empty(conn: sqlite3.Connection, now: float) -> int:
            self._require_queue(conn, name)
            return int(conn.execute(Q["empty_queue"], (name,)).rowcount)

        return await self._transact(empty)

    async def drop_queue(self, name: str) -> int:
        known_queue(name)

        def drop(conn: sqlite3.Connection, now: float) -> int:
            self._require_queue(conn, name)
            deleted = int(conn.execute(Q["drop_queue_jobs"], (name,)).rowcount)
            conn.execute(Q["drop_queue"], (name,))
            return deleted

        return await self._transact(drop)

    async def list_queues(self) -> list[QueueInfo]:
        def queues(conn: sqlite3.Connection) -> list[QueueInfo]:
            counts: dict[str, dict[str, int]] = {}
            for queue, state, n in conn.execute(Q["count_by_queue_state"]):
                counts.setdefault(queue, dict.fromkeys(_ALL_STATES, 0))[state] = n
            rows = conn.execute(Q["list_queues"]).fetchall()
            # A queue dropped while one of its jobs ran is listed by that job (as on
            # PostgreSQL): it may wait there again, and would be seen nowhere else.
            listed = {name for name, _, _ in rows}
            rows += [(name, 0, 0.0) for name in counts if name not in listed]
            return [
                QueueInfo(
                    name, bool(paused), counts.get(name, dict.fromkeys(_ALL_STATES, 0)), created_at
                )
                for name, paused, created_at in sorted(rows)
            ]

        return await self._read_aside(queues)

    # -- workers and counters -------------------------------------------------
    async def register_worker(self, worker: WorkerInfo) -> None:
        await self.heartbeat_worker(worker)

    async def heartbeat_worker(self, worker: WorkerInfo) -> None:
        def beat(conn: sqlite3.Connection, now: float) -> None:
            conn.execute(
                Q["upsert_worker"],
                {
                    "id": worker.id,
                    "host": worker.host,
                    "pid": worker.pid,
                    "queues": dumps(worker.queues),
                    "concurrency": worker.concurrency,
                    "now": now,
                    "processed": worker.processed,
                    "failed": worker.failed,
                    "running": dumps(worker.running),
                },
            )
            worker.heartbeat_at = now
            worker.started_at = worker.started_at or now

        await self._transact(beat)

    async def unregister_worker(self, worker_id: str) -> None:
        await self._run(
            self._write, lambda conn, now: conn.execute(Q["delete_worker"], (worker_id,))
        )

    async def forget_worker(self, worker_id: str, silent_before: float) -> bool:
        cur = await self._run(
            self._write,
            lambda conn, now: conn.execute(Q["forget_worker"], (worker_id, silent_before)),
        )
        return bool(cur.rowcount)

    async def list_workers(self) -> list[WorkerInfo]:
        def workers() -> list[WorkerInfo]:
            return [row_to_worker(r) for r in self._db().execute(Q["list_workers"])]

        return await self._run(workers)

    async def stats(self) -> Stats:
        def stats(conn: sqlite3.Connection) -> Stats:
            counters = dict(conn.execute(Q["counters"]).fetchall())
            counts = dict.fromkeys(_ALL_STATES, 0)
            counts.update(dict(conn.execute(Q["count_by_state"]).fetchall()))
            (page_count,) = conn.execute("PRAGMA page_count").fetchone()
            (page_size,) = conn.execute("PRAGMA page_size").fetchone()
            return Stats(
                processed=counters.get("processed", 0),
                failed=counters.get("failed", 0),
                counts=counts,
                store={
                    "backend": "sqlite",
                    "path": os.path.abspath(self.path),
                    "size_bytes": page_count * page_size,
                    "sqlite_version": sqlite3.sqlite_version,
                    "journal_mode": "wal",
                    "synchronous": self.synchronous,
                    "schema_version": SCHEMA_VERSION,
                },
            )

        return await self._read_aside(stats)

    # -- counts per minute --------------------------------------------------------
    async def minute_counts(self, since: float, queue: str | None = None) -> list[MinuteCount]:
        def read(conn: sqlite3.Connection) -> list[MinuteCount]:
            rows = conn.execute(Q["minute_counts"], {"since": since, "queue": queue})
            return [MinuteCount(float(m), q, p, f, d) for m, q, p, f, d in rows]

        return await self._read_aside(read)

    async def sample_depth(self) -> None:
        # Counted aside, before the write lock is taken (with a million jobs queued, the
        # count takes about 0.4 s).
        depths = await self._read_aside(_count_depths)
        if not depths:
            return

        def record(conn: sqlite3.Connection, now: float) -> None:
            minute = minute_of(now)
            conn.executemany(Q["set_depth"], [(minute, queue, n) for queue, n in depths])
            self._prune_minute_counts(conn, now)

        await self._transact(record)

    async def _read_aside(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(conn)`` on a connection and thread of its own. Counts and listings
        (a second or more on a file of millions of jobs) must not hold the backend's
        thread, which every enqueue, claim and outcome of this process waits for; a
        WAL reader waits for nobody and sees every commit made before it starts."""
        self._db()  # BackendUnavailable when closed (a new connection would make the file)
        return await asyncio.to_thread(self._with_reader, fn)

    def _with_reader(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            with contextlib.closing(sqlite3.connect(self.path, timeout=self.busy_timeout)) as conn:
                return fn(conn)
        except sqlite3.Error as exc:
            raise store_error(self.path, exc) from exc

    def _prune_minute_counts(self, conn: sqlite3.Connection, now: float) -> None:
        conn.execute(Q["prune_minute_counts"], (now - self.keep_counts,))

    # -- wake-ups -----------------------------------------------------------------
    def _data_version(self) -> int:
        with self._watching() as conn:
            return int(conn.execute("PRAGMA data_version").fetchone()[0])

    async def _changed(self, since: int, deadline: float) -> int | None:
        """Poll the data version until it moves past ``since`` (→ new version) or the
        deadline passes (→ None)."""
        while True:
            current = self._data_version()
            if current != since:
                return current
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            await asyncio.sleep(min(self.poll_interval, left))

    def _look(self, queues: Sequence[str]) -> tuple[int, bool, float | None]:
        """The data version, then whether a job is ready in ``queues`` (or due) and in
        how long the next scheduled or retrying job is due.

        The version comes first: a job stored before it was read is seen by the look,
        one stored after it moves the version. (Without the look, a job stored between
        a worker's last claim and its wait waited for the next change of the file or
        the timeout.)"""
        with self._watching() as conn:
            version = int(conn.execute("PRAGMA data_version").fetchone()[0])
            now = time.time()
            (ready,) = conn.execute(
                Q["ready_probe"], {"queues": dumps(list(queues)), "now": now}
            ).fetchone()
            (next_due,) = conn.execute(Q["next_due"]).fetchone()
        return version, bool(ready), None if next_due is None else next_due - now

    async def wait(self, queues: Sequence[str], timeout: float) -> bool:
        await self._keep_to_file()
        since, ready, due_in = self._look(queues)
        if ready:
            return True
        if due_in is not None:  # no longer than until the next scheduled job is due
            timeout = min(timeout, max(0.005, due_in))
        return await self._changed(since, time.monotonic() + timeout) is not None

    async def watch(self, job_id: str, version: int, timeout: float) -> Job | None:
        known_id(job_id)
        deadline = time.monotonic() + timeout
        while True:
            seen = self._data_version()
            job = await self.get(job_id)
            if job.version > version:
                return job
            if await self._changed(seen, deadline) is None:
                return None


def _nothing_to_do() -> None:
    """A call that only lets SQLiteBackend._call look at the file."""


def _count_depths(conn: sqlite3.Connection) -> list[tuple[str, int]]:
    """Queued jobs per queue, or [] when every queue has a depth this minute."""
    missing = conn.execute(Q["depth_missing"], (minute_of(time.time()),)).fetchall()
    if not missing[0][0]:
        return []
    return cast(list[tuple[str, int]], conn.execute(Q["queue_depths"]).fetchall())


def _finish_statements(rows: list[list[Any]]) -> list[tuple[str, list[Any]]]:
    """The finish_rows statements of a batch and their parameters, the last of which
    (:now) is left for the transaction to set."""
    runs: list[tuple[str, list[Any]]] = []
    for start in range(0, len(rows), _FINISH_ROWS):
        chunk = rows[start : start + _FINISH_ROWS]
        size = -(-len(chunk) // _FINISH_STEP) * _FINISH_STEP
        params = list(itertools.chain.from_iterable(chunk))
        params += _FINISH_PADDING * (size - len(chunk))
        params.append(None)  # :now, set by the transaction
        runs.append((_rows_at_once(Q["finish_rows"], size), params))
    return runs


def _finish(
    conn: sqlite3.Connection,
    now: float,
    runs: list[tuple[str, list[Any]]],
    counts: dict[str, tuple[str, int]],
) -> list[str]:
    written: list[str] = []
    for statement, params in runs:
        params[-1] = now
        written += [r[0] for r in conn.execute(statement, params)]
    if not written:
        return written
    per_queue = tally(written, counts)
    failed = sum(f for _, f in per_queue.values())
    conn.execute(Q["add_counter"], (len(written), "processed"))
    if failed:
        conn.execute(Q["add_counter"], (failed, "failed"))
    minute = minute_of(now)
    for queue, (p, f) in per_queue.items():  # one upsert per queue and batch
        conn.execute(Q["add_minute_counts"], (minute, queue, p, f))
    return written
