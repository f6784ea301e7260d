"""Reading the dashboard's forms: ``application/x-www-form-urlencoded`` bodies, small."""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.exceptions import HTTPException
from starlette.requests import Request

#: The largest form body read, in bytes (the dashboard's forms hold a few short fields).
MAX_FORM = 16 * 1024


async def read_form(request: Request) -> dict[str, str]:
    """The form's fields (the last value of a repeated one); 413 / 415 pages otherwise."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        raise HTTPException(415, "send the form as application/x-www-form-urlencoded")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            raise HTTPException(413, f"the form is larger than {MAX_FORM} bytes")
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise HTTPException(400, "the form is not UTF-8") from None
    return dict(parse_qsl(text, keep_blank_values=True))


def optional(value: str | None) -> str | None:
    """A text field: stripped, None when empty."""
    value = (value or "").strip()
    return value or None
