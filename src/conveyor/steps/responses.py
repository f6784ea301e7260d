"""A step's response as a job keeps it: the body up to a cap, decoded to text every store
keeps, the headers a job document may show, and the JSON of the body when it is JSON
that every store keeps."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

from conveyor.storable import MAX_DEPTH, is_utf8, json_problem, storable, too_deep
from conveyor.web.inputs import finite_float, refuse_constant


async def response_document(response: aiohttp.ClientResponse, max_body: int) -> dict[str, Any]:
    """What a job keeps of ``response``: its status, headers, body text (cut at
    ``max_body`` bytes, ``truncated`` then) and, when the body is JSON, its value."""
    data = await read_capped(response.content, max_body + 1)
    truncated = len(data) > max_body
    data = data[:max_body]
    text = decode_body(data, response.charset) if data else None
    document: dict[str, Any] = {
        "status": response.status,
        "headers": kept_headers(response.headers),
        "body": text,
        "truncated": truncated,
    }
    if text is not None and not truncated and is_json(response.content_type):
        parsed = parse_json(text)
        if parsed is not NOT_JSON:
            document["json"] = parsed
    return document


async def read_capped(stream: aiohttp.StreamReader, limit: int) -> bytes:
    """Up to ``limit`` bytes of the body; the rest is never read (the connection is then
    closed rather than reused, which aiohttp does by itself)."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await stream.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def decode_body(data: bytes, charset: str | None) -> str:
    try:
        text = data.decode(charset or "utf-8", errors="replace")
    except (LookupError, UnicodeError):
        # A charset Python does not know, or one it cannot read text with: "undefined"
        # refuses every byte, "idna" takes no errors="replace". Either poisoned a step
        # that got its 200; the body is read as UTF-8 instead, as with no charset.
        text = data.decode("utf-8", errors="replace")
    # PostgreSQL's jsonb refuses NUL in strings, and no store keeps a lone surrogate
    # (which a target's charset=unicode_escape makes of "\ud800"): a job keeping one
    # could not be saved.
    return storable(text)


def kept_headers(headers: CIMultiDictProxy[str]) -> dict[str, str]:
    """Lower-case names, repeated headers joined (RFC 9110 5.3); never ``Set-Cookie``:
    cookies are the target's secrets for this client, and job documents are shown."""
    kept: dict[str, str] = {}
    for name, value in headers.items():
        key = _header_text(name).lower()
        if key == "set-cookie":
            continue
        value = _header_text(value)
        kept[key] = f"{kept[key]}, {value}" if key in kept else value
    return kept


def _header_text(text: str) -> str:
    """A header as text every store keeps. aiohttp reads header bytes as UTF-8 and keeps
    those that are not as lone surrogates (``surrogateescape``), which no store takes: a
    target's Latin-1 header (obs-text, RFC 9110) poisoned the job ("the outcome could not
    be stored"). Such a header is read as Latin-1, HTTP's old charset, instead."""
    if is_utf8(text):
        return text
    return text.encode("utf-8", "surrogateescape").decode("latin-1")


def is_json(content_type: str) -> bool:
    return content_type == "application/json" or content_type.endswith("+json")


NOT_JSON = object()


def parse_json(text: str) -> Any:
    """The JSON of a body, or NOT_JSON for a body that is not JSON or whose values no
    store keeps: such a body stays text only. NaN and Infinity are not JSON, nor is a
    number beyond a double (``1e999`` parses to infinity): they break the stores'
    encoders. An escaped NUL breaks PostgreSQL's jsonb, an escaped lone surrogate
    (``"\\ud800"``) is not UTF-8, and arrays nested thousands deep go past the parser's
    recursion: the last three were kept as JSON (or failed the step) and poisoned the
    job. JSON nested deeper than the API takes in a request (100 levels) stays text too.
    """
    if "\\u0000" in text:
        return NOT_JSON
    try:
        value = _decode_json(text)
    except (ValueError, RecursionError):
        return NOT_JSON
    if too_deep(value, MAX_DEPTH):
        return NOT_JSON
    # Only an escape makes a lone surrogate: the text itself holds none (see decode_body).
    if "\\u" in text and json_problem(value) is not None:
        return NOT_JSON
    return value


_decode_json = json.JSONDecoder(parse_constant=refuse_constant, parse_float=finite_float).decode
