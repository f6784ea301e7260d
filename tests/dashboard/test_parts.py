"""The dashboard's parts without a browser: signed values, sessions, CSRF tokens, what is
redacted, and the charts' geometry."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest

from conveyor.web.auth import ApiKeys
from conveyor.web.dashboard import chart, csrf, redact
from conveyor.web.dashboard.session import LoginRefused, Sessions, is_loopback
from conveyor.web.dashboard.signing import Signer
from conveyor.web.settings import ApiSettings, session_key

ADMIN = "admin-key-0123456789abcdef"
TENANT = "acme-key-0123456789abcdef"


def test_a_signed_value_opens_only_for_its_purpose_unchanged_and_in_time() -> None:
    signer = Signer(b"k" * 32)
    value = signer.sign("session", {"sid": "s1"}, 60)
    assert signer.unsign("session", value)["sid"] == "s1"  # type: ignore[index]
    # another purpose, another key, a changed payload or signature, garbage: refused
    assert signer.unsign("flash", value) is None
    assert Signer(b"x" * 32).unsign("session", value) is None
    payload, signature = value.split(".")
    assert signer.unsign("session", payload[:-2] + "AA." + signature) is None
    assert signer.unsign("session", payload + "." + signature[:-2] + "AA") is None
    for junk in (None, "", "a.b.c", "!!.??", "e30.e30"):
        assert signer.unsign("session", junk) is None
    # expired
    assert signer.unsign("session", signer.sign("session", {"sid": "s1"}, -1)) is None


def test_sessions_are_for_admin_keys_and_end_at_logout_or_when_the_key_goes() -> None:
    signer = Signer(b"k" * 32)
    sessions = Sessions(ApiKeys([("acme", TENANT)], [ADMIN]), signer, 3600)
    with pytest.raises(LoginRefused) as unknown:
        sessions.login("no-such-key-0123456789")
    with pytest.raises(LoginRefused) as tenant:
        sessions.login(TENANT)
    assert (unknown.value.status, tenant.value.status) == (401, 403)
    cookie = sessions.login(ADMIN)
    assert ADMIN not in cookie

    class Request:  # the only part of a request Sessions.read looks at
        def __init__(self, value: str) -> None:
            self.cookies = {"conveyor_session": value}

    session = sessions.read(Request(cookie))  # type: ignore[arg-type]
    assert session is not None and session.expires > time.time() + 3500
    # the same cookie, once the key is no longer an admin key: refused
    without_key = Sessions(ApiKeys([("acme", TENANT)], []), signer, 3600)
    assert without_key.read(Request(cookie)) is None  # type: ignore[arg-type]
    # logged out: refused from then on
    sessions.end(session)
    assert sessions.read(Request(cookie)) is None  # type: ignore[arg-type]


def test_csrf_tokens_belong_to_one_session() -> None:
    signer = Signer(b"k" * 32)
    token = csrf.token(signer, "session", "s1")
    csrf.check(signer, "session", "s1", token)
    for purpose, subject, given in [
        ("session", "s2", token),
        ("login", "s1", token),
        ("session", "s1", None),
        ("session", "s1", ""),
        ("session", "s1", token[:-1]),
    ]:
        with pytest.raises(csrf.CsrfRejected):
            csrf.check(signer, purpose, subject, given)


def test_the_session_key_comes_from_the_secret_key_or_is_random() -> None:
    assert session_key("s3cret") == session_key("s3cret") != session_key("other")
    assert session_key(None) != session_key(None)
    from_env = ApiSettings.from_env({"CONVEYOR_SECRET_KEY": "s3cret"})
    assert from_env.session_key == session_key("s3cret")
    assert "session_key" not in repr(from_env)


def test_loopback_hosts_get_secure_cookies_over_http() -> None:
    for host in ("127.0.0.1", "127.1.2.3", "localhost", "app.localhost", "::1", "[::1]"):
        assert is_loopback(host), host
    for host in ("10.0.0.5", "example.com", "", None, "localhost.example.com"):
        assert not is_loopback(host), host


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("password", True),
        ("dbPassword", True),
        ("api_key", True),
        ("X-API-Key", True),
        ("APIKey", True),
        ("Authorization", True),
        ("x-auth-token", True),
        ("Set-Cookie", True),
        ("client_secret", True),
        ("credentials", True),
        ("user", False),
        ("unique_key", False),
        ("author", False),
        ("content-type", False),
        ("tokenizer_model", False),
    ],
)
def test_secret_names(name: str, secret: bool) -> None:
    assert redact.secret_name(name) is secret


def test_redaction_reaches_every_depth_and_drops_the_private_metadata() -> None:
    shown = redact.metadata(
        {
            "order": 1,
            "conveyor.http": {"read": "tok", "auth": "enc:v1:..."},
            "nested": [{"token": "t", "ok": 2}],
        }
    )
    assert shown == {"order": 1, "nested": [{"token": redact.REDACTED, "ok": 2}]}
    assert redact.url("https://u:pw@h.example/p?a=1&api_key=k") == (
        "https://u:[redacted]@h.example/p?a=1&api_key=%5Bredacted%5D"
    )
    assert redact.url("https://h.example/p?a=1") == "https://h.example/p?a=1"


def test_values_are_shown_down_to_100_levels_and_no_deeper() -> None:
    # Given a value nested 500 levels deep, with a secret at every level
    deep: object = {"token": "t"}
    for _ in range(499):
        deep = {"token": "t", "next": deep}
    # When it is redacted (and written out) for a page
    shown = redact.redact(deep)
    # Then its 100 first levels are there, and the rest is one marker
    for _ in range(100):
        assert isinstance(shown, dict) and shown["token"] == redact.REDACTED
        shown = shown["next"]
    assert shown == redact.DEEPER
    assert redact.shallow([[[1]]]) == [[[1]]]


@dataclass(frozen=True)
class Minute:
    minute: float
    queue: str
    processed: int
    failed: int
    depth: int | None


def test_the_throughput_chart_draws_a_bar_per_minute_with_its_failed_part() -> None:
    now = 1_800_000_000.0 + 30  # half a minute into a minute
    this_minute = now - 30
    counts = [
        Minute(this_minute, "a", 10, 2, 5),
        Minute(this_minute, "b", 5, 0, 1),
        Minute(this_minute - 120, "a", 3, 0, 7),
        Minute(this_minute - 3600, "a", 99, 9, 9),  # over an hour ago: not drawn
        Minute(this_minute - 60, "idle", 0, 0, 0),  # empty all hour: no line
    ]
    drawn = chart.throughput(counts, now)
    assert not drawn.empty
    assert drawn.summary == "Last hour: 18 runs, 2 failed."
    assert [(b.kind, round(b.height, 1)) for b in drawn.bars] == [
        ("ok", round(3 / 20 * (chart.HEIGHT - chart.TOP - chart.BOTTOM), 1)),
        ("ok", round(13 / 20 * (chart.HEIGHT - chart.TOP - chart.BOTTOM), 1)),
        ("failed", round(2 / 20 * (chart.HEIGHT - chart.TOP - chart.BOTTOM), 1)),
    ]
    assert drawn.bars[-1].x > drawn.bars[0].x  # the latest minute is on the right
    assert [t.label for t in drawn.y_ticks] == ["0", "10", "20"]

    depth = chart.depth(counts, now)
    assert [(line.label, line.last) for line in depth.lines] == [("a", 5), ("b", 1)]
    assert chart.throughput([], now).empty and chart.depth([], now).empty
