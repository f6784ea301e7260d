"""HTTP steps: the worker sends a step's request and keeps what came back.

One :class:`HttpSteps` per worker process holds one pooled aiohttp session (keep-alive,
total and per-host connection limits). aiohttp, not httpx: ``bench/http_client.py``
measured about 12,000 requests/s against 400 for httpx 0.28 with 64 concurrent
requests over a keep-alive pool (encode/httpcore#1035).

A step's request goes out like this:

1. its URL, headers, query and body are filled from the responses of the job's earlier
   succeeded steps (:mod:`conveyor.steps.templates`);
2. ``Idempotency-Key: <job id>:<step name>`` (stable across attempts, so a target can drop a
   duplicate), ``User-Agent: conveyor/<version>`` and the job's stored ``Authorization`` are
   added unless the step sets its own;
3. the SSRF guard checks the URL before sending, every resolved address at connect time (a
   resolver wrapped around aiohttp's), and every redirect hop: redirects are followed here,
   not by aiohttp, so that each hop is checked;
4. the response is kept as a document (status, headers, body text up to ``max_body`` bytes,
   parsed JSON) and judged against the step's expected statuses.

Errors: every failure is one :class:`HttpStepError`, translated here from aiohttp, the guard
and the templates, carrying whether another attempt could succeed (``retryable``: connection
errors, timeouts, 408, 429 and 5xx), the delay the target asked for (``Retry-After``), and the
response when there was one. The executor turns it into an outcome with :func:`retry_delay`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from multidict import CIMultiDict
from yarl import URL

from conveyor import __version__
from conveyor.environment import DEFAULT_MAX_BODY, http_max_body
from conveyor.exceptions import ConveyorError
from conveyor.job import Job, Step
from conveyor.secrets import SecretBox
from conveyor.steps.guard import BlockedDestination, Guard
from conveyor.steps.responses import response_document
from conveyor.steps.retries import is_number, parse_retry_after, retry_delay, retry_settings
from conveyor.steps.templates import (
    TemplateError,
    render_body,
    render_headers,
    render_query,
    render_url,
)

__all__ = [
    "DEFAULT_MAX_BODY",
    "HttpStepError",
    "HttpSteps",
    "parse_retry_after",
    "retry_delay",
    "retry_settings",
]

USER_AGENT = f"conveyor/{__version__}"
#: Redirect hops followed before a step fails (browsers stop at about 20; APIs need few).
MAX_REDIRECTS = 10
DEFAULT_TIMEOUT_S = 30.0
#: Key of the job metadata holding the private data of HTTP steps (credentials).
PRIVATE_KEY = "conveyor.http"

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: Headers not sent past a redirect to another origin.
_ORIGIN_CREDENTIALS = ("Authorization", "Proxy-Authorization", "Cookie")
#: Origins (``scheme://authority``) the guard has passed, per client; beyond this many
#: the memory is dropped and built again.
_CHECKED_ORIGINS = 1024
#: What :meth:`Guard.check_url` refuses anywhere in a URL: whitespace and control
#: characters. A URL holding one after its origin is checked in full, for the message.
_UNSAFE = re.compile(r"[\x00-\x20\x7f]")
_RETRYABLE = frozenset({408, 429})
_EXCERPT = 200


class HttpStepError(Exception):
    """An HTTP step that did not succeed.

    Attributes:
        message: what failed: step, method, URL without its query, status or error.
        retryable: whether another attempt could succeed.
        retry_after: seconds the target asked to wait (``Retry-After``), if it did.
        response: the response document, when a response came back.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        response: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after
        self.response = response


# ---------------------------------------------------------------------------
# The request of a step, rendered and checked.
# ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    url: URL
    headers: CIMultiDict[str]
    body: bytes | None
    timeout: float
    expect: frozenset[int] | None
    label: str  # "step 'name'" or "callback"
    #: Whether the body must arrive: a redirect that would make the request a GET without
    #: its body (301 / 302 / 303, as browsers do) ends the exchange instead.
    keep_body: bool = False

    @property
    def where(self) -> str:
        """``"step 'name': METHOD url-without-query"``, the start of every message. Made
        when a message needs it, not per request: :func:`_display` builds three URLs."""
        return f"{self.label}: {self.method} {_display(self.url)}"


