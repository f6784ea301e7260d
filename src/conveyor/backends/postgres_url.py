"""PostgreSQL URLs: what libpq gets, and conveyor's own options."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlencode, urlsplit

import psycopg

from conveyor.backends import MIN_POLL_S, number_option, redact_url, scrub, url_options
from conveyor.exceptions import ConfigError

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,47}$")
_KEEPALIVES = {
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
}


@dataclass(frozen=True, slots=True)
class PostgresSettings:
    """A ``postgresql://`` URL taken apart: what libpq gets, and conveyor's options."""

    conninfo: str
    schema: str
    pool_size: int
    poll: float
    connect_timeout: float


def parse_postgres_url(url: str) -> PostgresSettings:
    """Split conveyor's options off the URL and check what is left parses for libpq."""
    where = redact_url(url)
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError("url", f"not a postgresql:// URL: {where!r}")
    # Read and written back as libpq reads a URI: "+" is a plus sign, a space is %20
    # (with parse_qsl's and urlencode's defaults, "-c statement_timeout=5s" in
    # `options` reached the server as "-c+statement_timeout=5s", which it refused).
    options = url_options(parts.query.replace("+", "%2B"), where)
    schema = options.pop("schema", "conveyor")
    if not _SCHEMA_NAME.match(schema):
        raise ConfigError(
            "url.schema",
            f"{schema!r} in {where!r}: use lower-case letters, digits and _ "
            "(at most 48, not starting with a digit)",
        )
    if schema.startswith("pg_") or schema == "information_schema":
        raise ConfigError(
            "url.schema",
            f"{schema!r} in {where!r}: the name is reserved by PostgreSQL for its own "
            "schemas (pg_..., information_schema); choose another",
        )
    pool_size = number_option(options, "pool_size", 10, where, int)
    poll = number_option(options, "poll", 0.05, where, float, MIN_POLL_S)
    connect_timeout = number_option(options, "connect_timeout", 10, where, float)
    options["connect_timeout"] = str(max(1, round(connect_timeout)))
    # A peer that vanishes without closing the connection (a network cut, a host
    # that died) is noticed in about 25 s instead of the kernel's two hours.
    for name, value in _KEEPALIVES.items():
        options.setdefault(name, value)
    # Put together by hand: urlunsplit drops the "//" of a URL without a host part
    # (postgresql:///db?host=/run/postgresql, libpq's way to a socket's folder), and
    # libpq then read what was left as key=value pairs, refusing it.
    conninfo = f"{parts.scheme}://{parts.netloc}{parts.path}?{urlencode(options, quote_via=quote)}"
    if parts.fragment:
        conninfo += f"#{parts.fragment}"
    try:
        parsed = psycopg.conninfo.conninfo_to_dict(conninfo)
    except psycopg.Error as exc:
        # libpq quotes the part it could not read, which may be the password.
        raise ConfigError("url", f"{where!r} does not parse: {scrub(one_line(exc), url)}") from None
    _check_libpq_values(parsed, where)
    return PostgresSettings(conninfo, schema, int(pool_size), float(poll), float(connect_timeout))


#: libpq's sslmode values.
_SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def _check_libpq_values(parsed: Mapping[str, object], where: str) -> None:
    """What libpq parses without judging and refuses only when it connects (every
    connection, as a store failure): ports, and sslmode."""
    for port in str(parsed.get("port") or "").split(","):
        if port and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
            raise ConfigError("url", f"{where!r}: the port must be 1 to 65535, got {port!r}")
    mode = parsed.get("sslmode")
    if mode is not None and mode not in _SSL_MODES:
        raise ConfigError(
            "url.sslmode", f"{where!r}: expected one of {', '.join(_SSL_MODES)}, got {mode!r}"
        )


def one_line(exc: BaseException) -> str:
    """A driver message on one line (libpq's span several, with tabs)."""
    return (
        "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        or type(exc).__name__
    )


#: What the server says, refusing a connection for something of the URL a retry does
#: not mend, and what to do about it: a database or role it does not have (SQLSTATE
#: 3D000, 28000), a wrong password (28P01), a role without LOGIN or a connection its
#: pg_hba.conf does not admit (28000). libpq gives a refused connection's text only, not
#: its code; a server that speaks another language says it in that one, and the
#: refusal stays a store failure.
_REFUSALS = (
    (
        re.compile(r'FATAL: +((?:database|role) ".*?" does not exist)'),
        "fix the URL, or create it on the server",
    ),
    (
        re.compile(r'FATAL: +(password authentication failed for user ".*?")'),
        "fix the user or the password of the URL",
    ),
    (
        re.compile(r'FATAL: +(role ".*?" is not permitted to log in)'),
        "use a role that may log in (an administrator grants it: ALTER ROLE ... LOGIN)",
    ),
    (
        re.compile(r"FATAL: +(no pg_hba\.conf entry for host .*?)(?:;|$)"),
        "fix the URL, or have the server's pg_hba.conf admit it",
    ),
)


def refused_for_url(said: str) -> str | None:
    """What the server refused the connection for, and what to do, when ``said`` (the
    driver's message) is a refusal of something in the URL (``database "x" does not
    exist: fix the URL, or create it on the server``): a configuration to fix, which
    no retry mends. None for the rest (not answering, starting up, full, ...)."""
    for pattern, remedy in _REFUSALS:
        found = pattern.search(said)
        if found:
            return f"{found.group(1).rstrip()}: {remedy}"
    return None
