"""Fixtures of the HTTP step tests: a real target server, an app on a SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor import Conveyor
from tests.http.target import RawTarget, Target


@pytest.fixture
def target() -> Iterator[Target]:
    """A running target on a free 127.0.0.1 port, stopped after the test."""
    server = Target()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def raw_target() -> Iterator[RawTarget]:
    """A target answering bytes the test gives, as they are (see RawTarget)."""
    server = RawTarget()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def app(tmp_path: Path) -> Conveyor:
    return Conveyor(f"sqlite:///{tmp_path}/jobs.db")


@pytest.fixture
def allow_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let HTTP steps reach the target on 127.0.0.1 (the SSRF guard blocks it otherwise)."""
    monkeypatch.setenv("CONVEYOR_HTTP_ALLOW", "127.0.0.0/8")
