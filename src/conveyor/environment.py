"""conveyor's environment variables, checked when a process starts.

A worker reads the HTTP steps' settings (``CONVEYOR_HTTP_ALLOW``,
``CONVEYOR_HTTP_MAX_BODY``) and the cache to purge (``CONVEYOR_CACHE_PURGE_URL``)
only when a job needs them: checked then, a bad value
failed users' jobs one by one (poisoned with a ConfigError) in a worker that had
started as if all was well. They are checked here at start-up instead, as the API
checks its own, with the same error: the variable named, exit 2.

A value that is not UTF-8 (Python holds its bytes as lone surrogates) is refused
by name too, rather than failing as a UnicodeEncodeError wherever it is used.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from conveyor.exceptions import ConfigError
from conveyor.storable import is_utf8

#: The largest response body an HTTP step keeps, in bytes.
MAX_BODY_ENV = "CONVEYOR_HTTP_MAX_BODY"
DEFAULT_MAX_BODY = 64 * 1024


def check_text(environ: Mapping[str, str] = os.environ) -> None:
    """ConfigError naming the first ``CONVEYOR_*`` variable whose value is not UTF-8."""
    for name, value in environ.items():
        if name.startswith("CONVEYOR_") and not is_utf8(value):
            raise ConfigError(name, "is not UTF-8 text")


def http_max_body(environ: Mapping[str, str] = os.environ) -> int:
    """``CONVEYOR_HTTP_MAX_BODY``: bytes >= 0 (default 64 KiB)."""
    raw = environ.get(MAX_BODY_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_BODY
    try:
        max_body = int(raw)
    except ValueError:
        max_body = -1
    if max_body < 0:
        raise ConfigError(MAX_BODY_ENV, f"expected a number of bytes >= 0, got {raw!r}")
    return max_body


def check_worker(environ: Mapping[str, str] = os.environ) -> None:
    """The settings a worker reads from the environment, as it will read them. Not
    whether ``cryptography`` is there for ``CONVEYOR_SECRET_KEY``: a worker of tasks
    only, installed without the http extra, may share the API's environment."""
    from conveyor.steps.guard import Guard
    from conveyor.web.purge import ENV as PURGE_ENV
    from conveyor.web.purge import check_purge_url

    check_text(environ)
    Guard.from_env(environ)
    http_max_body(environ)
    purge_url = environ.get(PURGE_ENV)
    if purge_url:
        check_purge_url(purge_url)
