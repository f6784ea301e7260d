"""The HTTP client remembers the origins the SSRF guard passed (so that steps to one host
skip the URL parse): what it remembers must never let through a URL the guard refuses."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from conveyor.steps.guard import Guard
from conveyor.steps.http import HttpSteps

#: URLs that pass a guard allowing 127.0.0.0/8; each makes its origin remembered.
PASSING = [
    "http://127.0.0.1:8080/a",
    "http://127.0.0.1:8080",
    "HTTP://127.0.0.1:8080/b?x=1#f",
    "http://127.0.0.2/c",
]

#: Near misses of those: the same origins with a bad rest, or origins that differ slightly.
PROBES = [
    *PASSING,
    "http://127.0.0.1:8080/a b",
    "http://127.0.0.1:8080/\x00",
    "http://127.0.0.1:8080?q=\n",
    "http://127.0.0.1:8080#\x7f",
    "http://127.0.0.1:8080\t/a",
    "http://127.0.0.1:8080@10.0.0.1/",
    "http://127.0.0.1:8080.evil/",
    "http://127.0.0.1:80800/",
    "http://10.0.0.1:8080/a",
    "http://[::1]:8080/a",
    "ftp://127.0.0.1:8080/a",
    "http:/127.0.0.1:8080/a",
    "http:127.0.0.1:8080/a",
    "http://localhost:8080/a",
    "http://127.0.0.1:8080\\@10.0.0.1/",
    "x:y://127.0.0.1:8080/a",
]


def verdict(check: Callable[[str], None], url: str) -> str:
    try:
        check(url)
    except ValueError as exc:
        return f"{type(exc).__name__}: {exc}"
    return "passed"


def test_remembered_origins_pass_nothing_the_guard_refuses() -> None:
    # Given a client whose guard allows loopback, and that has passed the PASSING URLs
    guard = Guard(["127.0.0.0/8"])
    http = HttpSteps(guard)
    for url in PASSING:
        http._check_url(url)
    # When it checks each probe (twice: the second time its origin may be remembered)
    # Then it says what the guard says, refusal and message included
    for url in PROBES:
        assert verdict(http._check_url, url) == verdict(guard.check_url, url), url
        assert verdict(http._check_url, url) == verdict(guard.check_url, url), url


def test_a_new_guard_forgets_what_the_old_one_passed() -> None:
    # Given a client that passed a loopback URL under a guard allowing loopback
    http = HttpSteps(Guard(["127.0.0.0/8"]))
    http._check_url("http://127.0.0.1:8080/a")
    # When its guard is replaced by the default one
    http.guard = Guard()
    # Then the same URL is refused
    with pytest.raises(ValueError, match="loopback"):
        http._check_url("http://127.0.0.1:8080/a")
