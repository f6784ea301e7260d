"""The dashboard's ASGI application, mounted by :func:`conveyor.web.api.create_api` at
``/dashboard``: its routes, what every handler shares (:class:`Dashboard`), and the pages
its errors answer with.

Every page needs a session (:mod:`~conveyor.web.dashboard.session`); without one, a
``303`` to the login form. Every POST needs the session's CSRF token
(:mod:`~conveyor.web.dashboard.csrf`); without it, a 403 page and nothing done. An action
answers with a ``303`` back to a page (POST-redirect-GET) that shows what was done, or why
nothing was, in a flash message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from conveyor.backends.base import Backend
from conveyor.exceptions import BackendUnavailable, JobNotFound, QueueNotFound
from conveyor.web.dashboard import actions, csrf, login, pages
from conveyor.web.dashboard.bidi import isolate
from conveyor.web.dashboard.forms import read_form
from conveyor.web.dashboard.render import REFRESH_S, Pages
from conveyor.web.dashboard.session import Session, Sessions, base_path
from conveyor.web.dashboard.signing import Signer

if TYPE_CHECKING:
    from conveyor.web.api import Api


class LoginRequired(Exception):
    """No valid session: the browser is sent to the login form."""


class Dashboard:
    """What the handlers share: the API's state, the sessions, the pages."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.signer = Signer(api.settings.session_key)
        self.sessions = Sessions(api.settings.keys, self.signer, api.settings.session_max_age)
        self.pages = Pages(self.signer)

    async def backend(self) -> Backend:
        return await self.api.backend()

    def session(self, request: Request) -> Session:
        session = self.sessions.read(request)
        if session is None:
            raise LoginRequired()
        return session

    async def form(self, request: Request) -> tuple[Session, dict[str, str]]:
        """The session and the fields of a POST whose CSRF token is right; nothing is done
        for any other (:class:`LoginRequired`, :class:`~.csrf.CsrfRejected`)."""
        session = self.session(request)
        fields = await read_form(request)
        csrf.check(self.signer, "session", session.id, fields.get(csrf.FIELD))
        return session, fields

    def redirect(self, request: Request, to: str, flash: tuple[str, str] | None = None) -> Response:
        """A ``303`` to ``to`` (a path inside the dashboard), with a flash message."""
        response = RedirectResponse(base_path(request) + to, status_code=303)
        if flash is not None:
            self.pages.flash(response, request, *flash)
        return response

    @staticmethod
    def inside(request: Request, target: str | None, default: str) -> str:
        """``target`` if it is a page of the dashboard (relative to its base), else
        ``default``: a ``next`` field never sends the browser elsewhere."""
        base = base_path(request)
        if target and target.startswith(base + "/") and not target.startswith("//"):
            rest = target[len(base) :]
            # A browser resolves "..", also spelt %2e%2e, before it follows the link:
            # /dashboard/../v1/stats is /v1/stats.
            path = unquote(rest.split("?", 1)[0].split("#", 1)[0])
            dots = any(part in (".", "..") for part in path.split("/"))
            if "\\" not in rest and not rest.startswith("//") and not dots:
                return rest
        return default

    def error_page(
        self, request: Request, status: int, title: str, message: str, back: str = "/"
    ) -> Response:
        session = self.sessions.read(request)
        # A page of a GET is asked for again until it answers, then reloaded (a 503 of a
        # store that is back); one of a form's POST is not: it cannot be fetched again.
        again = request.method in ("GET", "HEAD")
        return self.pages.render(
            request,
            "error.html",
            {"status": status, "title": title, "message": message, "back": back},
            session=session,
            status=status,
            refresh=REFRESH_S if again else 0,
        )


