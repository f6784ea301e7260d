"""Store URLs and driver messages with every password hidden, however the URL is spelled.

A password is found by where it is written, not by how a parser reads the URL:
``urlsplit`` ends the authority at the first ``/``, ``?`` or ``#``, so it reads
``postgresql://bob:Se#cret7@host/db`` as host ``bob`` with no password at all, and
libpq or redis-py then echo pieces of it in their errors. Here the password is
everything between the first ``:`` after ``//`` and the last ``@`` (a user never has
a ``:``), plus the value of every ``password=`` query parameter. Hiding too much (an
``@`` in a query makes the host look like a password) is the safe way to be wrong.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

MASK = "***"
#: A password given as a query parameter (libpq's password / sslpassword, redis-py's
#: password / ssl_password, any other ...password): its value runs to the next one.
_QUERY_PASSWORD = re.compile(r"(?i)([?&][\w.-]*password=)([^&]*)")
#: Where a URL parser cuts a password that was not percent-encoded.
_CUTS = re.compile(r"[/?#@&:]")


def redact_url(url: str) -> str:
    """``url`` with ``***`` for each password, for logs and messages."""
    text = _QUERY_PASSWORD.sub(rf"\g<1>{MASK}", url)
    span = _userinfo_password(text)
    if span is not None:
        text = f"{text[: span[0]]}{MASK}{text[span[1] :]}"
    return text


def scrub(text: str, url: str) -> str:
    """``text`` (a message about ``url``, a driver's or conveyor's) without the URL's
    passwords: the URL itself redacted, then each password, as written and decoded,
    replaced by ``***``, and so each piece a parser may have cut one into, where it
    stands as a word of its own (the "Se" of "Se#cret7", not of "Servname")."""
    if url in text:
        text = text.replace(url, redact_url(url))
    secrets, pieces = _secrets(url)
    for secret in secrets:
        text = text.replace(secret, MASK)
    for piece in pieces:
        text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(piece)}(?![A-Za-z0-9])", MASK, text)
    return text


def url_secrets(url: str) -> tuple[str, ...]:
    """The passwords of ``url``, as written and decoded, longest first."""
    return _secrets(url)[0]


def _secrets(url: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The passwords of ``url``, and the pieces of those a parser would cut."""
    written = [match.group(2) for match in _QUERY_PASSWORD.finditer(url)]
    bare = _QUERY_PASSWORD.sub(r"\g<1>", url)  # so that an @ in a query value is not seen
    span = _userinfo_password(bare)
    if span is not None:
        written.append(bare[span[0] : span[1]])
    secrets: set[str] = set()
    pieces: set[str] = set()
    for raw in written:
        secrets.update(s for s in (raw, unquote(raw)) if s)
        if _CUTS.search(raw):
            # A parser that cut it may echo a piece ("port could not be cast ... 'Se'");
            # a single character is left (it would mask every such letter of a message).
            pieces.update(piece for piece in _CUTS.split(raw) if len(piece) > 1)
    return _longest_first(secrets), _longest_first(pieces - secrets)


def _longest_first(texts: set[str]) -> tuple[str, ...]:
    return tuple(sorted(texts, key=len, reverse=True))


def _userinfo_password(url: str) -> tuple[int, int] | None:
    """Start and end of the password of the URL's user information, if it has one."""
    start = url.find("//")
    if start < 0:
        return None
    start += 2
    at = url.rfind("@", start)
    if at < 0:
        return None
    colon = url.find(":", start, at)
    if colon < 0:
        return None
    return colon + 1, at
