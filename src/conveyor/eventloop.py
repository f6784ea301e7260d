"""The event loop conveyor's processes run on: uvloop when it is installed, asyncio's own
otherwise.

uvloop is a dependency of conveyor wherever it has wheels (CPython, not Windows). Its
loop costs less per socket event: 15-20 % less CPU per HTTP step in a worker
(docs/benchmarks.md, W4), 4-7 % more jobs per second in W2, and more requests per second
in the API (W5). Where it is missing, everything runs the same on asyncio's loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory, or None (asyncio's loop) where uvloop is not installed.

    The first call imports uvloop (10-15 ms): a supervisor calls it before it forks its
    workers, so that they start with it imported instead of each importing it."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to the end on a new event loop, as :func:`asyncio.run` does."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
