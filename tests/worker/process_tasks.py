"""Task bodies for `executor="process"` tests: a child process imports them by their
import path (``tests.worker.process_tasks:poison``), as a worker's child does."""

from __future__ import annotations

import os

from conveyor import Cancel, Poison, Retry


def pid() -> int:
    return os.getpid()


class InvalidAddress(Poison):
    """An application's own kind of Poison."""


def poison() -> None:
    raise InvalidAddress("invalid address")


def snooze() -> None:
    raise Retry(delay=600, reason="not yet")


def cancel() -> None:
    raise Cancel("nothing to do")


class Unprintable(Exception):
    """An exception whose text cannot be had."""

    def __str__(self) -> str:
        raise RuntimeError("no text for this one")


def unprintable() -> None:
    raise Unprintable


def exits() -> None:
    raise SystemExit("bye from the child")
