"""The login form, logging in and logging out."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from conveyor.web.dashboard import csrf
from conveyor.web.dashboard.forms import read_form
from conveyor.web.dashboard.session import (
    LOGIN_COOKIE,
    LOGIN_FORM_MAX_AGE,
    SESSION_COOKIE,
    LoginRefused,
    base_path,
    delete_cookie,
    secure_connection,
    set_cookie,
)

if TYPE_CHECKING:
    from conveyor.web.dashboard.app import Dashboard


def _page(
    dash: Dashboard, request: Request, next_page: str, error: str | None, status: int
) -> Response:
    """The form, with a fresh nonce (and the cookie that carries it)."""
    nonce, cookie = dash.sessions.new_login_nonce()
    response = dash.pages.render(
        request,
        "login.html",
        {
            "error": error,
            "next": next_page,
            "login_token": csrf.token(dash.signer, "login", nonce),
            "insecure": not secure_connection(request),
        },
        status=status,
    )
    set_cookie(response, request, LOGIN_COOKIE, cookie, LOGIN_FORM_MAX_AGE)
    return response


async def form(dash: Dashboard, request: Request) -> Response:
    next_page = dash.inside(request, request.query_params.get("next"), "/")
    if dash.sessions.read(request) is not None:
        return dash.redirect(request, next_page)
    return _page(dash, request, next_page, None, 200)


async def submit(dash: Dashboard, request: Request) -> Response:
    fields = await read_form(request)
    next_page = dash.inside(request, base_path(request) + fields.get("next", "/"), "/")
    nonce = dash.sessions.login_nonce(request)
    if nonce is None:
        return _page(dash, request, next_page, "The login form expired: enter the key again.", 403)
    csrf.check(dash.signer, "login", nonce, fields.get(csrf.FIELD))
    try:
        cookie = dash.sessions.login(fields.get("key", ""))
    except LoginRefused as refused:
        return _page(dash, request, next_page, refused.message, refused.status)
    response = dash.redirect(request, next_page, ("ok", "Logged in."))
    set_cookie(response, request, SESSION_COOKIE, cookie, dash.sessions.max_age)
    delete_cookie(response, request, LOGIN_COOKIE)
    return response


async def logout(dash: Dashboard, request: Request) -> Response:
    session, _ = await dash.form(request)
    dash.sessions.end(session)
    response = dash.redirect(request, "/login", ("ok", "Logged out."))
    delete_cookie(response, request, SESSION_COOKIE)
    return response
