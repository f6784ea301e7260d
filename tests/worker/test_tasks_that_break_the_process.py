"""Task code that breaks what the worker process shares with it (its standard streams,
threads, event loop, working directory, exit code, the children of process tasks), in
real worker processes: the worker keeps running jobs, stops when asked, and no job runs
twice at once (docs/guide.md, Execution middleware and the exception reporter)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from types import ModuleType

import pytest

from conveyor import State
from tests.worker.conftest import WorkerEnv
from tests.worker.outage import all_succeeded, stop

EXTRA_TASKS = """
import asyncio, os, sys, threading, time
from e2e_tasks import app, _mark


@app.task(name="closes_std_streams")
def closes_std_streams():
    sys.stdout.close()
    sys.stderr.close()
    return "closed"


@app.task(name="exits_2", max_attempts=1)
def exits_2():
    os._exit(2)  # what a C library's exit(2) does too


@app.task(name="child_sleeps", executor="process", max_attempts=1)
def child_sleeps(seconds):
    _mark("started", os.getpid())
    time.sleep(seconds)
    return seconds


async def _heartbeat():
    # Swallows its cancellation: it ends only with its process.
    while True:
        try:
            await asyncio.sleep(1)
        except asyncio.CancelledError:
            pass


_background = set()


@app.task(name="leaves_an_asyncio_task")
async def leaves_an_asyncio_task():
    _background.add(asyncio.get_running_loop().create_task(_heartbeat(), name="heartbeat"))
    return "left"


@app.task(name="changes_directory")
def changes_directory(path):
    os.chdir(path)
    return os.getcwd()


@app.task(name="child_pid", executor="process", max_attempts=1)
def child_pid():
    return os.getpid()


@app.task(name="child_marks", executor="process")
def child_marks(seconds):
    _mark("started", os.getpid())
    time.sleep(seconds)
    _mark("finished", os.getpid())
    return seconds


@app.task(name="starts_a_thread")
def starts_a_thread():
    # Not a daemon: the interpreter waits for it at exit, and it never ends.
    threading.Thread(target=time.sleep, args=(3600,), name="left-behind").start()
    return "started"
"""


def _exit_code(proc: subprocess.Popen[bytes], env: WorkerEnv) -> int:
    """The worker's exit code once it has stopped; fails if it has not within 30 s."""
    try:
        return proc.wait(30)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the worker did not stop\n{env.logs()}") from None


def _extra_tasks(env: WorkerEnv) -> ModuleType:
    """The tasks above, registered on the env's app here and in its workers (``-i``)."""
    (env.dir / "extra_tasks.py").write_text(textwrap.dedent(EXTRA_TASKS))
    sys.modules.pop("extra_tasks", None)
    import extra_tasks  # type: ignore[import-not-found]

    return extra_tasks  # type: ignore[no-any-return]


# What a task does to its own process is the same on every store: one is enough.
@pytest.mark.parametrize("worker_env", ["sqlite"], indirect=True)
def test_a_task_that_closes_stdout_and_stderr_stops_no_worker(worker_env: WorkerEnv) -> None:
    # Given a job whose task closes sys.stdout and sys.stderr, and plain jobs after it
    extra = _extra_tasks(worker_env)
    closer = extra.closes_std_streams.enqueue()

    # When one worker runs it, one job at a time
    proc = worker_env.start_worker("-i", "extra_tasks.py", "-c", "1", "--interval", "0.2")
    worker_env.wait_until("the closing job finished", lambda: closer.refresh().state.is_final, 30)
    plain = worker_env.tasks.record.enqueue_many([[i] for i in range(5)])
    worker_env.wait_until("the plain jobs succeeded", lambda: all_succeeded(plain), 30)

    # Then the closing job succeeded, the worker still runs, its log still takes lines
    # (one per job after the streams were closed), and it stops cleanly when asked
    assert closer.job.state is State.SUCCEEDED and closer.job.result == "closed"
    assert proc.poll() is None
    stop(proc)
    logs = worker_env.logs()
    assert all(f"succeeded {h.id}" in logs for h in plain)


