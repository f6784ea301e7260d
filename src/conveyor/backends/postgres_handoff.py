"""Hand-offs on PostgreSQL, the worker's side (the store's is 0006_hand_offs.sql).

A worker that finds nothing to claim registers for the length of its wait, with a
token of that wait and the channel its process listens on. An enqueue then stores a
job ready for it as claimed by it and sends ``[token, row]`` on that channel: the
job starts without a claim's round trip, and the other waiting workers are not woken
to race for it.

The registration marked with a job is the hand-off's record until the worker's next
claim deletes it: the claim that follows every wait, which also answers the job when
the notification did not bring it in time (it came after the wait ended, or was lost
with the listening connection). So a job handed over is always reached, and a
registration that still holds a job means the worker has not claimed since: a worker
that stops gives the job back, and so does lease recovery for a worker that died
waiting, with no attempt spent. The store cannot tell a worker that died waiting from
one that died after the notification brought the job and before its next claim (the
claim follows the job's start at once, unless the job took the worker's last slot);
but only a new job is handed over, so a job is given back that way once at most, and
a job that kills its worker still runs out of attempts.

What this class keeps makes sure a job is answered once: a notification counts only
for the wait whose token it carries, and the claim after a wait drops the job the
wait answered.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence

from conveyor.backends.rows import loads, row_to_job
from conveyor.job import Job


class HandOffs:
    """The tokens of the waits of one process's workers, and what each wait answered."""

    def __init__(self, schema: str) -> None:
        self._schema = schema
        self._counter = itertools.count(1)
        self._tokens: dict[str, str] = {}  # worker -> token of its current wait
        self._answered: dict[str, set[str]] = {}  # worker -> ids its last wait answered

    def channel(self, worker_id: str) -> str:
        """The worker's channel: a fixed-length name (channel names end at 63 bytes)."""
        digest = hashlib.sha1(f"{self._schema}\0{worker_id}".encode()).hexdigest()[:24]
        return f"conveyor_handoff_{digest}"

    def new_wait(self, worker_id: str) -> str:
        """The token of the worker's next wait."""
        token = f"{next(self._counter)}"
        self._tokens[worker_id] = token
        return token

    def received(self, worker_id: str, payloads: Sequence[str]) -> tuple[list[Job], list[str]]:
        """The jobs the notifications of the worker's current wait brought, and the
        ids of those whose row was too long to come along (to be read). Another
        wait's notification, come late, is dropped: its job was claimed since."""
        token = self._tokens.get(worker_id)
        jobs: list[Job] = []
        ids: list[str] = []
        for payload in payloads:
            sent_for, body = loads(payload)
            if sent_for != token:
                continue
            if isinstance(body, str):
                ids.append(body)
            else:
                jobs.append(row_to_job(body))
        return jobs, ids

    def end_wait(self, worker_id: str, answered: Sequence[Job]) -> None:
        """The worker's wait is over, having answered ``answered``."""
        self._tokens.pop(worker_id, None)
        if answered:
            self._answered[worker_id] = {job.id for job in answered}

    def answered(self, worker_id: str) -> set[str]:
        """Ids the worker's last wait answered, not claimed since (the worker has them)."""
        return self._answered.get(worker_id, set())

    def claimed(self, worker_id: str, jobs: list[Job]) -> list[Job]:
        """A claim's jobs without those the worker's last wait answered (the claim
        answers the job of the registration it deletes, brought by its notification
        or not)."""
        answered = self._answered.pop(worker_id, None)
        if answered:
            return [job for job in jobs if job.id not in answered]
        return jobs
