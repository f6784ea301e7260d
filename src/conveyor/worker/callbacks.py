"""Callbacks of HTTP jobs: once a job's final outcome is stored, its document is POSTed
to the ``callback`` URL it was submitted with.

Sent by the worker that finished the job (or that recovered it from a lost worker
and found it poisoned or cancelled), after the store has the outcome (the
document read back is the stored one, with its final version), through the same
guarded client as the steps, with ``Idempotency-Key: <job id>:callback:<version>``.
The version tells the finishes of one job apart: a poisoned job retried by hand
finishes again, and under one key for both, a target that drops duplicates by key
(as the key invites it to) dropped the second outcome, the one that counts.

A callback that fails with a retryable error (connection, timeout, 408, 429, 5xx)
is tried again after 1, 2 and 4 seconds, then given up with a warning; it never
changes the job. A target that took longer than the timeout to answer may have
got the earlier tries too: every try of one finish carries the same key. A
stopping worker waits a few seconds for the callbacks it still owes, then drops
them: a callback is not sent at least once (the job document stays the source of
truth).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from conveyor.backends.base import Backend
from conveyor.exceptions import ConveyorError
from conveyor.job import Job
from conveyor.web.documents import PRIVATE, job_document

if TYPE_CHECKING:
    from conveyor.steps.http import HttpSteps

logger = logging.getLogger("conveyor.worker")

#: Seconds before each further try of a failed callback.
BACKOFF_S = (1.0, 2.0, 4.0)
_FINAL = frozenset({"succeeded", "poisoned", "cancelled"})


def callback_url(job: Job, state: str) -> str | None:
    """The URL to call when ``job`` comes to ``state`` (an outcome's kind, or the state
    a recovery left it in), if that ends the job and the job has one."""
    if state not in _FINAL:
        return None
    private = job.metadata.get(PRIVATE)
    url = private.get("callback") if isinstance(private, dict) else None
    return url if isinstance(url, str) else None


class Callbacks:
    """Sends callbacks in the background; ``close()`` drops the ones still pending."""

    def __init__(self, backend: Backend, http: HttpSteps) -> None:
        self.backend = backend
        self.http = http
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, job_id: str, url: str) -> None:
        task = asyncio.create_task(self._send(job_id, url), name=f"callback-{job_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, job_id: str, url: str) -> None:
        from conveyor.steps.http import HttpStepError

        try:
            document = job_document(await self.backend.get(job_id))
        except ConveyorError as exc:  # deleted meanwhile, or the store is away
            logger.warning("callback of job %s not sent: %s", job_id, exc)
            return
        key = f"{job_id}:callback:{document['version']}"
        for delay in (*BACKOFF_S, None):
            try:
                await self.http.send_json(url, document, idempotency_key=key)
            except HttpStepError as exc:
                if not exc.retryable or delay is None:
                    logger.warning("callback of job %s failed: %s", job_id, exc.message)
                    return
                await asyncio.sleep(delay)
            else:
                logger.info("callback of job %s sent", job_id)
                return

    async def close(self, grace: float = 0.0) -> None:
        """Wait up to ``grace`` seconds for pending callbacks, then drop the rest."""
        if self._tasks and grace > 0:
            await asyncio.wait(set(self._tasks), timeout=grace)
        pending = list(self._tasks)
        for task in pending:
            task.cancel()
        if pending:
            logger.warning("%d callback(s) dropped: the worker is stopping", len(pending))
        await asyncio.gather(*pending, return_exceptions=True)
