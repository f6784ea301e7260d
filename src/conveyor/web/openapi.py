"""The API's OpenAPI document (``/openapi.json``): what FastAPI makes of the routes,
with the problems they answer, the poll route that FastAPI does not see (it is
answered before, :mod:`conveyor.web.poll`) and the schemes of who may call what."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from conveyor.web import models
from conveyor.web.parsing import JSON
from conveyor.web.poll import MAX_WAIT_S
from conveyor.web.problems import PROBLEM_JSON, SCHEMA

PROBLEMS = {
    status: {
        "description": title,
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    for status, title in {
        400: "Malformed JSON",
        401: "No or unknown API key",
        403: "Not an admin key",
        404: "No such job (or not yours)",
        409: "The job's state does not allow it",
        413: "Body too large",
        415: "Not JSON",
        422: "Invalid request",
        503: "Store unavailable",
    }.items()
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route that answers these problems, for its decorator."""
    return {status: PROBLEMS[status] for status in statuses}


def openapi_schema(web: FastAPI) -> dict[str, Any]:
    """The OpenAPI document of the API, made once: FastAPI's, with the problems, the
    poll route (answered before FastAPI) and who may call what."""
    if web.openapi_schema:
        return web.openapi_schema
    schema = get_openapi(
        title=web.title, version=web.version, summary=web.summary, routes=web.routes
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = SCHEMA
    for model in (models.JobIn, models.JobOut):
        definition = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(definition.pop("$defs", {}))
        components[model.__name__] = definition
    schema["paths"].setdefault("/v1/jobs/{job_id}", {})["get"] = _poll_operation()
    # FastAPI documents its own 422 (HTTPValidationError, application/json) on routes with
    # parameters; the handlers answer every invalid request with a problem instead.
    for operation in (op for item in schema["paths"].values() for op in item.values()):
        responses = operation.get("responses", {})
        if "HTTPValidationError" in json.dumps(responses.get("422", {})):
            responses["422"] = PROBLEMS[422]
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    # Who may call what (Api.principal, Api.readable_job): a key on every /v1 route; a job
    # and its events also open to the job's read token.
    schema["components"]["securitySchemes"] = _SECURITY_SCHEMES
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if path.startswith("/v1/jobs/{job_id}") and method == "get":
                operation["security"] = [{"apiKey": []}, {"readToken": []}]
            elif path.startswith("/v1/"):
                operation["security"] = [{"apiKey": []}]
    web.openapi_schema = schema
    return schema


_SECURITY_SCHEMES = {
    "apiKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "A tenant's key (CONVEYOR_API_KEYS) or an admin key (CONVEYOR_ADMIN_KEYS).",
    },
    "readToken": {
        "type": "apiKey",
        "in": "query",
        "name": "token",
        "description": "The job's read token, in the Location a POST answers. A wrong token "
        "answers 404, as an unknown job does.",
    },
}


def _poll_operation() -> dict[str, Any]:
    return {
        "tags": ["jobs"],
        "summary": "Poll a job",
        "description": (
            "The job document. Strong ETag (the version): If-None-Match answers 304. "
            "Cache-Control: public, max-age=1 while active through the read token; long once "
            "finished. ?wait=N&version=V answers as soon as the version passes V (N <= 30)."
        ),
        "operationId": "poll_job",
        "parameters": [
            {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}},
            {
                "name": "wait",
                "in": "query",
                "required": False,
                "schema": {"type": "number", "minimum": 0, "maximum": MAX_WAIT_S},
            },
            {
                "name": "version",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 0},
            },
            {
                "name": "If-None-Match",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
            },
        ],
        "responses": {
            "200": {
                "description": "The job",
                "content": {JSON: {"schema": {"$ref": "#/components/schemas/JobOut"}}},
            },
            "304": {"description": "Not modified"},
            **{str(k): v for k, v in problem_responses(401, 404, 422, 503).items()},
        },
    }
