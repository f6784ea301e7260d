"""A tiny demo app: ``conveyor serve -i conveyor.demo`` (what ``make run`` starts).

Three tasks and a :func:`seed` that enqueues a handful of jobs, so that something
visibly happens as soon as the workers start:

- ``greet(name)``: succeeds at once;
- ``resize(tiles)``: reports progress tile by tile (queue ``images``);
- ``flaky(p)``: fails at random, so retries, backoff and poisoned jobs show up.

Watch them with ``conveyor jobs list``, ``conveyor jobs show ID`` and ``conveyor stats``.
The store is ``$CONVEYOR_URL``, else ``sqlite:///.conveyor/conveyor.db``.
"""

from __future__ import annotations

import os
import random
import time

from conveyor import Conveyor, Priority, current_context

DEFAULT_URL = "sqlite:///.conveyor/conveyor.db"
URL = os.environ.get("CONVEYOR_URL") or DEFAULT_URL
if URL == DEFAULT_URL:
    os.makedirs(".conveyor", exist_ok=True)

app = Conveyor(URL)


@app.task
def greet(name: str) -> str:
    """Say hello."""
    return f"Hello, {name}!"


@app.task(queue="images", timeout=120)
def resize(tiles: int = 20, seconds_per_tile: float = 0.2) -> dict[str, int]:
    """Pretend to resize an image, one tile at a time, reporting progress."""
    ctx = current_context()
    for done in range(tiles):
        ctx.raise_if_cancelled()
        ctx.progress(done, tiles, f"tile {done + 1} of {tiles}")
        time.sleep(seconds_per_tile)
    ctx.progress(tiles, tiles, "done")
    return {"tiles": tiles}


@app.task(max_attempts=4, retry={"exponent": 1.5, "base": 1.0, "jitter": 0.2})
def flaky(failure_rate: float = 0.6) -> str:
    """Fail at random: retried with backoff, poisoned after 4 failed attempts."""
    attempt = current_context().attempt
    if random.random() < failure_rate:
        raise RuntimeError(f"flaky failure on attempt {attempt} (this is the demo)")
    return f"worked on attempt {attempt}"


def seed() -> None:
    """Enqueue a handful of demo jobs (``conveyor serve`` calls this at start-up)."""
    for name in ("Ada", "Grace", "Barbara"):
        greet.enqueue(name)
    resize.enqueue(10)
    resize.with_options(priority=Priority.LOW).enqueue(40, 0.1)
    for _ in range(3):
        flaky.enqueue()
    flaky.with_options(delay=10).enqueue(0.3)
    greet.with_options(delay=15, priority="high").enqueue("world, 15 seconds later")
