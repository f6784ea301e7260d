"""Hand-offs on PostgreSQL, the worker's side (the store's is 0006_hand_offs.sql).

A worker that finds nothing to claim registers for the length of its wait, with a
token of that wait and the channel its process listens on. An enqueue then stores a
job ready for it as claimed by it and sends ``[token, row]`` on that channel: the
job starts without a claim's round trip, and the other waiting workers are not woken
to race for it.

The registration marked with the job is the hand-off's record until the worker
takes the job: the wait acknowledges the notification by deleting it (before the job
starts), or the worker's next claim deletes it and answers the job, when the
notification did not come in time (it came after the wait ended, or was lost with
the listening connection). So a job handed over is always reached, and a
registration that still holds a job means that job never started: a worker that
stops gives it back, and so does lease recovery for a worker that died waiting, with
no attempt spent.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence

from conveyor.backends.rows import loads, row_to_job
from conveyor.job import Job


class HandOffs:
    """The tokens of the waits of one process's workers."""

    def __init__(self, schema: str) -> None:
        self._schema = schema
        self._counter = itertools.count(1)
        self._tokens: dict[str, str] = {}  # worker -> token of its current wait

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

    def end_wait(self, worker_id: str) -> None:
        self._tokens.pop(worker_id, None)
