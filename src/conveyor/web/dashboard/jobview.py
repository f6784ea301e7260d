"""One job as the detail page shows it: steps, responses, errors, timeline, actions.

Pure functions of a stored :class:`~conveyor.job.Job`; every secret goes through
:mod:`conveyor.web.dashboard.redact` here, so that templates cannot show one by mistake.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from conveyor.job import Job, State, Step
from conveyor.web.dashboard import redact
from conveyor.web.dashboard.bidi import isolate
from conveyor.web.documents import job_document

#: Characters of a response body shown (the store keeps up to 64 KiB).
BODY_EXCERPT = 2000
#: Characters shown of any other text: arguments, results, metadata, errors, tracebacks.
#: A task may store megabytes; the page (refreshed every few seconds) shows this much.
TEXT_EXCERPT = 10_000


@dataclass(frozen=True, slots=True)
class ResponseView:
    status: int | None
    headers: dict[str, Any]
    body: str
    cut: bool  # the excerpt is shorter than the stored body, or the store cut the body


@dataclass(frozen=True, slots=True)
class StepView:
    number: int
    name: str
    kind: str
    target: str  # the task's name, or "METHOD url"
    state: str
    attempts: int
    started_at: float | None
    finished_at: float | None
    last_error: str | None
    current: bool
    arguments: str | None  # JSON of a task step's args / kwargs
    result: str | None
    request: str | None  # JSON of an HTTP step's headers, query and body
    response: ResponseView | None

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return max(self.finished_at - self.started_at, 0.0)


@dataclass(frozen=True, slots=True)
class Event:
    """A line of the timeline."""

    at: float
    kind: str  # created | started | failed | step | finished
    title: str
    message: str | None = None
    traceback: str | None = None
    error_type: str | None = None


@dataclass(frozen=True, slots=True)
class JobView:
    job: Job
    task: str | None
    percent: float | None
    progress_text: str
    steps: list[StepView]
    timeline: list[Event]
    metadata: str | None
    result: str | None
    last_error: str | None
    actions: list[str] = field(default_factory=list)


def cut(text: str | None) -> str | None:
    """``text`` up to TEXT_EXCERPT characters, and a line saying how long it is when cut."""
    if text is None or len(text) <= TEXT_EXCERPT:
        return text
    return f"{text[:TEXT_EXCERPT]}\n[… cut here: {len(text):,} characters in all]"


def pretty(value: Any) -> str:
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)
    return cut(text) or ""


def actions(state: State) -> list[str]:
    """What may be asked of a job in ``state``: retry, cancel, delete."""
    found = []
    if state in (State.POISONED, State.CANCELLED):
        found.append("retry")
    if state.is_waiting or state is State.RUNNING:
        found.append("cancel")
    if state not in (State.RUNNING, State.CANCELLING):
        found.append("delete")
    return found


def job_view(job: Job) -> JobView:
    progress = job_document(job)["progress"]
    percent = progress["percent"]
    text = f"{_number(progress['completed'])} of {_number(progress['total'])}"
    if progress["message"]:
        text += f" — {progress['message']}"
    return JobView(
        job=job,
        task=job.task,
        percent=percent,
        progress_text=cut(text) or "",
        steps=[_step(job, index, step) for index, step in enumerate(job.steps)],
        timeline=timeline(job),
        metadata=pretty(redact.metadata(job.metadata)) if redact.metadata(job.metadata) else None,
        result=None if job.result is None else pretty(redact.redact(job.result)),
        last_error=cut(job.last_error),
        actions=actions(job.state),
    )


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _step(job: Job, index: int, step: Step) -> StepView:
    arguments = request = None
    if step.kind == "http" and step.request is not None:
        method = str(step.request.get("method") or "GET")
        target = f"{method} {redact.url(str(step.request.get('url', '')))}"
        sent = {
            name: redact.redact(step.request[name])
            for name in ("headers", "query", "body")
            if step.request.get(name)
        }
        request = pretty(sent) if sent else None
    else:
        target = step.task or "?"
        if step.args or step.kwargs:
            arguments = pretty(
                {"args": redact.shallow(step.args), "kwargs": redact.redact(step.kwargs)}
            )
    return StepView(
        number=index + 1,
        name=step.name,
        kind=step.kind,
        target=target,
        state=step.state,
        attempts=step.attempts,
        started_at=step.started_at,
        finished_at=step.finished_at,
        last_error=cut(step.last_error),
        current=index == job.current_step and not job.state.is_final,
        arguments=arguments,
        result=None if step.result is None else pretty(redact.redact(step.result)),
        request=request,
        response=_response(step.response),
    )


def _response(response: dict[str, Any] | None) -> ResponseView | None:
    if response is None:
        return None
    body = response.get("body")
    text = body if isinstance(body, str) else ("" if body is None else pretty(redact.shallow(body)))
    headers = response.get("headers")
    return ResponseView(
        status=response.get("status"),
        headers=redact.redact(headers) if isinstance(headers, dict) else {},
        body=text[:BODY_EXCERPT],
        cut=len(text) > BODY_EXCERPT or bool(response.get("truncated")),
    )


def timeline(job: Job) -> list[Event]:
    """Created, first started, each failed attempt (with its traceback), each step that
    succeeded, the end."""
    events = [Event(job.created_at, "created", f"Created in queue {isolate(job.queue)}")]
    for error in job.errors:
        at = error.get("at")
        attempt = error.get("attempt")
        step = error.get("step")
        title = f"Attempt {attempt} failed" if attempt else "Failed"
        if error.get("type") == "Cancelled":
            title = "Cancelled"
        if step:
            title += f" in step {isolate(step)}"
        events.append(
            Event(
                float(at) if isinstance(at, int | float) else job.updated_at,
                "failed",
                title,
                cut(str(error.get("message") or "")),
                None if error.get("traceback") is None else cut(str(error["traceback"])),
                error.get("type"),
            )
        )
    if job.started_at is not None:
        events.append(Event(job.started_at, "started", "Started (first attempt)"))
    if len(job.steps) > 1:
        for step in job.steps:
            if step.state == "succeeded" and step.finished_at is not None:
                events.append(
                    Event(step.finished_at, "step", f"Step {isolate(step.name)} succeeded")
                )
    if job.finished_at is not None and job.state.is_final:
        events.append(Event(job.finished_at, "finished", f"Finished: {job.state.value}"))
    events.sort(key=lambda event: event.at)
    return events
