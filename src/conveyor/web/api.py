"""The REST API, ``/v1``: submit multi-step HTTP jobs, poll them through a cache, delete them.

``create_api(app, settings)`` builds the ASGI application (FastAPI on Starlette).
The poll route, ``GET /v1/jobs/{id}``, is a bare ASGI app answered before FastAPI's
middleware (:mod:`conveyor.web.poll`): one read of the job's head, and the ``304``
answer is made from its version without reading or building the document.
Every error is an RFC 9457 problem (:mod:`conveyor.web.problems`).

Who may do what:

* a tenant's key submits jobs, and reads, lists, retries and deletes its own;
  another tenant's job is a 404, as if it did not exist;
* an admin key does all that for every job, and steers queues and reads stats;
* a job's read token (the ``token`` in the ``Location`` a POST answers) reads
  that one job, and its events.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from pydantic import ValidationError
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from conveyor import __version__
from conveyor.app import Conveyor
from conveyor.backends import redact_url
from conveyor.backends.base import Backend, JobFilter, JobHead
from conveyor.exceptions import (
    BackendUnavailable,
    ConfigError,
    ConveyorError,
    InvalidJob,
    JobNotFound,
    JobStateError,
)
from conveyor.job import Job, State
from conveyor.storable import problem
from conveyor.web import models
from conveyor.web.auth import Principal, token_matches
from conveyor.web.caching import etag_of
from conveyor.web.cursors import PATTERN as CURSOR
from conveyor.web.cursors import encode_cursor
from conveyor.web.dashboard import create_dashboard
from conveyor.web.documents import PRIVATE, job_document, job_summary, rfc3339
from conveyor.web.handlers import install_handlers
from conveyor.web.inputs import count
from conveyor.web.metrics import Metrics
from conveyor.web.openapi import openapi_schema, problem_responses
from conveyor.web.outage import StoreTrouble
from conveyor.web.parsing import (
    IDEMPOTENCY_KEY,
    JSON,
    STATES,
    after_cursor,
    idempotency_key,
    json_body,
    states,
)
from conveyor.web.poll import PATH, Poll, PollFirst
from conveyor.web.problems import (
    Problem,
    problem_response,
    validation_errors,
)
from conveyor.web.purge import Purger
from conveyor.web.settings import ApiSettings
from conveyor.web.submit import (
    build_job,
    check,
    reject,
    request_digest,
    same_request,
    unstorable,
)
from conveyor.worker.callbacks import callback_url

logger = logging.getLogger("conveyor.api")

#: What the API's answers say to caches, but the job document's (docs/caching.md).
NO_STORE = {"Cache-Control": "no-store"}
#: The SSE keep-alive period, in seconds.
SSE_KEEPALIVE_S = 15.0
#: How long the API waits for a cancelled running job to stop before it gives up removing it.
REAP_WITHIN_S = 600.0
#: How long the API waits before it asks again a store that was unavailable, in seconds.
REAP_RETRY_S = 1.0
#: How long a stopped job with a callback stays after its DELETE before it is removed:
#: its worker reads it to call back (see conveyor.worker.callbacks).
CALLBACK_READ_S = 5.0

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_dumps(data), status_code=status, media_type=JSON, headers=headers)


class Api:
    """The state of one API process: the app, the settings and what runs in the background."""

    def __init__(self, app: Conveyor, settings: ApiSettings) -> None:
        self.app = app
        self.settings = settings
        self.metrics = Metrics()
        self.purger = Purger(settings.purge_url)
        #: Logs the 503s of an unavailable store, a line at a time (API and dashboard).
        self.store_trouble = StoreTrouble()
        self._reapers: dict[str, asyncio.Task[None]] = {}
        #: The server stops (see stop_watching); the futures of the watches waiting now
        #: (futures, not an asyncio.Event: one would tie the API to its first loop).
        self.stopping = False
        self._watching: set[asyncio.Future[None]] = set()

    def stop_watching(self) -> None:
        """The server is stopping: long polls answer now and event streams end (their
        clients connect again, to another process). A graceful stop waits for every
        request to end, and an event stream of a job that does not end never did. Call
        it on the server's loop."""
        self.stopping = True
        for stopped in self._watching:
            if not stopped.done():
                stopped.set_result(None)

    async def watch(
        self, backend: Backend, job_id: str, version: int, timeout: float
    ) -> Job | None:
        """``backend.watch``, cut short (None: no change) when the server stops."""
        if self.stopping:
            return None
        stopped: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._watching.add(stopped)
        watching = asyncio.ensure_future(backend.watch(job_id, version, timeout))
        try:
            await asyncio.wait((watching, stopped), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._watching.discard(stopped)
            stopped.cancel()
            if not watching.done():
                watching.cancel()
                await asyncio.gather(watching, return_exceptions=True)
        return None if watching.cancelled() else watching.result()

    async def backend(self) -> Backend:
        try:
            return await self.app.backend()
        except ConfigError as exc:
            # A store the API cannot use (its schema missing or older than the code:
            # `conveyor api` refuses one at start-up, an app serving create_api itself
            # may not have): the store's problem, not the client's. A 503 like a store
            # that is down, the reason in the log.
            raise BackendUnavailable(f"{exc.field}: {exc.problem}") from None

    # -- who is asking ----------------------------------------------------------------
    def principal(self, request: Request) -> Principal:
        header = request.headers.get("authorization")
        principal = self.settings.keys.lookup(header)
        if principal is None:
            detail = "unknown API key" if header else "send Authorization: Bearer <API key>"
            raise Problem(401, detail, [{"header": "Authorization", "detail": detail}])
        return principal

    def admin(self, request: Request) -> Principal:
        principal = self.principal(request)
        if not principal.admin:
            raise Problem(403, "this needs an admin key (CONVEYOR_ADMIN_KEYS)")
        return principal

    async def visible_job(self, job_id: str, principal: Principal) -> Job:
        job = await (await self.backend()).get(job_id)
        if not principal.sees(job.tenant):
            raise JobNotFound(job_id)
        return job

    async def readable_job(self, request: Request, job_id: str) -> tuple[Job, bool]:
        """The job for a read by key or by read token; whether the token opened it."""
        token = request.query_params.get("token")
        principal = self.reader(request.headers.get("authorization"), token)
        job = await (await self.backend()).get(job_id)
        return job, self.opened_by_token(JobHead.of(job), principal, token)

    def reader(self, authorization: str | None, token: str | None) -> Principal | None:
        """The principal of a read's key (None: a read token alone), checked before
        the store is asked; 401 when the read brings neither."""
        principal = self.settings.keys.lookup(authorization) if authorization else None
        if principal is None and not token:
            detail = "unknown API key" if authorization else "send an API key or the job's token"
            raise Problem(401, detail, [{"header": "Authorization", "detail": detail}])
        return principal

    def opened_by_token(
        self, head: JobHead, principal: Principal | None, token: str | None
    ) -> bool:
        """Whether the read token opened the job (False: the key did); a job that neither
        opens is a 404, as if it did not exist."""
        if principal is not None and principal.sees(head.tenant):
            return False
        private = head.metadata.get(PRIVATE)
        if token and isinstance(private, dict) and token_matches(token, private.get("read")):
            return True
        raise JobNotFound(head.id)

    # -- submit ----------------------------------------------------------------------
    async def submit(self, request: Request) -> Response:
        principal = self.principal(request)
        body = await json_body(request, self.settings.max_body)
        try:
            spec = models.JobIn.model_validate(body)
        except ValidationError as exc:
            raise reject(validation_errors(exc.errors())) from None
        errors = unstorable(body) + check(spec, self.settings)
        if errors:
            raise reject(errors)
        key = idempotency_key(request)
        digest = request_digest(body)
        backend = await self.backend()
        job, token = build_job(
            spec,
            principal,
            self.settings,
            digest=digest,
            idempotency_key=key,
            now=time.time(),
        )
        stored = await self._enqueue(backend, job)
        if stored.id != job.id:
            # The same request gets the key's job back; another request under the same
            # key is refused.
            if not same_request(stored, digest):
                raise Problem(
                    422,
                    "this Idempotency-Key was used for another request body",
                    [{"header": "Idempotency-Key", "detail": "used for another request body"}],
                )
            token = stored.metadata[PRIVATE]["read"]
        self.metrics.submitted.inc()
        location = f"/v1/jobs/{stored.id}?token={token}"
        document = job_document(stored)
        document["links"] = {"self": location}
        return json_response(
            document,
            202,
            {"Location": location, "ETag": etag_of(stored.version), "Cache-Control": "no-store"},
        )

    @staticmethod
    async def _enqueue(backend: Backend, job: Job) -> Job:
        """``job`` stored; with an Idempotency-Key, the key's job if one is stored.

        A key holds as long as its job is stored, finished or not: a client that sends its
        POST again after a timeout gets the job it made, even when that job has already
        run. The store looks the key up and stores the job in one atomic step
        (``Backend.enqueue_once``): requests racing with one key to any number of API
        processes make one job, even when it runs and finishes between two of them. (The
        key names its tenant, see ``submit._unique_key``, and the caller compares the
        request bodies.)
        """
        try:
            if job.unique_key is None:
                return (await backend.enqueue([job]))[0]
            return await backend.enqueue_once(job)
        except InvalidJob as exc:
            raise Problem(
                422, str(exc), [{"pointer": "/" + exc.field, "detail": exc.problem}]
            ) from None

    # -- delete ----------------------------------------------------------------------
    async def delete(self, request: Request, job_id: str) -> Response:
        principal = self.principal(request)
        backend = await self.backend()
        job = await self.visible_job(job_id, principal)
        if job.state not in (State.RUNNING, State.CANCELLING):
            try:
                removed = await backend.delete(job_id)
            except JobStateError:
                job = await backend.get(job_id)  # claimed meanwhile: cancel it instead
            else:
                return await self._removed(job_id, removed)
        if job.state is State.RUNNING:
            job = await backend.cancel(job_id, "deleted")
        if job.state.is_final:
            return await self._removed(job_id, await backend.delete(job_id))
        self._reap(job)
        await self.purger.purge(job_id)
        return json_response(job_document(job), 202, NO_STORE)

    async def _removed(self, job_id: str, removed: bool) -> Response:
        """204 for the DELETE that removed the job; 404 for one that found it gone (a
        DELETE of the same job at the same moment removed it first)."""
        if not removed:
            raise JobNotFound(job_id)
        await self.purger.purge(job_id)
        return Response(status_code=204, headers=NO_STORE)

    def _reap(self, job: Job) -> None:
        """Remove a cancelled running job once its worker has stopped it."""
        if job.id in self._reapers:
            return
        task = asyncio.get_running_loop().create_task(self._reaper(job.id, job.version))
        self._reapers[job.id] = task
        task.add_done_callback(lambda _: self._reapers.pop(job.id, None))

    async def _reaper(self, job_id: str, version: int) -> None:
        deadline = time.monotonic() + REAP_WITHIN_S
        away = False  # the store is unavailable: said once, until it answers again
        while time.monotonic() < deadline:
            try:
                seen = await self._reap_once(job_id, version)
            except JobNotFound:
                return
            except BackendUnavailable as exc:
                # A store that is away for a moment (a restart, a failover) does not end
                # the wait: given up here, the job stayed cancelled after its 202.
                if not away:
                    logger.warning(
                        "job %s: the store is unavailable (%s); removing it after its cancel "
                        "once it is back",
                        job_id,
                        exc,
                    )
                away = True
                await asyncio.sleep(REAP_RETRY_S)
                continue
            except ConveyorError as exc:
                logger.warning("could not remove job %s after its cancel: %s", job_id, exc)
                return
            if seen is None:
                return
            version, away = seen, False
        logger.warning("job %s did not stop within %.0f s of its DELETE", job_id, REAP_WITHIN_S)

    async def _reap_once(self, job_id: str, version: int) -> int | None:
        """Wait a while for the job to change; remove it once its worker has stopped it.
        The version seen, or None once the job is removed."""
        job = await (await self.backend()).watch(job_id, version, 5.0)
        if job is None:
            return version
        if job.state.is_final or job.state.is_waiting:
            if job.state.is_final and callback_url(job, job.state.value) is not None:
                # The worker that stopped it reads the final document for the callback
                # right after it wrote the outcome: removed first, that callback was
                # lost ("not found"), one time in four on one machine.
                await asyncio.sleep(CALLBACK_READ_S)
            await (await self.backend()).delete(job_id)
            await self.purger.purge(job_id)
            logger.info("job %s removed after its cancel", job_id)
            return None
        return job.version

    async def aclose(self) -> None:
        for task in list(self._reapers.values()):
            task.cancel()
        await asyncio.gather(*self._reapers.values(), return_exceptions=True)
        await self.purger.aclose()

    # -- events ----------------------------------------------------------------------
    async def events(self, request: Request, job_id: str) -> Response:
        job, _ = await self.readable_job(request, job_id)
        seen = count(request.headers.get("last-event-id")) or 0
        if job.state.is_final and seen >= job.version:
            # Nothing more will come. An EventSource comes back by itself when a stream
            # ends, with the last id it got: a 204 is what stops it (an empty stream
            # had it back every second for as long as its page stayed open).
            return Response(status_code=204, headers=NO_STORE)
        backend = await self.backend()

        async def stream() -> AsyncIterator[str]:
            nonlocal job, seen
            yield "retry: 1000\n\n"
            while True:
                if job.version > seen:
                    seen = job.version
                    yield f"id: {job.version}\nevent: job\ndata: {_dumps(job_document(job))}\n\n"
                if job.state.is_final:
                    return
                try:
                    changed = await self.watch(backend, job_id, seen, SSE_KEEPALIVE_S)
                except JobNotFound:
                    yield "event: deleted\ndata: {}\n\n"
                    return
                if changed is None:
                    if self.stopping:
                        return  # the client connects again, with its Last-Event-ID
                    yield ": keep-alive\n\n"
                else:
                    job = changed

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )


