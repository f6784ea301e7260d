"""Cross-origin calls of the API from web pages (``CONVEYOR_CORS_ORIGINS``).

A browser lets a page of another origin read an API answer only when the answer says
so (CORS). With origins set, every ``/v1/`` request goes through Starlette's
``CORSMiddleware``, the polls of :class:`~conveyor.web.poll.PollFirst` included: a
preflight (``OPTIONS`` with ``Access-Control-Request-Method``) is answered by it, and
an answer carries ``Access-Control-Allow-Origin`` for an allowed ``Origin``, the
headers a client needs (``ETag``, ``Location``, ``Retry-After``) exposed. Every answer,
with an ``Origin`` or without, has ``Vary: Origin``, so that a cache in front keeps one
copy per origin and never gives a page an answer made for another (or for none).

Credentials mode stays off: a page sends its API key in ``Authorization`` or reads a
job through its capability URL, and never with the dashboard's cookie. The dashboard
and the other routes outside ``/v1/`` answer without CORS headers: same origin only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from conveyor.exceptions import ConfigError

if TYPE_CHECKING:
    # The API's extra: the settings are read by workers too (conveyor.cli.worker),
    # which run without it.
    from starlette.middleware.cors import CORSMiddleware
    from starlette.types import ASGIApp

#: The part of the API that pages of other origins may call.
CORS_PREFIX = "/v1/"

_SETTING = "CONVEYOR_CORS_ORIGINS"


def cors_origins(text: str) -> tuple[str, ...]:
    """The origins of ``CONVEYOR_CORS_ORIGINS`` (comma-separated, or ``*``), each as a
    browser sends it in ``Origin``: ``scheme://host[:port]``, lowercase, without the
    scheme's default port and with nothing after it (a trailing slash or a path would
    never match, and is refused)."""
    origins: list[str] = []
    for part in text.split(","):
        origin = part.strip()
        if not origin:
            continue
        if origin != "*":
            origin = _origin(origin)
        if origin not in origins:
            origins.append(origin)
    if "*" in origins and len(origins) > 1:
        raise ConfigError(_SETTING, "'*' allows every origin: give it alone, or list origins")
    return tuple(origins)


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(text: str) -> str:
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(_SETTING, f"{text!r} is not an origin: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ConfigError(_SETTING, f"{text!r} is not an origin: expected http(s)://host[:port]")
    if parts.path or parts.query or parts.fragment or "@" in parts.netloc:
        raise ConfigError(
            _SETTING,
            f"{text!r} is not an origin: only scheme://host[:port], without a path"
            " (a browser's Origin header has none, not even a trailing slash)",
        )
    host = parts.hostname  # lowercase; an IPv6 address without its brackets
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def cors_middleware(app: ASGIApp, origins: tuple[str, ...]) -> CORSMiddleware:
    """``app`` behind Starlette's CORS middleware for ``origins``."""
    from starlette.middleware.cors import CORSMiddleware

    return CORSMiddleware(
        app,
        allow_origins=origins,
        allow_methods=("GET", "HEAD", "POST", "DELETE"),
        allow_headers=(
            "Authorization",
            "Content-Type",
            "Idempotency-Key",
            "If-None-Match",
            "Last-Event-ID",
        ),
        expose_headers=("ETag", "Location", "Retry-After"),
        allow_credentials=False,
        max_age=600,
    )
