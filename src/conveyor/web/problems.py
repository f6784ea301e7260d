"""RFC 9457 problem details: every error the API answers.

``{"type", "title", "status", "detail", "errors": [{"pointer", "detail"}]}`` as
``application/problem+json``. ``pointer`` is an RFC 6901 JSON pointer into the
request body (``/steps/1/url``); errors in query parameters carry ``parameter``
instead, and in headers ``header``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from starlette.responses import Response

from conveyor.storable import storable

PROBLEM_JSON = "application/problem+json"

TITLES = {
    400: "Malformed request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Invalid request",
    500: "Internal error",
    503: "Store unavailable",
}


class Problem(Exception):
    """Raised anywhere in a request: becomes the problem response."""

    def __init__(
        self,
        status: int,
        detail: str,
        errors: Sequence[dict[str, Any]] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = list(errors)
        self.headers = headers or {}

    def response(self) -> Response:
        return problem_response(self.status, self.detail, self.errors, self.headers)


def problem_response(
    status: int,
    detail: str,
    errors: Iterable[dict[str, Any]] = (),
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    errors = list(errors)
    if errors:
        body["errors"] = errors
    all_headers = {"Cache-Control": "no-store", **(headers or {})}
    if status == 401:
        all_headers.setdefault("WWW-Authenticate", 'Bearer realm="conveyor"')
    return Response(
        # A pointer or a message may quote the request's text, lone surrogates included,
        # which UTF-8 cannot carry.
        storable(json.dumps(body, ensure_ascii=False)),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=all_headers,
    )


def pointer(location: Iterable[str | int]) -> str:
    """An RFC 6901 pointer from a path of keys and indexes."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in location)


def field_error(location: Iterable[str | int], detail: str) -> dict[str, Any]:
    return {"pointer": pointer(location), "detail": detail}


def validation_errors(errors: Iterable[Any]) -> list[dict[str, Any]]:
    """pydantic's errors (``loc``, ``msg``) of a request body → pointers and details."""
    out = []
    for error in errors:
        location = [part for part in error["loc"] if part != "body"]
        # Tagged unions and function validators add their own names to loc: keep keys
        # and indexes of the document only.
        location = [p for p in location if isinstance(p, int) or not str(p).startswith("function-")]
        out.append(field_error(location, message(error)))
    return out


def message(error: Any) -> str:
    """A pydantic error's message, without the ``Value error, `` pydantic puts before the
    message of a ValueError our validators raise."""
    text = str(error["msg"])
    return text.removeprefix("Value error, ") if error.get("type") == "value_error" else text


SCHEMA = {
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "pointer": {"type": "string"},
                    "parameter": {"type": "string"},
                    "header": {"type": "string"},
                    "detail": {"type": "string"},
                },
            },
        },
    },
    "required": ["type", "title", "status", "detail"],
}
