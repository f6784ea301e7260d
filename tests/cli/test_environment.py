"""Settings read from the environment are checked when a command starts: a bad one is one
line naming the variable and exit 2, before any job could fail because of it."""

from __future__ import annotations

import asyncio
import logging

import pytest

from conveyor.web.purge import Purger

from .conftest import Cli, Store

API_KEYS = {"CONVEYOR_ADMIN_KEYS": "admin-key-0123456789abcdef"}
#: What Python makes of the bytes ff fe in an environment value (they are not UTF-8).
NOT_UTF8 = "\udcff\udcfe"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CONVEYOR_HTTP_MAX_BODY", "abc"),
        ("CONVEYOR_HTTP_ALLOW", "10.0.0.0/33"),
        ("CONVEYOR_CACHE_PURGE_URL", "notaurl"),
        ("CONVEYOR_CACHE_PURGE_URL", "ftp://cache"),
        ("CONVEYOR_CACHE_PURGE_URL", "http://[::1"),
        ("CONVEYOR_SECRET_KEY", NOT_UTF8),
    ],
)
def test_a_worker_refuses_a_bad_setting_of_http_jobs_before_it_starts(
    cli: Cli, store: Store, name: str, value: str
) -> None:
    # (it used to start, then poison each HTTP job with the same ConfigError)
    result = cli("worker", "-i", str(cli.tasks_file), **{name: value})
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith(f"error: {name}: "), result.stderr
    assert store.workers() == []


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CONVEYOR_SECRET_KEY", NOT_UTF8),
        ("CONVEYOR_API_KEYS", "acme:acme-key-0123456789abc" + NOT_UTF8),
        ("CONVEYOR_ADMIN_KEYS", "admin-key-0123456789abc" + NOT_UTF8),
        ("CONVEYOR_CACHE_PURGE_URL", "notaurl"),
    ],
)
def test_the_api_refuses_a_bad_setting_naming_it(cli: Cli, name: str, value: str) -> None:
    result = cli("api", "--port", "1", **{**API_KEYS, name: value})
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith(f"error: {name}: "), result.stderr


def test_a_failed_purge_is_logged_without_the_caches_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a cache URL with credentials, where nothing listens
    purger = Purger("http://purger:pw9secret@127.0.0.1:1")

    async def purge() -> None:
        try:
            await purger.purge("job-1")
        finally:
            await purger.aclose()

    # When a purge fails
    with caplog.at_level(logging.WARNING, logger="conveyor.api"):
        asyncio.run(purge())
    # Then the log says so, without the password
    assert "cache purge of http://purger:***@127.0.0.1:1/v1/jobs/job-1 failed" in caplog.text
    assert "pw9secret" not in caplog.text
