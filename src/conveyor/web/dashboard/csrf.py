"""CSRF protection: every form that changes something carries a token tied to its session.

The token is the HMAC of the session's id (:class:`~conveyor.web.dashboard.signing.Signer`):
nothing to store, different for every session, unknowable to another site. A POST whose
``csrf`` field is missing or wrong is refused with a 403 page before anything is done
(:class:`CsrfRejected`). The login form, which comes before any session, is tied the same
way to a nonce kept in a short-lived signed cookie (:mod:`conveyor.web.dashboard.session`).
The session cookie's ``SameSite=Strict`` is a second, independent guard.
"""

from __future__ import annotations

import hmac

from conveyor.web.dashboard.signing import Signer

#: The name of the hidden form field.
FIELD = "csrf"


class CsrfRejected(Exception):
    """A state-changing request without a valid CSRF token."""


def token(signer: Signer, purpose: str, subject: str) -> str:
    """The token of a session (``purpose`` "session", ``subject`` its id) or of a login
    form (``purpose`` "login", ``subject`` its nonce)."""
    return signer.mac(f"csrf:{purpose}", subject)


def check(signer: Signer, purpose: str, subject: str, given: str | None) -> None:
    """:class:`CsrfRejected` unless ``given`` is the token of ``subject``."""
    expected = token(signer, purpose, subject)
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        raise CsrfRejected()
