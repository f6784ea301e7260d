"""The SQLite hot paths use indexes that match them, so their cost does not grow with the
number of waiting or finished jobs (the Delayed::Job 10k+ problem)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from conveyor.backends.sqlite import _FINISH_ROWS, Q, SQLiteBackend, _rows_at_once


@pytest.fixture
def conn(tmp_path: Path) -> sqlite3.Connection:
    backend = SQLiteBackend(f"sqlite:///{tmp_path}/plans.db")
    asyncio.run(backend.open())
    asyncio.run(backend.close())
    return sqlite3.connect(tmp_path / "plans.db")


def plan(conn: sqlite3.Connection, sql: str, params: object) -> str:
    rows = conn.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
    return "\n".join(row[-1] for row in rows)


@pytest.mark.parametrize(
    ("query", "params", "index"),
    [
        (
            "claim_queue",
            {"worker": "w", "lease_until": 1.0, "now": 1.0, "queue": "q", "limit": 10},
            "jobs_ready",
        ),
        ("promote_due", {"now": 1.0}, "jobs_due"),
        ("ready_probe", {"queues": '["q"]', "now": 1.0}, "jobs_ready"),
        ("ready_probe", {"queues": '["q"]', "now": 1.0}, "jobs_due"),
        ("expired_leases", (1.0,), "jobs_leases"),
        ("active_by_unique_key", ("k",), "jobs_unique_key"),
        ("newest_by_unique_key", ("k",), "jobs_by_unique_key"),
        ("prune_finished", {"states": '["succeeded"]', "before": 1.0, "cut": "0"}, "jobs_listing"),
        (
            "prune_finished_above",
            {"states": '["succeeded"]', "before": 1.0, "above": "z"},
            "jobs_listing",
        ),
    ],
)
def test_hot_queries_search_their_index(
    conn: sqlite3.Connection, query: str, params: object, index: str
) -> None:
    text = plan(conn, Q[query], params)

    assert index in text
    assert "SCAN jobs" not in text.replace(f"SCAN jobs USING INDEX {index}", "")


def test_claim_reads_the_ready_index_in_order_without_sorting(conn: sqlite3.Connection) -> None:
    text = plan(
        conn,
        Q["claim_queue"],
        {"worker": "w", "lease_until": 1.0, "now": 1.0, "queue": "q", "limit": 10},
    )

    assert "SEARCH jobs USING INDEX jobs_ready (queue=?)" in text
    assert "TEMP B-TREE" not in text


def test_the_newest_job_of_a_unique_key_is_the_last_entry_of_its_index(
    conn: sqlite3.Connection,
) -> None:
    # find_unique: one search of jobs_by_unique_key for the key, read from its newest
    # end (the index is in id order within a key), whatever the jobs' states
    text = plan(conn, Q["newest_by_unique_key"], ("k",))

    assert "SEARCH jobs USING INDEX jobs_by_unique_key (unique_key=?)" in text
    assert "TEMP B-TREE" not in text


def test_a_batch_of_outcomes_finds_each_job_by_its_id(conn: sqlite3.Connection) -> None:
    # Given the finish statement for the largest batch (rows of NULLs stand for runs)
    statement = _rows_at_once(Q["finish_rows"], _FINISH_ROWS)

    # When it is planned
    text = plan(conn, statement, [None] * (11 * _FINISH_ROWS + 1))

    # Then each run's job is found by its primary key: no scan of the jobs table
    assert "SEARCH jobs USING PRIMARY KEY (id=?)" in text
    assert "SCAN jobs" not in text
