"""A second stop signal does not wait for a store that does not answer: a worker whose
claim waits on a lock held elsewhere stops at once, as a real process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from conveyor.backends.postgres import PostgresBackend
from conveyor.worker.watchdog import STOP_WATCHDOG_S
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


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_an_orphaned_worker_whose_stop_waits_for_ever_ends_anyway(
    pg_url: str, tmp_path: Path
) -> None:
    # Given supervised worker processes whose claims wait on a lock held elsewhere
    jobs = f'"{PostgresBackend(pg_url).schema}".jobs'
    log = tmp_path / "worker.log"
    argv = [sys.executable, "-m", "conveyor", "worker", "--url", pg_url, "--interval", "0.1"]
    with open(log, "wb") as err:
        supervisor = subprocess.Popen(
            [*argv, "--processes", "2", "--shutdown-timeout", "0", "-v"], stderr=err
        )
    locker = psycopg.connect(libpq_url(pg_url))
    children: list[int] = []
    try:
        locker.execute(f"LOCK TABLE {jobs} IN ACCESS EXCLUSIVE MODE")
        deadline = time.monotonic() + 30
        while len(children) < 2:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
            children = [
                int(pid) for pid in re.findall(r"started worker process (\d+)", log.read_text())
            ]
        with psycopg.connect(libpq_url(pg_url), autocommit=True) as watcher:
            while (
                watcher.execute(
                    "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = %s::regclass",
                    (jobs,),
                ).fetchone()[0]
                < 2
            ):  # type: ignore[index]
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)

        # When its supervisor is killed (no one is left to send a second signal): the
        # worker processes see it and stop, and their stops wait on their claims
        supervisor.kill()
        supervisor.wait()

        # Then each process ends by itself, the lock still held, once the watchdog's
        # time has passed, and the log says where they waited (the claim)
        deadline = time.monotonic() + STOP_WATCHDOG_S + 30
        while any(_alive(child) for child in children):
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        text = log.read_text()
        assert "is gone: stopping" in text
        assert text.count("not stopped 30s after its stop began: exiting now") == 2, text
        assert "in _claim" in text, text
    finally:
        locker.close()
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
        for child in children:
            if _alive(child):
                os.kill(child, signal.SIGKILL)
