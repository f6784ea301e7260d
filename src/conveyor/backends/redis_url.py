"""Redis URLs: what redis-py gets, and conveyor's own options."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlencode, urlsplit

from conveyor.backends import MIN_POLL_S, number_option, redact_url, scrub, url_options
from conveyor.exceptions import ConfigError

_NAMESPACE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
#: A TypeError's words for a keyword (URL option) that redis-py's connections do not take.
_UNKNOWN_OPTION = re.compile(r"unexpected keyword argument '([^']*)'")
_DB = re.compile(r"^[0-9]+$")
#: The highest database number a Redis server can have (its `databases` is an int).
_MAX_DB = 2**31 - 1
#: redis-py's options in seconds. It takes any float: 0 and -1 then timed out every
#: call, nan and inf raised a bare ValueError or OverflowError at the first command.
_CLIENT_SECONDS = ("socket_timeout", "socket_connect_timeout")
#: Seconds finished jobs are kept by default: succeeded ones a day, poisoned and
#: cancelled ones (the ones someone may want to look at or retry) 30 days.
KEEP_SUCCEEDED_S = 24 * 3600.0
KEEP_FAILED_S = 30 * 24 * 3600.0
#: Bytes of arguments and metadata a job may carry by default.
MAX_PAYLOAD = 1024 * 1024


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """A ``redis://`` URL taken apart: what redis-py gets, and conveyor's options."""

    url: str  # for redis-py, without conveyor's options
    namespace: str
    keep_succeeded: float  # seconds; 0 keeps them until pruned
    keep_failed: float
    max_payload: int
    poll: float
    connect_timeout: float
    cluster: bool = False  # a Redis Cluster: the URL names one of its nodes
    socket_timeout: float | None = None  # the URL's, for redis-py (None: redis-py's own)
    db: int = 0  # the database number (the path, or ?db=)

    @property
    def prefix(self) -> str:
        """Every key starts with it. The braces make the namespace the hash tag: a
        Redis Cluster keeps all of a namespace's keys in one slot, so each script
        touches one node."""
        return f"{{{self.namespace}}}:"


def parse_redis_url(url: str) -> RedisSettings:
    """Split conveyor's options off the URL and check what is left parses for redis-py."""
    where = redact_url(url)
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ConfigError("url", f"not a redis:// URL: {where!r}")
    options = url_options(parts.query, where)
    namespace = options.pop("prefix", "conveyor").removesuffix(":")
    if not _NAMESPACE.match(namespace):
        raise ConfigError(
            "url.prefix",
            f"{namespace!r} in {where!r}: use letters, digits, '_', '-' and '.' (at most 64)",
        )
    keep_succeeded = _seconds(options, "keep_succeeded", KEEP_SUCCEEDED_S, where)
    keep_failed = _seconds(options, "keep_failed", KEEP_FAILED_S, where)
    max_payload = number_option(options, "max_payload", MAX_PAYLOAD, where, int)
    poll = number_option(options, "poll", 0.05, where, float, MIN_POLL_S)
    connect_timeout = number_option(options, "connect_timeout", 10, where, float)
    cluster = _flag(options, "cluster", where)
    for name in _CLIENT_SECONDS:
        if name in options:  # checked on a copy: the option stays for redis-py
            number_option({name: options[name]}, name, 0, where)
    client_url = parts._replace(query=urlencode(options)).geturl()
    # redis-py reads the path as the database number but ignores one that is not a
    # number (redis://host/x is db 0) and drops every '/' (redis://host/1/2 is db 12).
    db = unquote(parts.path).removeprefix("/")
    if db and (not _DB.match(db) or int(db) > _MAX_DB):
        # (a password cut by a '/' it holds ends up here)
        got = scrub(repr(db), url)
        raise ConfigError(
            "url", f"{where!r} does not parse: the path must be a database number, got {got}"
        )
    other = options.get("db", "")
    if db and _DB.match(other) and int(other) != int(db):  # (a bad ?db= redis-py refuses)
        # redis-py takes ?db= over the path: redis://h/14?db=3 silently used database 3.
        raise ConfigError(
            "url", f"{where!r} names two databases: {db} in its path and {other!r} (?db=)"
        )
    named = db or (other if _DB.match(other) else "")
    if cluster and named and int(named) != 0:
        # (redis-py's cluster client refused it with a traceback, at the first connect)
        raise ConfigError("url", f"{where!r}: a Redis Cluster has database 0 only")
    try:
        from redis.asyncio import ConnectionPool
        from redis.exceptions import RedisError

        # A connection object is made without connecting: an option redis-py does not
        # know fails here, not as a TypeError at the first command.
        pool = ConnectionPool.from_url(client_url)
        pool.connection_class(**pool.connection_kwargs)
    except (ValueError, TypeError, RedisError) as exc:
        # (RedisError: a value redis-py refuses, e.g. ssl_cert_reqs=bogus)
        unknown = _UNKNOWN_OPTION.search(str(exc)) if isinstance(exc, TypeError) else None
        if unknown is not None:  # the TypeError names a constructor of redis-py's
            option = unknown[1]
            # redis-py's TLS options are taken by its TLS connections only
            why = (
                f"option {option!r} needs a rediss:// URL (TLS)"
                if (option == "ssl" or option.startswith("ssl_")) and parts.scheme == "redis"
                else f"unknown option {option!r}"
            )
            raise ConfigError("url", f"{where!r} does not parse: {why}") from None
        # redis-py quotes the part it could not read, which may be (part of) the password.
        raise ConfigError("url", f"{where!r} does not parse: {scrub(str(exc), url)}") from None
    return RedisSettings(
        client_url,
        namespace,
        keep_succeeded,
        keep_failed,
        int(max_payload),
        float(poll),
        float(connect_timeout),
        cluster,
        float(options["socket_timeout"]) if "socket_timeout" in options else None,
        int(named) if named else 0,
    )


def _flag(options: dict[str, str], name: str, where: str) -> bool:
    raw = options.pop(name, "false").lower()
    if raw not in ("1", "0", "true", "false", "yes", "no"):
        raise ConfigError(f"url.{name}", f"expected true or false in {where!r}, got {raw!r}")
    return raw in ("1", "true", "yes")


def _seconds(options: dict[str, str], name: str, default: float, where: str) -> float:
    """A number of seconds >= 0 (0: for ever)."""
    raw = options.pop(name, None)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise ConfigError(
            f"url.{name}", f"expected seconds >= 0 (0: until pruned) in {where!r}, got {raw!r}"
        )
    return value
