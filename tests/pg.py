"""A fresh PostgreSQL schema per test, on the server of $CONVEYOR_TEST_POSTGRES_URL.

Tests that need PostgreSQL take the ``pg_url`` fixture (tests/conftest.py): a URL
whose ``?schema=`` names a schema made for the test (migrated) and dropped after.
Without a server the test is skipped with a loud reason, or fails when ``CI`` is
set, so that CI never passes without PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qsl, urlencode, urlsplit

import psycopg
import pytest

from conveyor.backends.postgres import PostgresBackend

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


def server_url() -> str:
    return os.environ.get("CONVEYOR_TEST_POSTGRES_URL", DEFAULT_URL)


def with_schema(url: str, schema: str) -> str:
    parts = urlsplit(url)
    options = dict(parse_qsl(parts.query))
    options["schema"] = schema
    return parts._replace(query=urlencode(options)).geturl()


def libpq_url(url: str) -> str:
    """The URL without conveyor's own options, for psycopg directly."""
    return PostgresBackend(url).settings.conninfo


def require_server() -> None:
    """Skip (fail under CI) unless a PostgreSQL server answers."""
    url = server_url()
    try:
        psycopg.connect(libpq_url(url), connect_timeout=5).close()
    except psycopg.Error as exc:
        message = f"POSTGRESQL NOT TESTED: no server answers at {url} ({exc})"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


@contextmanager
def fresh_schema(migrate: bool = True) -> Iterator[str]:
    """A URL on a new schema (migrated unless told not to), dropped afterwards."""
    require_server()
    schema = f"conveyor_t_{uuid.uuid4().hex[:12]}"
    url = with_schema(server_url(), schema)
    if migrate:
        asyncio.run(PostgresBackend(url).migrate())
    try:
        yield url
    finally:
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
