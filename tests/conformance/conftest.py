"""The ``backend_factory`` fixture: one param per backend, each against its real store.

SQLite runs everywhere (a file in the test's tmp_path). Server stores join as soon
as their backend is registered in ``conveyor.backends.BACKENDS``; they read their
URL from the environment, skip with a loud reason when no server answers, and
fail instead when ``CI`` is set, so that CI never passes without them.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
import redis

from conveyor.backends import BACKENDS, create_backend
from conveyor.backends.postgres import PostgresBackend
from conveyor.backends.redis import RedisBackend
from conveyor.exceptions import BackendUnavailable
from conveyor.testing import BackendFactory, wipe
from tests.rd import delete_namespace


@dataclass(frozen=True)
class Store:
    """How to reach one kind of store under test."""

    name: str
    scheme: str
    #: environment variable holding the URL, and its default; None: a file per test
    env: str | None = None
    default_url: str = ""

    def url(self, tmp_path: Path) -> str:
        if self.env is None:
            return f"{self.scheme}:///{tmp_path}/conveyor.db"
        return os.environ.get(self.env, self.default_url)

    @property
    def fresh(self) -> bool:
        """A new, empty store per test (otherwise the shared one is wiped first)."""
        return self.env is None

    @property
    def enabled(self) -> bool:
        return self.scheme in BACKENDS


#: The schema / namespace of this test session on a server store, unless its URL is set:
#: one of its own, so that two sessions on one server (two checkouts, say) do not wipe
#: each other's jobs. Dropped when the session ends.
SESSION_NAME = f"conveyor_test_{uuid.uuid4().hex[:8]}"

STORES = [
    Store("sqlite", "sqlite"),
    Store(
        "postgres",
        "postgresql",
        "CONVEYOR_TEST_POSTGRES_URL",
        f"postgresql://postgres@127.0.0.1:5432/test?schema={SESSION_NAME}",
    ),
    Store(
        "redis",
        "redis",
        "CONVEYOR_TEST_REDIS_URL",
        f"redis://127.0.0.1:6379/0?prefix={SESSION_NAME}",
    ),
]


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return parts._replace(netloc=parts.netloc.replace(parts.password, "***")).geturl()
    return url


def _unreachable(store: Store, url: str, exc: BaseException) -> None:
    message = (
        f"{store.name.upper()} BACKEND NOT TESTED: no server answers at {_redact(url)} "
        f"({type(exc).__name__}: {exc}); start one or set {store.env}"
    )
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


_MIGRATED: set[str] = set()


def _drop(url: str) -> None:
    """Drop the schema of a shared store (a Redis namespace: delete its keys)."""
    backend = create_backend(url)
    if isinstance(backend, PostgresBackend):
        try:
            with psycopg.connect(backend.settings.conninfo, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{backend.schema}" CASCADE')
        except psycopg.OperationalError as exc:
            raise BackendUnavailable(str(exc)) from exc
    elif isinstance(backend, RedisBackend):
        try:
            delete_namespace(url, backend.settings.namespace)
        except redis.RedisError as exc:
            raise BackendUnavailable(str(exc)) from exc


def _migrate_once(url: str) -> None:
    """Make the schema of a shared store anew, once per test session: the suite then
    runs on what the migrations of this checkout create, not on an older session's."""
    if url not in _MIGRATED:
        _drop(url)
        asyncio.run(create_backend(url).migrate())
        _MIGRATED.add(url)


@pytest.fixture(scope="session", autouse=True)
def _drop_session_stores() -> Iterator[None]:
    """At the end of the session, drop the schemas / namespaces it made for itself."""
    yield
    for url in _MIGRATED:
        if SESSION_NAME in url:
            _drop(url)


@pytest.fixture(params=[s for s in STORES if s.enabled], ids=lambda s: s.name)
def backend_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BackendFactory]:
    """Backends on one store of the param's kind; the first one opened, all closed after."""
    store: Store = request.param
    url = store.url(tmp_path)
    factory = BackendFactory(lambda: create_backend(url))
    try:
        _migrate_once(url)
        factory.__enter__()
    except (BackendUnavailable, OSError, TimeoutError) as exc:
        if store.fresh:
            raise
        _unreachable(store, url, exc)
    try:
        if not store.fresh:
            factory.run(wipe(factory.backend))
        yield factory
    finally:
        factory.__exit__(None, None, None)
