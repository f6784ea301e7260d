"""Fixtures of the PostgreSQL tests: backends on a fresh schema, driven by one loop."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conveyor.backends.postgres import PostgresBackend
from conveyor.testing import BackendFactory


@pytest.fixture
def factory(pg_url: str) -> Iterator[BackendFactory]:
    with BackendFactory(lambda: PostgresBackend(pg_url)) as made:
        yield made


@pytest.fixture
def backend(factory: BackendFactory) -> PostgresBackend:
    assert isinstance(factory.backend, PostgresBackend)
    return factory.backend
