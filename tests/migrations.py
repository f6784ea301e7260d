"""Schema upgrades in tests: a store made by an older conveyor, then `conveyor migrate`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

import pytest


@contextmanager
def schema_stopped_at(module: ModuleType, version: int) -> Iterator[None]:
    """Within: the backend ``module`` knows only its first ``version`` migrations, as a
    conveyor of that time did (it makes and accepts stores at that version)."""
    with pytest.MonkeyPatch.context() as old:
        old.setattr(module, "MIGRATIONS", module.MIGRATIONS[:version])
        old.setattr(module, "SCHEMA_VERSION", version)
        yield


def run_migrate(url: str) -> subprocess.CompletedProcess[str]:
    """``conveyor migrate --url URL``, in a process of its own, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "conveyor", "migrate", "--url", url],
        capture_output=True,
        text=True,
        timeout=60,
    )
