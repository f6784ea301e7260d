"""API keys and tenants.

``CONVEYOR_API_KEYS=tenant:key,...`` (or a file of such lines,
``CONVEYOR_API_KEYS_FILE``; ``#`` starts a comment) gives each key a tenant;
``CONVEYOR_ADMIN_KEYS=key,...`` are admin keys, which see every job and may
steer queues. Keys are kept only as SHA-256 digests: a memory dump or a log of
the settings shows no key. A request proves a key with ``Authorization: Bearer
<key>``.

A job's read token (the ``token`` query parameter of the ``Location`` a POST
answers) is a second way to read one job: a capability URL, for a browser or a
cache that cannot send an ``Authorization`` header.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from conveyor.exceptions import ConfigError

_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
#: Shortest key accepted: a guessable key is no key.
MIN_KEY_LENGTH = 16


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request is: a tenant's key, or an admin key (``tenant`` None)."""

    tenant: str | None
    admin: bool = False

    def sees(self, tenant: str | None) -> bool:
        return self.admin or (self.tenant is not None and self.tenant == tenant)


ADMIN = Principal(None, admin=True)


def key_digest(key: str) -> bytes:
    """The SHA-256 digest a key is known by (the only form in which keys are kept)."""
    return hashlib.sha256(key.encode()).digest()


class ApiKeys:
    """Key digests → principals."""

    def __init__(
        self, tenant_keys: Iterable[tuple[str, str]] = (), admin_keys: Iterable[str] = ()
    ) -> None:
        self._by_digest: dict[bytes, Principal] = {}
        for tenant, key in tenant_keys:
            self._add(key, Principal(tenant), "CONVEYOR_API_KEYS")
        for key in admin_keys:
            self._add(key, ADMIN, "CONVEYOR_ADMIN_KEYS")

    def _add(self, key: str, principal: Principal, source: str) -> None:
        if len(key) < MIN_KEY_LENGTH:
            raise ConfigError(source, f"a key is shorter than {MIN_KEY_LENGTH} characters")
        if principal.tenant is not None and not _TENANT.match(principal.tenant):
            raise ConfigError(
                source,
                f"tenant {principal.tenant!r}: letters, digits, '_', '.', '-' (at most 64)",
            )
        digest = key_digest(key)
        if self._by_digest.get(digest, principal) != principal:
            raise ConfigError(source, "one key is given to two tenants")
        self._by_digest[digest] = principal

    def __len__(self) -> int:
        return len(self._by_digest)

    @property
    def tenants(self) -> list[str]:
        return sorted({p.tenant for p in self._by_digest.values() if p.tenant is not None})

    def lookup(self, authorization: str | None) -> Principal | None:
        """The principal of an ``Authorization: Bearer <key>`` header; None if unknown."""
        if not authorization:
            return None
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key:
            return None
        # A dict lookup on the digest: comparing digests leaks nothing about the key.
        return self._by_digest.get(key_digest(key.strip()))

    def by_digest(self, digest: bytes) -> Principal | None:
        """The principal of a key known by its digest (a dashboard session keeps the
        digest, never the key); None once the key is no longer configured."""
        return self._by_digest.get(digest)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ApiKeys:
        tenant_keys = list(
            parse_tenant_keys(environ.get("CONVEYOR_API_KEYS", ""), "CONVEYOR_API_KEYS")
        )
        path = environ.get("CONVEYOR_API_KEYS_FILE")
        if path:
            try:
                text = Path(path).read_text()
            except OSError as exc:
                raise ConfigError(
                    "CONVEYOR_API_KEYS_FILE", f"cannot read {path}: {exc.strerror}"
                ) from None
            lines = (line.split("#", 1)[0] for line in text.splitlines())
            tenant_keys += parse_tenant_keys(",".join(lines), "CONVEYOR_API_KEYS_FILE")
        admin = [k.strip() for k in environ.get("CONVEYOR_ADMIN_KEYS", "").split(",") if k.strip()]
        return cls(tenant_keys, admin)


def parse_tenant_keys(text: str, source: str) -> list[tuple[str, str]]:
    pairs = []
    for entry in text.split(","):
        entry = entry.strip()
        if not entry:
            continue
        tenant, sep, key = entry.partition(":")
        if not sep or not tenant.strip() or not key.strip():
            raise ConfigError(source, "expected tenant:key entries separated by commas")
        pairs.append((tenant.strip(), key.strip()))
    return pairs


def new_key() -> str:
    """A fresh random API key (256 bits)."""
    return secrets.token_urlsafe(32)


def new_read_token() -> str:
    """A job's read token (128 bits): unguessable, short enough for a URL."""
    return secrets.token_urlsafe(16)


def token_matches(given: str | None, stored: object) -> bool:
    if not given or not isinstance(stored, str):
        return False
    return hmac.compare_digest(given.encode(), stored.encode())
