"""The cyclic garbage collector: of a long-running conveyor process (worker, API), and
around a bulk enqueue.

Python's defaults suit a short script. A worker or an API process is long-lived, and
two of its habits cost it there (docs/benchmarks.md: W4, W5):

* what it holds once started, the objects of its imports (tens of thousands; more with
  FastAPI), lives as long as it does, yet every full collection scans it again: frozen,
  it is left out;
* a job or a request makes and drops dozens of small containers (dicts, frames,
  futures), whose count sets off a young collection every few of them at the default
  threshold (700); a higher one collects as much garbage, less often.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

#: Net allocations of containers between two collections of the youngest generation, at
#: least (Python's default: 700).
YOUNG_THRESHOLD = 10_000


def settle_for_service() -> None:
    """Freeze what the process holds now and collect the young generation less often.

    Called once the process is a worker or an API server, its imports done. A threshold
    set higher by the application's own modules, or 0 (collection off), is left alone.
    """
    threshold, *older = gc.get_threshold()
    if 0 < threshold < YOUNG_THRESHOLD:
        gc.set_threshold(YOUNG_THRESHOLD, *older)
    gc.freeze()


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic collector off for a bulk call (``enqueue_many``), on again after.

    A batch of jobs is thousands of containers that live until the call returns. With
    the collector on, the young collections during the call find them alive and move
    them to the oldest generation, and every few calls that sets off a full collection
    of everything the process holds: 10 ms in a call of 1,000 jobs that takes 10
    (docs/benchmarks.md, W1b). Off, they are freed by their reference counts when the
    caller drops them, and never scanned. Only a collector that is on is turned off
    (and back on): one another thread or the application turned off stays off.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
