"""Fixtures of the API tests: a real server on a SQLite file (or the other stores)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.server import RunningApi, running_api


@pytest.fixture
def api(tmp_path: Path) -> Iterator[RunningApi]:
    """The API on a fresh SQLite file, without a worker: jobs stay where they are put."""
    with running_api(f"sqlite:///{tmp_path / 'api.db'}") as running:
        yield running
