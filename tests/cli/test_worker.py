"""`conveyor worker` and `conveyor serve` as real processes on a real SQLite file."""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

import httpx
import pytest

from conveyor.job import State
from tests.api.server import free_port

from .conftest import Cli, Processes, Store

pytestmark = pytest.mark.slow


def alive(pid: int) -> bool:
    """Running (a zombie, whose command line is empty, is not)."""
    try:
        return bool(Path(f"/proc/{pid}/cmdline").read_bytes())
    except (FileNotFoundError, ProcessLookupError):
        return False


def states(store: Store) -> list[State]:
    return [j.state for j in store.jobs()]


def test_a_worker_runs_an_enqueued_job_and_stops_cleanly_on_sigterm(
    cli: Cli, store: Store, processes: Processes
) -> None:
    # Given a worker on the store
    worker = processes.start("worker", "-i", str(cli.tasks_file), "--interval", "0.2")
    processes.wait_until("the worker registered", lambda: len(store.workers()) == 1)
    assert store.workers()[0].pid == worker.pid

    # When a job is enqueued through the CLI
    job_id = cli.enqueue("add", "[2, 3]")

    # Then the worker runs it
    processes.wait_until(
        "the job succeeded", lambda: cli.json("jobs", "show", job_id)["state"] == "succeeded"
    )
    assert store.job(job_id).result == 5

    # And SIGTERM stops it with exit code 0, unregistered
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(20) == 0, processes.logs()
    assert store.workers() == []

    # By default the log has one line at start and one at stop: time, pid, level
    lines = processes.stderr(worker).splitlines()
    assert len(lines) == 2, lines
    head = rf"\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{{3}} {worker.pid} INFO +conveyor\.cli: "
    assert re.match(rf"{head}worker {worker.pid} started", lines[0])
    assert re.match(rf"{head}worker {worker.pid} stopped", lines[1])


def test_two_processes_share_the_work_and_a_killed_one_is_replaced(
    cli: Cli, store: Store, processes: Processes
) -> None:
    # Given a supervisor with two worker processes (and Resque's VERBOSE=1)
    supervisor = processes.start(
        "worker",
        "-i",
        str(cli.tasks_file),
        "--processes",
        "2",
        "-c",
        "2",
        "--interval",
        "0.2",
        VERBOSE="1",
    )
    processes.wait_until("two workers", lambda: len(store.workers()) == 2)
    children = {w.pid for w in store.workers()}
    processes.extra_pids |= children
    assert supervisor.pid not in children

    # When jobs arrive, both processes run some
    job_ids = [cli.enqueue("pid", "[0.3]") for _ in range(8)]
    processes.wait_until("8 jobs succeeded", lambda: states(store).count(State.SUCCEEDED) == 8)
    assert {store.job(j).result for j in job_ids} == children
    assert "conveyor.worker: succeeded" in processes.stderr(supervisor)  # VERBOSE=1: -v

    # When one child is killed with SIGKILL, the supervisor starts another
    killed = min(children)
    os.kill(killed, signal.SIGKILL)
    processes.wait_until(
        "a replacement worker", lambda: len({w.pid for w in store.workers()} - children) == 1
    )
    replacement = ({w.pid for w in store.workers()} - children).pop()
    processes.extra_pids.add(replacement)
    assert supervisor.poll() is None

    # And the replacement works too
    job_id = cli.enqueue("pid", "[0]")
    processes.wait_until("the job succeeded", lambda: store.job(job_id).state is State.SUCCEEDED)

    # When the supervisor gets SIGTERM, every child stops and unregisters, exit code 0
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(20) == 0, processes.logs()
    for pid in children - {killed} | {replacement}:
        assert not alive(pid)
    assert {w.pid for w in store.workers()} == {killed}  # SIGKILL left no chance to unregister


def test_children_stop_gracefully_when_the_supervisor_vanishes(
    cli: Cli, store: Store, processes: Processes
) -> None:
    # Given a supervisor with two worker processes
    supervisor = processes.start(
        "worker", "-i", str(cli.tasks_file), "--processes", "2", "--interval", "0.2"
    )
    processes.wait_until("two workers", lambda: len(store.workers()) == 2)
    children = {w.pid for w in store.workers()}
    processes.extra_pids |= children

    # When the supervisor is killed with SIGKILL (it cannot pass anything on)
    supervisor.kill()
    supervisor.wait()

    # Then the children notice, stop gracefully and unregister
    processes.wait_until("the children unregistered", lambda: store.workers() == [])
    processes.wait_until(
        "the children exited",
        lambda: not any(alive(pid) for pid in children),
    )


