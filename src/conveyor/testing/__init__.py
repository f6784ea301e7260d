"""The backend conformance suite, shipped so that any backend (ours or a third party's)
can prove it behaves like the others.

Requires the ``dev`` extras (pytest, hypothesis). See :mod:`conveyor.testing.conformance`
for how to run it against a backend.
"""

from conveyor.testing.conformance import BackendConformance
from conveyor.testing.harness import (
    BackendFactory,
    all_jobs,
    async_test,
    claim_one,
    enqueue_one,
    error,
    finish_one,
    make_job,
    task_step,
    wipe,
)

__all__ = [
    "BackendConformance",
    "BackendFactory",
    "all_jobs",
    "async_test",
    "claim_one",
    "enqueue_one",
    "error",
    "finish_one",
    "make_job",
    "task_step",
    "wipe",
]
