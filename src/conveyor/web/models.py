"""The request bodies of the API (pydantic v2) and the documented shape of its answers.

Requests are validated field by field here; rules that span fields (unique step
names, placeholders that name earlier steps, blocked destinations, ``delay``
with ``run_at``) are checked by :mod:`conveyor.web.submit`, which knows the
settings. Answers are built by :mod:`conveyor.web.documents` without pydantic
(the poll path is hot); the models below only describe them in the OpenAPI document.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, JsonValue, field_validator

from conveyor.job import LATEST_RUN_AT, Priority

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
#: Header names a step may not set: they belong to the connection, not the request.
RESERVED_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "te", "upgrade", "keep-alive"}
)
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$")
_BAD_CHARS = re.compile(r"[\r\n\x00]")
#: Priorities every store keeps (PostgreSQL's ``integer``).
PRIORITY_MIN, PRIORITY_MAX = -(2**31), 2**31 - 1


def _any_case(word: str) -> str:
    """A regex matching ``word`` (letters and ``-``) in any case: JSON Schema's ``pattern``
    has no flags."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in word)


# What the validators below enforce, said in JSON Schema so that /openapi.json promises no
# more and no less than the API accepts (tests/api/test_schema.py holds it to that).
_NO_CONTROL = r"^[^\r\n\x00]*$"
_METHOD_PATTERN = "^(?:" + "|".join(_any_case(m) for m in METHODS) + ")$"
_URL_PATTERN = r"^(?:\{\{|" + _any_case("http") + r"[Ss]?:)[^\r\n\x00]*$"
_CALLBACK_PATTERN = "^" + _any_case("http") + r"[Ss]?://[^\r\n\x00]*$"
_HEADER_NAMES: dict[str, JsonValue] = {
    "pattern": _TOKEN.pattern,
    "not": {"pattern": "^(?:" + "|".join(_any_case(h) for h in sorted(RESERVED_HEADERS)) + ")$"},
}
_PRIORITY_NAMES = "^(?:" + "|".join(_any_case(p.name) for p in Priority) + ")$"
_BASE64 = "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"

StepName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="Unique in the job.")]


# JSON's types as the schema says them. pydantic's lax mode would take "3" and true for an
# integer, "30" for a number, 1700000000 for a time: a client's mistake stored as a guess.
def _json_int(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)  # JSON's 5.0 is the integer 5, as JSON Schema counts it
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError("expected an integer")


