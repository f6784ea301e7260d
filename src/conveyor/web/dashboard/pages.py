"""The dashboard's pages (GET): overview, queues, jobs, one job, failed, workers, stats,
and the two confirmations (empty a queue, remove poisoned jobs)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from conveyor.backends.base import JobFilter, Page
from conveyor.exceptions import QueueNotFound
from conveyor.job import WAITING_STATES, State
from conveyor.web.cursors import decode_cursor, encode_cursor
from conveyor.web.dashboard import views
from conveyor.web.dashboard.forms import optional
from conveyor.web.dashboard.jobview import job_view

if TYPE_CHECKING:
    from conveyor.web.dashboard.app import Dashboard

Handler = Callable[["Dashboard", Request], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]

#: Poisoned jobs counted one by one, at most, for a confirmation filtered by task.
COUNT_LIMIT = 10_000


def _param(request: Request, name: str) -> str | None:
    return optional(request.query_params.get(name))


def _url(path: str, **params: str | None) -> str:
    """``path`` with the given parameters that are set, as a query string."""
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return f"{path}?{query}" if query else path


def _cursor(request: Request) -> str | None:
    """Where the page starts: the job id in the pager's ``cursor`` (one the API's
    encoding made, see conveyor.web.cursors); other text is a 400, not a wrong page."""
    text = _param(request, "cursor")
    if text is None:
        return None
    job_id = decode_cursor(text)
    if job_id is None:
        raise HTTPException(400, "This page link is not one the dashboard made: start over.")
    return job_id


def _pages(
    path: str, cursor: str | None, page: Page, **params: str | None
) -> dict[str, str | None]:
    """The pager's links: back to the newest page, and on to older jobs."""
    older = page.next_cursor
    return {
        "newest_url": _url(path, **params) if cursor else None,
        "older_url": _url(path, **params, cursor=encode_cursor(older)) if older else None,
    }


async def overview(dash: Dashboard, request: Request) -> Response:
    session = dash.session(request)
    found = await views.overview(await dash.backend())
    return dash.pages.render(
        request, "overview.html", {"o": found, "now": found.now}, session=session, active="overview"
    )


async def queues(dash: Dashboard, request: Request) -> Response:
    session = dash.session(request)
    backend = await dash.backend()
    return dash.pages.render(
        request,
        "queues.html",
        {"queues": await views.queues(backend), "now": await backend.now()},
        session=session,
        active="queues",
    )


async def confirm_empty(dash: Dashboard, request: Request) -> Response:
    session = dash.session(request)
    name = request.path_params.get("name") or request.query_params.get("queue")
    if not name:
        raise HTTPException(400, "Name the queue to empty: ?queue=<name>.")
    info = await views.queue(await dash.backend(), name)
    if info is None:
        raise QueueNotFound(name)
    return dash.pages.render(
        request,
        "confirm_empty.html",
        {"queue": info, "count": views.waiting(info)},
        session=session,
        active="queues",
    )


def _states(request: Request) -> tuple[str | None, frozenset[State] | None]:
    """The state asked for (a state, or "waiting": queued, scheduled and retrying, what
    the overview counts as waiting), and the states it lists; None for all."""
    text = _param(request, "state")
    if text is None or text == "all":
        return None, None
    if text == views.WAITING:
        return text, WAITING_STATES
    try:
        state = State(text)
    except ValueError:
        raise HTTPException(400, f"There is no state {text!r}.") from None
    return state.value, frozenset({state})


