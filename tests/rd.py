"""A fresh Redis namespace per test, on the server of $CONVEYOR_TEST_REDIS_URL.

Tests that need Redis take the ``redis_url`` fixture (tests/conftest.py): a URL
whose ``?prefix=`` names a namespace made for the test, whose keys are deleted
after it (never FLUSHDB or FLUSHALL: the server may hold other data). Without a
server the test is skipped with a loud reason, or fails when ``CI`` is set, so
that CI never passes without Redis.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
import redis

DEFAULT_URL = "redis://127.0.0.1:6379/0"


def server_url() -> str:
    return os.environ.get("CONVEYOR_TEST_REDIS_URL", DEFAULT_URL)


def with_prefix(url: str, prefix: str) -> str:
    parts = urlsplit(url)
    options = dict(parse_qsl(parts.query))
    options["prefix"] = prefix
    return parts._replace(query=urlencode(options)).geturl()


def client_url(url: str) -> str:
    """The URL without conveyor's own options, for redis-py directly."""
    parts = urlsplit(url)
    options = {
        k: v
        for k, v in parse_qsl(parts.query)
        if k not in ("prefix", "keep_succeeded", "keep_failed", "max_payload", "poll")
    }
    return parts._replace(query=urlencode(options)).geturl()


def require_server() -> None:
    """Skip (fail under CI) unless a Redis server answers."""
    url = server_url()
    try:
        with redis.Redis.from_url(client_url(url), socket_connect_timeout=5) as client:
            client.ping()
    except redis.RedisError as exc:
        message = f"REDIS NOT TESTED: no server answers at {url} ({exc})"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def delete_namespace(url: str, prefix: str) -> int:
    """Delete every key of the namespace ``prefix``; how many."""
    deleted = 0
    with redis.Redis.from_url(client_url(url)) as client:
        keys = list(client.scan_iter(match=f"{{{prefix}}}:*", count=1000))
        for start in range(0, len(keys), 1000):
            deleted += client.unlink(*keys[start : start + 1000])
    return deleted


@contextmanager
def fresh_namespace(prefix: str | None = None) -> Iterator[str]:
    """A URL on a new namespace, whose keys are deleted afterwards."""
    require_server()
    prefix = prefix or f"conveyor_t_{uuid.uuid4().hex[:12]}"
    url = with_prefix(server_url(), prefix)
    try:
        yield url
    finally:
        delete_namespace(url, prefix)
