"""Bad Redis URLs and servers that do not answer or refuse us: a clear error naming the
URL (password hidden) and what failed, at construction or at open, before anything is
written."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conveyor import Conveyor
from conveyor.backends import create_backend
from conveyor.backends.redis import RedisBackend
from conveyor.exceptions import BackendUnavailable, ConfigError
from tests.redis.server import RedisServer, free_port

#: In every URL below, so that each test also shows it never reaches a message.
PASSWORD = "s3cret-pw"


@pytest.mark.parametrize(
    ("url", "field", "words"),
    [
        (f"redis://:{PASSWORD}@h:99999/0", "url", "Port out of range"),
        (f"redis://:{PASSWORD}@h:abc/0", "url", "Port could not be cast"),
        (f"redis://:{PASSWORD}@[::1/0", "url", "does not parse"),
        # redis-py alone would take these as database 0 and 12 (it drops what is not a
        # digit), so a typo would silently share another app's database
        (f"redis://:{PASSWORD}@h/x", "url", "must be a database number, got 'x'"),
        (f"redis://:{PASSWORD}@h/1/2", "url", "must be a database number, got '1/2'"),
        (f"redis://:{PASSWORD}@h/0?db=x", "url", "Invalid value for 'db'"),
        # redis-py takes the query's over the path's: database 3 was used, silently
        (f"redis://:{PASSWORD}@h/14?db=3", "url", "names two databases: 14 in its path and '3'"),
        (f"redis://:{PASSWORD}@h/1?cluster=true", "url", "a Redis Cluster has database 0 only"),
        (f"redis://:{PASSWORD}@h?db=2&cluster=1", "url", "a Redis Cluster has database 0 only"),
        (f"redis://:{PASSWORD}@h?db=x&cluster=1", "url", "Invalid value for 'db'"),
        # an option nobody knows would otherwise fail at the first command, as a TypeError
        (f"redis://:{PASSWORD}@h/0?no_such_option=1", "url", "unknown option 'no_such_option'"),
        # a TLS option on a plain redis:// URL is known, only not there (it was called
        # an unknown option, as if misspelled)
        (
            f"redis://:{PASSWORD}@h/0?ssl_cert_reqs=none",
            "url",
            "option 'ssl_cert_reqs' needs a rediss:// URL (TLS)",
        ),
        (f"redis://:{PASSWORD}@h/99999999999999999999", "url", "must be a database number"),
        (f"rediss://:{PASSWORD}@h/0?ssl_cert_reqs=bogus", "url", "Invalid SSL Certificate"),
        (f"valkey://:{PASSWORD}@h/0", "url", "unsupported scheme 'valkey'"),
        (f"redis://:{PASSWORD}@h/0?prefix=two%20words", "url.prefix", "'two words'"),
        (f"redis://:{PASSWORD}@h/0?prefix={'p' * 65}", "url.prefix", "at most 64"),
        (f"redis://:{PASSWORD}@h/0?keep_succeeded=-1", "url.keep_succeeded", "got '-1'"),
        (f"redis://:{PASSWORD}@h/0?keep_failed=soon", "url.keep_failed", "got 'soon'"),
        (f"redis://:{PASSWORD}@h/0?max_payload=abc", "url.max_payload", "got 'abc'"),
        (f"redis://:{PASSWORD}@h/0?max_payload=0", "url.max_payload", "must be > 0"),
        (f"redis://:{PASSWORD}@h/0?poll=-1", "url.poll", "must be > 0"),
        (f"redis://:{PASSWORD}@h/0?poll=nan", "url.poll", "must be > 0 and finite"),
        (f"redis://:{PASSWORD}@h/0?connect_timeout=inf", "url.connect_timeout", "got 'inf'"),
        (f"redis://:{PASSWORD}@h/0?connect_timeout=x", "url.connect_timeout", "got 'x'"),
        # redis-py's own seconds: taken as they were, they failed at the first command
        # (-1: every call timed out; nan, inf: a bare ValueError or OverflowError)
        (f"redis://:{PASSWORD}@h/0?socket_timeout=-1", "url.socket_timeout", "got '-1'"),
        (f"redis://:{PASSWORD}@h/0?socket_timeout=0", "url.socket_timeout", "must be > 0"),
        (f"redis://:{PASSWORD}@h/0?socket_timeout=nan", "url.socket_timeout", "got 'nan'"),
        (f"redis://:{PASSWORD}@h/0?socket_timeout=soon", "url.socket_timeout", "got 'soon'"),
        (
            f"redis://:{PASSWORD}@h/0?socket_connect_timeout=inf",
            "url.socket_connect_timeout",
            "got 'inf'",
        ),
        (
            f"redis://:{PASSWORD}@h/0?socket_connect_timeout=-1",
            "url.socket_connect_timeout",
            "got '-1'",
        ),
    ],
)
def test_a_bad_url_is_refused_naming_the_field_without_the_password(
    url: str, field: str, words: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        create_backend(url)
    assert refused.value.field == field
    assert words in str(refused.value)
    assert PASSWORD not in str(refused.value)


def test_a_url_of_another_scheme_given_to_the_redis_backend_is_refused() -> None:
    with pytest.raises(ConfigError, match="not a redis:// URL") as refused:
        RedisBackend(f"http://:{PASSWORD}@h/0")
    assert refused.value.field == "url"
    assert PASSWORD not in str(refused.value)


@pytest.mark.parametrize(
    "url",
    [
        "redis://h",
        "redis://h/",
        "redis://h/15",
        "rediss://h:6380/0",
        "redis://h/0?socket_timeout=2.5&socket_connect_timeout=1",
        "redis://h/?db=3",
        "redis://h/3?db=3",
        "redis://h/0?cluster=true",
    ],
)
def test_a_good_url_is_taken(url: str) -> None:
    assert isinstance(create_backend(url), RedisBackend)


def test_a_server_that_does_not_answer_is_named_at_open_without_the_password() -> None:
    port = free_port()  # nothing listens there
    url = f"redis://:{PASSWORD}@127.0.0.1:{port}/0?connect_timeout=1"
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as failed:
        asyncio.run(RedisBackend(url).open())
    took = time.monotonic() - started
    message = str(failed.value)
    assert f"cannot connect to Redis at redis://:***@127.0.0.1:{port}/0" in message
    assert PASSWORD not in message
    assert took < 10.0  # a refused connection is not waited on, let alone retried


async def _open_and_close(backend: RedisBackend) -> None:
    await backend.open()
    await backend.close()


def test_a_wrong_password_says_authentication_failed_and_hides_it(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis", password="the-right-one") as server:
        for given in ("wrong-pw", ""):  # a wrong password, and none where one is needed
            url = server.url(prefix="conveyor_t_auth", password=given)
            with pytest.raises(BackendUnavailable) as failed:
                asyncio.run(RedisBackend(url).open())
            message = str(failed.value)
            assert "authentication failed" in message, message
            assert f"127.0.0.1:{server.port}" in message
            assert "wrong-pw" not in message
            assert "the-right-one" not in message
        # and the right one opens: the refusals above were about the password
        asyncio.run(_open_and_close(RedisBackend(server.url(prefix="conveyor_t_auth"))))


def test_enqueue_with_a_wrong_password_raises_and_hides_it(tmp_path: Path) -> None:
    # A sync enqueue goes through its own connection (no open() first): the same answer
    with RedisServer(tmp_path / "redis", password="the-right-one") as server:
        app = Conveyor(server.url(prefix="conveyor_t_auth", password="wrong-pw"))

        @app.task
        def noop() -> None: ...

        try:
            with pytest.raises(BackendUnavailable) as failed:
                noop.enqueue()
            assert "authentication failed" in str(failed.value)
            assert "wrong-pw" not in str(failed.value)
        finally:
            app.close()


def test_enqueue_against_a_dead_server_raises_and_says_where() -> None:
    app = Conveyor(f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0?connect_timeout=1")

    @app.task
    def noop() -> None: ...

    try:
        with pytest.raises(BackendUnavailable) as failed:
            noop.enqueue()
        assert "127.0.0.1" in str(failed.value)
        assert PASSWORD not in str(failed.value)
    finally:
        app.close()


def _conveyor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_cli_says_the_store_is_unreachable_in_one_line_and_exits_1() -> None:
    port = free_port()
    done = _conveyor("queues", "list", "--url", f"redis://:{PASSWORD}@127.0.0.1:{port}/0")
    assert done.returncode == 1  # docs/cli.md: 1 is "the store did not answer"
    assert done.stdout == ""
    assert done.stderr.startswith(
        f"error: store: cannot connect to Redis at redis://:***@127.0.0.1:{port}/0: "
    ), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr
    assert PASSWORD not in done.stderr


def test_the_cli_refuses_a_bad_url_with_exit_2() -> None:
    done = _conveyor("queues", "list", "--url", f"redis://:{PASSWORD}@127.0.0.1/x")
    assert done.returncode == 2
    assert done.stderr.startswith("error: url: 'redis://:***@127.0.0.1/x' does not parse")
    assert "Traceback" not in done.stderr
    assert PASSWORD not in done.stderr


def test_the_worker_command_exits_with_a_clear_error_when_the_server_is_down() -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0"
    done = _conveyor("worker", "--url", url, "-i", "conveyor.demo")
    assert done.returncode != 0
    assert "cannot connect to Redis at redis://:***@127.0.0.1" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr + done.stdout
    assert PASSWORD not in done.stderr + done.stdout


def test_a_database_the_server_does_not_have_is_refused_as_bad_input_naming_it(
    tmp_path: Path,
) -> None:
    # Given a server with 4 databases (0 to 3) and URLs that name its database 7
    with RedisServer(tmp_path / "redis", "--databases", "4") as server:
        url = server.url(prefix="conveyor_t_db").replace("/0?", "/7?")
        by_option = server.url(prefix="conveyor_t_db", db="7").replace("/0?", "/?")

        # When a command opens the store
        for each in (url, by_option):
            done = _conveyor("stats", "--json", "--url", each)

            # Then it exits 2 (the URL is wrong, the server is fine), in one line
            # naming the database, and prints no JSON
            assert done.returncode == 2, done.stderr
            assert done.stdout == ""
            assert done.stderr.startswith("error: url: Redis at redis://127.0.0.1:"), done.stderr
            assert "has no database 7" in done.stderr
            assert len(done.stderr.strip().splitlines()) == 1

        # When an application enqueues there (its own synchronous connection)
        app = Conveyor(url)

        @app.task
        def noop() -> None: ...

        try:
            # Then the same ConfigError, and nothing is stored (there is nowhere to)
            with pytest.raises(ConfigError) as refused:
                noop.enqueue()
            assert refused.value.field == "url"
            assert "has no database 7" in refused.value.problem
        finally:
            app.close()
        with server.client() as client:
            assert client.dbsize() == 0


def test_the_cli_refuses_a_url_that_is_not_utf8_with_exit_2_and_no_password() -> None:
    # Given a URL with a byte that is not UTF-8 (a mistyped or mis-encoded host)
    url = f"redis://:{PASSWORD}@127.0.0.1\udcff:6379/0"

    # When a command is run with it (Python hands such bytes on as surrogates)
    done = subprocess.run(
        [sys.executable, "-m", "conveyor", "stats", "--url", os.fsencode(url)],
        capture_output=True,
        text=True,
        timeout=60,
    )

    # Then it is bad input, in one line naming the URL, without the password
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: url: 'redis://:***@127.0.0.1"), done.stderr
    assert "is not UTF-8" in done.stderr
    assert PASSWORD not in done.stderr
