"""Placeholders in HTTP steps: later steps use what earlier steps' responses said.

A placeholder is ``{{ steps.<name>.response.<field> }}``; spaces inside the braces are
optional. ``<name>`` is an earlier step's name (``[A-Za-z0-9_-]{1,64}``) and ``<field>`` one of:

- ``status``: the status code;
- ``headers.<name>``: a response header, any case;
- ``body``: the body text (an error when it was not kept or was truncated at the size limit:
  sending a cut-off body on would be silently wrong);
- ``json``: the whole parsed JSON body, or ``json.<path>``: a part of it, with dot-separated
  object keys and list indexes (``json.items.0.id``). A key holding a dot, whitespace, a
  brace or a bracket cannot be reached.

Rules:

- substitution is plain text replacement: nothing is evaluated, there is no expression
  language, and substituted text is never expanded again (one pass), so a response cannot
  inject placeholders of its own;
- ``{{`` always opens a placeholder: anything between ``{{`` and the next ``}}`` that is not a
  valid reference, or a ``{{`` that is never closed, is an error. A lone ``}}`` is plain text;
- placeholders are found in strings, recursively in the values of objects and the items of
  lists, never in object keys (header and query names are fixed at submit time);
- a reference to something the response does not have (no such header, no such key, a body
  that was not JSON) is an error at run time, never an empty string.

How a value becomes text (:func:`render_text`): a string as it is, a number with ``str``, and
objects, lists, booleans and null as compact JSON. URLs percent-encode what they substitute
unless the placeholder is the whole URL (:func:`render_url`); headers refuse results holding
CR, LF or NUL (:func:`render_headers`); a body string that is exactly one placeholder becomes
the JSON value itself, with its type (:func:`render_body`).

The context of a render is a mapping from step name to the response document the worker
stored: ``{"status": int, "headers": {lower-case name: str}, "body": str | None,
"truncated": bool, "json": ...}`` (``json`` absent when the body was not JSON).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

__all__ = [
    "Context",
    "Reference",
    "TemplateError",
    "check_steps",
    "references",
    "render_body",
    "render_headers",
    "render_query",
    "render_text",
    "render_url",
]

Context = Mapping[str, Mapping[str, Any]]

_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_HEADER = re.compile(r"[A-Za-z0-9!#$%&'*+^_`|~-]+")
_SEGMENT = re.compile(r"[^\s.{}\[\]]+")
_INDEX = re.compile(r"0|[1-9][0-9]*")
_FIELDS = "status, headers.<name>, body, json or json.<path>"


class TemplateError(ValueError):
    """A malformed placeholder, or one that cannot be filled. The message names it."""


@dataclass(frozen=True)
class Reference:
    """One placeholder: the step it reads and the path into that step's response.

    Attributes:
        step: the step's name.
        path: the field and its parts, e.g. ``("status",)``, ``("headers", "x-token")`` (header
            names lower-cased), ``("body",)``, ``("json", "items", "0", "id")``.
        text: the placeholder as written, braces included.
    """

    step: str
    path: tuple[str, ...]
    text: str


def references(value: Any) -> list[Reference]:
    """Every placeholder in ``value``: a string, or the values of dicts / items of lists.

    Raises:
        TemplateError: a placeholder is malformed.
    """
    return [ref for _, text in _strings(value, "") for _, _, ref in _scan(text)]


def check_steps(steps: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """Submit-time check of the placeholders in the ``url``, ``headers``, ``query`` and
    ``body`` of each step.

    Returns:
        ``(JSON pointer, message)`` for each problem: a malformed placeholder, or a reference to
        an unknown step, to the step itself or to a later step. Empty when all is well.
        Duplicate step names are the caller's to report; a reference reads the first.
    """
    positions: dict[str, int] = {}
    for index, step in enumerate(steps):
        name = step.get("name") if isinstance(step, Mapping) else None
        if isinstance(name, str):
            positions.setdefault(name, index)
    problems: list[tuple[str, str]] = []
    for index, step in enumerate(steps):
        if not isinstance(step, Mapping):
            continue  # the shape of a step is the caller's schema to check
        for field in ("url", "headers", "query", "body"):
            if field not in step:
                continue
            for pointer, text in _strings(step[field], f"/steps/{index}/{field}"):
                try:
                    found = _scan(text)
                except TemplateError as exc:
                    problems.append((pointer, str(exc)))
                    continue
                for _, _, ref in found:
                    problem = _order_problem(ref, index, positions)
                    if problem is not None:
                        problems.append((pointer, problem))
    return problems


def _order_problem(ref: Reference, index: int, positions: Mapping[str, int]) -> str | None:
    where = positions.get(ref.step)
    if where is None:
        return f"{ref.text}: there is no step named {ref.step!r}"
    if where == index:
        return f"{ref.text}: a step cannot use its own response"
    if where > index:
        return f"{ref.text}: step {ref.step!r} runs later (step {where}); use earlier steps only"
    return None


def render_text(text: str, context: Context) -> str:
    """``text`` with every placeholder replaced by the text of its value (one pass)."""
    return _render(text, context, _as_text)


def render_url(url: str, context: Context) -> str:
    """``url`` with placeholders filled: percent-encoded, except one that is the whole URL.

    The result is a new URL: the worker must put it through the SSRF guard again.
    """
    found = _scan(url)
    if len(found) == 1 and found[0][0] == 0 and found[0][1] == len(url):
        return _as_text(_resolve(found[0][2], context))
    return _render(url, context, lambda value: quote(_as_text(value), safe=""))


def render_headers(headers: Mapping[str, str], context: Context) -> dict[str, str]:
    """Header values rendered like :func:`render_text`.

    Raises:
        TemplateError: a placeholder cannot be filled, or a value would hold CR, LF or NUL
            (which would let a response inject headers of its own).
    """
    rendered: dict[str, str] = {}
    for name, value in headers.items():
        text = render_text(value, context)
        if any(c in text for c in "\r\n\x00"):
            raise TemplateError(f"header {name!r}: value would contain CR, LF or NUL")
        rendered[name] = text
    return rendered


def render_query(query: Mapping[str, str], context: Context) -> dict[str, str]:
    """Query parameter values rendered like :func:`render_text` (the client encodes them)."""
    return {name: render_text(value, context) for name, value in query.items()}


def render_body(body: Any, context: Context) -> Any:
    """A JSON body with placeholders filled, recursively; keys are left as they are.

    A string that is exactly one placeholder becomes the referenced value with its JSON type
    (number, object, ...); other strings are rendered like :func:`render_text`.
    """
    if isinstance(body, Mapping):
        return {key: render_body(value, context) for key, value in body.items()}
    if isinstance(body, list):
        return [render_body(item, context) for item in body]
    if isinstance(body, str):
        found = _scan(body)
        if len(found) == 1 and found[0][0] == 0 and found[0][1] == len(body):
            return _resolve(found[0][2], context)
        return _render(body, context, _as_text)
    return body


# ---------------------------------------------------------------------------
# Parsing.
# ---------------------------------------------------------------------------
def _strings(value: Any, pointer: str) -> Iterator[tuple[str, str]]:
    """Each string inside ``value`` with its JSON pointer (RFC 6901)."""
    if isinstance(value, str):
        yield pointer, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            escaped = str(key).replace("~", "~0").replace("/", "~1")
            yield from _strings(item, f"{pointer}/{escaped}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _strings(item, f"{pointer}/{index}")


def _scan(text: str) -> list[tuple[int, int, Reference]]:
    """Every placeholder of ``text`` as (start, end, reference)."""
    found: list[tuple[int, int, Reference]] = []
    position = 0
    for match in _PLACEHOLDER.finditer(text):
        _no_opening(text, position, match.start())
        found.append((match.start(), match.end(), _parse(match.group(0), match.group(1))))
        position = match.end()
    _no_opening(text, position, len(text))
    return found


def _no_opening(text: str, start: int, end: int) -> None:
    where = text.find("{{", start, end)
    if where >= 0:
        snippet = text[where : where + 40]
        raise TemplateError(f"{snippet!r}: placeholder is not closed with '}}}}'")


def _parse(text: str, inner: str) -> Reference:
    def fail(problem: str) -> TemplateError:
        return TemplateError(f"{text}: {problem}")

    if "{{" in inner:
        raise fail("placeholders cannot be nested")
    body = inner.strip()
    if not body or any(c.isspace() for c in body):
        raise fail("expected steps.<name>.response.<field> with no spaces inside")
    parts = body.split(".")
    if parts[0] != "steps":
        raise fail("a placeholder must start with 'steps.'")
    if len(parts) < 2 or not _NAME.fullmatch(parts[1]):
        raise fail("the step name must be 1 to 64 letters, digits, '_' or '-'")
    if len(parts) < 3 or parts[2] != "response":
        raise fail(f"expected 'response' after the step name, as in steps.{parts[1]}.response")
    field, rest = (parts[3], parts[4:]) if len(parts) > 3 else ("", [])
    if field in ("status", "body"):
        if rest:
            raise fail(f"{field} has no parts")
        path: tuple[str, ...] = (field,)
    elif field == "headers":
        if len(rest) != 1 or not _HEADER.fullmatch(rest[0]):
            raise fail("expected one header name after headers., as in headers.content-type")
        path = (field, rest[0].lower())
    elif field == "json":
        for segment in rest:
            if not _SEGMENT.fullmatch(segment):
                raise fail(f"json path segment {segment!r} is empty or holds a brace or bracket")
        path = (field, *rest)
    else:
        raise fail(f"unknown response field {field!r}; use {_FIELDS}")
    return Reference(step=parts[1], path=path, text=text)


# ---------------------------------------------------------------------------
# Rendering.
# ---------------------------------------------------------------------------
def _render(text: str, context: Context, convert: Callable[[Any], str]) -> str:
    # Built from slices of the original text: substituted values are never scanned again.
    pieces: list[str] = []
    position = 0
    for start, end, ref in _scan(text):
        pieces.append(text[position:start])
        pieces.append(convert(_resolve(ref, context)))
        position = end
    pieces.append(text[position:])
    return "".join(pieces)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a string" if isinstance(value, str) else "a number"


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _resolve(ref: Reference, context: Context) -> Any:
    def fail(problem: str) -> TemplateError:
        return TemplateError(f"{ref.text}: {problem}")

    response = context.get(ref.step)
    if response is None:
        raise fail(f"step {ref.step!r} has no response")
    field = ref.path[0]
    if field == "status":
        return response["status"]
    if field == "headers":
        wanted = ref.path[1]
        for name, value in (response.get("headers") or {}).items():
            if name.lower() == wanted:
                return value
        raise fail(f"the response of step {ref.step!r} has no header {wanted!r}")
    if field == "body":
        if response.get("body") is None:
            raise fail(f"the response of step {ref.step!r} has no body")
        if response.get("truncated"):
            raise fail(f"the body of step {ref.step!r} was truncated at the size limit")
        return response["body"]
    if "json" not in response:
        if response.get("truncated"):
            # Cut JSON is not parsed: saying "not JSON" sent users looking at the target.
            raise fail(
                f"the body of step {ref.step!r} was truncated at the size limit "
                "(CONVEYOR_HTTP_MAX_BODY), so it was not read as JSON"
            )
        raise fail(f"the response of step {ref.step!r} was not JSON")
    value = response["json"]
    walked = "json"
    for segment in ref.path[1:]:
        if isinstance(value, dict):
            if segment not in value:
                raise fail(f"{walked} has no key {segment!r}")
            value = value[segment]
        elif isinstance(value, list):
            if not _INDEX.fullmatch(segment) or int(segment) >= len(value):
                raise fail(f"{walked} is a list of {len(value)}; {segment!r} is not an index")
            value = value[int(segment)]
        else:
            # The type, not the value: responses hold tokens, and errors are stored and shown.
            raise fail(f"{walked} is {_json_type(value)}, not an object or a list")
        walked += f".{segment}"
    return value
