"""Job handles: what ``enqueue`` returns, to follow and steer one job."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from conveyor.exceptions import JobCancelled, JobFailed, JobTimeout
from conveyor.job import Job, State
from conveyor.task import check_reason

if TYPE_CHECKING:
    from conveyor.app import Conveyor


class JobHandle:
    """A job by id, with the last state seen. Sync methods block; ``*_async`` await."""

    __slots__ = ("_app", "job")

    def __init__(self, app: Conveyor, job: Job) -> None:
        self._app = app
        self.job = job

    def __repr__(self) -> str:
        return f"<JobHandle {self.id} {self.job.task} {self.state}>"

    @property
    def id(self) -> str:
        return self.job.id

    @property
    def state(self) -> State:
        """The state when last seen; ``refresh()`` to look again."""
        return self.job.state

    # -- sync ------------------------------------------------------------------
    def refresh(self) -> JobHandle:
        return self._app.portal_call(self.refresh_async())

    def wait(self, timeout: float | None = None) -> Any:
        """Block until the job finishes; its result.

        Raises:
            JobFailed: the job ended poisoned (its last error in the message).
            JobCancelled: the job was cancelled.
            JobTimeout: ``timeout`` seconds passed first.
            ValueError, TypeError: ``timeout`` is not None or a number >= 0.
        """
        return self._app.portal_call(self.wait_async(timeout))

    def cancel(self, reason: str = "cancelled by request") -> State:
        """Cancel: a waiting job ends ``cancelled``, a running one goes ``cancelling``.

        Raises:
            InvalidJob: ``reason`` (kept in the job's error history) is not a string
                every store keeps (a NUL, a lone surrogate); the job is left as it was.
        """
        return self._app.portal_call(self.cancel_async(reason))

    # -- async -------------------------------------------------------------------
    async def refresh_async(self) -> JobHandle:
        self.job = await (await self._app.backend()).get(self.id)
        return self

    async def wait_async(self, timeout: float | None = None) -> Any:
        _check_timeout(timeout)
        backend = await self._app.backend()
        # None waits for ever, and so does a timeout no clock reaches (an int past a
        # float's range raised OverflowError in the sum)
        deadline = None
        if timeout is not None and timeout < _FOREVER:
            deadline = time.monotonic() + timeout
        job = await backend.get(self.id)
        while not job.state.is_final:
            left = 5.0 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                self.job = job
                raise JobTimeout(f"job {self.id} still {job.state} after {timeout} s")
            newer = await backend.watch(self.id, job.version, min(left, 5.0))
            if newer is not None:
                job = newer
        self.job = job
        return _result(job)

    async def cancel_async(self, reason: str = "cancelled by request") -> State:
        check_reason(reason)
        self.job = await (await self._app.backend()).cancel(self.id, reason)
        return self.job.state


#: Seconds beyond any wait (about 3e292 years).
_FOREVER = 1e300


def _check_timeout(timeout: Any) -> None:
    # NaN would wait for ever (no comparison with it is true), a negative number is a
    # caller's slip: both refused, as queue.Queue.get refuses a negative timeout.
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"timeout: expected seconds (a number) or None, got {timeout!r:.80}")
    if not timeout >= 0:
        raise ValueError(f"timeout: must be >= 0 seconds (or None: no limit), got {timeout!r}")


def _result(job: Job) -> Any:
    if job.state is State.SUCCEEDED:
        return job.result
    if job.state is State.CANCELLED:
        raise JobCancelled(job.id, job.state.value, job.last_error)
    raise JobFailed(job.id, job.state.value, job.last_error)