@pytest.mark.parametrize("worker_env", ["sqlite"], indirect=True)
def test_a_process_recycled_after_a_task_closed_its_streams_is_not_taken_for_a_crash(
    worker_env: WorkerEnv,
) -> None:
    # Given a job whose task closes sys.stdout and sys.stderr
    extra = _extra_tasks(worker_env)
    closer = extra.closes_std_streams.enqueue()

    # When a supervised worker process runs it and is recycled after it (--max-jobs 1)
    proc = worker_env.start_worker("-i", "extra_tasks.py", "--max-jobs", "1", "-c", "1")
    worker_env.wait_until("the closing job finished", lambda: closer.refresh().state.is_final, 30)
    worker_env.wait_until("the recycle", lambda: "recycled; starting another" in worker_env.logs())

    # Then the job succeeded, and its process ended as a recycle (exit 0), not a crash
    assert closer.job.state is State.SUCCEEDED
    assert "died" not in worker_env.logs()
    stop(proc)


@pytest.mark.parametrize("worker_env", ["sqlite"], indirect=True)
def test_a_thread_a_task_left_running_does_not_keep_the_worker_from_stopping(
    worker_env: WorkerEnv,
) -> None:
    # Given a worker (one process, no supervisor) that ran a job whose task started a
    # thread that never ends, and is not a daemon
    extra = _extra_tasks(worker_env)
    starter = extra.starts_a_thread.enqueue()
    proc = worker_env.start_worker("-i", "extra_tasks.py", "--shutdown-timeout", "1")
    worker_env.wait_until("the job succeeded", lambda: all_succeeded([starter]), 30)

    # When it is told to stop
    proc.send_signal(signal.SIGTERM)

    # Then it ends (it had waited for the thread for ever), saying what it left behind
    assert _exit_code(proc, worker_env) == 0, worker_env.logs()
    assert "left-behind" in worker_env.logs()


@pytest.mark.parametrize("worker_env", ["sqlite"], indirect=True)
def test_a_task_that_ends_its_process_with_code_2_is_a_crash_not_a_bad_config(
    worker_env: WorkerEnv,
) -> None:
    # Given a job whose task ends its process with exit code 2 (the code a worker
    # process exits with when it finds a configuration error)
    extra = _extra_tasks(worker_env)
    exits = extra.exits_2.enqueue()

    # When a supervised worker runs it
    proc = worker_env.start_worker(
        "-i", "extra_tasks.py", "--processes", "2", "--lease", "1", "--interval", "0.2"
    )

    # Then the supervisor restarts the process, as after any crash (it had stopped
    # every process and exited 2, and nothing ran any job after), the job is
    # recovered from its lease and poisoned (its one attempt spent), and the new
    # process runs the jobs that come after
    worker_env.wait_until("the job poisoned", lambda: exits.refresh().state is State.POISONED)
    plain = worker_env.tasks.record.enqueue_many([[i] for i in range(3)])
    worker_env.wait_until("the plain jobs succeeded", lambda: all_succeeded(plain), 30)
    assert proc.poll() is None, worker_env.logs()
    assert "configuration error" not in worker_env.logs()
    stop(proc)


