"""Job stores behind one interface; :func:`create_backend` picks one by URL scheme."""

from __future__ import annotations

import math
from urllib.parse import parse_qsl, urlsplit

from conveyor.backends.base import Backend
from conveyor.backends.redaction import redact_url as redact_url  # (re-exported)
from conveyor.backends.redaction import scrub as scrub
from conveyor.exceptions import ConfigError
from conveyor.storable import is_utf8

#: scheme → "module:Class", imported only when used (drivers are optional extras).
BACKENDS: dict[str, str] = {
    "sqlite": "conveyor.backends.sqlite:SQLiteBackend",
    "postgresql": "conveyor.backends.postgres:PostgresBackend",
    "postgres": "conveyor.backends.postgres:PostgresBackend",
    "redis": "conveyor.backends.redis:RedisBackend",
    "rediss": "conveyor.backends.redis:RedisBackend",
}


def create_backend(url: str) -> Backend:
    """A backend for ``url`` (not opened yet); ConfigError naming the URL when unknown."""
    import importlib

    if not isinstance(url, str) or not url:
        raise ConfigError("url", f"expected a store URL such as sqlite:///conveyor.db, got {url!r}")
    try:
        scheme = urlsplit(url).scheme
    except ValueError as exc:  # e.g. an unclosed [ of an IPv6 host
        raise ConfigError(
            "url", f"{redact_url(url)!r} does not parse: {scrub(str(exc), url)}"
        ) from None
    target = BACKENDS.get(scheme)
    if target is not None and scheme != "sqlite" and not is_utf8(url):
        # A server's URL goes to its driver as UTF-8: it raised UnicodeEncodeError (a
        # traceback in the CLI) or failed as if the server were down. (A SQLite file
        # may have a name that is not UTF-8: the file system takes its bytes.)
        raise ConfigError(
            "url",
            f"{redact_url(url)!r} is not UTF-8 text (it holds bytes that could not be "
            "decoded, as a command line or file may give them)",
        )
    if target is None:
        raise ConfigError(
            "url",
            f"unsupported scheme {scheme!r} in {redact_url(url)!r}; "
            f"supported: {', '.join(sorted(BACKENDS))}",
        )
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    backend: Backend = cls(url)
    return backend


def pinned_url(url: str) -> str:
    """``url`` with a SQLite file's relative path made absolute, against the working
    directory of now (any other URL as it is; a valid one: create_backend checked it).

    An app makes a backend for each event loop it is used on, when first used there:
    the working directory may have changed since the app was made (a server that
    changes it after importing the application, task code calling ``os.chdir``), and
    a relative path then named another file than the app's sync calls use."""
    if urlsplit(url).scheme != "sqlite":
        return url
    from conveyor.backends.sqlite import absolute_sqlite_url

    return absolute_sqlite_url(url)


def url_options(query: str, where: str) -> dict[str, str]:
    """A URL's query as options; ConfigError naming one given twice (``?poll=1&poll=2``
    took the last, unsaid: the first was what the writer of the URL meant to set)."""
    options: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in options:
            raise ConfigError(f"url.{name}", f"given more than once in {where!r}")
        options[name] = value
    return options


def number_option(
    options: dict[str, str],
    name: str,
    default: float,
    where: str,
    kind: type = float,
    minimum: float = 0.0,
) -> float:
    """Pop the URL option ``name`` (a finite number > 0, and at least ``minimum``) from
    ``options``; ConfigError naming ``url.<name>`` when it is not one."""
    raw = options.pop(name, None)
    if raw is None:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"url.{name}", f"expected a number in {where!r}, got {raw!r}") from None
    if not 0 < value < math.inf:  # NaN fails this too
        raise ConfigError(f"url.{name}", f"must be > 0 and finite in {where!r}, got {raw!r}")
    if value < minimum:
        raise ConfigError(f"url.{name}", f"must be at least {minimum:g} in {where!r}, got {raw!r}")
    return float(value)


#: The shortest wait between two looks for work a URL's ``poll`` may set (seconds): a
#: ``poll`` of 1e-300 made an idle worker spin a core.
MIN_POLL_S = 0.001
