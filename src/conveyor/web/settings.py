"""Settings of the HTTP API, read from the environment once at start-up.

==============================  ===================================================
``CONVEYOR_API_KEYS``           ``tenant:key,...``: each key's tenant
``CONVEYOR_API_KEYS_FILE``      a file of ``tenant:key`` lines (``#`` comments)
``CONVEYOR_ADMIN_KEYS``         ``key,...``: keys that see every job, steer queues
``CONVEYOR_SECRET_KEY``         encrypts stored step credentials (set it on workers too)
``CONVEYOR_HTTP_ALLOW``         CIDRs or hosts that steps may reach beyond public ones
``CONVEYOR_CACHE_PURGE_URL``    the cache in front: a change sends ``PURGE`` there
``CONVEYOR_API_MAX_BODY``       largest request body in bytes (default 1 MiB)
``CONVEYOR_API_MAX_STEPS``      most steps in one job (default 50)
``CONVEYOR_FINAL_MAX_AGE``      ``max-age`` of a finished job's document (default 3600)
``CONVEYOR_SESSION_MAX_AGE``    seconds a dashboard login lasts (default 43200: 12 h)
``CONVEYOR_CORS_ORIGINS``       ``origin,...`` or ``*``: web pages of those origins may
                                call ``/v1/`` (:mod:`conveyor.web.cors`; default none)
==============================  ===================================================

The dashboard signs its session cookies with a key derived from ``CONVEYOR_SECRET_KEY``;
without it, with a random key made at start-up: sessions then end when the process does.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets as random_secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from conveyor.environment import check_text
from conveyor.exceptions import ConfigError
from conveyor.secrets import SecretBox
from conveyor.steps.guard import Guard
from conveyor.web.auth import ApiKeys
from conveyor.web.cors import cors_origins
from conveyor.web.purge import check_purge_url


@dataclass(frozen=True)
class ApiSettings:
    keys: ApiKeys = field(default_factory=ApiKeys)
    secrets: SecretBox = field(default_factory=lambda: SecretBox(None))
    guard: Guard = field(default_factory=Guard)
    purge_url: str | None = None
    max_body: int = 1 << 20
    max_steps: int = 50
    final_max_age: int = 3600
    #: The queue of a job that names none.
    default_queue: str = "default"
    #: The key the dashboard signs its cookies with (:func:`session_key`).
    session_key: bytes = field(default_factory=lambda: session_key(None), repr=False)
    #: How long a dashboard login lasts, in seconds.
    session_max_age: int = 12 * 3600
    #: Origins whose web pages may call the API (``("*",)``: any); none by default.
    cors_origins: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, **overrides: object) -> ApiSettings:
        check_text(environ)
        purge_url = environ.get("CONVEYOR_CACHE_PURGE_URL") or None
        values: dict[str, object] = {
            "keys": ApiKeys.from_env(environ),
            "secrets": SecretBox.from_env(environ),
            "guard": Guard.from_env(environ),
            "purge_url": check_purge_url(purge_url) if purge_url else None,
            "max_body": _int(environ, "CONVEYOR_API_MAX_BODY", 1 << 20, low=1024),
            "max_steps": _int(environ, "CONVEYOR_API_MAX_STEPS", 50, low=1),
            "final_max_age": _int(environ, "CONVEYOR_FINAL_MAX_AGE", 3600, low=0),
            "session_key": session_key(environ.get("CONVEYOR_SECRET_KEY") or None),
            "session_max_age": _int(environ, "CONVEYOR_SESSION_MAX_AGE", 12 * 3600, low=60),
            "cors_origins": cors_origins(environ.get("CONVEYOR_CORS_ORIGINS", "")),
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]


def session_key(secret: str | None) -> bytes:
    """The dashboard's signing key: derived from ``CONVEYOR_SECRET_KEY`` (so that every API
    process, and the next one after a restart, accepts the same sessions), or random."""
    if secret is None:
        return random_secrets.token_bytes(32)
    return hmac.new(secret.encode(), b"conveyor.dashboard.session", hashlib.sha256).digest()


def _int(environ: Mapping[str, str], name: str, default: int, *, low: int) -> int:
    text = environ.get(name)
    if text is None or not text.strip():
        return default
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(name, f"expected an integer, got {text!r}") from None
    if value < low:
        raise ConfigError(name, f"must be >= {low}, got {value}")
    return value