@pytest.mark.parametrize("worker_env", ["sqlite"], indirect=True)
def test_one_stop_sent_to_the_whole_group_lets_a_process_task_finish(
    worker_env: WorkerEnv,
) -> None:
    # Given a worker running a process task (executor="process") of 2 seconds
    extra = _extra_tasks(worker_env)
    handle = extra.child_sleeps.enqueue(2.0)
    proc = worker_env.start_worker("-i", "extra_tasks.py", "--shutdown-timeout", "30")
    worker_env.wait_until("the child started", lambda: len(worker_env.lines("started")) == 1)

    # When one SIGTERM reaches every process of its group, the task's child included
    # (systemd's default KillMode=control-group, pkill, Ctrl-C's SIGINT in a terminal)
    os.killpg(proc.pid, signal.SIGTERM)

    # Then that is the graceful stop for the child too: the job finishes within the
    # grace period and succeeds (the child died of the signal, and the job had spent
    # its attempt on "child process exited with -15")
    assert proc.wait(30) == 0, worker_env.logs()
    job = handle.refresh().job
    assert (job.state, job.result, job.errors) == (State.SUCCEEDED, 2.0, []), worker_env.logs()


@pytest.mark.parametrize("worker_env", ["sqlite"], indirect=True)
@pytest.mark.parametrize("processes", [[], ["--processes", "2"]], ids=["alone", "supervised"])
def test_an_asyncio_task_a_task_left_running_does_not_keep_the_worker_from_stopping(
    worker_env: WorkerEnv, processes: list[str]
) -> None:
    # Given a worker that ran a job whose async task left an asyncio task on the worker's
    # loop, one that swallows its cancellation
    extra = _extra_tasks(worker_env)
    leaver = extra.leaves_an_asyncio_task.enqueue()
    proc = worker_env.start_worker("-i", "extra_tasks.py", "--shutdown-timeout", "1", *processes)
    worker_env.wait_until("the job succeeded", lambda: all_succeeded([leaver]), 30)

    # When it is told to stop
    proc.send_signal(signal.SIGTERM)

    # Then it ends (its loop had waited for that task for ever, when it closed), saying
    # what it left behind
    assert _exit_code(proc, worker_env) == 0, worker_env.logs()
    assert "heartbeat" in worker_env.logs()


@pytest.mark.parametrize("worker_env", ["sqlite"], indirect=True)
def test_a_task_that_changes_the_working_directory_leaves_the_worker_its_files(
    worker_env: WorkerEnv,
) -> None:
    # Given a worker started with paths relative to its working directory (its tasks
    # file, its SQLite file), one job at a time
    extra = _extra_tasks(worker_env)
    elsewhere = worker_env.dir / "elsewhere"
    elsewhere.mkdir()
    proc = worker_env.start_worker(
        "-i", "extra_tasks.py", "-c", "1", "--interval", "0.2", url="sqlite:///jobs.db"
    )

    # When a task changes the process's working directory, and a process task runs after
    mover = extra.changes_directory.enqueue(str(elsewhere))
    worker_env.wait_until("the move", lambda: all_succeeded([mover]), 30)
    child = extra.child_pid.enqueue()
    worker_env.wait_until("the process task finished", lambda: child.refresh().state.is_final)

    # Then the process task's child found the tasks file as the worker did (it had
    # looked for it in the new directory: "no such file"), and nothing made a
    # database file there
    assert child.job.state is State.SUCCEEDED, child.job.errors
    assert not (elsewhere / "jobs.db").exists()
    stop(proc)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("worker_env", ["sqlite"], indirect=True)
def test_a_process_tasks_child_does_not_outlive_a_killed_worker(worker_env: WorkerEnv) -> None:
    # Given a worker running a process task (executor="process") of 3 seconds
    extra = _extra_tasks(worker_env)
    extra.child_marks.enqueue(3.0)
    proc = worker_env.start_worker("-i", "extra_tasks.py")
    worker_env.wait_until("the child started", lambda: len(worker_env.lines("started")) == 1)
    (child,) = map(int, worker_env.lines("started"))

    # When the worker process is killed (kill -9, the kernel's out-of-memory killer),
    # its child not
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    # Then the child ends without finishing its task: the job runs again wherever it is
    # claimed once its lease expires, and this run must not go on beside that one (it
    # had run to its end, the task's work done twice)
    worker_env.wait_until("the child gone", lambda: not _alive(child), 30)
    assert worker_env.lines("finished") == []