def create_dashboard(api: Api) -> Starlette:
    """The dashboard of an API process, to be mounted at ``/dashboard``."""
    dashboard = Dashboard(api)

    def bind(handler: pages.Handler) -> pages.Endpoint:
        async def endpoint(request: Request) -> Response:
            return await handler(dashboard, request)

        return endpoint

    def get(path: str, handler: pages.Handler, name: str) -> Route:
        return Route(path, bind(handler), methods=["GET"], name=name)

    def post(path: str, handler: pages.Handler, name: str) -> Route:
        return Route(path, bind(handler), methods=["POST"], name=name)

    routes: list[BaseRoute] = [
        get("/", pages.overview, "overview"),
        get("/login", login.form, "login"),
        post("/login", login.submit, "login_submit"),
        post("/logout", login.logout, "logout"),
        get("/queues", pages.queues, "queues"),
        # A queue's name may hold "/" (only spaces and commas are refused), and may be
        # "." or "..", which a browser resolves away in a path: the pages name the queue
        # in a query or a form field (the paths that hold it still answer).
        get("/queues/empty", pages.confirm_empty, "confirm_empty"),
        post("/queues/{action:str}", actions.queue_action, "queue_action"),
        get("/queues/{name:path}/empty", pages.confirm_empty, "confirm_empty_at"),
        post("/queues/{name:path}/{action:str}", actions.queue_action, "queue_action_at"),
        get("/jobs", pages.jobs, "jobs"),
        # A job's id, when given by hand, is any text: "/" in it is sent as %2F, which
        # the path holds decoded.
        get("/jobs/{job_id:path}", pages.job, "job"),
        post("/jobs/{job_id:path}/{action:str}", actions.job_action, "job_action"),
        get("/failed", pages.failed, "failed"),
        get("/failed/remove", pages.confirm_remove, "confirm_remove"),
        post("/failed/retry", actions.retry_all, "retry_all"),
        post("/failed/remove", actions.remove_all, "remove_all"),
        get("/workers", pages.workers, "workers"),
        get("/stats", pages.stats, "stats"),
        Mount(
            "/static",
            StaticFiles(packages=[("conveyor.web.dashboard", "static")]),
            name="static",
        ),
    ]

    async def login_required(request: Request, exc: Exception) -> Response:
        target = request.url.path
        if request.url.query:
            target += "?" + request.url.query
        if request.method != "GET":
            target = base_path(request) + "/"
        return RedirectResponse(
            f"{base_path(request)}/login?next={quote(target, safe='/')}", status_code=303
        )

    async def csrf_rejected(request: Request, exc: Exception) -> Response:
        return dashboard.error_page(
            request,
            403,
            "Refused: this form is not valid here",
            "The form came without this session's CSRF token (it is old, from another "
            "session, or not from this dashboard). Nothing was done. Go back, reload the "
            "page and try again.",
        )

    async def job_not_found(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, JobNotFound)
        return dashboard.error_page(
            request,
            404,
            "No such job",
            f"There is no job {isolate(exc.job_id)}: it may have been deleted or pruned.",
            "/jobs",
        )

    async def queue_not_found(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, QueueNotFound)
        return dashboard.error_page(
            request, 404, "No such queue", f"There is no queue {isolate(exc.queue)}.", "/queues"
        )

    async def unavailable(request: Request, exc: Exception) -> Response:
        dashboard.api.store_trouble.refused(exc)
        response = dashboard.error_page(
            request,
            503,
            "The store is unavailable",
            "The store did not answer. Nothing was done; try again in a moment.",
        )
        response.headers["Retry-After"] = "1"
        return response

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        titles = {404: "No such page", 405: "Not allowed here"}
        return dashboard.error_page(
            request,
            exc.status_code,
            titles.get(exc.status_code, "Bad request"),
            str(exc.detail) if exc.status_code not in titles else _detail(exc.status_code),
        )

    return Starlette(
        routes=routes,
        exception_handlers={
            LoginRequired: login_required,
            csrf.CsrfRejected: csrf_rejected,
            JobNotFound: job_not_found,
            QueueNotFound: queue_not_found,
            BackendUnavailable: unavailable,
            HTTPException: http_error,
        },
    )


def _detail(status: int) -> str:
    if status == 404:
        return "The dashboard has no page at this address."
    return "This page does not take that kind of request."
