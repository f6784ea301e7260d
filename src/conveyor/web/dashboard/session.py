"""Logging in to the dashboard, and the cookies that keep it.

The login form takes an admin API key (``CONVEYOR_ADMIN_KEYS``; ``conveyor serve``'s
development key is one); a tenant's key is refused. A login sets the session cookie: a
signed value (:mod:`conveyor.web.dashboard.signing`) holding a random session id, the
SHA-256 digest of the key (never the key) and an expiry (``CONVEYOR_SESSION_MAX_AGE``,
12 hours by default). Each request checks the signature, the expiry, that the key is still
an admin key, and that the session was not logged out.

Logging out forgets the session in this process: a copy of the cookie is refused from
then on by this process (another API process would accept it until it expires).

Cookies are ``HttpOnly``, ``SameSite=Strict``, with the dashboard's path, and ``Secure``
whenever the browser keeps a secure cookie on that connection: over HTTPS, and over plain
HTTP to a loopback host (``127.0.0.1``, ``::1``, ``localhost``), which Chromium and Firefox
treat as secure. Over plain HTTP to any other host the cookie cannot be ``Secure`` (the
browser would drop it), and the login page warns that the key travels in clear.
"""

from __future__ import annotations

import ipaddress
import secrets
import time
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from conveyor.web.auth import ApiKeys, key_digest
from conveyor.web.dashboard.signing import Signer

SESSION_COOKIE = "conveyor_session"
LOGIN_COOKIE = "conveyor_login"
FLASH_COOKIE = "conveyor_flash"
#: How long a login form stays valid, in seconds.
LOGIN_FORM_MAX_AGE = 3600


@dataclass(frozen=True, slots=True)
class Session:
    """A logged-in browser."""

    id: str
    expires: int


class LoginRefused(Exception):
    """A key that may not log in; ``status`` is the page's HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Sessions:
    """Makes, reads and ends sessions."""

    def __init__(self, keys: ApiKeys, signer: Signer, max_age: int) -> None:
        self.keys = keys
        self.signer = signer
        self.max_age = max_age
        self._ended: dict[str, int] = {}  # session id -> its expiry

    def login(self, key: str) -> str:
        """The session cookie's value for an admin key; :class:`LoginRefused` otherwise."""
        key = key.strip()
        principal = self.keys.lookup(f"Bearer {key}") if key else None
        if principal is None:
            raise LoginRefused(401, "Unknown key: nothing matches it in this API's keys.")
        if not principal.admin:
            raise LoginRefused(
                403,
                f"This is tenant {principal.tenant}'s key: the dashboard needs an admin key "
                "(CONVEYOR_ADMIN_KEYS).",
            )
        data = {"sid": secrets.token_urlsafe(16), "key": key_digest(key).hex()}
        return self.signer.sign("session", data, self.max_age)

    def read(self, request: Request) -> Session | None:
        """The request's session; None without a valid one."""
        data = self.signer.unsign("session", request.cookies.get(SESSION_COOKIE))
        if data is None:
            return None
        sid, digest = data.get("sid"), data.get("key")
        if not isinstance(sid, str) or not isinstance(digest, str) or sid in self._ended:
            return None
        try:
            principal = self.keys.by_digest(bytes.fromhex(digest))
        except ValueError:
            return None
        if principal is None or not principal.admin:
            return None  # the key was removed from the configuration
        return Session(sid, data["exp"])

    def end(self, session: Session) -> None:
        now = time.time()
        self._ended = {sid: exp for sid, exp in self._ended.items() if exp >= now}
        self._ended[session.id] = session.expires

    # -- the login form ---------------------------------------------------------------
    def login_nonce(self, request: Request) -> str | None:
        """The nonce of the login form this browser was given (None: none, or expired)."""
        data = self.signer.unsign("login", request.cookies.get(LOGIN_COOKIE))
        nonce = data.get("n") if data else None
        return nonce if isinstance(nonce, str) else None

    def new_login_nonce(self) -> tuple[str, str]:
        """A fresh nonce and the cookie value that carries it."""
        nonce = secrets.token_urlsafe(16)
        return nonce, self.signer.sign("login", {"n": nonce}, LOGIN_FORM_MAX_AGE)


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def secure_connection(request: Request) -> bool:
    """Whether a ``Secure`` cookie is kept by the browser on this connection."""
    return request.url.scheme == "https" or is_loopback(request.url.hostname)


def set_cookie(
    response: Response, request: Request, name: str, value: str, max_age: int | None
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=base_path(request) or "/",
        secure=secure_connection(request),
        httponly=True,
        samesite="strict",
    )


def delete_cookie(response: Response, request: Request, name: str) -> None:
    response.delete_cookie(
        name,
        path=base_path(request) or "/",
        secure=secure_connection(request),
        httponly=True,
        samesite="strict",
    )


def base_path(request: Request) -> str:
    """Where the dashboard is mounted (``/dashboard``, behind any proxy prefix)."""
    return str(request.scope.get("root_path", "")).rstrip("/")
