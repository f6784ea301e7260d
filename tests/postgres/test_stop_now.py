"""A second stop signal does not wait for a store that does not answer: a worker whose
claim waits on a lock held elsewhere stops at once, as a real process."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from conveyor.backends.postgres import PostgresBackend
from tests.pg import libpq_url


def test_a_second_signal_stops_a_worker_whose_claim_waits_on_a_lock(
    pg_url: str, tmp_path: Path
) -> None:
    # Given a running worker, and its jobs table locked by another transaction, so
    # that its next claim waits (PostgreSQL lets it wait for as long as the lock lasts)
    jobs = f'"{PostgresBackend(pg_url).schema}".jobs'
    log = tmp_path / "worker.log"
    with open(log, "wb") as err:
        worker = subprocess.Popen(
            [sys.executable, "-m", "conveyor", "worker", "--url", pg_url, "--interval", "0.1"],
            stderr=err,
        )
    locker = psycopg.connect(libpq_url(pg_url))
    try:
        locker.execute(f"LOCK TABLE {jobs} IN ACCESS EXCLUSIVE MODE")
        with psycopg.connect(libpq_url(pg_url), autocommit=True) as watcher:
            deadline = time.monotonic() + 30
            while not watcher.execute(
                "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = %s::regclass",
                (jobs,),
            ).fetchone()[0]:  # type: ignore[index]
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)

        # When it is told to stop, twice
        worker.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        worker.send_signal(signal.SIGTERM)

        # Then it stops while the lock is still held (it used to wait until the lock
        # went, however long that was)
        assert worker.wait(30) == 0, log.read_text()
    finally:
        locker.close()
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert "second stop request" in log.read_text()
