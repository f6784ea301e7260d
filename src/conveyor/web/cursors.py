"""The cursor of ``GET /v1/jobs``: opaque text that names where the next page starts.

A page of jobs ends on a job; the next page lists the jobs older than it (ids are
time-ordered). The API hands that job's id out as ``next_cursor``, wrapped: base64url
of ``j:<id>``, without padding. Wrapped rather than bare, so that only a cursor this API
made reads back: any text used to be taken as an id bound, and a mistyped or made-up
cursor (``?cursor=zzz``, a job id pasted in) answered a page, silently the wrong one.
Now it is a ``422`` naming ``cursor``. A check that the text looks like a UUID would not
do: jobs enqueued through the library may carry ids of their own, and a page may end on
one of them.
"""

from __future__ import annotations

import base64
import binascii
import re

from conveyor.storable import problem

__all__ = ["PATTERN", "decode_cursor", "encode_cursor"]

_TAG = b"j:"
#: What a cursor looks like, as the OpenAPI document says it.
PATTERN = "^[A-Za-z0-9_-]*$"
_ALPHABET = re.compile(r"[A-Za-z0-9_-]+")


def encode_cursor(job_id: str) -> str:
    """The cursor of the page after the one that ends on ``job_id``."""
    return base64.urlsafe_b64encode(_TAG + job_id.encode()).rstrip(b"=").decode("ascii")


def decode_cursor(text: str) -> str | None:
    """The job id in a cursor :func:`encode_cursor` made; None for any other text."""
    # No length cap: a job id may be as long as its enqueuer made it (the page after a
    # job with an 800-character id was refused), and the round trip below is exact.
    if not _ALPHABET.fullmatch(text):
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    if not raw.startswith(_TAG):
        return None
    try:
        job_id = raw[len(_TAG) :].decode("utf-8")
    except UnicodeDecodeError:
        return None
    # Only the one spelling encode_cursor makes (base64 has others: spare low bits).
    if not job_id or problem(job_id) is not None or encode_cursor(job_id) != text:
        return None
    return job_id
