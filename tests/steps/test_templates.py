"""Placeholders: later steps read earlier responses, by plain substitution, in one pass."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.steps.templates import (
    Reference,
    TemplateError,
    check_steps,
    references,
    render_body,
    render_headers,
    render_query,
    render_text,
    render_url,
)
from tests.strategies import json_values

LOGIN: dict[str, Any] = {
    "status": 201,
    "headers": {"content-type": "application/json", "x-request-id": "r-1"},
    "body": '{"token": "t/1 2", "user": {"id": 42, "tags": ["a", "b"]}, "ok": true}',
    "truncated": False,
    "json": {"token": "t/1 2", "user": {"id": 42, "tags": ["a", "b"]}, "ok": True, "none": None},
}
CONTEXT: dict[str, dict[str, Any]] = {
    "login": LOGIN,
    "page": {"status": 200, "headers": {}, "body": "<html>", "truncated": False},
}


# ---------------------------------------------------------------------------
# Finding placeholders.
# ---------------------------------------------------------------------------
def test_references_finds_every_placeholder_in_strings_dicts_and_lists() -> None:
    value = {
        "{{steps.k.response.status}}": "a {{ steps.login.response.status }} b",
        "list": [1, None, {"deep": "{{steps.login.response.json.user.tags.0}}"}],
        "h": "{{ steps.login.response.headers.X-Request-ID }}{{steps.page.response.body}}",
    }
    assert references(value) == [
        Reference("login", ("status",), "{{ steps.login.response.status }}"),
        Reference(
            "login", ("json", "user", "tags", "0"), "{{steps.login.response.json.user.tags.0}}"
        ),
        Reference(
            "login", ("headers", "x-request-id"), "{{ steps.login.response.headers.X-Request-ID }}"
        ),
        Reference("page", ("body",), "{{steps.page.response.body}}"),
    ]
    assert references("no placeholders } here }}") == []
    assert references(7) == []


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{{ }}", "expected steps"),
        ("{{ steps.login.response.status", "not closed"),
        ("a {{ b", "not closed"),
        ("{{ steps.login.response.status }} {{", "not closed"),
        ("{{ config.secret }}", "start with 'steps.'"),
        ("{{ __import__('os') }}", "start with 'steps.'"),
        ("{{ steps.login.response.status | upper }}", "no spaces"),
        ("{{ steps.lo gin.response.status }}", "no spaces"),
        ("{{ steps.log!n.response.status }}", "step name"),
        ("{{ steps." + "a" * 65 + ".response.status }}", "step name"),
        ("{{ steps..response.status }}", "step name"),
        ("{{ steps.login }}", "expected 'response'"),
        ("{{ steps.login.request.url }}", "expected 'response'"),
        ("{{ steps.login.response }}", "unknown response field"),
        ("{{ steps.login.response.cookies }}", "unknown response field"),
        ("{{ steps.login.response.status.code }}", "status has no parts"),
        ("{{ steps.login.response.body.x }}", "body has no parts"),
        ("{{ steps.login.response.headers }}", "one header name"),
        ("{{ steps.login.response.headers.a.b }}", "one header name"),
        ("{{ steps.login.response.json.items[0] }}", "bracket"),
        ("{{ steps.login.response.json.a..b }}", "empty"),
        ("{{ {{ steps.login.response.status }} }}", "nested"),
        ("{{{ steps.login.response.status }}}", "expected steps"),
    ],
)
def test_a_malformed_placeholder_is_an_error_naming_it(text: str, words: str) -> None:
    with pytest.raises(TemplateError, match=words) as caught:
        references({"x": [text]})
    assert "{{" in str(caught.value)


def test_spaces_inside_the_braces_are_optional() -> None:
    for text in [
        "{{steps.login.response.status}}",
        "{{ steps.login.response.status }}",
        "{{   steps.login.response.status\t}}",
    ]:
        assert render_text(text, CONTEXT) == "201"


# ---------------------------------------------------------------------------
# Submit-time check.
# ---------------------------------------------------------------------------
def test_check_steps_points_at_each_problem() -> None:
    steps = [
        {"name": "login", "url": "https://a.example/login", "body": {"u": "x"}},
        {
            "name": "me",
            "url": "https://a.example/{{ steps.profile.response.json.id }}",
            "headers": {"X-Token": "{{ steps.login.response.json.token }}", "a/b~c": "{{ x }}"},
            "query": {"self": "{{ steps.me.response.status }}"},
            "body": {"items": [{"id": "{{ steps.nobody.response.body }}"}]},
        },
        {"name": "profile", "url": "https://a.example/{{steps.login.response.json.id}}"},
    ]
    problems = check_steps(steps)
    assert [pointer for pointer, _ in problems] == [
        "/steps/1/url",
        "/steps/1/headers/a~1b~0c",
        "/steps/1/query/self",
        "/steps/1/body/items/0/id",
    ]
    messages = [message for _, message in problems]
    assert "step 'profile' runs later (step 2)" in messages[0]
    assert "start with 'steps.'" in messages[1]
    assert "its own response" in messages[2]
    assert "no step named 'nobody'" in messages[3]
    assert check_steps(steps[:1]) == []


def test_check_steps_accepts_references_to_earlier_steps() -> None:
    steps = [
        {"name": "a", "url": "https://x.example/"},
        {"name": "b", "url": "{{steps.a.response.headers.location}}", "headers": {}},
        {"name": "c", "url": "https://x.example/", "body": ["{{steps.a.response.json}}", 1]},
    ]
    assert check_steps(steps) == []


# ---------------------------------------------------------------------------
# Rendering.
# ---------------------------------------------------------------------------
def test_render_text_substitutes_text_and_compact_json() -> None:
    text = (
        "{{steps.login.response.status}} {{steps.login.response.json.token}} "
        "{{steps.login.response.json.user}} {{steps.login.response.json.ok}} "
        "{{steps.login.response.json.none}} {{steps.login.response.headers.Content-Type}}"
    )
    assert render_text(text, CONTEXT) == (
        '201 t/1 2 {"id":42,"tags":["a","b"]} true null application/json'
    )


def test_render_url_percent_encodes_unless_the_placeholder_is_the_whole_url() -> None:
    url = (
        "https://a.example/users/{{ steps.login.response.json.token }}"
        "?u={{steps.login.response.json.user.id}}"
    )
    assert render_url(url, CONTEXT) == "https://a.example/users/t%2F1%202?u=42"
    context = {"a": {"status": 303, "headers": {"location": "https://b.example/x?y=1"}}}
    assert render_url("{{ steps.a.response.headers.location }}", context) == (
        "https://b.example/x?y=1"
    )


def test_render_headers_refuses_header_injection() -> None:
    assert render_headers(
        {"Authorization": "Bearer {{ steps.login.response.json.token }}"}, CONTEXT
    ) == {"Authorization": "Bearer t/1 2"}
    for bad in ["a\r\nX-Admin: 1", "a\nb", "a\x00b"]:
        context = {"a": {"status": 200, "headers": {}, "json": {"v": bad}}}
        with pytest.raises(TemplateError, match="'X-Next'"):
            render_headers({"X-Next": "{{steps.a.response.json.v}}"}, context)


def test_render_query_substitutes_values_only() -> None:
    query = {"{{steps.login.response.status}}": "{{steps.login.response.json.user.id}}"}
    assert render_query(query, CONTEXT) == {"{{steps.login.response.status}}": "42"}


def test_render_body_keeps_json_types_for_whole_placeholders() -> None:
    body = {
        "user": "{{ steps.login.response.json.user }}",
        "id": "{{steps.login.response.json.user.id}}",
        "ok": "{{steps.login.response.json.ok}}",
        "none": "{{steps.login.response.json.none}}",
        "text": "id={{steps.login.response.json.user.id}}",
        "list": ["{{steps.login.response.status}}", 3.5, False, None],
        "{{steps.login.response.status}}": "key stays",
    }
    assert render_body(body, CONTEXT) == {
        "user": {"id": 42, "tags": ["a", "b"]},
        "id": 42,
        "ok": True,
        "none": None,
        "text": "id=42",
        "list": [201, 3.5, False, None],
        "{{steps.login.response.status}}": "key stays",
    }


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{{steps.ghost.response.status}}", "step 'ghost' has no response"),
        ("{{steps.login.response.headers.x-missing}}", "no header 'x-missing'"),
        ("{{steps.page.response.json.id}}", "was not JSON"),
        ("{{steps.login.response.json.nope}}", "json has no key 'nope'"),
        ("{{steps.login.response.json.user.tags.2}}", "json.user.tags is a list of 2"),
        ("{{steps.login.response.json.user.tags.-1}}", "'-1' is not an index"),
        ("{{steps.login.response.json.user.id.x}}", "json.user.id is a number"),
        ("{{steps.login.response.json.token.x}}", "json.token is a string"),
    ],
)
def test_a_missing_field_at_run_time_says_which(text: str, words: str) -> None:
    with pytest.raises(TemplateError, match=words) as caught:
        render_text(text, CONTEXT)
    assert text in str(caught.value)
    # Response values stay out of messages: they may be tokens.
    assert "t/1 2" not in str(caught.value)


def test_a_body_that_was_not_kept_or_was_cut_cannot_be_used() -> None:
    context = {
        "empty": {"status": 204, "headers": {}, "body": None, "truncated": False},
        "big": {"status": 200, "headers": {}, "body": "abc", "truncated": True},
    }
    with pytest.raises(TemplateError, match="has no body"):
        render_text("{{steps.empty.response.body}}", context)
    with pytest.raises(TemplateError, match="truncated"):
        render_body("{{steps.big.response.body}}", context)
    # A JSON body cut at the limit is not parsed: said so, rather than "not JSON"
    with pytest.raises(TemplateError, match="truncated at the size limit"):
        render_text("{{steps.big.response.json.id}}", context)


def test_a_list_index_and_a_digit_key_are_told_apart() -> None:
    context = {"a": {"status": 200, "headers": {}, "json": {"0": "key", "l": ["item"]}}}
    assert render_text("{{steps.a.response.json.0}}/{{steps.a.response.json.l.0}}", context) == (
        "key/item"
    )


# ---------------------------------------------------------------------------
# Properties.
# ---------------------------------------------------------------------------


def _context(value: Any) -> dict[str, dict[str, Any]]:
    return {
        "a": {
            "status": 200,
            "headers": {"x-v": value if isinstance(value, str) else json.dumps(value)},
            "body": json.dumps(value),
            "truncated": False,
            "json": {"v": value},
        }
    }


@given(json_values)
def test_render_body_round_trips_typed_values(value: Any) -> None:
    assert render_body({"out": "{{ steps.a.response.json.v }}"}, _context(value)) == {"out": value}
    assert render_body(["{{steps.a.response.json}}"], _context(value)) == [{"v": value}]


placeholder_texts = st.sampled_from(
    [
        "{{ steps.a.response.status }}",
        "{{steps.a.response.json.v}}",
        "{{ steps.a.response.headers.x-v }}",
        "{{ steps.b.response.body }}",
        "{{",
        "}}",
        "{{ __import__('os').system('x') }}",
    ]
)
sneaky = st.lists(placeholder_texts | st.text(max_size=5), max_size=5).map("".join)


@given(sneaky)
def test_substituted_text_is_never_expanded_again(value: str) -> None:
    context = _context(value)
    for field in ("json.v", "headers.x-v"):
        template = f"<{{{{ steps.a.response.{field} }}}}>"
        assert render_text(template, context) == f"<{value}>"
        assert render_body(template, context) == f"<{value}>"
    assert render_body("{{steps.a.response.json.v}}", context) == value


@given(st.text())
def test_text_without_placeholders_is_left_alone(text: str) -> None:
    text = text.replace("{", "{ ")
    assert render_text(text, {}) == text
    assert render_url(text, {}) == text
    assert render_body([text, {"k": text}], {}) == [text, {"k": text}]