async def jobs(dash: Dashboard, request: Request) -> Response:
    session = dash.session(request)
    wanted = _param(request, "id")
    if wanted is not None:
        # Search by id: the job's own page (a 404 page, with a way back, if there is none).
        return dash.redirect(request, "/jobs/" + quote(wanted, safe=""))
    state, states = _states(request)
    queue, task, cursor = (
        _param(request, "queue"),
        _param(request, "task"),
        _cursor(request),
    )
    backend = await dash.backend()
    page = await views.jobs(backend, states, queue, task, cursor)
    found = await views.queues(backend)
    counts = views.count_by_state(found, queue)
    counts[views.WAITING] = sum(counts.get(s.value, 0) for s in WAITING_STATES)
    return dash.pages.render(
        request,
        "jobs.html",
        {
            "page": page,
            "state": state,
            "queue": queue,
            "task": task,
            "cursor": cursor,
            "counts": counts,
            "queue_names": [q.name for q in found],
            "now": await backend.now(),
            "tab_urls": {
                name: _url("/jobs", state=None if name == "all" else name, queue=queue, task=task)
                for name in ["all", views.WAITING, *(s.value for s in views.STATES)]
            },
            **_pages("/jobs", cursor, page, state=state, queue=queue, task=task),
        },
        session=session,
        active="jobs",
    )


async def job(dash: Dashboard, request: Request) -> Response:
    session = dash.session(request)
    job_id = request.path_params["job_id"]
    backend = await dash.backend()
    found = await backend.get(job_id)
    return dash.pages.render(
        request,
        "job.html",
        {"v": job_view(found), "job": found, "now": await backend.now()},
        session=session,
        active="jobs",
    )


async def failed(dash: Dashboard, request: Request) -> Response:
    session = dash.session(request)
    queue, task, cursor = (
        _param(request, "queue"),
        _param(request, "task"),
        _cursor(request),
    )
    backend = await dash.backend()
    page = await views.jobs(backend, frozenset({State.POISONED}), queue, task, cursor)
    found = await views.queues(backend)
    counts = views.count_by_state(found, queue)
    return dash.pages.render(
        request,
        "failed.html",
        {
            "page": page,
            "queue": queue,
            "task": task,
            "cursor": cursor,
            "total": None if task else counts.get(State.POISONED.value, 0),
            "queue_names": [q.name for q in found],
            "now": await backend.now(),
            "remove_url": _url("/failed/remove", queue=queue, task=task),
            **_pages("/failed", cursor, page, queue=queue, task=task),
        },
        session=session,
        active="failed",
    )


async def confirm_remove(dash: Dashboard, request: Request) -> Response:
    session = dash.session(request)
    queue, task = _param(request, "queue"), _param(request, "task")
    backend = await dash.backend()
    now = await backend.now()
    if task is None:
        found = await views.queues(backend)
        count: int | None = views.count_by_state(found, queue).get(State.POISONED.value, 0)
    else:
        count = await _count(
            dash, JobFilter(states=frozenset({State.POISONED}), queue=queue, task=task)
        )
    return dash.pages.render(
        request,
        "confirm_remove.html",
        {"queue": queue, "task": task, "count": count, "seen": now, "limit": COUNT_LIMIT},
        session=session,
        active="failed",
    )


async def _count(dash: Dashboard, job_filter: JobFilter) -> int | None:
    """Jobs matching ``job_filter``, counted a page at a time; None past COUNT_LIMIT."""
    backend = await dash.backend()
    count, cursor = 0, None
    while True:
        page = await backend.list_jobs(job_filter, cursor, 500)
        count += len(page.jobs)
        if count > COUNT_LIMIT:
            return None
        if page.next_cursor is None:
            return count
        cursor = page.next_cursor


async def workers(dash: Dashboard, request: Request) -> Response:
    session = dash.session(request)
    backend = await dash.backend()
    return dash.pages.render(
        request,
        "workers.html",
        {
            "workers": await backend.list_workers(),
            "now": await backend.now(),
            "stale_after": views.STALE_AFTER,
        },
        session=session,
        active="workers",
    )


async def stats(dash: Dashboard, request: Request) -> Response:
    session = dash.session(request)
    backend = await dash.backend()
    return dash.pages.render(
        request,
        "stats.html",
        {
            "stats": await backend.stats(),
            "queues": await views.queues(backend),
            "now": await backend.now(),
        },
        session=session,
        active="stats",
    )
