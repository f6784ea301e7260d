"""Fixtures every test folder may use."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor import Conveyor
from tests.pg import fresh_schema
from tests.rd import fresh_namespace
from tests.stores import STORES, store_url


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


@pytest.fixture(params=STORES)
def app_on_each_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Conveyor]:
    """An app on a fresh store of each kind in turn (see ``tests.stores.store_url``)."""
    with store_url(request.param, tmp_path) as url:
        app = Conveyor(url)
        yield app
        app.close()
