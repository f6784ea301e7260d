"""SQLite writes that wait for the write lock ride along in the transaction that has it
(conveyor.backends.sqlite_writes): each in a savepoint of its own, after the carrier's
work, in the order they came; a failure of one is its own, a failure of the whole
transaction is everyone's. Real SQLite files throughout."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from conveyor.backends.sqlite import SQLiteBackend
from conveyor.backends.sqlite_writes import WriteTransactions
from conveyor.exceptions import BackendUnavailable
from conveyor.job import Outcome, State
from conveyor.testing.harness import make_job


def _store(tmp_path: Path) -> tuple[sqlite3.Connection, WriteTransactions, list[str]]:
    """A file with one table, its writes, and the statements they ran, in order."""
    conn = sqlite3.connect(tmp_path / "writes.db", isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (name TEXT PRIMARY KEY)")
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    return conn, WriteTransactions(str(tmp_path), lambda: conn, contextlib.nullcontext), statements


def _insert(name: str) -> Callable[[sqlite3.Connection, float], str]:
    def write(conn: sqlite3.Connection, now: float) -> str:
        conn.execute("INSERT INTO t (name) VALUES (?)", (name,))
        return name

    return write


def _names(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT name FROM t ORDER BY rowid")]


def test_waiting_writes_ride_in_the_next_transaction_after_its_own_work(tmp_path: Path) -> None:
    conn, writes, statements = _store(tmp_path)
    # Given two writes waiting
    first, second = writes.submit(_insert("b")), writes.submit(_insert("c"))

    # When another write's transaction runs
    result = writes.run(_insert("a"))

    # Then it ran them after its own work, in the order they came, in one transaction,
    # and each caller has its own answer
    assert result == "a"
    assert (first.result(0), second.result(0)) == ("b", "c")
    assert _names(conn) == ["a", "b", "c"]
    assert [s for s in statements if s in ("BEGIN IMMEDIATE", "COMMIT")] == [
        "BEGIN IMMEDIATE",
        "COMMIT",
    ]
    # And their own turns find nothing left to do
    writes.run_waiting()
    assert statements.count("BEGIN IMMEDIATE") == 1


def test_a_carried_write_that_raises_is_rolled_back_alone(tmp_path: Path) -> None:
    conn, writes, _ = _store(tmp_path)

    def half_then_fail(conn: sqlite3.Connection, now: float) -> None:
        conn.execute("INSERT INTO t (name) VALUES ('half')")
        conn.execute("INSERT INTO t (name) VALUES ('a')")  # taken: raises

    # Given a write that fails halfway, between two that succeed
    failing = writes.submit(half_then_fail)
    after = writes.submit(_insert("c"))

    # When a transaction carries them
    writes.run(_insert("a"))

    # Then the failing one's caller gets SQLite's error, naming the file, and none of
    # its rows are kept; the carrier's and the other write's are
    with pytest.raises(BackendUnavailable, match="UNIQUE constraint failed"):
        failing.result(0)
    assert after.result(0) == "c"
    assert _names(conn) == ["a", "c"]


def test_a_failed_commit_fails_every_write_it_carried(tmp_path: Path) -> None:
    conn, writes, _ = _store(tmp_path)
    # A deferred foreign key is checked at COMMIT: a real way for a COMMIT to fail
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(
        "CREATE TABLE child (parent TEXT REFERENCES t (name) DEFERRABLE INITIALLY DEFERRED)"
    )

    def orphan(conn: sqlite3.Connection, now: float) -> None:
        conn.execute("INSERT INTO child (parent) VALUES ('nobody')")

    # Given a write waiting
    carried = writes.submit(_insert("b"))

    # When the transaction that carries it cannot commit
    with pytest.raises(sqlite3.IntegrityError):
        writes.run(orphan)

    # Then the carried write's caller gets the error too, and nothing was written
    with pytest.raises(BackendUnavailable, match="FOREIGN KEY constraint failed"):
        carried.result(0)
    assert _names(conn) == []
    assert not conn.in_transaction


def test_waiting_writes_outlive_a_carrier_that_raises(tmp_path: Path) -> None:
    conn, writes, statements = _store(tmp_path)

    def broken(conn: sqlite3.Connection, now: float) -> None:
        raise ValueError("a bug in the carrier")

    # Given a write waiting
    waiting = writes.submit(_insert("b"))

    # When the next transaction's own work raises before it carried anything
    with pytest.raises(ValueError):
        writes.run(broken)

    # Then the waiting write is still waiting, and its own turn writes it
    assert not waiting.done()
    writes.run_waiting()
    assert waiting.result(0) == "b"
    assert _names(conn) == ["b"]
    assert statements.count("BEGIN IMMEDIATE") == 2


def test_a_write_given_up_before_it_ran_is_not_run(tmp_path: Path) -> None:
    conn, writes, _ = _store(tmp_path)
    # Given a write whose caller gave up while it waited
    given_up = writes.submit(_insert("b"))
    assert given_up.cancel()

    # When the next transaction runs
    writes.run(_insert("a"))

    # Then it did not carry it
    assert _names(conn) == ["a"]


def test_waiting_writes_fail_with_the_store_when_no_transaction_can_start(
    tmp_path: Path,
) -> None:
    def closed() -> sqlite3.Connection:
        raise BackendUnavailable("the store is closed")

    writes = WriteTransactions(str(tmp_path), closed, contextlib.nullcontext)
    # Given a write waiting on a store that cannot start a transaction
    waiting = writes.submit(_insert("a"))

    # When its turn comes
    writes.run_waiting()

    # Then its caller gets the store's error
    with pytest.raises(BackendUnavailable, match="closed"):
        waiting.result(0)


def test_outcomes_recorded_while_a_claim_waits_for_the_lock_commit_with_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "carry.db"

    async def scenario() -> tuple[int, list[bool], int, list[str]]:
        backend = SQLiteBackend(f"sqlite:///{path}")
        await backend.open()
        try:
            await backend.enqueue([make_job() for _ in range(4)])
            running = await backend.claim(["default"], "w", 2, 60.0)
            assert backend._conn is not None
            statements: list[str] = []
            probed = threading.Event()

            def trace(statement: str) -> None:
                statements.append(statement)
                if "EXISTS" in statement:  # the claim's read before it takes the lock
                    probed.set()

            backend._conn.set_trace_callback(trace)
            # Given another process holding the write lock
            lock = os.open(f"{path}-lock", os.O_RDWR)
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                # And a claim waiting for it
                claiming = asyncio.ensure_future(backend.claim(["default"], "w", 2, 60.0))
                assert await asyncio.to_thread(probed.wait, 10)
                # When outcomes are recorded meanwhile
                finishing = asyncio.ensure_future(
                    backend.finish([(job, Outcome.succeeded()) for job in running])
                )
                for _ in range(1000):
                    if backend._writes._waiting:
                        break
                    await asyncio.sleep(0)
            finally:
                # And the lock is let go
                fcntl.flock(lock, fcntl.LOCK_UN)
                os.close(lock)
            claimed = await asyncio.wait_for(claiming, 10)
            written = await asyncio.wait_for(finishing, 10)
            states = [(await backend.get(job.id)).state for job in running + claimed]
            return len(claimed), written, statements.count("BEGIN IMMEDIATE"), states
        finally:
            await backend.close()

    claimed, written, transactions, states = asyncio.run(scenario())

    # Then the claim's transaction wrote the outcomes too: one transaction for both
    assert claimed == 2
    assert written == [True, True]
    assert transactions == 1
    assert states == [State.SUCCEEDED] * 2 + [State.RUNNING] * 2


def test_a_write_whose_caller_is_cancelled_while_it_waits_is_not_carried(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cancelled.db"

    async def scenario() -> tuple[int, bool]:
        backend = SQLiteBackend(f"sqlite:///{path}")
        await backend.open()
        try:
            await backend.enqueue([make_job()])
            assert backend._conn is not None
            probed = threading.Event()
            backend._conn.set_trace_callback(
                lambda statement: probed.set() if "EXISTS" in statement else None
            )
            # Given a claim waiting for the write lock, held by another process
            lock = os.open(f"{path}-lock", os.O_RDWR)
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                claiming = asyncio.ensure_future(backend.claim(["default"], "w", 1, 60.0))
                assert await asyncio.to_thread(probed.wait, 10)
                # And a pause of the queue waiting behind it
                pausing = asyncio.ensure_future(backend.pause_queue("default"))
                for _ in range(1000):
                    if backend._writes._waiting:
                        break
                    await asyncio.sleep(0)
                # When the pause's caller gives up before the lock is free
                pausing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pausing
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
                os.close(lock)
            claimed = await asyncio.wait_for(claiming, 10)
            queues = await backend.list_queues()
            return len(claimed), queues[0].paused
        finally:
            await backend.close()

    claimed, paused = asyncio.run(scenario())

    # Then the claim's transaction did not carry the pause
    assert claimed == 1
    assert paused is False