def _build(step: Step, context: dict[str, dict[str, Any]]) -> _Request:
    """The step's request with placeholders filled. Raises TemplateError, ValueError."""
    spec = step.request or {}
    method = spec.get("method", "GET")
    raw_url = spec.get("url")
    if not isinstance(method, str) or not method.isalpha():
        raise ValueError(f"method must be a word such as GET, got {method!r:.40}")
    if not isinstance(raw_url, str):
        raise ValueError("url must be a string")
    timeout = spec.get("timeout")
    timeout = DEFAULT_TIMEOUT_S if timeout is None else timeout
    if not is_number(timeout) or timeout <= 0:
        raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r:.40}")
    # Text without "{{" has no placeholder: the templates would hand it back unchanged.
    url = URL(render_url(raw_url, context) if "{{" in raw_url else raw_url)
    query = _strings(spec, "query")
    if query:
        url = url.extend_query(render_query(query, context))
    raw_headers = _strings(spec, "headers")
    headers = CIMultiDict(render_headers(raw_headers, context) if raw_headers else ())
    body = _encode(render_body(spec.get("body"), context), headers)
    return _Request(
        method=method.upper(),
        url=url,
        headers=headers,
        body=body,
        timeout=float(timeout),
        expect=_expect(spec.get("expect")),
        label=f"step {step.name!r}",
    )


