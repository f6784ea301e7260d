"""What the outage tests of every store read off a worker env (tests/worker/conftest.py):
runs, jobs, figures, log lines; and how they stop a worker."""

from __future__ import annotations

import signal
import subprocess
from collections import Counter

from conveyor import State
from conveyor.handle import JobHandle
from conveyor.job import Job
from tests.worker.conftest import WorkerEnv


def runs(env: WorkerEnv) -> Counter[str]:
    """How many times each job (by its argument ``i``) started running."""
    return Counter(env.lines("runs"))


def jobs_of(handles: list[JobHandle]) -> list[Job]:
    return [h.refresh().job for h in handles]


def all_succeeded(handles: list[JobHandle]) -> bool:
    return all(h.refresh().state is State.SUCCEEDED for h in handles)


def figures(env: WorkerEnv) -> dict[str, int]:
    """Jobs per state, and the processed / failed counters."""

    async def stats() -> dict[str, int]:
        found = await (await env.app.backend()).stats()
        return {**found.counts, "processed": found.processed, "failed": found.failed}

    return env.app.portal_call(stats())


def recover_expired(env: WorkerEnv) -> list[Job]:
    """One round of lease recovery, as any worker runs it."""

    async def recover() -> list[Job]:
        return await (await env.app.backend()).recover_expired()

    return env.app.portal_call(recover())


def log_lines(env: WorkerEnv, *words: str) -> list[str]:
    return [line for line in env.logs().splitlines() if all(w in line for w in words)]


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
