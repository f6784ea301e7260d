"""Bad PostgreSQL URLs and servers that do not answer: a clear error naming the URL
(password hidden) and what failed, before anything is written."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from urllib.parse import parse_qsl, urlencode, urlsplit

import psycopg
import pytest

from conveyor import Conveyor
from conveyor.backends import create_backend
from conveyor.backends.postgres import PostgresBackend
from conveyor.exceptions import BackendUnavailable, ConfigError
from tests.pg import libpq_url, require_server, server_url
from tests.postgres.cluster import PgCluster


@pytest.mark.parametrize(
    ("url", "field", "words"),
    [
        ("postgresql://u:pw@h/db?schema=Bad-Name", "url.schema", "lower-case letters"),
        # PostgreSQL's own schemas: the catalog, or information_schema, which took
        # conveyor's tables beside the server's views
        ("postgresql://u:pw@h/db?schema=pg_conveyor", "url.schema", "reserved by PostgreSQL"),
        ("postgresql://u:pw@h/db?schema=pg_catalog", "url.schema", "reserved by PostgreSQL"),
        ("postgresql://u:pw@h/db?schema=information_schema", "url.schema", "reserved by"),
        ("postgresql://u:pw@h/db?pool_size=0", "url.pool_size", "must be > 0"),
        ("postgresql://u:pw@h/db?pool_size=many", "url.pool_size", "expected a number"),
        ("postgresql://u:pw@h/db?poll=-1", "url.poll", "must be > 0"),
        ("postgresql://u:pw@h/db?poll=nan", "url.poll", "must be > 0 and finite"),
        ("postgresql://u:pw@h/db?connect_timeout=nan", "url.connect_timeout", "got 'nan'"),
        ("postgresql://u:pw@h/db?connect_timeout=inf", "url.connect_timeout", "got 'inf'"),
        ("postgresql://u:pw@h/db?no_such_option=1", "url", "does not parse"),
        ("postgresql://u:pw@[::1/db", "url", "does not parse"),
        # libpq parses these and refuses them only at each connect, as a store failure
        ("postgresql://u:pw@h:99999/db", "url", "the port must be 1 to 65535, got '99999'"),
        ("postgresql://u:pw@h:abc/db", "url", "the port must be 1 to 65535, got 'abc'"),
        ("postgresql://u:pw@h1:5432,h2:70000/db", "url", "got '70000'"),
        ("postgresql://u:pw@h/db?sslmode=bogus", "url.sslmode", "expected one of disable"),
    ],
)
def test_a_bad_url_is_refused_naming_the_field(url: str, field: str, words: str) -> None:
    with pytest.raises(ConfigError) as refused:
        create_backend(url)
    assert refused.value.field == field
    assert words in str(refused.value)
    assert "pw" not in str(refused.value).replace("pwd", "")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_server_that_does_not_answer_is_named_without_the_password() -> None:
    url = f"postgresql://app:s3cret@127.0.0.1:{_free_port()}/test"
    with pytest.raises(BackendUnavailable) as failed:
        asyncio.run(PostgresBackend(url).open())
    message = str(failed.value)
    assert f"postgresql://app:***@127.0.0.1:{url.split(':')[-1]}" in message
    assert "Connection refused" in message
    assert "s3cret" not in message


def _server_url_with(*, user: str | None = None, database: str | None = None) -> str:
    parts = urlsplit(server_url())
    netloc = parts.netloc if user is None else f"{user}@{parts.netloc.rpartition('@')[2]}"
    return parts._replace(
        netloc=netloc, path=parts.path if database is None else f"/{database}"
    ).geturl()


@pytest.mark.parametrize(
    ("part", "named"),
    [
        ({"database": "no_such_db"}, 'database "no_such_db" does not exist'),
        ({"user": "no_such_role"}, 'role "no_such_role" does not exist'),
    ],
)
def test_a_database_or_role_that_does_not_exist_is_a_config_error_naming_it(
    part: dict[str, str], named: str
) -> None:
    # Given a URL naming a database, or a role, the server does not have
    require_server()
    url = _server_url_with(**part)
    app = Conveyor(url)

    @app.task
    def noop() -> None: ...

    # When the store is opened, migrated, or a job enqueued (its own connection)
    # Then each refuses the URL naming what does not exist: a configuration to fix,
    # not an outage a retry would outlast
    try:
        for attempt in (
            lambda: asyncio.run(PostgresBackend(url).open()),
            lambda: asyncio.run(PostgresBackend(url).migrate()),
            noop.enqueue,
        ):
            with pytest.raises(ConfigError) as refused:
                attempt()
            assert refused.value.field == "url"
            assert named in refused.value.problem
    finally:
        app.close()


def test_enqueue_against_a_dead_server_raises_and_says_where() -> None:
    app = Conveyor(f"postgresql://app:s3cret@127.0.0.1:{_free_port()}/test")

    @app.task
    def noop() -> None: ...

    try:
        with pytest.raises(BackendUnavailable) as failed:
            noop.enqueue()
        assert "s3cret" not in str(failed.value)
        assert "127.0.0.1" in str(failed.value)
    finally:
        app.close()


def test_the_worker_command_exits_with_a_clear_error_when_the_server_is_down() -> None:
    url = f"postgresql://app:s3cret@127.0.0.1:{_free_port()}/test"
    done = subprocess.run(
        [sys.executable, "-m", "conveyor", "worker", "--url", url, "-i", "conveyor.demo"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "Connection refused" in done.stderr + done.stdout
    assert "s3cret" not in done.stderr + done.stdout


def test_libpq_options_with_spaces_reach_the_server_as_written(pg_url: str) -> None:
    # Given a URL whose libpq options hold spaces (percent-encoded, as libpq reads
    # them) and a plus sign (which libpq keeps as it is)
    name = f"orders app+{_free_port()}"
    options = f"options=-c%20statement_timeout%3D4321ms&application_name={name.replace(' ', '%20')}"
    backend = PostgresBackend(f"{pg_url}&{options}")

    async def sessions() -> list[tuple[str]]:
        # When conveyor connects with it
        await backend.open()
        try:
            async with await psycopg.AsyncConnection.connect(libpq_url(pg_url)) as conn:
                cur = await conn.execute(
                    "SELECT application_name FROM pg_stat_activity WHERE application_name = %s",
                    [name],
                )
                return await cur.fetchall()
        finally:
            await backend.close()

    # Then the server took the setting (it refuses a session whose options it cannot
    # read) and the name, unchanged
    assert asyncio.run(sessions())


def test_a_url_without_a_host_before_its_path_reaches_the_server(pg_url: str) -> None:
    # Given the test's URL written as libpq's form without a host part:
    # postgresql:///database?host=... (how a Unix socket's folder is usually given)
    parts = urlsplit(pg_url)
    options = dict(parse_qsl(parts.query))
    options.update(host=parts.hostname or "127.0.0.1", port=str(parts.port or 5432))
    if parts.username:
        options["user"] = parts.username
    hostless = f"{parts.scheme}://{parts.path}?{urlencode(options)}"
    backend = PostgresBackend(hostless)

    async def now() -> float:
        # When conveyor opens the store with it
        await backend.open()
        try:
            return await backend.now()
        finally:
            await backend.close()

    # Then it reaches the server (the URL was refused as one that does not parse)
    assert asyncio.run(now()) > 0


def test_a_role_that_may_not_log_in_is_a_config_error_saying_so() -> None:
    # Given a role of the server without the LOGIN right
    require_server()
    with psycopg.connect(server_url(), autocommit=True) as admin:
        admin.execute("DROP ROLE IF EXISTS conveyor_no_login")
        admin.execute("CREATE ROLE conveyor_no_login NOLOGIN")
    try:
        # When a store is opened as that role
        with pytest.raises(ConfigError) as refused:
            asyncio.run(PostgresBackend(_server_url_with(user="conveyor_no_login")).open())
        # Then it is refused as a configuration to fix, saying why and what to do
        assert refused.value.field == "url"
        assert 'role "conveyor_no_login" is not permitted to log in' in refused.value.problem
        assert "ALTER ROLE ... LOGIN" in refused.value.problem
    finally:
        with psycopg.connect(server_url(), autocommit=True) as admin:
            admin.execute("DROP ROLE conveyor_no_login")


def test_a_wrong_password_or_a_connection_pg_hba_refuses_is_a_config_error() -> None:
    # Given a server of its own that asks role app for a password and admits no one
    # else from the network but its administrator
    with PgCluster() as cluster:
        with psycopg.connect(cluster.url(), autocommit=True) as admin:
            admin.execute("CREATE ROLE app LOGIN PASSWORD 'right'")
            admin.execute("CREATE ROLE stranger LOGIN")
        cluster.admit(
            "host all postgres 127.0.0.1/32 trust",
            "host all app 127.0.0.1/32 scram-sha-256",
        )
        base = f"127.0.0.1:{cluster.port}/postgres"
        # When the store is opened with the wrong password, then as a role pg_hba.conf
        # does not admit
        with pytest.raises(ConfigError) as wrong_password:
            asyncio.run(PostgresBackend(f"postgresql://app:wrong@{base}").open())
        with pytest.raises(ConfigError) as not_admitted:
            asyncio.run(PostgresBackend(f"postgresql://stranger@{base}").open())
        # Then both are configurations to fix, each saying what the server refused,
        # and the password is not shown
        assert wrong_password.value.field == "url"
        assert 'password authentication failed for user "app"' in str(wrong_password.value)
        assert "fix the user or the password" in str(wrong_password.value)
        assert "wrong" not in str(wrong_password.value).replace("postgresql://app:***@", "")
        assert "no pg_hba.conf entry for host" in str(not_admitted.value)
        assert 'user "stranger"' in str(not_admitted.value)
        # And with the right password it connects: what it refuses then is the schema,
        # which nobody migrated
        with pytest.raises(ConfigError, match="run `conveyor migrate"):
            asyncio.run(PostgresBackend(f"postgresql://app:right@{base}").open())