def _json_number(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    raise ValueError("expected a number")


def _json_time(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return value  # parsed by pydantic as RFC 3339
    raise ValueError("expected an RFC 3339 time with a time zone, e.g. 2026-01-31T12:00:00Z")


def _query_value(value: Any) -> Any:
    if isinstance(value, str | int | float):  # bool is an int
        return value
    raise ValueError("expected a string, number or boolean")


JsonInt = Annotated[int, BeforeValidator(_json_int)]
JsonNumber = Annotated[float, BeforeValidator(_json_number)]
QueryValue = Annotated[str | int | float | bool, BeforeValidator(_query_value)]


def _no_control(value: str, what: str) -> str:
    if _BAD_CHARS.search(value):
        raise ValueError(f"{what} may not contain CR, LF or NUL")
    return value


class StepIn(BaseModel):
    """One HTTP request of a job."""

    model_config = ConfigDict(extra="forbid")

    name: StepName
    method: str = Field(
        "GET",
        description="One of " + ", ".join(METHODS) + " (any case).",
        json_schema_extra={"pattern": _METHOD_PATTERN},
    )
    url: str = Field(
        max_length=8192,
        description="http or https; may hold placeholders.",
        json_schema_extra={"pattern": _URL_PATTERN},
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        max_length=100,
        json_schema_extra={
            "propertyNames": _HEADER_NAMES,
            "additionalProperties": {"type": "string", "maxLength": 8192, "pattern": _NO_CONTROL},
        },
    )
    query: dict[str, QueryValue] = Field(default_factory=dict, max_length=100)
    body: Any = Field(None, description="JSON (sent as application/json) or a string (text).")
    timeout: JsonNumber = Field(30.0, gt=0, le=300, description="Seconds for the whole request.")
    expect: list[Annotated[int, Field(ge=100, le=599), BeforeValidator(_json_int)]] | None = Field(
        None, min_length=1, max_length=50, description="Statuses that succeed (default 2xx)."
    )
    max_attempts: JsonInt = Field(5, ge=1, le=100)
    retry_exponent: JsonNumber = Field(
        2.0, ge=0, le=5, description="Delay after the n-th failure: n ** retry_exponent seconds."
    )

    @field_validator("method")
    @classmethod
    def _method(cls, value: str) -> str:
        method = value.upper()
        if method not in METHODS:
            raise ValueError(f"must be one of {', '.join(METHODS)}")
        return method

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        _no_control(value, "a URL")
        if not value.startswith("{{"):
            scheme = value.split(":", 1)[0].lower() if ":" in value else ""
            if scheme not in ("http", "https"):
                raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            # fullmatch: with match, "$" let "Host\n" through (past the reserved check too).
            if not _TOKEN.fullmatch(name):
                raise ValueError(f"header name {name[:80]!r} is not a valid token")
            if name.lower() in RESERVED_HEADERS:
                raise ValueError(f"header {name!r} is set by conveyor, not by a step")
            if len(text) > 8192:
                raise ValueError(f"header {name!r} is longer than 8192 characters")
            _no_control(text, f"header {name!r}")
        return value


def _priority(value: Any) -> int:
    # Stricter than conveyor.job.parse_priority on purpose: exactly what the schema says (an
    # int, or a level name in any case; no "5", no " high"), and an int every store keeps
    # (past 64 bits was a 500 on SQLite; PostgreSQL's column is a 32-bit integer).
    if isinstance(value, str) and value.isascii() and value.upper() in Priority.__members__:
        return Priority[value.upper()].value
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON's 5.0 is the integer 5, as JSON Schema counts it
    if isinstance(value, int) and not isinstance(value, bool):
        if PRIORITY_MIN <= value <= PRIORITY_MAX:
            return value
        raise ValueError(f"expected {PRIORITY_MIN} to {PRIORITY_MAX}")
    raise ValueError("expected an int or high / normal / low / bulk")


class JobIn(BaseModel):
    """``POST /v1/jobs``: a job of named HTTP requests, run in order."""

    model_config = ConfigDict(extra="forbid")

    steps: list[StepIn] = Field(min_length=1)
    queue: str | None = Field(None, pattern=r"^[^\s,]{1,200}$")
    priority: int | str = Field(
        0,
        description="Lower runs first; or high, normal, low, bulk (any case).",
        json_schema_extra={
            "anyOf": [
                {"type": "integer", "minimum": PRIORITY_MIN, "maximum": PRIORITY_MAX},
                {"type": "string", "pattern": _PRIORITY_NAMES},
            ]
        },
    )
    delay: (
        Annotated[float, Field(ge=0, le=365 * 24 * 3600), BeforeValidator(_json_number)] | None
    ) = Field(None, description="Seconds.")
    run_at: Annotated[dt.datetime | None, BeforeValidator(_json_time)] = Field(
        None, description="RFC 3339 with a time zone."
    )
    credentials: str | None = Field(
        None,
        max_length=4096,
        description="HTTP Basic for the steps: base64 of user:pass.",
        json_schema_extra={"pattern": _BASE64},
    )
    token: str | None = Field(
        None,
        min_length=1,
        max_length=4096,
        description="Bearer token for the steps.",
        json_schema_extra={"pattern": _NO_CONTROL},
    )
    metadata: dict[str, Any] = Field(
        default_factory=dict,
        description="Yours, shown in the job document; keys starting with conveyor. are not.",
        json_schema_extra={"propertyNames": {"not": {"pattern": r"^conveyor\."}}},
    )
    callback: str | None = Field(
        None,
        max_length=8192,
        description="Receives the final job document (POST).",
        json_schema_extra={"pattern": _CALLBACK_PATTERN},
    )

    @field_validator("priority", mode="before")
    @classmethod
    def _priority(cls, value: Any) -> int:
        return _priority(value)

    @field_validator("run_at")
    @classmethod
    def _run_at(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("needs a time zone (e.g. 2026-01-31T12:00:00Z)")
        if value is not None and not 0 <= value.timestamp() <= LATEST_RUN_AT:
            raise ValueError("must be from 1970-01-01 to 9999-12-31 UTC")
        return value

    @field_validator("credentials")
    @classmethod
    def _credentials(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("must be base64 of user:password") from None
        if b":" not in decoded:
            raise ValueError("must be base64 of user:password (no ':' found)")
        return value

    @field_validator("token")
    @classmethod
    def _token(cls, value: str | None) -> str | None:
        return None if value is None else _no_control(value, "a token")

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, Any]) -> dict[str, Any]:
        reserved = [key for key in value if key.startswith("conveyor.")]
        if reserved:
            raise ValueError(f"keys starting with 'conveyor.' are reserved: {reserved[0]!r}")
        return value

    @field_validator("callback")
    @classmethod
    def _callback(cls, value: str | None) -> str | None:
        if value is None:
            return None
        _no_control(value, "a URL")
        if not value.lower().startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value


# -- answers (documentation only) -----------------------------------------------------
State = Literal[
    "scheduled", "queued", "running", "retrying", "succeeded", "poisoned", "cancelling", "cancelled"
]


class Response(BaseModel):
    """A kept HTTP response."""

    status: int
    headers: dict[str, str]
    body: str | None
    truncated: bool
    json_: Any = Field(None, alias="json", description="Present when the body was JSON.")


class Progress(BaseModel):
    completed: float
    total: float
    percent: float | None
    current_step: str | None
    message: str | None


class StepOut(BaseModel):
    name: str
    kind: Literal["http", "task"]
    method: str | None = None
    url: str | None = None
    task: str | None = None
    state: Literal["pending", "running", "succeeded", "failed"]
    attempts: int
    last_error: str | None
    response: Response | None
    started_at: str | None
    finished_at: str | None


class JobOut(BaseModel):
    """The job document. ``version`` is the strong ETag."""

    id: str
    state: State
    queue: str
    priority: int
    progress: Progress
    steps: list[StepOut]
    attempts: int
    max_attempts: int
    next_attempt_at: str | None
    last_error: str | None
    response: Response | None
    metadata: dict[str, Any]
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    updated_at: str | None
    version: int


class JobCreated(JobOut):
    """What ``POST /v1/jobs`` answers: the document and the URL to poll it with."""

    links: dict[str, str] = Field(description="self: the capability URL (carries the read token).")


class JobSummary(BaseModel):
    id: str
    state: State
    queue: str
    priority: int
    progress: Progress
    attempts: int
    last_error: str | None
    created_at: str | None
    updated_at: str | None
    version: int


class JobList(BaseModel):
    jobs: list[JobSummary]
    next_cursor: str | None


class QueueOut(BaseModel):
    name: str
    paused: bool
    counts: dict[str, int]
    created_at: str | None


class QueueList(BaseModel):
    queues: list[QueueOut]
