"""Pages: the Jinja2 environment, its filters, and what every page is given.

Templates live in ``templates/`` beside this module (package data); autoescaping is on for
every one of them. Times are the store's (``now`` comes from ``Backend.now``), shown in UTC.
A name inside other text is isolated (:mod:`~conveyor.web.dashboard.bidi`): ``<bdi>`` in
templates, the ``said`` filter for messages made in Python.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from conveyor import __version__
from conveyor.web.dashboard import csrf
from conveyor.web.dashboard.bidi import isolate, said
from conveyor.web.dashboard.session import (
    FLASH_COOKIE,
    Session,
    base_path,
    delete_cookie,
    set_cookie,
)
from conveyor.web.dashboard.signing import Signer
from conveyor.web.dashboard.views import STATES, is_stale, waiting

#: What stands for a missing value (an en dash).
NONE = "\u2013"
#: Seconds between two refreshes of a page's live parts.
REFRESH_S = 3
#: Headers of every dashboard answer: never cached, never framed, only its own code runs.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def duration(seconds: float | None) -> str:
    """``850 ms``, ``4.2 s``, ``3 min 5 s``, ``2 h 10 min``, ``3 d 4 h``."""
    if seconds is None:
        return NONE
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    whole = int(seconds)
    for big, big_name, small, small_name in (
        (86400, "d", 3600, "h"),
        (3600, "h", 60, "min"),
        (60, "min", 1, "s"),
    ):
        if whole >= big:
            rest = (whole % big) // small
            return f"{whole // big} {big_name}" + (f" {rest} {small_name}" if rest else "")
    return f"{whole} s"


def ago(at: float | None, now: float) -> str:
    if not at:
        return NONE
    delta = now - at
    if abs(delta) < 1:
        return "just now"
    return f"{duration(abs(delta))} ago" if delta > 0 else f"in {duration(-delta)}"


def utc(at: float | None) -> str:
    if not at:
        return NONE
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))


def iso(at: float | None) -> str:
    if not at:
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def number(value: float | int | None) -> str:
    if value is None:
        return NONE
    return f"{value:,}"


def segment(value: str) -> str:
    """``value`` as one segment of a URL's path: a job id given by hand may hold "/",
    "?", "#" or "%", which would otherwise make the link another page's."""
    return quote(value, safe="")


def figure(value: Any) -> str:
    """A store figure: numbers grouped, the rest as JSON or text."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float):
        return f"{value:,}"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("conveyor.web.dashboard", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        # Each template is read once, with the code that renders it: an upgrade installed
        # under a running API otherwise served new templates with the old filters (500s
        # until a restart), and every page paid a stat of its template files.
        auto_reload=False,
    )
    env.filters.update(
        duration=duration,
        ago=ago,
        utc=utc,
        iso=iso,
        number=number,
        figure=figure,
        segment=segment,
        said=said,
        isolate=isolate,
    )
    env.globals.update(version=__version__, states=STATES, is_stale=is_stale, waiting=waiting)
    return env


class Pages:
    """Renders templates into responses with what every page needs."""

    def __init__(self, signer: Signer) -> None:
        self.env = _environment()
        self.signer = signer

    def render(
        self,
        request: Request,
        template: str,
        context: dict[str, Any],
        *,
        session: Session | None = None,
        status: int = 200,
        active: str | None = None,
        refresh: float = REFRESH_S,
    ) -> Response:
        flash = self.signer.unsign("flash", request.cookies.get(FLASH_COOKIE))
        html = self.env.get_template(template).render(
            base=base_path(request),
            path=request.url.path,
            query=request.url.query,
            session=session,
            csrf_token=csrf.token(self.signer, "session", session.id) if session else "",
            flash=flash,
            active=active,
            refresh=refresh,
            **context,
        )
        response = HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
        if flash is not None and "x-conveyor-live" not in request.headers:
            delete_cookie(response, request, FLASH_COOKIE)
        return response

    def flash(self, response: Response, request: Request, kind: str, text: str) -> Response:
        """Show ``text`` on the next page (``kind``: ok, error, info)."""
        set_cookie(
            response,
            request,
            FLASH_COOKIE,
            self.signer.sign("flash", {"k": kind, "t": text}, 60),
            60,
        )
        return response
