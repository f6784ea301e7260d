"""The dashboard's actions (POST): steer a queue; retry, cancel or delete a job; retry or
remove poisoned jobs in bulk.

Each checks the CSRF token first (nothing is done without it), does one thing through the
Backend interface, and answers with a ``303`` to a page whose flash message says what was
done. A job action carries the state the job had on the page it was clicked on: when the
job has moved on meanwhile (another operator, a worker), nothing is done and the message
says so, so that a double click or a stale page never does a thing twice.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from conveyor.backends.base import HELD_KEY_WHY, Backend, JobFilter
from conveyor.exceptions import JobNotFound, JobStateError, QueueNotFound
from conveyor.job import Job, State
from conveyor.web.dashboard import views
from conveyor.web.dashboard.bidi import isolate
from conveyor.web.dashboard.forms import optional
from conveyor.web.dashboard.jobview import actions as allowed_actions

if TYPE_CHECKING:
    from conveyor.web.dashboard.app import Dashboard

QUEUE_ACTIONS = ("pause", "resume", "empty")
JOB_ACTIONS = ("retry", "cancel", "delete")


async def queue_action(dash: Dashboard, request: Request) -> Response:
    action = request.path_params["action"]
    if action not in QUEUE_ACTIONS:
        raise HTTPException(404)
    _, fields = await dash.form(request)
    name = request.path_params.get("name") or fields.get("queue")
    if not name:
        raise HTTPException(400, "The form names no queue.")
    back = dash.inside(request, fields.get("next"), "/queues")
    backend = await dash.backend()
    try:
        if action == "pause":
            await backend.pause_queue(name)
            message = f"Paused queue {isolate(name)}: none of its jobs start until it is resumed."
        elif action == "resume":
            await backend.resume_queue(name)
            message = f"Resumed queue {isolate(name)}: its jobs start again."
        else:
            grown = await _grown(backend, name, fields.get("count"))
            if grown is not None:
                return dash.redirect(
                    request, "/queues/empty?" + urlencode({"queue": name}), ("error", grown)
                )
            deleted = await backend.empty_queue(name)
            message = f"Emptied queue {isolate(name)}: {_jobs(deleted)} deleted."
    except QueueNotFound:
        return dash.redirect(
            request, back, ("error", f"There is no queue {isolate(name)}: nothing done.")
        )
    return dash.redirect(request, back, ("ok", message))


async def _grown(backend: Backend, name: str, shown: str | None) -> str | None:
    """Why a queue is not emptied: it holds more waiting jobs than the confirmation
    showed (it has grown since, or the page is old); None when it may be."""
    if shown is None:
        return None  # a form without the count (a client of its own): as it asks
    # ASCII digits only: "²" is a digit to str.isdigit and not to int().
    if not (shown.isascii() and shown.isdigit()) or len(shown) > 18:
        raise HTTPException(400, "The form's count is not a whole number of jobs.")
    info = await views.queue(backend, name)
    if info is None:
        raise QueueNotFound(name)
    now = views.waiting(info)
    if now <= int(shown):
        return None
    return (
        f"Queue {isolate(name)} has {_jobs(now, 'waiting ')} now, not the {int(shown):,} "
        "you confirmed: nothing deleted. Confirm again with the count of now."
    )


async def job_action(dash: Dashboard, request: Request) -> Response:
    job_id, action = request.path_params["job_id"], request.path_params["action"]
    if action not in JOB_ACTIONS:
        raise HTTPException(404)
    _, fields = await dash.form(request)
    page = "/jobs/" + quote(job_id, safe="")
    back = dash.inside(request, fields.get("next"), page)
    backend = await dash.backend()
    try:
        job = await backend.get(job_id)
    except JobNotFound:
        gone = back if back != page else "/jobs"
        return dash.redirect(
            request, gone, ("error", f"Job {isolate(job_id)} no longer exists: nothing done.")
        )
    seen = fields.get("state")
    if (seen is not None and seen != job.state.value) or action not in allowed_actions(job.state):
        was = f" (it was {seen} on your page)" if seen and seen != job.state.value else ""
        return dash.redirect(
            request,
            back,
            ("error", f"Job {isolate(job_id)} is {job.state.value} now{was}: not {_done[action]}."),
        )
    try:
        if action == "retry":
            job = await backend.retry(job_id)
            step = job.steps[job.current_step].name if job.steps else None
            message = f"Job {isolate(job_id)} is queued again" + (
                f", from step {isolate(step)}." if step else "."
            )
        elif action == "cancel":
            job = await backend.cancel(job_id, "cancelled from the dashboard")
            message = (
                f"Cancel asked: job {isolate(job_id)}'s worker stops it."
                if job.state is State.CANCELLING
                else f"Job {isolate(job_id)} is {job.state.value}."
            )
        else:
            # Only in the state checked above: one retried meanwhile is not removed queued.
            await backend.delete(job_id, [job.state])
            message = f"Job {isolate(job_id)} deleted."
            back = back if back != page else "/jobs"
    except JobStateError:
        now = await backend.get(job_id)
        return dash.redirect(request, back, ("error", await _refused(backend, now, action)))
    except JobNotFound:
        return dash.redirect(
            request, "/jobs", ("error", f"Job {isolate(job_id)} no longer exists: nothing done.")
        )
    await dash.api.purger.purge(job_id)
    return dash.redirect(request, back, ("ok", message))


_done = {"retry": "retried", "cancel": "cancelled", "delete": "deleted"}


async def _refused(backend: Backend, job: Job, action: str) -> str:
    """Why the store refused ``action`` on ``job`` (as it is now): it moved on, or, still
    retryable, another active job holds its unique key (a key is one active job's)."""
    if (
        action != "retry"
        or job.state not in (State.POISONED, State.CANCELLED)
        or not job.unique_key
    ):
        return f"Job {isolate(job.id)} is {job.state.value} now: not {_done[action]}."
    holder = await backend.find_unique(job.unique_key)
    who = (
        f"job {isolate(holder.id)}"
        if holder is not None and holder.id != job.id and not holder.state.is_final
        else "another active job"
    )
    return (
        f"Job {isolate(job.id)} is not retried: {who} holds its unique key "
        f"{isolate(job.unique_key)}, and a key belongs to one active job at a time."
    )


def _filter(fields: dict[str, str]) -> JobFilter:
    return JobFilter(
        states=frozenset({State.POISONED}),
        queue=optional(fields.get("queue")),
        task=optional(fields.get("task")),
    )


def _jobs(count: int, kind: str = "") -> str:
    return f"{count:,} {kind}job" + ("" if count == 1 else "s")


def _which(job_filter: JobFilter) -> str:
    parts = [f"queue {isolate(job_filter.queue)}"] if job_filter.queue else []
    if job_filter.task:
        parts.append(f"task {isolate(job_filter.task)}")
    return f" ({', '.join(parts)})" if parts else ""


def _failed_page(job_filter: JobFilter) -> str:
    """The failed jobs, with the filter a bulk action was given."""
    shown = {k: v for k, v in (("queue", job_filter.queue), ("task", job_filter.task)) if v}
    return "/failed" + (f"?{urlencode(shown)}" if shown else "")


async def retry_all(dash: Dashboard, request: Request) -> Response:
    _, fields = await dash.form(request)
    job_filter = _filter(fields)
    done = await (await dash.backend()).retry_all(job_filter)
    message = f"Retried {_jobs(done.retried, 'poisoned ')}{_which(job_filter)}."
    if done.held:
        message += f" {_jobs(done.held)} left poisoned: {HELD_KEY_WHY}"
    back = dash.inside(request, fields.get("next"), _failed_page(job_filter))
    return dash.redirect(request, back, ("ok", message))


async def remove_all(dash: Dashboard, request: Request) -> Response:
    """Delete the poisoned jobs (of a queue, of a task) that had failed when the
    confirmation was shown: one that fails after that is not removed unseen."""
    _, fields = await dash.form(request)
    job_filter = _filter(fields)
    try:
        seen = float(fields.get("seen", ""))
    except ValueError:
        seen = math.nan
    if not math.isfinite(seen):  # nan and inf reached the stores as errors (a 500)
        raise HTTPException(400, "The form lacks the time it was shown at.")
    backend = await dash.backend()
    if job_filter.queue is None and job_filter.task is None:
        count = await backend.prune(seen + 0.001, [State.POISONED])
    else:
        count = 0
        cursor = None
        while True:
            page = await backend.list_jobs(job_filter, cursor, 500)
            for job in page.jobs:
                if job.finished_at is not None and job.finished_at <= seen:
                    try:
                        count += await backend.delete(job.id, [State.POISONED])
                    except JobStateError:
                        continue  # retried meanwhile: waiting or running now, kept
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    message = f"Removed {_jobs(count, 'poisoned ')}{_which(job_filter)}."
    return dash.redirect(request, _failed_page(job_filter), ("ok", message))
