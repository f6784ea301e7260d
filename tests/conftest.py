"""Fixtures every test folder may use."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.pg import fresh_schema
from tests.rd import fresh_namespace


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A conveyor URL on a fresh, migrated PostgreSQL schema (dropped after the test)."""
    with fresh_schema() as url:
        yield url


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A conveyor URL on a fresh Redis namespace (its keys deleted after the test)."""
    with fresh_namespace() as url:
        yield url
