"""A fresh store of each kind, for tests that run on all three."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from tests.pg import fresh_schema
from tests.rd import fresh_namespace

STORES = ["sqlite", "postgres", "redis"]


@contextlib.contextmanager
def store_url(store: str, tmp_path: Path) -> Iterator[str]:
    """A URL on a fresh store of the kind named: a SQLite file in ``tmp_path``, a
    PostgreSQL schema or a Redis namespace (dropped or deleted after)."""
    if store == "postgres":
        with fresh_schema() as url:
            yield url
    elif store == "redis":
        with fresh_namespace() as url:
            yield url
    else:
        yield f"sqlite:///{tmp_path}/jobs.db"
