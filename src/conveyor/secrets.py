"""Credentials at rest: what a job's HTTP steps send as credentials is stored sealed.

The API seals the credentials of a submitted job before the job is stored; the worker opens
them just before it sends a request. With ``CONVEYOR_SECRET_KEY`` set, sealing is Fernet
encryption (AES-128-CBC with an HMAC-SHA256, from the ``cryptography`` package) under a key
derived from that setting; without it, secrets are stored as they are, marked ``plain:``.

Stored forms, self-describing so that a key can be added to a running system:

- ``enc:v1:<Fernet token>``: encrypted; opening it needs the same ``CONVEYOR_SECRET_KEY``;
- ``plain:<text>``: not encrypted; opened with or without a key.

``CONVEYOR_SECRET_KEY`` may be any non-empty string; the Fernet key is the URL-safe base64 of
its SHA-256 digest. A long random string (``python -c "import secrets;
print(secrets.token_urlsafe(32))"``) is the right thing to set: the derivation does not slow
down guessing, so a short password would be a weak key. The API and every worker must share it.

Neither the key nor a secret ever appears in a message, a log line or a ``repr``.
:class:`SecretError` is a :class:`~conveyor.exceptions.ConveyorError` and a
:class:`ValueError`.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from conveyor.exceptions import ConfigError, ConveyorError

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

__all__ = ["ENV", "SecretBox", "SecretError"]

ENV = "CONVEYOR_SECRET_KEY"
_ENCRYPTED = "enc:"
_V1 = "enc:v1:"
_PLAIN = "plain:"
_SAME_KEY = f"set the same {ENV} on the API and the workers"


class SecretError(ConveyorError, ValueError):
    """A stored secret cannot be opened. The message says why; it never holds the secret."""


class SecretBox:
    """Seals and opens secrets with the key from ``CONVEYOR_SECRET_KEY`` (or stores them plain).

    Args:
        key: any non-empty string; None stores secrets unencrypted.

    Raises:
        ConfigError: ``key`` is empty, or the ``cryptography`` package is not installed.
    """

    def __init__(self, key: str | None) -> None:
        self._fernet: Fernet | None = None
        if key is None:
            return
        if not key:
            raise ConfigError(ENV, "must not be empty; unset it to store secrets unencrypted")
        try:
            # Imported here: without a key (and for the API's other users) it is not needed.
            from cryptography.fernet import Fernet
        except ImportError as exc:
            raise ConfigError(
                ENV, "needs the cryptography package: pip install 'conveyor[http]'"
            ) from exc
        digest = hashlib.sha256(key.encode("utf-8")).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> SecretBox:
        """A box with the key from ``CONVEYOR_SECRET_KEY``; unset or empty means no encryption."""
        return cls(environ.get(ENV) or None)

    @property
    def encrypts(self) -> bool:
        """True when :meth:`seal` encrypts (a key is set)."""
        return self._fernet is not None

    def seal(self, text: str) -> str:
        """The stored form of ``text``: ``enc:v1:<token>`` with a key, ``plain:<text>`` without."""
        if self._fernet is None:
            return _PLAIN + text
        return _V1 + self._fernet.encrypt(text.encode("utf-8")).decode("ascii")

    def open(self, stored: str) -> str:
        """The text :meth:`seal` sealed.

        Raises:
            SecretError: ``stored`` is encrypted and there is no key or not the key it was
                sealed with, or it is not a sealed secret at all.
        """
        if stored.startswith(_PLAIN):
            return stored[len(_PLAIN) :]
        if not stored.startswith(_ENCRYPTED):
            raise SecretError("not a sealed secret (expected enc: or plain:)")
        if not stored.startswith(_V1):
            raise SecretError("sealed in an unknown format; is this worker older than the API?")
        if self._fernet is None:
            raise SecretError(f"the secret is encrypted but {ENV} is not set; {_SAME_KEY}")
        from cryptography.fernet import InvalidToken

        try:
            plain = self._fernet.decrypt(stored[len(_V1) :].encode("ascii"))
        except (InvalidToken, UnicodeEncodeError):
            raise SecretError(
                f"the secret cannot be decrypted: sealed with another key, or damaged; {_SAME_KEY}"
            ) from None
        return plain.decode("utf-8")

    def __repr__(self) -> str:
        return f"SecretBox(encrypts={self.encrypts})"
