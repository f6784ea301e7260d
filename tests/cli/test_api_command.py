"""`conveyor api` and `conveyor serve` where they listen: an address they cannot have is
one clear error before anything starts, as real processes on a real SQLite file."""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator

import httpx
import pytest

from tests.api.server import free_port

from .conftest import Cli, Processes, Store

pytestmark = pytest.mark.slow

KEYS = {"CONVEYOR_ADMIN_KEYS": "admin-key-0123456789abcdef"}


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port something else listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


def test_a_port_out_of_range_is_refused(cli: Cli) -> None:
    result = cli("api", "--port", "99999", **KEYS)
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("error: Invalid value for '--port': 99999 is not in the range")


@pytest.mark.parametrize("command", [["api"], ["serve", "--processes", "2"], ["serve"]])
def test_a_port_in_use_exits_1_before_anything_starts(
    processes: Processes, store: Store, cli: Cli, taken_port: int, command: list[str]
) -> None:
    # Given a port another program listens on, and tasks that seed a job when served
    (cli.dir / "seeded.py").write_text(
        "import clitasks\n\ndef seed():\n    clitasks.add.enqueue(1, 2)\n"
    )
    includes = ["-i", str(cli.tasks_file), "-i", str(cli.dir / "seeded.py")]

    # When the API is started on it
    proc = processes.start(*command, *includes, "--port", str(taken_port), **KEYS)

    # Then it stops at once with one line naming the port (not restarting an API process
    # over and over), and nothing was seeded
    assert proc.wait(30) == 1, processes.logs()
    assert processes.stderr(proc).splitlines() == [
        f"error: port: cannot listen on 127.0.0.1:{taken_port}: Address already in use"
    ]
    assert store.count() == 0


def test_a_host_that_is_not_this_machines_is_refused(processes: Processes) -> None:
    # (203.0.113.0/24 is TEST-NET-3: documentation only, no machine's address)
    proc = processes.start("api", "--host", "203.0.113.7", "--port", str(free_port()), **KEYS)
    assert proc.wait(30) == 2, processes.logs()
    assert processes.stderr(proc).startswith("error: host: cannot listen on 203.0.113.7:")


def test_the_port_closes_when_serve_stops_though_its_workers_finish_jobs(
    processes: Processes, store: Store, cli: Cli
) -> None:
    # Given serve with an API process and a worker running a job of 60 s
    port = free_port()
    job_id = cli.enqueue("pid", "[60]")
    serve = processes.start(
        "serve", "-i", str(cli.tasks_file), "--port", str(port), "--processes", "2", **KEYS
    )
    processes.wait_until("the job running", lambda: store.job(job_id).state.value == "running")
    processes.wait_until("the API", lambda: _answers(f"http://127.0.0.1:{port}/healthz"))

    # When it is told to stop (its worker waits for the job: --shutdown-timeout 30)
    serve.send_signal(signal.SIGTERM)

    # Then the port refuses connections while the job still runs (it took them, and
    # served none, until the last worker process was gone)
    processes.wait_until("the port closed", lambda: not _connects(port))
    assert serve.poll() is None
    assert store.job(job_id).state.value == "running"


def _connects(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def test_the_api_serves_with_any_number_of_v(processes: Processes) -> None:
    # Given -vvv (more than the two levels there are)
    port = free_port()
    proc = processes.start("api", "--port", str(port), "-vvv", **KEYS)

    # Then the API serves, and stops cleanly on SIGTERM
    processes.wait_until("the API", lambda: _answers(f"http://127.0.0.1:{port}/healthz"))
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0, processes.logs()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
