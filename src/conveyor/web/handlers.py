"""The API's error handlers: every error its routes raise, and every error of the
framework (an unknown route, a wrong method, a parameter that does not validate),
answered as an RFC 9457 problem."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match, Route

from conveyor.exceptions import (
    BackendCorrupt,
    BackendUnavailable,
    JobNotFound,
    JobStateError,
    QueueNotFound,
)
from conveyor.web.outage import StoreTrouble
from conveyor.web.problems import Problem, message, problem_response, validation_errors


def install_handlers(web: FastAPI, store_trouble: StoreTrouble) -> None:
    """Every error the API's routes raise answered as a problem (RFC 9457)."""

    @web.exception_handler(Problem)
    async def problem(_: Request, exc: Problem) -> Response:
        return exc.response()

    @web.exception_handler(JobNotFound)
    async def not_found(_: Request, exc: JobNotFound) -> Response:
        return problem_response(404, f"no job {exc.job_id}")

    @web.exception_handler(QueueNotFound)
    async def no_queue(_: Request, exc: QueueNotFound) -> Response:
        return problem_response(404, f"no queue {exc.queue}")

    @web.exception_handler(JobStateError)
    async def conflict(_: Request, exc: JobStateError) -> Response:
        return problem_response(409, str(exc))

    @web.exception_handler(BackendUnavailable)
    async def unavailable(_: Request, exc: BackendUnavailable) -> Response:
        store_trouble.refused(exc)
        if isinstance(exc, BackendCorrupt):
            # No Retry-After: no retry mends a damaged store (the log names the file).
            return problem_response(503, "the store cannot be read; its operator must restore it")
        return problem_response(
            503, "the store is unavailable; try again", headers={"Retry-After": "1"}
        )

    @web.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> Response:
        errors = []
        for error in exc.errors():
            where, *rest = error["loc"]
            if where in ("query", "path", "header"):
                errors.append(
                    {
                        "parameter" if where != "header" else "header": ".".join(map(str, rest)),
                        "detail": message(error),
                    }
                )
            else:
                errors.extend(validation_errors([error]))
        return problem_response(422, "invalid request", errors)

    @web.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed(web, request)
        return problem_response(exc.status_code, str(exc.detail), headers=headers)


#: The order in which an ``Allow`` header lists methods.
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed(web: FastAPI, request: Request) -> str:
    """Every method some route takes at the request's path. Starlette's 405 names the
    methods of the first route that matched the path only: ``PUT /v1/jobs`` answered
    ``Allow: POST`` (not GET), ``PUT /v1/jobs/{id}`` ``Allow: GET, HEAD`` (not DELETE)."""
    methods: set[str] = set()
    for route in web.router.routes:
        if isinstance(route, Route) and route.methods:
            match, _ = route.matches(request.scope)
            if match is not Match.NONE:
                methods |= route.methods
    known = [m for m in _METHODS if m in methods]
    return ", ".join(known + sorted(methods.difference(_METHODS)))
