"""What starting the ``conveyor`` command imports: ``conveyor worker`` starts often (a
supervisor's restarts, deploys, the benchmark's start-up), so the modules of commands
that print tables keep Rich out of the import until they print."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def test_importing_the_cli_imports_no_rich() -> None:
    # Given a fresh interpreter
    # When it imports the command and every command module
    code = (
        "import json, sys\n"
        "import conveyor.cli\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'rich')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    # Then no module of Rich is loaded
    assert json.loads(done.stdout) == []


def test_a_table_command_still_prints_with_rich(tmp_path: Path) -> None:
    # Given a store with one queue
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    run = [sys.executable, "-m", "conveyor"]
    subprocess.run([*run, "queues", "create", "emails", "--url", url], check=True, timeout=60)
    # When the queues are listed for humans, into a pipe (no COLUMNS: GNU readline, once
    # a module of the test process imports it, exports the terminal's to the children)
    environment = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    done = subprocess.run(
        [*run, "queues", "list", "--url", url],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
    )
    # Then the table names the queue and its status
    assert done.returncode == 0, done.stderr
    assert "emails" in done.stdout and "active" in done.stdout


#: The top-level modules of the `api` and `http` extras (pyproject.toml), which a worker
#: of task jobs installed as `pip install conveyor[postgres]` does not have.
EXTRAS = [
    "fastapi",
    "starlette",
    "uvicorn",
    "jinja2",
    "prometheus_client",
    "aiohttp",
    "cryptography",
]

#: Runs `conveyor` with those modules made impossible to import.
WITHOUT_EXTRAS = f"""
import importlib.abc, sys
class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {EXTRAS!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, Missing())
from conveyor.cli import main
sys.argv[0] = "conveyor"
main()
"""


def test_a_worker_runs_task_jobs_without_the_api_and_http_extras(tmp_path: Path) -> None:
    # Given a task module, a job of it waiting, and Python without the extras' modules
    (tmp_path / "tasks.py").write_text(
        "from conveyor import Conveyor\n"
        f"app = Conveyor('sqlite:///{tmp_path / 'jobs.db'}')\n"
        "@app.task(name='add')\n"
        "def add(a, b):\n"
        "    return a + b\n"
    )
    run = [sys.executable, "-c", WITHOUT_EXTRAS]
    cwd = str(tmp_path)
    enqueued = subprocess.run(
        [*run, "enqueue", "add", "[2, 3]", "-i", "tasks", "--json"],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
    )
    assert enqueued.returncode == 0, enqueued.stderr
    job_id = json.loads(enqueued.stdout)["id"]

    # When a worker runs until that job has ended
    worker = subprocess.Popen(
        [*run, "worker", "-i", "tasks", "-c", "1", "--interval", "0.1"],
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            shown = subprocess.run(
                [*run, "jobs", "show", job_id, "-i", "tasks", "--json"],
                capture_output=True,
                text=True,
                cwd=cwd,
                timeout=60,
            )
            assert shown.returncode == 0, shown.stderr
            job = json.loads(shown.stdout)
            if job["state"] == "succeeded" or worker.poll() is not None:
                break
            assert time.monotonic() < deadline, job
            time.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=60)

    # Then the job succeeded, and the worker stopped cleanly, having missed no module
    assert (job["state"], job["result"]) == ("succeeded", 5), stderr
    assert worker.returncode == 0, stderr
    assert "ModuleNotFoundError" not in stderr