def test_max_jobs_replaces_each_process_after_n_jobs(
    cli: Cli, store: Store, processes: Processes
) -> None:
    # Given a single worker process recycled after every 2 jobs
    supervisor = processes.start(
        "worker", "-i", str(cli.tasks_file), "--max-jobs", "2", "-c", "1", "--interval", "0.2"
    )
    job_ids = [cli.enqueue("pid") for _ in range(5)]

    # Then all 5 run, in at least 3 processes, none of them the supervisor
    processes.wait_until("5 jobs succeeded", lambda: states(store).count(State.SUCCEEDED) == 5)
    pids = {store.job(j).result for j in job_ids}
    assert len(pids) >= 3
    assert supervisor.pid not in pids
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(20) == 0, processes.logs()


@pytest.mark.parametrize("worker_processes", [1, 2])
def test_serve_with_the_demo_seeds_jobs_runs_them_and_serves_the_api(
    tmp_path: Path, processes: Processes, worker_processes: int
) -> None:
    # Given no URL anywhere: serve uses .conveyor/conveyor.db in the working directory
    port = free_port()
    serve = processes.start(
        "serve",
        "-i",
        "conveyor.demo",
        "--shutdown-timeout",
        "0",
        "--port",
        str(port),
        "--processes",
        str(worker_processes),
        CONVEYOR_URL="",
        CONVEYOR_API_KEYS="",
        CONVEYOR_ADMIN_KEYS="",
    )
    store = Store(f"sqlite:///{tmp_path}/.conveyor/conveyor.db")

    # Then the demo's seed() enqueued jobs and the workers run them, on both demo queues
    def greeted() -> bool:
        if not (tmp_path / ".conveyor" / "conveyor.db").exists():
            return False
        done = [j for j in store.jobs() if j.state is State.SUCCEEDED]
        return sum(j.task == "conveyor.demo:greet" for j in done) >= 3 and any(
            j.queue == "images" for j in done
        )

    processes.wait_until("the demo greetings", greeted)
    assert len(store.jobs()) >= 9

    # And the API answers with the development key it printed and kept
    key = (tmp_path / ".conveyor" / "api-key").read_text().strip()
    base = f"http://127.0.0.1:{port}"
    processes.wait_until("the API", lambda: _answers(f"{base}/healthz"))
    listed = httpx.get(f"{base}/v1/jobs", headers={"Authorization": f"Bearer {key}"})
    assert len(listed.json()["jobs"]) >= 9
    assert httpx.get(f"{base}/v1/jobs").status_code == 401

    serve.send_signal(signal.SIGTERM)
    assert serve.wait(20) == 0, processes.logs()
    out = processes.stdout(serve)
    assert f"{worker_processes} worker process(es) running queues default,images" in out
    assert "sqlite:///.conveyor/conveyor.db" in out
    assert f"Development admin key: {key}" in out


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["-c", "0"], "concurrency"),
        (["--fetch", "0"], "fetch"),
        (["--interval", "0"], "interval"),
        (["--lease", "-1"], "lease"),
        (["--lease", "nan"], "lease"),  # (it started, and its lease keeper died)
        (["--lease", "inf"], "lease"),
        # milliseconds for seconds: the job ran again at every claim until poisoned
        (["--lease", "0.001"], "lease"),
        (["--interval", "inf"], "interval"),
        (["--interval", "nan"], "interval"),
        (["--shutdown-timeout", "nan"], "shutdown_timeout"),
        (["--max-jobs", "0"], "max_jobs"),
        (["--shutdown-timeout", "-1"], "shutdown_timeout"),
        (["--processes", "0"], "processes"),
        # extra zeros: refused before anything starts (a worker's registration crashed
        # on an int past 64 bits; a supervisor forked as many processes as it was told)
        (["-c", "100000000000000000000"], "concurrency"),
        (["-c", "100001"], "concurrency"),
        (["--fetch", "2147483648"], "fetch"),
        (["--prefetch", "100001"], "prefetch"),
        (["--processes", "1001"], "processes"),
        (["-q", "two words"], "queues"),
        (["-q", ""], "queues"),  # (it worked the default queue)
        (["-q", " , "], "queues"),
        (["--url", "nosuch://x"], "url"),
        (["--url", "sqlite:///{dir}/missing/jobs.db", "--processes", "2"], "url"),
        (["-i", "{dir}/missing.py"], "include"),
    ],
)
def test_bad_worker_options_exit_2_before_anything_starts(
    cli: Cli, store: Store, args: list[str], field: str
) -> None:
    # (in this process: nothing may start, so nothing is left to stop)
    args = [a.format(dir=cli.dir) for a in args]
    result = cli("worker", "-i", str(cli.tasks_file), *args)
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith(f"error: {field}: "), result.stderr
    assert store.workers() == []


