"""Signed values: what the dashboard's cookies and CSRF tokens are made of.

A signed value is ``<payload>.<signature>``: the payload is URL-safe base64 of compact JSON,
the signature an HMAC-SHA256 over a *purpose* and the payload, so that a value signed for
one use (a login form) is never accepted for another (a session). Values carry their expiry
(``exp``, seconds since the epoch on this machine's clock) inside the signed payload. The
key is :attr:`conveyor.web.settings.ApiSettings.session_key`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from typing import Any


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """Signs and checks values with one key."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def mac(self, purpose: str, text: str) -> str:
        """The HMAC of ``text`` for ``purpose``, as URL-safe text."""
        message = purpose.encode() + b"\0" + text.encode()
        return _b64(hmac.new(self._key, message, hashlib.sha256).digest())

    def sign(self, purpose: str, data: dict[str, Any], max_age: float) -> str:
        """``data`` signed for ``purpose``, valid for ``max_age`` seconds."""
        payload = _b64(json.dumps({**data, "exp": int(time.time() + max_age)}).encode())
        return f"{payload}.{self.mac(purpose, payload)}"

    def unsign(self, purpose: str, value: str | None) -> dict[str, Any] | None:
        """The data of a value signed for ``purpose``; None when it is missing, forged,
        signed for another purpose, malformed or expired."""
        if not value or value.count(".") != 1:
            return None
        payload, signature = value.split(".")
        if not hmac.compare_digest(signature.encode(), self.mac(purpose, payload).encode()):
            return None
        try:
            data = json.loads(_unb64(payload))
        except (binascii.Error, ValueError):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("exp"), int):
            return None
        if data["exp"] < time.time():
            return None
        return data
