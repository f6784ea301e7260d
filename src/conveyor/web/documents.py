"""The job document: what ``GET /v1/jobs/{id}`` answers, built from a stored :class:`Job`.

A pure function of the job, so that the API, the event stream and the callback
a worker sends all show the same thing. Secrets never appear: the private part
of an HTTP job (``metadata["conveyor.http"]``: credentials, read token,
callback) is left out, and so are the arguments of task steps.

Times are RFC 3339 strings in UTC with milliseconds (``2026-11-23T17:56:45.123Z``):
what any language parses.
"""

from __future__ import annotations

import time
from typing import Any

from conveyor.job import Job, State, Step

_LATER = frozenset({State.SCHEDULED, State.RETRYING})
#: The key of ``Job.metadata`` that holds conveyor's own data about an HTTP job.
PRIVATE = "conveyor.http"


def rfc3339(at: float | None) -> str | None:
    if at is None:
        return None
    seconds = int(at)
    millis = round((at - seconds) * 1000)
    if millis == 1000:
        seconds, millis = seconds + 1, 0
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def job_document(job: Job) -> dict[str, Any]:
    """The public document of one job."""
    steps = job.steps
    done = sum(1 for step in steps if step.state == "succeeded")
    last = _last_response(steps)
    return {
        "id": job.id,
        "state": job.state.value,
        "queue": job.queue,
        "priority": job.priority,
        "progress": _progress(job, done),
        "steps": [_step(step) for step in steps],
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "next_attempt_at": rfc3339(job.run_at) if job.state in _LATER else None,
        "last_error": job.last_error,
        "response": last,
        "metadata": public_metadata(job.metadata),
        "created_at": rfc3339(job.created_at),
        "started_at": rfc3339(job.started_at),
        "finished_at": rfc3339(job.finished_at),
        "updated_at": rfc3339(job.updated_at),
        "version": job.version,
    }


def job_summary(job: Job) -> dict[str, Any]:
    """The short form in lists: no steps, no response."""
    done = sum(1 for step in job.steps if step.state == "succeeded")
    return {
        "id": job.id,
        "state": job.state.value,
        "queue": job.queue,
        "priority": job.priority,
        "progress": _progress(job, done),
        "attempts": job.attempts,
        "last_error": job.last_error,
        "created_at": rfc3339(job.created_at),
        "updated_at": rfc3339(job.updated_at),
        "version": job.version,
    }


def public_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    if PRIVATE not in metadata:
        return metadata
    return {key: value for key, value in metadata.items() if key != PRIVATE}


def _progress(job: Job, done: int) -> dict[str, Any]:
    total = len(job.steps)
    current = None
    if not job.state.is_final and job.current_step < total:
        current = job.steps[job.current_step].name
    own = job.progress
    if total == 1 and own.total:
        # A one-step task job reports its own progress (``ctx.progress(done, total)``).
        return {
            "completed": own.completed,
            "total": own.total,
            "percent": own.percent,
            "current_step": current,
            "message": own.message,
        }
    return {
        "completed": done,
        "total": total,
        "percent": round(100.0 * done / total, 2) if total else None,
        "current_step": current,
        "message": own.message,
    }


def _step(step: Step) -> dict[str, Any]:
    data: dict[str, Any] = {"name": step.name, "kind": step.kind}
    if step.kind == "http" and step.request is not None:
        data["method"] = step.request.get("method")
        data["url"] = step.request.get("url")
    else:
        data["task"] = step.task
    data.update(
        state=step.state,
        attempts=step.attempts,
        last_error=step.last_error,
        response=step.response,
        started_at=rfc3339(step.started_at),
        finished_at=rfc3339(step.finished_at),
    )
    return data


def _last_response(steps: list[Step]) -> dict[str, Any] | None:
    for step in reversed(steps):
        if step.response is not None:
            return step.response
    return None