def _strings(spec: dict[str, Any], field: str) -> dict[str, str]:
    value = spec.get(field) or {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError(f"{field} must map names to strings")
    return value


def _expect(value: Any) -> frozenset[int] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise ValueError(f"expect must be a list of status codes, got {value!r:.60}")
    return frozenset(value)


def _encode(body: Any, headers: CIMultiDict[str]) -> bytes | None:
    if body is None:
        return None
    if isinstance(body, str):
        headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        return body.encode()
    headers.setdefault("Content-Type", "application/json")
    return _encode_json(body).encode()


# Made once: json.dumps with arguments builds an encoder (and json.loads a decoder) per call.
_encode_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _display(url: URL) -> str:
    """The URL for messages: no query (it may hold tokens), no fragment, no user info."""
    try:
        return str(url.with_query(None).with_fragment(None).with_user(None))
    except ValueError:
        return "(invalid URL)"


def _context(job: Job, step: Step) -> dict[str, dict[str, Any]]:
    """What placeholders may read: the responses of the earlier steps that succeeded."""
    context: dict[str, dict[str, Any]] = {}
    for earlier in job.steps:
        if earlier is step:
            break
        if earlier.state == "succeeded" and earlier.response is not None:
            context[earlier.name] = earlier.response
    return context


# ---------------------------------------------------------------------------
# The SSRF guard at connect time.
# ---------------------------------------------------------------------------
class _GuardedResolver(AbstractResolver):
    """aiohttp's resolver, then the guard on every address: the check that counts, since a
    public-looking name can resolve (or be re-bound) to an internal address. aiohttp does
    not call a resolver for IP-literal hosts; :meth:`Guard.check_url` covers those."""

    def __init__(self, guard: Guard) -> None:
        self._guard = guard
        self._inner = aiohttp.DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        # All or nothing: with a mix, the connection could land on the internal one.
        for result in results:
            self._guard.check_address(host, result["host"])
        return results

    async def close(self) -> None:
        await self._inner.close()


# ---------------------------------------------------------------------------
# The client.
# ---------------------------------------------------------------------------
class HttpSteps:
    """Runs HTTP steps for one worker process through one pooled session.

    Create it anywhere; the session is made on the running loop at the first request.
    Call :meth:`close` when the worker stops.

    Args:
        guard: the SSRF guard; by default from ``CONVEYOR_HTTP_ALLOW``.
        max_body: bytes of a response body kept (the rest is dropped, ``truncated`` set).
        limit: connections open at once, all hosts together.
        limit_per_host: connections open at once to one host.
    """

    def __init__(
        self,
        guard: Guard | None = None,
        *,
        max_body: int = DEFAULT_MAX_BODY,
        limit: int = 256,
        limit_per_host: int = 64,
    ) -> None:
        self.guard = guard if guard is not None else Guard.from_env()
        self.max_body = max_body
        self._limit = limit
        self._limit_per_host = limit_per_host
        self._session: aiohttp.ClientSession | None = None
        self._box: SecretBox | None = None
        self._checked: set[str] = set()  # see _check_url
        self._checked_by: Guard | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> HttpSteps:
        """Settings from the environment: the guard, and ``CONVEYOR_HTTP_MAX_BODY`` (bytes).

        Raises:
            ConfigError: a setting is not valid.
        """
        return cls(Guard.from_env(environ), max_body=http_max_body(environ))

    async def run(self, job: Job, step: Step) -> dict[str, Any]:
        """Send ``step``'s request; the response document when its status is expected.

        Raises:
            HttpStepError: anything else, with ``retryable`` saying whether to try again.
        """
        try:
            request = _build(step, _context(job, step))
        except (TemplateError, ValueError) as exc:
            raise HttpStepError(f"step {step.name!r}: {exc}", retryable=False) from None
        self._authorize(job, request)
        request.headers.setdefault("Idempotency-Key", f"{job.id}:{step.name}")
        try:
            async with asyncio.timeout(request.timeout):
                document = await self._exchange(request)
        except Exception as exc:
            error = _translate(exc, request)
            if error is None:
                raise
            raise error from None
        _judge(request, document)
        return document

    async def send_json(
        self, url: str, body: Any, *, idempotency_key: str, timeout: float = 10.0
    ) -> dict[str, Any]:
        """POST ``body`` as JSON to ``url`` through the guard, with no placeholder filled
        and no stored credential (a job's callback). The response document; raises
        HttpStepError as a step would."""
        headers: CIMultiDict[str] = CIMultiDict({"Idempotency-Key": idempotency_key})
        request = _Request(
            method="POST",
            url=URL(url),
            headers=headers,
            body=_encode(body, headers),
            timeout=timeout,
            expect=None,
            label="callback",
            # A callback is its body: followed to a GET, the target got an empty request
            # and the worker logged the callback as sent.
            keep_body=True,
        )
        try:
            async with asyncio.timeout(timeout):
                document = await self._exchange(request)
        except Exception as exc:
            error = _translate(exc, request)
            if error is None:
                raise
            raise error from None
        _judge(request, document)
        return document

    async def close(self) -> None:
        """Close the pooled connections (the instance may be used again afterwards)."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    # -- internals -----------------------------------------------------------------
    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._limit,
                limit_per_host=self._limit_per_host,
                resolver=_GuardedResolver(self.guard),
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers={"User-Agent": USER_AGENT},
                # The step's own timeout covers the whole exchange, redirects included.
                timeout=aiohttp.ClientTimeout(total=None),
                # Jobs of different users share the session: none may see another's cookies.
                cookie_jar=aiohttp.DummyCookieJar(),
                # A proxy from the environment would connect on our behalf, past the guard.
                trust_env=False,
            )
        return self._session

    def _authorize(self, job: Job, request: _Request) -> None:
        """The job's stored credentials as the ``Authorization`` header (a step's own wins:
        it may carry a token an earlier step returned)."""
        private = job.metadata.get(PRIVATE_KEY)
        if private is None or "Authorization" in request.headers:
            return
        stored = private.get("auth") if isinstance(private, dict) else None
        if stored is None:
            return
        if not isinstance(stored, str):
            raise HttpStepError(
                f"{request.where}: the job's stored credentials are not a sealed secret",
                retryable=False,
            )
        try:
            if self._box is None:
                self._box = SecretBox.from_env()
            value = self._box.open(stored)
        except (ConveyorError, ValueError) as exc:
            # SecretError and ConfigError say what is wrong and never hold the secret;
            # `from None` keeps any chained exception (which might) out of the job's errors.
            raise HttpStepError(
                f"{request.where}: cannot open the job's stored credentials ({exc})",
                retryable=False,
            ) from None
        if any(c in value for c in "\r\n\x00"):
            raise HttpStepError(
                f"{request.where}: the job's stored credentials are not a valid header value",
                retryable=False,
            )
        request.headers["Authorization"] = value

    async def _exchange(self, request: _Request) -> dict[str, Any]:
        """Send, following redirects ourselves so that the guard sees every hop."""
        session = self._client()
        method, url, body = request.method, request.url, request.body
        headers = request.headers  # copied before a redirect changes it
        for _ in range(MAX_REDIRECTS + 1):
            self._check_url(str(url))
            async with session.request(
                method, url, headers=headers, data=body, allow_redirects=False
            ) as response:
                target = _redirect_target(response, request.expect)
                if target is not None and request.keep_body:
                    target = None if _becomes_get(response.status, method) else target
                if target is None:
                    return await response_document(response, self.max_body)
            if headers is request.headers:
                headers = CIMultiDict(headers)
            if target.origin() != url.origin():
                # Credentials are for the origin the step named. Browsers drop the
                # Authorization header; a step may set Cookie and Proxy-Authorization
                # itself too, which curl and requests drop as well (a target redirecting
                # to a host of its choosing got them).
                for name in _ORIGIN_CREDENTIALS:
                    headers.popall(name, None)
            if _becomes_get(response.status, method):
                method, body = "GET", None
                headers.popall("Content-Type", None)
            url = target
        raise HttpStepError(
            f"{request.where}: more than {MAX_REDIRECTS} redirects", retryable=False
        )

    def _check_url(self, url: str) -> None:
        """:meth:`Guard.check_url`, remembering the origins it passed.

        The guard's verdict on a URL depends on its scheme and authority (what
        :func:`urllib.parse.urlsplit` reads before the first ``/``, ``?`` or ``#`` after
        ``scheme://``), plus one rule on the whole text: no whitespace or control
        characters. So a URL whose origin passed before, and whose rest holds no such
        character, passes again: steps to one host skip the parse (about 25 µs a request).
        Only passes are remembered; a refusal is worked out (and explained) every time.
        This is the check before sending; every resolved address is still checked at
        connect time (:class:`_GuardedResolver`).
        """
        if self._checked_by is not self.guard:  # a new guard judges afresh
            self._checked, self._checked_by = set(), self.guard
        colon = url.find(":")
        if colon > 0 and url.startswith("//", colon + 1):
            end = len(url)
            for mark in "/?#":
                found = url.find(mark, colon + 3, end)
                if found >= 0:
                    end = found
            origin = url[:end]
            if origin in self._checked and not _UNSAFE.search(url, end):
                return
            self.guard.check_url(url)
            if len(self._checked) >= _CHECKED_ORIGINS:
                self._checked.clear()
            self._checked.add(origin)
            return
        self.guard.check_url(url)


def _redirect_target(response: aiohttp.ClientResponse, expect: frozenset[int] | None) -> URL | None:
    """Where a redirect leads; None for a final response (a step expecting the redirect
    status itself gets the redirect)."""
    location = response.headers.get("Location")
    if response.status not in _REDIRECTS or location is None:
        return None
    if expect is not None and response.status in expect:
        return None
    return response.url.join(URL(location))


def _becomes_get(status: int, method: str) -> bool:
    """Whether a redirect turns the request into a GET without body, as browsers do
    (Fetch standard): 303 for anything but GET/HEAD, 301/302 for POST."""
    if status == 303:
        return method not in ("GET", "HEAD")
    return status in (301, 302) and method == "POST"


def _judge(request: _Request, document: dict[str, Any]) -> None:
    """Raise unless the status is one the step expects (any 2xx when it names none)."""
    status: int = document["status"]
    expected = status in request.expect if request.expect is not None else 200 <= status < 300
    if expected:
        return
    retryable = status in _RETRYABLE or 500 <= status < 600
    retry_after = parse_retry_after(document["headers"].get("retry-after")) if retryable else None
    raise HttpStepError(
        f"{request.where}: status {status}{_excerpt(document.get('body'))}",
        retryable=retryable,
        retry_after=retry_after,
        response=document,
    )


def _excerpt(body: str | None) -> str:
    if not body:
        return ""
    text = " ".join(body.split())
    return f": {text[:_EXCERPT]}…" if len(text) > _EXCERPT else f": {text}"


def _translate(exc: Exception, request: _Request) -> HttpStepError | None:
    """aiohttp's, the guard's and the stdlib's errors as an HttpStepError; None for bugs.

    Messages never hold the query string: the URL part is always ``request.where``.
    """
    where = request.where
    if isinstance(exc, HttpStepError):
        return exc
    if isinstance(exc, BlockedDestination):
        return HttpStepError(f"{where}: blocked: {exc}", retryable=False)
    if isinstance(exc, TimeoutError):
        return HttpStepError(f"{where}: timed out after {request.timeout:g} s", retryable=True)
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        # Their text repeats the URL, query included.
        return HttpStepError(f"{where}: not a URL this worker can send to", retryable=False)
    if isinstance(exc, aiohttp.ClientError | OSError):
        return HttpStepError(f"{where}: {_describe(exc)}", retryable=True)
    if isinstance(exc, ValueError):  # the guard's URL checks, a header aiohttp refuses
        return HttpStepError(f"{where}: {exc}", retryable=False)
    return None


def _describe(exc: BaseException) -> str:
    # A ClientResponseError's text ends with the URL, query included: a response the
    # client could not read (headers too long or too many, a malformed status line) put
    # a step's token into the job's errors. Its message alone says what went wrong.
    text = exc.message if isinstance(exc, aiohttp.ClientResponseError) else str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
