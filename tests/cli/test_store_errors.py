"""A store URL that leads to no store conveyor can use, as a configuration error: a
PostgreSQL database or role that does not exist, a SQLite file that is not a database
or is damaged. Every command exits 2 naming it (a usage error, as a bad URL is), and a
worker stops rather than waiting for an outage that will not end."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from conveyor import State
from tests.pg import require_server, server_url
from tests.unit.test_sqlite_damaged_file import DAMAGES

from .conftest import Cli, Processes, Store


def _postgres_url(*, user: str | None = None, database: str | None = None) -> str:
    parts = urlsplit(server_url())
    netloc = parts.netloc
    if user is not None:
        netloc = f"{user}@{netloc.rpartition('@')[2]}"
    path = f"/{database}" if database is not None else parts.path
    return parts._replace(netloc=netloc, path=path).geturl()


MISSING = [
    pytest.param({"database": "conveyor_no_such_db"}, 'database "conveyor_no_such_db"', id="db"),
    pytest.param({"user": "conveyor_no_such_role"}, 'role "conveyor_no_such_role"', id="role"),
]
COMMANDS = [["queues", "list"], ["jobs", "list"], ["stats"], ["migrate"]]


@pytest.mark.parametrize(("part", "named"), MISSING)
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: "-".join(c))
def test_a_postgres_database_or_role_that_does_not_exist_exits_2_naming_it(
    cli: Cli, command: list[str], part: dict[str, str], named: str
) -> None:
    # Given a PostgreSQL URL naming a database, or a role, the server does not have
    require_server()
    url = _postgres_url(**part)

    # When a command is given it
    result = cli(*command, "--url", url)

    # Then it exits 2 (a configuration to fix, not an outage) in one line naming the
    # URL and what does not exist
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: url: "), lines
    assert f"{named} does not exist" in lines[0]
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize(("part", "named"), MISSING)
def test_a_worker_on_a_postgres_database_or_role_that_does_not_exist_exits_2(
    cli: Cli, part: dict[str, str], named: str
) -> None:
    # Given a PostgreSQL URL naming a database, or a role, the server does not have
    require_server()
    url = _postgres_url(**part)

    # When a worker is started on it
    done = subprocess.run(
        [sys.executable, "-m", "conveyor", "worker", "--url", url, "-i", str(cli.tasks_file)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cli.dir,
    )

    # Then it stops at once, exit 2, saying what does not exist
    assert done.returncode == 2, done.stderr
    assert f"{named} does not exist" in done.stderr
    assert "Traceback" not in done.stderr


# Every command on every damage; `migrate` of a file whose other pages are garbled says
# so in the words of PRAGMA quick_check, not SQLite's error: test_migrate_sqlite.py.
DAMAGED_RUNS = [
    pytest.param(command, damage, id=f"{'-'.join(command[:2])}-{damage.__name__}")
    for command in [*COMMANDS, ["enqueue", "-i", "{tasks}", "add", "[1, 2]"]]
    for damage in DAMAGES
    if (command[0], damage.__name__) != ("migrate", "garbled_pages")
]


@pytest.mark.parametrize(("command", "damage"), DAMAGED_RUNS)
def test_a_damaged_sqlite_file_exits_2_naming_it_and_is_left_as_it_was(
    cli: Cli, command: list[str], damage: Callable[[Path], str]
) -> None:
    # Given a SQLite file that is not a database, or is damaged
    path = cli.dir / "damaged.db"
    says = damage(path)
    before = path.read_bytes()

    # When a command is given it
    args = [a.format(tasks=cli.tasks_file) for a in command]
    result = cli(*args, "--url", f"sqlite:///{path}")

    # Then it exits 2 in one line naming the file and what SQLite said, and the file is
    # as it was
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: url: "), lines
    assert str(path) in lines[0] and says in lines[0]
    assert path.read_bytes() == before


@pytest.mark.parametrize("processes", ["1", "2"])
@pytest.mark.parametrize("damage", DAMAGES, ids=lambda d: d.__name__)
def test_a_worker_on_a_damaged_sqlite_file_stops_saying_why(
    cli: Cli, damage: Callable[[Path], str], processes: str
) -> None:
    # Given a SQLite file that is not a database, or is damaged (some open, their first
    # page whole, and fail at the first claim)
    path = cli.dir / "damaged.db"
    says = damage(path)
    before = path.read_bytes()

    # When a worker (alone, or under a supervisor) is started on it
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "conveyor",
            "worker",
            "--url",
            f"sqlite:///{path}",
            "-i",
            str(cli.tasks_file),
            "--processes",
            processes,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cli.dir,
    )

    # Then it stops, exit 2, naming the file and what SQLite said (it claimed again
    # and again, as through an outage, for ever), and the file is as it was
    assert done.returncode == 2, done.stderr
    assert str(path) in done.stderr and says in done.stderr
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    ("command", "damage"),
    [*((["worker"], damage) for damage in DAMAGES), (["serve"], DAMAGES[0])],
    ids=lambda v: v[0] if isinstance(v, list) else v.__name__,
)
def test_a_running_worker_whose_file_is_replaced_by_a_damaged_one_stops_saying_why(
    cli: Cli,
    store: Store,
    processes: Processes,
    command: list[str],
    damage: Callable[[Path], str],
) -> None:
    # Given a worker (alone, or beside the API) at work on a sound file (it ran a job)
    job_id = cli.enqueue("add", "[1, 2]")
    if command == ["serve"]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            command = ["serve", "--port", str(sock.getsockname()[1])]
    worker = processes.start(*command, "-i", str(cli.tasks_file), "--interval", "0.2")
    processes.wait_until("the job done", lambda: store.job(job_id).state is State.SUCCEEDED)

    # When the file at its path is replaced by a damaged one (a bad backup restored)
    path = cli.dir / "jobs.db"
    assert cli.url == f"sqlite:///{path}"
    restored = cli.dir / "restored.db"
    says = damage(restored)
    before = restored.read_bytes()
    os.replace(restored, path)

    # Then the worker stops, exit 2, naming the file and what SQLite said (it claimed
    # again and again, as through an outage, for ever), and the file is as it was
    assert worker.wait(60) == 2, processes.logs()
    assert str(path) in processes.stderr(worker), processes.logs()
    assert says in processes.stderr(worker), processes.logs()
    assert "Traceback" not in processes.stderr(worker), processes.logs()
    assert path.read_bytes() == before