# -- the application ----------------------------------------------------------------------
def create_api(app: Conveyor | str, settings: ApiSettings | None = None) -> FastAPI:
    """The ASGI application of the API for a conveyor app (or a store URL)."""
    conveyor = app if isinstance(app, Conveyor) else Conveyor(app)
    api = Api(conveyor, settings or ApiSettings.from_env())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await api.aclose()
            await conveyor.aclose()

    web = PollFirst(
        title="conveyor",
        version=__version__,
        summary="Multi-step HTTP jobs: submit, poll through a cache, delete.",
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    web.state.api = api
    install_handlers(web, api.store_trouble)
    # The hot route: answered by PollFirst before FastAPI's middleware and, for what that
    # leaves to the router (HEAD, a mounted app), first among the routes.
    web.poll = Poll(api)
    web.router.routes.insert(0, Route(PATH, web.poll, methods=["GET"]))
    web.allow_origins(api.settings.cors_origins)
    _routes(web, api)
    # The dashboard (docs/dashboard.md): server-rendered pages, outside the OpenAPI schema.
    web.mount("/dashboard", create_dashboard(api), name="dashboard")
    web.openapi = lambda: openapi_schema(web)  # type: ignore[method-assign]
    return web


def _routes(web: FastAPI, api: Api) -> None:
    @web.post(
        "/v1/jobs",
        status_code=202,
        response_model=models.JobCreated,
        responses=problem_responses(400, 401, 413, 415, 422, 503),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {JSON: {"schema": {"$ref": "#/components/schemas/JobIn"}}},
            },
            "parameters": [
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "maxLength": 255, "pattern": IDEMPOTENCY_KEY},
                }
            ],
        },
        summary="Submit a job of HTTP steps",
        tags=["jobs"],
    )
    async def submit(request: Request) -> Response:
        """Stored before it is acknowledged: ``202`` with ``Location`` (a capability URL
        carrying the job's read token) and the job document."""
        return await api.submit(request)

    @web.get(
        "/v1/jobs",
        response_model=models.JobList,
        responses=problem_responses(401, 422, 503),
        tags=["jobs"],
    )
    async def list_jobs(
        request: Request,
        state: Annotated[str | None, Query(json_schema_extra={"pattern": STATES})] = None,
        queue: str | None = None,
        cursor: Annotated[str | None, Query(json_schema_extra={"pattern": CURSOR})] = None,
        limit: Annotated[int, Query(json_schema_extra={"minimum": 1, "maximum": 500})] = 50,
    ) -> Response:
        """Jobs, newest first; ``state`` takes several, comma-separated; pass ``next_cursor``
        back as ``cursor`` for the next page."""
        principal = api.principal(request)
        if not 1 <= limit <= 500:
            raise Problem(
                422, "limit: 1 to 500", [{"parameter": "limit", "detail": "expected 1 to 500"}]
            )
        tenant = None if principal.admin else principal.tenant
        why = None if queue is None else problem(queue)
        if why is not None:  # it would reach the store as an error (a 500)
            raise Problem(422, f"queue: {why}", [{"parameter": "queue", "detail": why}])
        after = after_cursor(cursor)
        job_filter = JobFilter(states=states(state), queue=queue, tenant=tenant)
        page = await (await api.backend()).list_jobs(job_filter, after, limit)
        next_cursor = None if page.next_cursor is None else encode_cursor(page.next_cursor)
        return json_response(
            {"jobs": [job_summary(job) for job in page.jobs], "next_cursor": next_cursor},
            headers=NO_STORE,
        )

    @web.delete(
        "/v1/jobs/{job_id}",
        status_code=204,
        responses={
            202: {
                "description": "Running: cancelling, removed once stopped",
                "model": models.JobOut,
            },
            **problem_responses(401, 404, 503),
        },
        tags=["jobs"],
    )
    async def delete_job(request: Request, job_id: str) -> Response:
        """Not running: removed (``204``). Running: ``202``, state ``cancelling``; the
        request in flight is aborted, no further step starts, and the job is removed."""
        return await api.delete(request, job_id)

    @web.post(
        "/v1/jobs/{job_id}/retry",
        response_model=models.JobOut,
        responses=problem_responses(401, 404, 409, 503),
        tags=["jobs"],
    )
    async def retry_job(request: Request, job_id: str) -> Response:
        """A poisoned (or cancelled) job runs again, from the step that failed."""
        principal = api.principal(request)
        await api.visible_job(job_id, principal)
        job = await (await api.backend()).retry(job_id)
        await api.purger.purge(job_id)
        return json_response(job_document(job), headers=NO_STORE)

    @web.get(
        "/v1/jobs/{job_id}/events",
        responses={
            200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"},
            204: {"description": "The job is finished and Last-Event-ID names its last event"},
            **problem_responses(401, 404, 503),
        },
        tags=["jobs"],
    )
    async def job_events(request: Request, job_id: str) -> Response:
        """Server-Sent Events: an ``event: job`` with the document on every change (``id``
        is the version), until the job is finished; ``event: deleted`` if it is removed.
        ``204`` for a finished job whose last event the client has (``Last-Event-ID``)."""
        return await api.events(request, job_id)

    @web.get(
        "/v1/queues",
        response_model=models.QueueList,
        responses=problem_responses(401, 403, 503),
        tags=["queues"],
    )
    async def list_queues(request: Request) -> Response:
        api.admin(request)
        queues = await (await api.backend()).list_queues()
        return json_response(
            {
                "queues": [
                    {
                        "name": q.name,
                        "paused": q.paused,
                        "counts": q.counts,
                        "created_at": rfc3339(q.created_at),
                    }
                    for q in queues
                ]
            },
            headers=NO_STORE,
        )

    async def queue_action(request: Request, name: str, action: str) -> Response:
        api.admin(request)
        backend = await api.backend()
        if action == "empty":
            deleted = await backend.empty_queue(name)
            return json_response({"queue": name, "deleted": deleted}, headers=NO_STORE)
        await (backend.pause_queue(name) if action == "pause" else backend.resume_queue(name))
        return json_response({"queue": name, "paused": action == "pause"}, headers=NO_STORE)

    def queue_endpoint(action: str) -> Callable[[Request, str], Awaitable[Response]]:
        # The action is bound by the closure, not a default argument: FastAPI would have made
        # that a query parameter, and POST .../pause?action=empty emptied the queue.
        async def endpoint(request: Request, name: str) -> Response:
            return await queue_action(request, name, action)

        return endpoint

    for action, doc in (
        ("pause", "No job of the queue starts until it is resumed."),
        ("resume", "Jobs of the queue start again."),
        ("empty", "Delete the queue's waiting jobs (running ones finish)."),
    ):
        # A queue's name may hold "/" (only spaces and commas are refused): the path
        # converter takes it whole, sent as is or as %2F (which the server decodes).
        web.add_api_route(
            f"/v1/queues/{{name:path}}/{action}",
            queue_endpoint(action),
            methods=["POST"],
            name=f"{action}_queue",
            summary=f"{action.capitalize()} a queue",
            description=doc,
            responses=problem_responses(401, 403, 404, 503),
            tags=["queues"],
        )

    @web.get("/v1/stats", responses=problem_responses(401, 403, 503), tags=["admin"])
    async def stats(request: Request) -> Response:
        api.admin(request)
        figures = await (await api.backend()).stats()
        return json_response(figures.to_dict(), headers=NO_STORE)

    @web.get("/healthz", tags=["admin"], responses=problem_responses(503))
    async def healthz() -> Response:
        """200 when the store answers within 2 seconds, else 503."""
        try:
            backend = await api.backend()
            async with asyncio.timeout(2.0):
                await backend.now()
        except (ConveyorError, TimeoutError) as exc:
            return problem_response(
                503, f"store {redact_url(api.app.url)}: {str(exc) or 'no answer in 2 s'}"
            )
        return json_response({"status": "ok"}, headers=NO_STORE)

    @web.get(
        "/metrics",
        tags=["admin"],
        responses={200: {"content": {"text/plain": {}}, "description": "Prometheus"}},
    )
    async def metrics() -> Response:
        """Prometheus metrics: the API's own counters and the store's figures."""
        backend = await api.backend()
        body, content_type = api.metrics.render(await backend.list_queues(), await backend.stats())
        return Response(body, media_type=content_type, headers=NO_STORE)
