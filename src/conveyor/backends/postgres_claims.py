"""Where a PostgreSQL claim starts its scan of a queue: at the front, or past the
last job this process took when scans from the front have become slow.

Each claimed job leaves a dead entry at the front of the ``jobs_ready`` index
until vacuum removes it, and vacuum cannot remove it while any transaction that
began earlier is still open. Under such a long transaction every claim from the
front steps over all the jobs claimed since it began (a 60 s report query at 6,000
jobs/s: 360,000 entries, tens of milliseconds per claim), and throughput falls
while it lasts.

So a process remembers, per queue, the key (priority, run_at, id) of the last job
it claimed. While claims from the front are fast it does not use it: the order
is exact. Once one takes longer than :data:`SLOW_CLAIM_S`, later claims start past
that key, where the live jobs are, and now and then a claim still starts at the
front: a job that became ready ahead of the key (a higher priority, an older
run_at) waits that much longer at most. A fast claim from the front ends it.

How often: every :data:`FRONT_EVERY_S`; when such a claim is slow, the next one
waits :data:`FRONT_PAUSE_FACTOR` times as long as it took (a twentieth of the time
at most goes to them), up to :data:`FRONT_EVERY_MAX_S`. Each reads every dead entry
of the front, and their number only grows until vacuum can run: in a churn run at
13,280 jobs/s a claim from the front took 0.3 s by the end of a 60 s snapshot, and
with one every half second each worker process spent most of its time waiting.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from conveyor.job import Job

#: A claim from the front slower than this (seconds) starts skipping ahead.
SLOW_CLAIM_S = 0.02
#: While skipping ahead, a claim from the front this often (seconds)...
FRONT_EVERY_S = 0.5
#: ...unless it is slow: then the next one waits this many times as long as it took...
FRONT_PAUSE_FACTOR = 20
#: ...but no longer than this (seconds): a job ready ahead of the key waits no longer.
FRONT_EVERY_MAX_S = 5.0

Key = tuple[int, float, str]


class ClaimStart:
    """The ``after_*`` parameters of one process's claims, and when to use them."""

    def __init__(self) -> None:
        self._last: dict[str, Key] = {}
        self.skipping = False
        self._front_due = 0.0

    def params(self, queues: Sequence[str], now: float) -> dict[str, Any]:
        """The claim's ``after_*`` parameters (all None: from the front)."""
        if not self.skipping or now >= self._front_due:
            return {"after_priority": None, "after_run_at": None, "after_id": None}
        keys = [self._last.get(q) for q in queues]
        return {
            "after_priority": [k[0] if k else None for k in keys],
            "after_run_at": [k[1] if k else None for k in keys],
            "after_id": [k[2] if k else None for k in keys],
        }

    def record(
        self, params: dict[str, Any], jobs: Sequence[Job], elapsed: float, now: float
    ) -> None:
        """Note the last key taken per queue, and how long a claim from the front took."""
        for job in jobs:  # sorted by key within each queue: the last one wins
            self._last[job.queue] = (job.priority, job.run_at, job.id)
        if params["after_id"] is None:
            self.skipping = elapsed > SLOW_CLAIM_S
            pause = min(max(FRONT_EVERY_S, FRONT_PAUSE_FACTOR * elapsed), FRONT_EVERY_MAX_S)
            self._front_due = now + pause
