"""What the dashboard never shows: secrets in a job's arguments, metadata and requests.

* ``metadata["conveyor.http"]`` (an HTTP job's read token, sealed credentials, callback and
  request digest) is left out whole, as in the API's documents;
* any mapping key that names a secret (``password``, ``token``, ``api_key``, ``Authorization``,
  ``Cookie``, ``secret``, ``credentials``, ...) has its value replaced by :data:`REDACTED`,
  at any depth: arguments, keyword arguments, metadata, results, request headers, query and
  body, response headers;
* a URL's password (``https://user:pass@host``) and query parameters that name a secret.

Positional arguments cannot be told apart by name: a task that takes a secret positionally
shows it. Pass secrets by keyword (or, better, not as arguments at all).

Values nested deeper than :data:`MAX_DEPTH` (what the API accepts) are shown down to that
depth, the rest replaced by :data:`DEEPER`: a task may store deeper ones, and walking them
(or writing them out indented) would exhaust Python's recursion limit.
"""

from __future__ import annotations

import itertools
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from conveyor.storable import MAX_DEPTH
from conveyor.web.documents import public_metadata

REDACTED = "[redacted]"
#: What stands for the arrays and objects nested deeper than MAX_DEPTH.
DEEPER = f"[nested more than {MAX_DEPTH} levels deep: not shown]"

_WORDS = frozenset(
    {
        "auth",
        "authorization",
        "cookie",
        "credential",
        "credentials",
        "passphrase",
        "passwd",
        "password",
        "pwd",
        "secret",
        "secrets",
        "session",
        "signature",
        "token",
        "tokens",
    }
)
_PAIRS = frozenset({"apikey", "privatekey", "accesskey", "secretkey", "clientsecret", "setcookie"})
_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")


def secret_name(name: str) -> bool:
    """Whether a key names a secret: ``api_key``, ``X-Auth-Token``, ``dbPassword``, ..."""
    words = [w.lower() for w in _SPLIT.split(name) if w]
    if any(w in _WORDS for w in words):
        return True
    return any(a + b in _PAIRS for a, b in itertools.pairwise(words)) or ("".join(words) in _PAIRS)


def redact(value: Any, depth: int = 0) -> Any:
    """``value`` with the values of secret-named keys replaced, at any depth (down to
    MAX_DEPTH: deeper arrays and objects are replaced whole by DEEPER)."""
    if isinstance(value, dict):
        if depth >= MAX_DEPTH:
            return DEEPER
        return {
            key: REDACTED if isinstance(key, str) and secret_name(key) else redact(item, depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        if depth >= MAX_DEPTH:
            return DEEPER
        return [redact(item, depth + 1) for item in value]
    return value


def shallow(value: Any, depth: int = 0) -> Any:
    """``value`` down to MAX_DEPTH, unredacted (positional arguments, a response body)."""
    if isinstance(value, dict):
        if depth >= MAX_DEPTH:
            return DEEPER
        return {key: shallow(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple):
        if depth >= MAX_DEPTH:
            return DEEPER
        return [shallow(item, depth + 1) for item in value]
    return value


def metadata(value: dict[str, Any]) -> dict[str, Any]:
    """A job's metadata as the dashboard shows it."""
    shown: dict[str, Any] = redact(public_metadata(value))
    return shown


def url(text: str) -> str:
    """A URL without its password and with secret-named query parameters redacted."""
    try:
        parts = urlsplit(text)
        password = parts.password
    except ValueError:
        return text
    netloc = parts.netloc
    if password is not None:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{REDACTED}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(secret_name(k) for k, _ in pairs):
            query = urlencode([(k, REDACTED if secret_name(k) else v) for k, v in pairs])
    return parts._replace(netloc=netloc, query=query).geturl()
