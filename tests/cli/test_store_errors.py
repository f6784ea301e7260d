"""A store URL that leads to no store conveyor can use, as a configuration error: a
PostgreSQL database or role that does not exist. Every command exits 2 naming it (a
usage error, as a bad URL is), and a worker stops at once rather than waiting for an
outage to end."""

from __future__ import annotations

import subprocess
import sys
from urllib.parse import urlsplit

import pytest

from tests.pg import require_server, server_url

from .conftest import Cli


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