def test_a_sync_job_given_back_at_shutdown_does_not_run_on_in_the_process(
    cli: Cli, store: Store, processes: Processes
) -> None:
    # Given a worker (one process, no supervisor) running a sync job of 60 s
    job_id = cli.enqueue("pid", "[60]")
    worker = processes.start(
        "worker", "-i", str(cli.tasks_file), "--shutdown-timeout", "0.5", "--interval", "0.2"
    )
    processes.wait_until("the job running", lambda: store.job(job_id).state is State.RUNNING)

    # When it is told to stop, and the job outlives the shutdown timeout
    worker.send_signal(signal.SIGTERM)

    # Then the job is given back and the process ends, its task's thread with it (it
    # had waited for the thread, running the job on while another worker could run it)
    assert worker.wait(30) == 0, processes.logs()
    assert store.job(job_id).state is State.QUEUED
    assert "1 task thread(s) still running" in processes.stderr(worker)


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("x = 1\nraise RuntimeError('no config')\n", "RuntimeError: no config (broken.py, line 2)"),
        ("def f(:\n    pass\n", "SyntaxError: invalid syntax (broken.py, line 1)"),
        # A module that ends the program as it is imported (a script's guard, say): the
        # worker had exited 0 without a word, and nothing restarts a worker that did so
        ("import sys\nsys.exit(0)\n", "SystemExit: 0 (broken.py, line 2)"),
        ("import sys\nsys.exit()\n", "SystemExit: None (broken.py, line 2)"),
    ],
)
def test_an_include_that_fails_to_import_is_one_line_and_exit_2(
    cli: Cli, store: Store, source: str, error: str
) -> None:
    # Given a tasks file that raises as it is imported
    (cli.dir / "broken.py").write_text(source)
    # When a worker includes it, as a file or as a module (found in the folder the
    # file's include put on sys.path)
    for include in (str(cli.dir / "broken.py"), "broken"):
        result = cli("worker", "-i", include)
        # Then one line says what and where, not a traceback
        assert result.exit_code == 2, result.stderr
        assert result.stderr == f"error: include: importing {include!r} failed: {error}\n"
    assert store.workers() == []


def test_a_worker_without_includes_runs_tasks_of_its_working_directory(
    processes: Processes, store: Store, tmp_path: Path
) -> None:
    # Given a module in the working directory, and a job naming a function of it by its
    # import path (stored as `conveyor enqueue` run there stores it)
    (tmp_path / "plaintasks.py").write_text("def double(x):\n    return 2 * x\n")
    enqueue = processes.start("enqueue", "plaintasks:double", "21")
    assert enqueue.wait(30) == 0, processes.logs()
    job_id = processes.stdout(enqueue).strip()

    # When the `conveyor` command (not `python -m conveyor`, which puts the working
    # directory on sys.path by itself) runs a worker there, without -i
    conveyor = str(Path(sys.executable).parent / "conveyor")
    worker = processes.start_command([conveyor, "worker"])

    # Then it imports the module and runs the job
    processes.wait_until("the job", lambda: store.job(job_id).state is State.SUCCEEDED)
    assert store.job(job_id).result == 42
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(20) == 0, processes.logs()


def test_serve_with_bad_options_seeds_nothing(cli: Cli, store: Store) -> None:
    (cli.dir / "seeded.py").write_text(
        "import clitasks\n\ndef seed():\n    clitasks.add.enqueue(1, 2)\n"
    )
    result = cli("serve", "-i", str(cli.tasks_file), "-i", str(cli.dir / "seeded.py"), "-c", "0")
    assert result.exit_code == 2
    assert store.count() == 0


def test_registered_only_and_prefetch_reach_the_worker(
    cli: Cli, store: Store, processes: Processes
) -> None:
    # Given a strict worker that claims ahead
    worker = processes.start(
        "worker",
        "-i",
        str(cli.tasks_file),
        "--interval",
        "0.2",
        "--registered-only",
        "--prefetch",
        "5",
    )
    processes.wait_until("the worker registered", lambda: len(store.workers()) == 1)

    # When a registered task and an unregistered import path are enqueued
    known = cli.enqueue("add", "[2, 3]")
    stranger = cli.enqueue("os:getpid", "[]", "--max-attempts", "1")

    # Then the registered one runs and the import path is refused without being called
    processes.wait_until(
        "both ended", lambda: {j.state for j in store.jobs()} <= {State.SUCCEEDED, State.POISONED}
    )
    assert store.job(known).result == 5
    refused = store.job(stranger)
    assert refused.state is State.POISONED
    assert "not registered" in (refused.last_error or "")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(20) == 0, processes.logs()
