"""Write transactions on one SQLite connection, and the writes that ride along.

Every write of the SQLite backend is a ``BEGIN IMMEDIATE`` transaction under the
writer lock shared by all processes on the file. Each transaction has a fixed cost
beside its rows: the lock changing hands between processes, the pages the commit
appends to the WAL, the page cache this connection rereads after another process
wrote. A worker writes in two streams at once, its claims and its outcomes, and
while one waits for the lock the other queues up behind it on the backend's thread.

So a write that waits does not take a turn of its own if it does not have to: the
next transaction to hold the lock runs it too, after its own work, before its
COMMIT (a worker's claim carries the outcomes recorded meanwhile). Each carried write
runs inside a SAVEPOINT: one that raises is rolled back alone and its caller gets the
error, the others commit. A transaction whose COMMIT fails fails the writes it
carried with the same error; one whose own work raised carried none yet, and they wait
for the next. A write is never run twice, nor before one submitted earlier.

A carried write's caller still resumes at its own turn on the backend's thread (see
``SQLiteBackend._transact``): a worker's outcome recorder then sends its next batch no
sooner than before, and the batches keep their size. Two processes draining no-op jobs
(W2n, ``--fetch 100 --prefetch 100``) wrote about 650 transactions each instead of 1,300,
and went from 35,100 to 42,000 jobs/s with the recorder's batching of
conveyor.worker.recorder (medians of 4 alternating runs; with the caller resumed when
its carrier committed, no faster than before: docs/benchmarks.md).
"""

from __future__ import annotations

import collections
import contextlib
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from conveyor.exceptions import BackendCorrupt, BackendUnavailable

T = TypeVar("T")

#: What a write does: ``fn(conn, now)``, inside a transaction.
WriteFn = Callable[[sqlite3.Connection, float], Any]
#: What the writer lock yields to run a transaction's first statement: ``first(sql,
#: params)`` (SQLiteBackend._writer_lock; ``None``: the connection's own ``execute``).
FirstStatement = Callable[[str, Sequence[Any]], sqlite3.Cursor]


class WriteTransactions:
    """Runs writes in ``BEGIN IMMEDIATE`` transactions; gathers the ones that wait.

    ``run`` and ``run_waiting`` are called on the thread that owns the connection, with
    the backend's connection lock held; ``submit`` from any thread.
    """

    def __init__(
        self,
        path: str,
        connection: Callable[[], sqlite3.Connection],
        writer_lock: Callable[[], contextlib.AbstractContextManager[FirstStatement | None]],
    ) -> None:
        self.path = path
        self._connection = connection
        self._writer_lock = writer_lock
        self._waiting: collections.deque[tuple[WriteFn, Future[Any]]] = collections.deque()

    def submit(self, fn: WriteFn) -> Future[Any]:
        """Queue a write; the caller then schedules ``run_waiting`` on the connection's
        thread, which runs it unless a transaction before that has carried it."""
        done: Future[Any] = Future()
        self._waiting.append((fn, done))
        return done

    def run_waiting(self) -> None:
        """The writes still waiting, in a transaction of their own."""
        if not self._waiting:
            return  # carried by an earlier transaction
        try:
            self.run(_nothing)
        except BaseException as exc:
            # No transaction to carry them (the store is closed, the lock was not had):
            # they fail as their own would have.
            error = self.error(exc)
            while self._waiting:
                _, done = self._waiting.popleft()
                if done.set_running_or_notify_cancel():
                    done.set_exception(error)

    def run(self, fn: Callable[[sqlite3.Connection, float], T]) -> T:
        """``fn(conn, now)`` in one IMMEDIATE transaction (it takes the write lock first,
        so a read-then-write inside cannot be overtaken by another process), with the
        writes waiting when it is done carried before the COMMIT."""
        conn = self._connection()
        carried: list[_Carried] = []
        with self._writer_lock() as first:
            (first or conn.execute)("BEGIN IMMEDIATE", ())
            try:
                now = time.time()
                result = fn(conn, now)
                self._carry(conn, now, carried)
                conn.execute("COMMIT")
            except BaseException as exc:
                # Also after a failed COMMIT (disk full, I/O error): an open transaction
                # would keep the write lock from every other process.
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                error = self.error(exc)
                for write in carried:
                    write.done.set_exception(error)
                raise
        for write in carried:
            if write.error is None:
                write.done.set_result(write.value)
            else:
                write.done.set_exception(write.error)
        return result

    def _carry(self, conn: sqlite3.Connection, now: float, carried: list[_Carried]) -> None:
        """Run the waiting writes, each in a savepoint, into ``carried``: their callers
        are told once the transaction's fate is known."""
        while self._waiting:
            fn, done = self._waiting.popleft()
            if not done.set_running_or_notify_cancel():
                continue  # its caller gave up before it ran
            write = _Carried(done)
            carried.append(write)
            conn.execute("SAVEPOINT carried")
            try:
                write.value = fn(conn, now)
            except Exception as exc:
                conn.execute("ROLLBACK TO carried")
                write.error = self.error(exc)
            conn.execute("RELEASE carried")

    def error(self, exc: BaseException) -> BaseException:
        """What a caller gets for an exception of a write: SQLite's errors name the file."""
        if isinstance(exc, sqlite3.Error):
            wrapped = store_error(self.path, exc)
            wrapped.__cause__ = exc
            return wrapped
        return exc


def store_error(path: str, exc: sqlite3.Error) -> BackendUnavailable | BackendCorrupt:
    """An error of SQLite as the backend's callers see it: naming the file."""
    return damaged(path, exc) or BackendUnavailable(f"SQLite {path!r}: {exc}")


#: SQLite's primary result codes of a file that is not a database (SQLITE_NOTADB) or is
#: damaged (SQLITE_CORRUPT): what a retry does not mend. A busy or locked file, a full
#: disk or an I/O error may pass, and stay BackendUnavailable.
_DAMAGED = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})


def damaged(path: str, exc: sqlite3.Error) -> BackendCorrupt | None:
    """BackendCorrupt naming the file when SQLite says it is damaged or not a database;
    None for any other error."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None or code & 0xFF not in _DAMAGED:
        return None
    return BackendCorrupt(
        "url", f"SQLite {path!r} is damaged or not a SQLite database ({exc}): {LEFT_AS_IT_IS}"
    )


#: What every BackendCorrupt of a SQLite file ends with: what conveyor does, and the user.
LEFT_AS_IT_IS = (
    "conveyor cannot use it, and leaves it as it is; restore it from a backup, or point "
    "the URL at another file"
)


@dataclass
class _Carried:
    """A write run by another's transaction: what it returned or raised."""

    done: Future[Any]
    value: Any = None
    error: BaseException | None = None


def _nothing(conn: sqlite3.Connection, now: float) -> None:
    """The work of a transaction that runs only the waiting writes."""
