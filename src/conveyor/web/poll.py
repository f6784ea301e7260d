"""``GET /v1/jobs/{id}``, the poll: the API's hot route, as a bare ASGI app.

Clients poll a job far more often than they do anything else with it, so this route
is kept lean (``bench/w5_poll.py`` measures it; docs/benchmarks.md, W5, has the figures):

* :class:`PollFirst` (the FastAPI application ``create_api`` builds) answers it before
  FastAPI's middleware stack and router, which cost more per request than the whole
  poll; every other request goes on to FastAPI as before;
* no Request or Response objects: the two headers it reads and the ones it writes are
  bytes in the ASGI scope and messages;
* one indexed read of the job's head (:meth:`~conveyor.backends.base.Backend.head`:
  version, state, tenant, metadata) decides who may read the job and, when the
  client's ETag is current, answers ``304`` without reading or building the document;
  only a ``200`` reads the whole job and encodes its document.

Errors are raised as on the other routes (:class:`~conveyor.web.problems.Problem`,
``JobNotFound``, ``BackendUnavailable``) and answered by the application's exception
handlers. The same :class:`Poll` is also an ordinary route of the application, for
``HEAD`` and for an application mounted under a prefix; middleware added to the
application does not see the polls :class:`PollFirst` answers.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from fastapi import FastAPI
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from conveyor.backends.base import JobHead
from conveyor.job import Job, State
from conveyor.web.caching import cache_control, etag_of, matches_etag
from conveyor.web.cors import CORS_PREFIX, cors_middleware
from conveyor.web.documents import job_document
from conveyor.web.inputs import count
from conveyor.web.problems import Problem

if TYPE_CHECKING:
    from conveyor.web.api import Api

PATH = "/v1/jobs/{job_id}"
_PREFIX = "/v1/jobs/"
#: Longest long-poll (``?wait=``), in seconds.
MAX_WAIT_S = 30.0

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_JSON = (b"content-type", b"application/json")
_NO_STORE = b"no-store"


class Poll:
    """The poll route: an ASGI app (the ``job_id`` from the route's path parameters)."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self._ok = api.metrics.polls.labels("200")
        self._not_modified = api.metrics.polls.labels("304")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.answer(scope["path_params"]["job_id"], scope, send)

    async def answer(self, job_id: str, scope: Scope, send: Send) -> None:
        authorization = if_none_match = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"if-none-match":
                if_none_match = value.decode("latin-1")
        params = query_params(scope["query_string"])
        token = params.get("token")
        api = self.api
        principal = api.reader(authorization, token)
        backend = await api.backend()
        if if_none_match is None and "wait" not in params:
            # Nothing to compare and nothing to wait for: the answer is the document, so
            # the whole job is read at once.
            job = await backend.get(job_id)
            by_token = api.opened_by_token(JobHead.of(job), principal, token)
            await self._document(job, by_token, False, send)
            return
        head = await backend.head(job_id)
        by_token = api.opened_by_token(head, principal, token)
        wait = wait_params(params, head.version)
        version, state, changed = head.version, head.state, None
        if wait is not None and version <= wait[1]:
            changed = await api.watch(backend, job_id, wait[1], wait[0])
            if changed is not None:
                version, state = changed.version, changed.state
        etag = etag_of(version)
        if matches_etag(if_none_match, etag):
            self._not_modified.inc()
            headers = self._headers(etag, state, by_token, wait is not None)
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        # The job may have changed since its head was read: the document is of the job
        # read now, and so are its ETag and Cache-Control.
        job = changed or await backend.get(job_id)
        await self._document(job, by_token, wait is not None, send)

    async def _document(self, job: Job, by_token: bool, waited: bool, send: Send) -> None:
        body = _dumps(job_document(job)).encode()
        headers = self._headers(etag_of(job.version), job.state, by_token, waited)
        headers += [_JSON, (b"content-length", b"%d" % len(body))]
        self._ok.inc()
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _headers(
        self, etag: str, state: State, by_token: bool, waited: bool
    ) -> list[tuple[bytes, bytes]]:
        if waited:
            cache = _NO_STORE
        else:
            settings = self.api.settings
            cache = cache_control(
                state,
                public=by_token,
                final_max_age=settings.final_max_age,
                purged=settings.purge_url is not None,
            ).encode()
        return [(b"etag", etag.encode()), (b"cache-control", cache)]


class PollFirst(FastAPI):
    """The API's FastAPI application, which answers polls itself before its middleware."""

    poll: Poll | None = None
    #: The CORS middleware in front of ``/v1/`` (:mod:`conveyor.web.cors`), when origins
    #: are allowed: polls included, so it stands before them.
    cors: ASGIApp | None = None

    def allow_origins(self, origins: tuple[str, ...]) -> None:
        """Let web pages of ``origins`` call ``/v1/`` (none: no CORS headers at all)."""
        self.cors = cors_middleware(self._dispatch, origins) if origins else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.cors is not None and scope["type"] == "http":
            path = scope.get("path", "")
            root = scope.get("root_path", "")
            if path.startswith(CORS_PREFIX) or (root and path.startswith(root + CORS_PREFIX)):
                await self.cors(scope, receive, send)
                return
        await self._dispatch(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            self.poll is not None
            and scope["type"] == "http"
            and scope["method"] == "GET"
            and path.startswith(_PREFIX)
            and not scope.get("root_path")
        ):
            job_id = path[len(_PREFIX) :]
            if job_id and "/" not in job_id:
                try:
                    await self.poll.answer(job_id, scope, send)
                except Exception as exc:
                    # As FastAPI's ExceptionMiddleware would: the handler of the nearest
                    # class; an exception nobody handles goes up to uvicorn (a 500).
                    handler = next(
                        (
                            self.exception_handlers[cls]
                            for cls in type(exc).__mro__
                            if cls in self.exception_handlers
                        ),
                        None,
                    )
                    if handler is None:
                        raise
                    response = handler(Request(scope, receive), exc)
                    if inspect.isawaitable(response):
                        response = await response
                    await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def query_params(raw: bytes) -> dict[str, str]:
    """The query string's parameters, read as Starlette's ``request.query_params`` reads
    them (Latin-1, blank values kept, the last of a repeated name wins)."""
    if not raw:
        return {}
    text = raw.decode("latin-1")
    if "%" in text or "+" in text:
        return dict(parse_qsl(text, keep_blank_values=True))
    # Nothing to unquote (a read token is URL-safe): splitting by hand costs a sixth.
    params = {}
    for part in text.split("&"):
        if part:
            name, _, value = part.partition("=")
            params[name] = value
    return params


def wait_params(params: Mapping[str, str], current: int) -> tuple[float, int] | None:
    """``?wait=N&version=V`` of a long poll: (seconds, version to wait past); None without
    ``wait``. ``version`` defaults to the job's ``current`` one."""
    wait = params.get("wait")
    if wait is None:
        return None
    try:
        seconds = float(wait)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= MAX_WAIT_S:
        raise Problem(
            422,
            f"wait: seconds from 0 to {MAX_WAIT_S:g}",
            [{"parameter": "wait", "detail": f"expected 0 to {MAX_WAIT_S:g}, got {wait!r}"}],
        )
    version = params.get("version")
    if version is None:
        return seconds, current
    number = count(version)
    if number is None:
        raise Problem(
            422,
            "version: an integer",
            [{"parameter": "version", "detail": f"expected an integer, got {version!r}"}],
        )
    return seconds, number
