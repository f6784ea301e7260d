"""The `conveyor` command against real SQLite files: CliRunner in-process for most
commands, real processes for the worker."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from typer.testing import CliRunner, Result

from conveyor.backends import create_backend
from conveyor.backends.base import Backend
from conveyor.cli import app as cli_app
from conveyor.job import Job, Outcome

T = TypeVar("T")

TASKS = """
import os, time
from conveyor import Conveyor, current_context

app = Conveyor(os.environ.get("CONVEYOR_URL") or "sqlite:///unused.db")


@app.task(name="add")
def add(a, b):
    return a + b


@app.task(name="mail", queue="mail", max_attempts=3)
def mail(to, subject="hello"):
    return to


@app.task(name="pid")
def pid(seconds=0.0):
    time.sleep(seconds)
    return os.getpid()


@app.task(name="boom", max_attempts=1)
def boom():
    raise RuntimeError("this task always fails")
"""


class Store:
    """Looks at (and, for set-up, drives) the real store the CLI writes to."""

    def __init__(self, url: str) -> None:
        self.url = url

    def run(self, action: Callable[[Backend], Awaitable[T]]) -> T:
        async def go() -> T:
            backend = create_backend(self.url)
            await backend.open()
            try:
                return await action(backend)
            finally:
                await backend.close()

        return asyncio.run(go())

    def jobs(self) -> list[Job]:
        return self.run(lambda b: b.list_jobs(None, None, 1000)).jobs

    def count(self) -> int:
        return sum(self.run(lambda b: b.stats()).counts.values())

    def job(self, job_id: str) -> Job:
        return self.run(lambda b: b.get(job_id))

    def workers(self) -> list[Any]:
        return self.run(lambda b: b.list_workers())

    def finish(self, queue: str, outcome: Outcome, count: int = 1) -> list[Job]:
        """What a worker does: claim ``count`` jobs of ``queue`` and record ``outcome``."""

        async def act(backend: Backend) -> list[Job]:
            jobs = await backend.claim([queue], "test-worker", count, 30)
            await backend.finish([(job, outcome) for job in jobs])
            return jobs

        return self.run(act)

    def claim(self, queue: str) -> list[Job]:
        return self.run(lambda b: b.claim([queue], "test-worker", 1, 30))


class Cli:
    """``cli("jobs", "list")``: the conveyor command in this process, on the test's store."""

    def __init__(self, tmp_path: Path, url: str) -> None:
        self.dir = tmp_path
        self.url = url
        self.tasks_file = tmp_path / "clitasks.py"
        self.tasks_file.write_text(textwrap.dedent(TASKS))
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None, **env: str) -> Result:
        environment = {"CONVEYOR_URL": self.url, "COLUMNS": "200", **env}
        return self.runner.invoke(cli_app, list(args), input=input, env=environment)

    def ok(self, *args: str, **env: str) -> Result:
        result = self(*args, **env)
        assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
        return result

    def json(self, *args: str) -> Any:
        result = self.ok(*args, "--json")
        return json.loads(result.stdout)

    def enqueue(self, *args: str) -> str:
        return self.ok("enqueue", "-i", str(self.tasks_file), *args).stdout.strip()


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/jobs.db"


@pytest.fixture
def store(url: str) -> Store:
    return Store(url)


@pytest.fixture
def cli(tmp_path: Path, url: str) -> Iterator[Cli]:
    # The includes import modules and put their folders on sys.path: undo that, so
    # that each test imports its own tasks file.
    path, modules = list(sys.path), set(sys.modules)
    try:
        yield Cli(tmp_path, url)
    finally:
        sys.path[:] = path
        for name in set(sys.modules) - modules:
            if name == "clitasks" or name.startswith("conveyor.demo"):
                del sys.modules[name]


# -- real processes ---------------------------------------------------------------------
class Processes:
    """`python -m conveyor ...` processes, logs in files, all killed at the end."""

    def __init__(self, tmp_path: Path, url: str) -> None:
        self.dir = tmp_path
        self.env = dict(os.environ, CONVEYOR_URL=url, PYTHONUNBUFFERED="1")
        self.env.pop("VERBOSE", None)
        self.env.pop("VVERBOSE", None)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.extra_pids: set[int] = set()

    def start(self, *args: str, **env: str) -> subprocess.Popen[bytes]:
        return self.start_command([sys.executable, "-m", "conveyor", *args], **env)

    def start_command(self, command: list[str], **env: str) -> subprocess.Popen[bytes]:
        n = len(self.procs)
        out_log, err_log = self.dir / f"out-{n}.log", self.dir / f"err-{n}.log"
        with open(out_log, "wb") as out, open(err_log, "wb") as err:
            proc = subprocess.Popen(
                command,
                cwd=self.dir,
                env={**self.env, **env},
                stdout=out,
                stderr=err,
            )
        self.procs.append(proc)
        return proc

    def stdout(self, proc: subprocess.Popen[bytes]) -> str:
        return (self.dir / f"out-{self.procs.index(proc)}.log").read_text()

    def stderr(self, proc: subprocess.Popen[bytes]) -> str:
        return (self.dir / f"err-{self.procs.index(proc)}.log").read_text()

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')}" for p in sorted(self.dir.glob("*.log"))
        )

    def wait_until(self, what: str, check: Callable[[], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}\n{self.logs()}")

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for pid in self.extra_pids:  # supervised children live in their own sessions
            try:
                if b"conveyor" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)
            except (FileNotFoundError, ProcessLookupError):
                pass


@pytest.fixture
def processes(tmp_path: Path, url: str) -> Iterator[Processes]:
    procs = Processes(tmp_path, url)
    try:
        yield procs
    finally:
        procs.kill_all()
