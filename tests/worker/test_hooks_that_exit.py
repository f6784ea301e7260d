"""Hooks and an exception reporter that raise KeyboardInterrupt or SystemExit, in a
real worker process: logged, and nothing else changes (docs/guide.md, Hooks)."""

from __future__ import annotations

from collections import Counter

import pytest

from conveyor import State
from tests.worker.conftest import WorkerEnv
from tests.worker.outage import all_succeeded, jobs_of, stop


# What the executor does with a hook's exception is the same on every store: one is enough.
@pytest.mark.parametrize("worker_env", ["sqlite"], indirect=True)
def test_hooks_and_a_reporter_that_exit_change_nothing_and_stop_no_worker(
    worker_env: WorkerEnv,
) -> None:
    # Given tasks whose success, after, error and failure hooks raise KeyboardInterrupt
    # or SystemExit, an app whose exception reporter raises SystemExit, and plain jobs
    tasks = worker_env.tasks
    worker_env.env["REPORTER_EXITS"] = "1"
    succeeds = tasks.success_interrupts.enqueue(0)
    fails = tasks.error_interrupts.enqueue(1)
    plain = tasks.record.enqueue_many([[i] for i in range(2, 12)])

    # When one worker runs them all
    proc = worker_env.start_worker("--interval", "0.2", "-c", "4")
    worker_env.wait_until(
        "every job finished",
        lambda: all_succeeded([succeeds, *plain]) and fails.refresh().state is State.POISONED,
        30,
    )

    # Then the worker still runs, and stops cleanly when asked
    assert proc.poll() is None
    stop(proc)
    # And the hooks changed no outcome: the job whose hooks exit succeeded at its
    # first attempt, the failing one spent both attempts on its own error
    assert (succeeds.job.attempts, succeeds.job.result) == (1, 0)
    assert fails.job.attempts == 2
    assert [e["message"] for e in fails.job.errors] == ["ValueError: task boom"] * 2
    # And every job ran as often as its attempts: none was given back and run again
    runs = Counter(worker_env.lines("runs"))
    for job in jobs_of([succeeds, fails, *plain]):
        assert runs[str(job.steps[0].args[0])] == job.attempts
    # And each hook's and the reporter's failure is in the log
    logs = worker_env.logs()
    for event in ("success", "after", "error", "failure"):
        assert f"{event} hook of task" in logs
    assert "exception reporter failed" in logs
