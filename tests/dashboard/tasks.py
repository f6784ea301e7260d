"""Tasks the dashboard's tests enqueue by import path (``tests.dashboard.tasks:ok``): the
worker under test imports and runs them."""

from __future__ import annotations

import time
from pathlib import Path


def ok(value: int = 0, **extra: object) -> int:
    """Succeeds at once."""
    return value


def slow(seconds: float = 1.0) -> str:
    """Succeeds after ``seconds``."""
    time.sleep(seconds)
    return f"slept {seconds}s"


def fail_until(flag: str) -> str:
    """Fails until the file ``flag`` exists: a test poisons the job, then lets its retry
    succeed by making the file."""
    if not Path(flag).exists():
        raise RuntimeError(f"the flag {Path(flag).name} is not there yet")
    return "the flag is there"


def fail_with(message: str) -> None:
    """Fails with ``message``."""
    raise RuntimeError(message)
