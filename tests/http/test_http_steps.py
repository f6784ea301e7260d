"""HTTP steps end to end: a real worker (in-process, on a SQLite file) sends real requests
to a real target server on 127.0.0.1. Timings are asserted with generous bounds only."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import time
from email.utils import formatdate
from typing import Any

import pytest

from conveyor import Conveyor, JobCancelled, JobFailed, State, Step
from conveyor.job import Job, new_job_id
from conveyor.steps.guard import BlockedDestination, Guard
from conveyor.steps.http import (
    HttpStepError,
    HttpSteps,
    _GuardedResolver,
    parse_retry_after,
    retry_delay,
)
from conveyor.web.documents import PRIVATE
from conveyor.worker.config import WorkerConfig
from conveyor.worker.runtime import Worker
from tests.http.target import RawTarget, Target
from tests.worker.test_runtime import run_with_worker

pytestmark = pytest.mark.usefixtures("allow_loopback")


def http_step(
    name: str, url: str, *, method: str = "GET", max_attempts: int = 1, **request: Any
) -> Step:
    """An HTTP step as the API stores it; retries after 1 s (exponent 0) unless told."""
    return Step(
        name=name,
        kind="http",
        request={
            "method": method,
            "url": url,
            "headers": {},
            "query": {},
            "body": None,
            "timeout": 10.0,
            "expect": None,
            "max_attempts": max_attempts,
            "retry_exponent": 0.0,
            **request,
        },
    )


def http_job(*steps: Step, metadata: dict[str, Any] | None = None) -> Job:
    assert all(step.request is not None for step in steps)
    return Job(
        id=new_job_id(),
        queue="default",
        steps=list(steps),
        max_attempts=sum(step.request["max_attempts"] for step in steps if step.request),
        metadata=metadata or {},
    )


def run_jobs(app: Conveyor, *jobs: Job, **config: Any) -> list[Job]:
    """Enqueue ``jobs``, run a worker until each is final; the jobs as stored then."""

    async def scenario(worker: Worker) -> list[Job]:
        handles = await app.enqueue_jobs_async(list(jobs))
        for handle in handles:
            with contextlib.suppress(JobFailed, JobCancelled):
                await handle.wait_async(20)
        return [(await handle.refresh_async()).job for handle in handles]

    result: list[Job] = run_with_worker(app, scenario, **config)
    return result


# ---------------------------------------------------------------------------
# Success, templating, resume
# ---------------------------------------------------------------------------
def test_a_later_step_uses_the_json_of_an_earlier_response(app: Conveyor, target: Target) -> None:
    # Given a job whose second step puts the id the first step returned in its URL and body
    job = http_job(
        http_step("item", target.url("/item")),
        http_step(
            "save",
            target.url("/ok/items/{{ steps.item.response.json.id }}"),
            method="POST",
            query={"token": "{{ steps.item.response.headers.x-token }}"},
            body={
                "id": "{{ steps.item.response.json.id }}",
                "note": "item {{ steps.item.response.json.name }}",
            },
            expect=[200],
        ),
    )

    # When a worker runs it
    (done,) = run_jobs(app, job)

    # Then both steps succeeded and the second request carried the values, typed
    assert done.state is State.SUCCEEDED, done.errors
    echo = done.steps[1].response
    assert echo is not None
    assert echo["json"]["path"] == "/ok/items/4711"
    assert echo["json"]["query"] == {"token": "t-1"}
    assert echo["json"]["body"] == '{"id":4711,"note":"item widget"}'
    assert echo["json"]["headers"]["content-type"] == "application/json"
    # And the job's result is the last response; steps keep responses, not results
    assert done.result == echo
    assert [s.result for s in done.steps] == [None, None]
    item = done.steps[0].response
    assert item is not None
    assert (item["status"], item["body"], item["truncated"], item["json"]) == (
        200,
        '{"id": 4711, "name": "widget"}',
        False,
        {"id": 4711, "name": "widget"},
    )
    assert item["headers"]["x-token"] == "t-1"


def test_every_request_carries_an_idempotency_key_and_the_user_agent(
    app: Conveyor, target: Target
) -> None:
    # Given a job of two steps, the second setting its own Idempotency-Key
    job = http_job(
        http_step("first", target.url("/ok")),
        http_step("second", target.url("/ok/2"), headers={"Idempotency-Key": "mine"}),
    )

    run_jobs(app, job)

    # Then the first request has job id + step name as key, the second its own
    first, second = target.requests_to("/ok")[0], target.requests_to("/ok/2")[0]
    assert first.headers["idempotency-key"] == f"{job.id}:first"
    assert second.headers["idempotency-key"] == "mine"
    assert first.headers["user-agent"].startswith("conveyor/")


def test_a_retry_resumes_at_the_failed_step(app: Conveyor, target: Target) -> None:
    # Given a first step that succeeds and a second that fails once with a 503
    job = http_job(
        http_step("item", target.url("/item")),
        http_step(
            "flaky", target.url("/flaky"), query={"key": "resume", "fails": "1"}, max_attempts=3
        ),
    )

    # When a worker runs it
    (done,) = run_jobs(app, job)

    # Then the job succeeded on the second attempt of step 2, without calling step 1 again
    assert done.state is State.SUCCEEDED, done.errors
    assert len(target.requests_to("/item")) == 1
    flaky = target.requests_to("/flaky")
    assert len(flaky) == 2
    assert [s.attempts for s in done.steps] == [1, 2]
    # And both tries of the step carried the same Idempotency-Key
    assert flaky[0].headers["idempotency-key"] == flaky[1].headers["idempotency-key"]
    assert done.errors[0]["step"] == "flaky"
    assert "status 503" in done.errors[0]["message"]


def test_a_text_body_goes_as_text_and_a_step_may_set_its_content_type(
    app: Conveyor, target: Target
) -> None:
    job = http_job(
        http_step("plain", target.url("/ok"), method="PUT", body="hello"),
        http_step(
            "csv",
            target.url("/ok"),
            method="POST",
            body="a,b",
            headers={"content-type": "text/csv"},
        ),
    )

    (done,) = run_jobs(app, job)

    assert done.state is State.SUCCEEDED, done.errors
    plain, csv = target.requests_to("/ok")
    assert (plain.method, plain.body, plain.headers["content-type"]) == (
        "PUT",
        "hello",
        "text/plain; charset=utf-8",
    )
    assert (csv.body, csv.headers["content-type"]) == ("a,b", "text/csv")


# ---------------------------------------------------------------------------
# Failures and retries
# ---------------------------------------------------------------------------
def test_a_404_poisons_at_once_and_keeps_the_response(app: Conveyor, target: Target) -> None:
    # Given a step allowed 5 attempts whose URL answers 404 (and carries a token in its query)
    job = http_job(http_step("get", target.url("/status/404?token=s3cret"), max_attempts=5))

    (done,) = run_jobs(app, job)

    # Then one request was made and the job is poisoned with a message that names the
    # step, method, URL (without its query) and status, and quotes the body
    assert done.state is State.POISONED
    assert len(target.requests_to("/status/404")) == 1
    message = done.errors[-1]["message"]
    assert f"step 'get': GET {target.url('/status/404')}: status 404: status 404 here" == message
    assert "s3cret" not in message
    assert done.steps[0].last_error == message
    # And the response of the failed attempt stays on the step
    assert done.steps[0].response is not None
    assert done.steps[0].response["status"] == 404


def test_a_response_the_client_cannot_read_is_reported_without_the_query(
    app: Conveyor, target: Target
) -> None:
    # Given a step whose URL carries a token in its query, and whose target answers with
    # a header longer than the client reads
    job = http_job(http_step("get", target.url("/huge-header?size=10000&token=s3cret")))

    (done,) = run_jobs(app, job)

    # Then the step fails, and its message names the step, method and URL without the
    # query, says what went wrong, and holds no token
    assert done.state is State.POISONED
    message = done.errors[-1]["message"]
    assert message.startswith(f"step 'get': GET {target.url('/huge-header')}: "), message
    assert "8190 bytes" in message
    assert "s3cret" not in message
    assert "s3cret" not in (done.steps[0].last_error or "")


def _answer(body: bytes, content_type: bytes = b"application/json", headers: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: "
        + content_type
        + b"\r\n"
        + headers
        + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
        + body
    )


@pytest.mark.parametrize(
    ("answer", "body"),
    [
        # JSON whose values no store keeps: a lone surrogate, a number beyond a double,
        # arrays nested deeper than Python's parser goes
        (_answer(b'{"a": "\\ud800"}'), '{"a": "\\ud800"}'),
        (_answer(b'{"a": 1e999}'), '{"a": 1e999}'),
        (_answer(b"[" * 30000 + b"]" * 30000), "[" * 30000 + "]" * 30000),
        # a charset whose decoding makes escapes into lone surrogates
        (_answer(b"x\\ud800y", b"text/plain; charset=unicode_escape"), "x\ufffdy"),
    ],
)
def test_a_body_no_store_could_keep_as_parsed_is_kept_as_text(
    app: Conveyor, raw_target: RawTarget, answer: bytes, body: str
) -> None:
    # Given a step whose target answers 200 with such a body
    job = http_job(http_step("get", raw_target.url(answer)))

    (done,) = run_jobs(app, job)

    # Then the step succeeds, with the body kept as text and no parsed JSON (it used to
    # be poisoned: "the outcome could not be stored")
    assert done.state is State.SUCCEEDED, done.errors
    response = done.steps[0].response
    assert response is not None
    assert response["body"] == body
    assert "json" not in response


@pytest.mark.parametrize(
    "charset",
    [
        b"undefined",  # a codec that refuses every byte
        b"idna",  # a codec that takes no errors="replace"
        b"base64",  # not a text encoding at all
    ],
)
def test_a_body_in_a_charset_that_does_not_decode_text_is_read_as_utf8(
    app: Conveyor, raw_target: RawTarget, charset: bytes
) -> None:
    # Given a target that answers 200 with a body in a charset Python knows but cannot
    # decode it with (bytes that are not text become U+FFFD, as docs/http-api.md says)
    answer = _answer(b"ok \xff", b"text/plain; charset=" + charset)
    job = http_job(http_step("get", raw_target.url(answer)))

    (done,) = run_jobs(app, job)

    # Then the step succeeds with the body read as UTF-8 (it was poisoned: "decoding with
    # 'undefined' codec failed", on a 200)
    assert done.state is State.SUCCEEDED, done.errors
    response = done.steps[0].response
    assert response is not None
    assert response["body"] == "ok \ufffd"


def test_a_header_that_is_not_utf8_is_kept_read_as_latin1(
    app: Conveyor, raw_target: RawTarget
) -> None:
    # Given a target whose answer has a header value in Latin-1 (obs-text, RFC 9110)
    answer = _answer(b'{"ok": true}', headers=b"X-Name: caf\xe9\r\n")
    job = http_job(http_step("get", raw_target.url(answer)))

    (done,) = run_jobs(app, job)

    # Then the step succeeds, and the header is kept, read as Latin-1 (it used to be
    # poisoned: "the outcome could not be stored")
    assert done.state is State.SUCCEEDED, done.errors
    response = done.steps[0].response
    assert response is not None
    assert response["headers"]["x-name"] == "caf\u00e9"
    assert response["json"] == {"ok": True}


def test_a_503_is_retried_then_poisoned(app: Conveyor, target: Target) -> None:
    # Given a step of 2 attempts at exponent 0 (1 s between them) that always gets 503
    job = http_job(http_step("down", target.url("/status/503"), max_attempts=2))

    (done,) = run_jobs(app, job)

    # Then it was tried twice, about a second apart, and poisoned
    assert done.state is State.POISONED
    tries = target.requests_to("/status/503")
    assert len(tries) == 2
    assert tries[1].at - tries[0].at >= 0.9
    assert done.steps[0].attempts == 2
    assert [e["type"] for e in done.errors] == ["HttpStepError", "HttpStepError"]


def test_a_step_retry_setting_past_a_floats_range_falls_back_to_the_default(
    app: Conveyor, target: Target
) -> None:
    # Given a hand-built step whose max_attempts and retry_exponent are ints no float
    # holds (kept as JSON by every store), on a job of 2 attempts, that always gets 503
    step = http_step("down", target.url("/status/503"), max_attempts=1)
    assert step.request is not None
    step.request.update(max_attempts=10**400, retry_exponent=10**400)
    job = http_job(step)
    job.max_attempts = 2

    (done,) = run_jobs(app, job)

    # Then each failure is judged by the step's rules, the settings read as their
    # defaults as for any other unusable value (math.isfinite raised OverflowError
    # while the failure was judged: each attempt ended as a worker error instead)
    assert done.state is State.POISONED
    assert len(target.requests_to("/status/503")) == 2
    assert [e["type"] for e in done.errors] == ["HttpStepError", "HttpStepError"]


def test_a_step_timeout_past_a_floats_range_poisons_saying_so(
    app: Conveyor, target: Target
) -> None:
    # Given a hand-built step whose timeout is an int no float holds
    job = http_job(http_step("slow", target.url("/ok"), timeout=10**400, max_attempts=3))

    (done,) = run_jobs(app, job)

    # Then the step is refused as any unusable timeout is: poisoned at once, naming it,
    # and no request sent (each attempt failed with OverflowError, retried as any error)
    assert done.state is State.POISONED
    assert [e["type"] for e in done.errors] == ["HttpStepError"]
    assert "timeout must be a number of seconds > 0" in done.errors[0]["message"]
    assert target.requests_to("/ok") == []


def test_retry_after_is_honoured(app: Conveyor, target: Target) -> None:
    # Given a step at exponent 0 (1 s) whose target answers 429 with Retry-After: 2
    job = http_job(http_step("limited", target.url("/limited?retry_after=2"), max_attempts=2))

    (done,) = run_jobs(app, job)

    # Then the second try waited at least the 2 s the target asked for
    tries = target.requests_to("/limited")
    assert len(tries) == 2
    assert tries[1].at - tries[0].at >= 1.9
    assert done.state is State.POISONED


def test_a_timeout_is_a_retryable_failure(app: Conveyor, target: Target) -> None:
    job = http_job(http_step("slow", target.url("/slow?seconds=5"), timeout=0.3))

    started = time.monotonic()
    (done,) = run_jobs(app, job)

    assert done.state is State.POISONED
    assert done.errors[-1]["message"].endswith("timed out after 0.3 s")
    assert time.monotonic() - started < 4


# ---------------------------------------------------------------------------
# Cancellation
# ---------------------------------------------------------------------------
def test_a_cancel_aborts_the_request_in_flight(app: Conveyor, target: Target) -> None:
    # Given a job whose first step waits on a slow target, and a second step after it;
    # the lease is long, so the lease keeper alone would notice a cancel only after 5 s
    job = http_job(
        http_step("slow", target.url("/slow?seconds=30")),
        http_step("after", target.url("/ok/after")),
    )

    async def scenario(worker: Worker) -> float:
        (handle,) = await app.enqueue_jobs_async([job])
        while not target.requests_to("/slow"):
            await asyncio.sleep(0.02)
        # When the job is cancelled while its request is in flight
        asked = time.monotonic()
        assert await handle.cancel_async() is State.CANCELLING
        with pytest.raises(JobCancelled):
            await handle.wait_async(10)
        return time.monotonic() - asked

    took = run_with_worker(app, scenario, lease=30.0)

    # Then the job ended cancelled within about a second, the target saw the client go,
    # and the next step never started
    assert took < 2.0
    deadline = time.monotonic() + 2
    while not target.aborted and time.monotonic() < deadline:
        time.sleep(0.02)
    assert target.aborted == ["/slow"]
    assert target.requests_to("/ok/after") == []


# ---------------------------------------------------------------------------
# The SSRF guard
# ---------------------------------------------------------------------------
def test_the_guard_blocks_loopback_unless_allowed(
    app: Conveyor, target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a worker whose guard allows nothing beyond public addresses
    monkeypatch.delenv("CONVEYOR_HTTP_ALLOW")
    job = http_job(http_step("local", target.url("/ok"), max_attempts=5))

    (done,) = run_jobs(app, job)

    # Then the step is poisoned at once, says why and how to allow it, and sent nothing
    assert done.state is State.POISONED
    assert done.steps[0].attempts == 1
    message = done.errors[-1]["message"]
    assert "127.0.0.1" in message
    assert "CONVEYOR_HTTP_ALLOW" in message
    assert target.seen == []


def test_a_redirect_to_a_blocked_address_is_blocked(app: Conveyor, target: Target) -> None:
    # Given a target (allowed) that redirects to the cloud metadata address
    to = "http://169.254.169.254/latest/meta-data"
    job = http_job(http_step("hop", target.url(f"/redirect?to={to}"), max_attempts=3))

    (done,) = run_jobs(app, job)

    # Then the step is poisoned at the redirect, naming the address
    assert done.state is State.POISONED
    assert done.steps[0].attempts == 1
    message = done.errors[-1]["message"]
    assert "169.254.169.254" in message
    assert "CONVEYOR_HTTP_ALLOW" in message


def test_redirects_are_followed_as_browsers_do(app: Conveyor, target: Target) -> None:
    # Given a POST redirected with 307 (method and body kept) and one with 303 (GET, no body)
    keep = http_step(
        "keep",
        target.url("/redirect?status=307&to=/ok/kept"),
        method="POST",
        body={"a": 1},
    )
    change = http_step(
        "change",
        target.url("/redirect?status=303&to=/ok/changed"),
        method="POST",
        body={"a": 1},
    )

    (done,) = run_jobs(app, http_job(keep, change))

    assert done.state is State.SUCCEEDED, done.errors
    (kept,) = target.requests_to("/ok/kept")
    (changed,) = target.requests_to("/ok/changed")
    assert (kept.method, kept.body) == ("POST", '{"a":1}')
    assert (changed.method, changed.body) == ("GET", "")
    assert "content-type" not in changed.headers


def test_credentials_a_step_sets_stay_with_its_origin_on_a_redirect(
    app: Conveyor, target: Target
) -> None:
    # Given another origin (a second server), and a step with a token, a cookie and other
    # headers of its own that is redirected there
    other = Target()
    other.start()
    try:
        step = http_step(
            "away",
            target.url(f"/redirect?status=302&to={other.url('/ok/landed')}"),
            headers={
                "Authorization": "Bearer step-secret",
                "Cookie": "session=step-secret",
                "Proxy-Authorization": "Basic c3RlcDpzZWNyZXQ=",
                "X-Trace": "t-1",
            },
        )

        # When the job runs
        (done,) = run_jobs(app, http_job(step))
    finally:
        other.stop()

    # Then the first origin got them all, and the other one none of the credentials
    assert done.state is State.SUCCEEDED, done.errors
    (first,) = target.requests_to("/redirect")
    assert first.headers["cookie"] == "session=step-secret"
    (landed,) = other.requests_to("/ok/landed")
    assert "authorization" not in landed.headers
    assert "cookie" not in landed.headers
    assert "proxy-authorization" not in landed.headers
    assert landed.headers["x-trace"] == "t-1"


@pytest.mark.parametrize("status", [301, 302, 303])
def test_a_callback_is_not_followed_to_a_get_without_its_body(target: Target, status: int) -> None:
    # Given a callback URL that redirects the POST with a status that would make it a GET
    url = target.url(f"/redirect?status={status}&to=/ok/callback")
    http = HttpSteps(Guard(["127.0.0.0/8"]))

    async def send() -> None:
        try:
            await http.send_json(url, {"id": "j-1"}, idempotency_key="j-1:callback:3")
        finally:
            await http.close()

    # When the callback is sent
    with pytest.raises(HttpStepError) as failed:
        asyncio.run(send())

    # Then it fails with the redirect's status (not retried), and no bodiless GET went out
    assert f"status {status}" in failed.value.message
    assert not failed.value.retryable
    assert target.requests_to("/ok/callback") == []


def test_a_callback_follows_a_redirect_that_keeps_its_body(target: Target) -> None:
    # Given a callback URL that redirects with 307 (method and body kept)
    url = target.url("/redirect?status=307&to=/ok/callback")
    http = HttpSteps(Guard(["127.0.0.0/8"]))

    async def send() -> dict[str, Any]:
        try:
            return await http.send_json(url, {"id": "j-1"}, idempotency_key="j-1:callback:3")
        finally:
            await http.close()

    # When the callback is sent
    document = asyncio.run(send())

    # Then the document arrives where the redirect led, as a POST with its body
    assert document["status"] == 200
    (seen,) = target.requests_to("/ok/callback")
    assert (seen.method, seen.body) == ("POST", '{"id":"j-1"}')
    assert seen.headers["idempotency-key"] == "j-1:callback:3"


def test_the_resolver_checks_every_address_a_name_resolves_to() -> None:
    # aiohttp calls the resolver for names only; "localhost" resolves to loopback
    async def resolve(guard: Guard) -> list[str]:
        resolver = _GuardedResolver(guard)
        try:
            return [r["host"] for r in await resolver.resolve("localhost", 80, socket.AF_UNSPEC)]
        finally:
            await resolver.close()

    with pytest.raises(BlockedDestination, match="CONVEYOR_HTTP_ALLOW"):
        asyncio.run(resolve(Guard()))
    assert "127.0.0.1" in asyncio.run(resolve(Guard(["127.0.0.0/8", "::1/128"])))


# ---------------------------------------------------------------------------
# The kept response, credentials
# ---------------------------------------------------------------------------
def test_a_long_body_is_truncated_and_cookies_are_not_kept(
    app: Conveyor, target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a worker keeping 1000 bytes of each body
    monkeypatch.setenv("CONVEYOR_HTTP_MAX_BODY", "1000")
    job = http_job(
        http_step("big", target.url("/big?size=5000")),
        http_step("cookie", target.url("/cookie")),
    )

    (done,) = run_jobs(app, job)

    big, cookie = (step.response for step in done.steps)
    assert big is not None and cookie is not None
    # Then the body is cut at the limit, said so, and not parsed as JSON
    assert len(big["body"]) == 1000
    assert big["truncated"] is True
    assert "json" not in big
    # And Set-Cookie is dropped while the other headers are kept, names in lower case
    assert "set-cookie" not in cookie["headers"]
    assert cookie["headers"]["content-type"] == "application/json; charset=utf-8"
    assert cookie["json"] == {"ok": True}


def test_the_stored_credentials_go_with_every_step(app: Conveyor, target: Target) -> None:
    private = {"conveyor.http": {"auth": "plain:Bearer s3cret"}}
    job = http_job(
        http_step("one", target.url("/ok/1")),
        http_step("two", target.url("/ok/2")),
        metadata=private,
    )

    (done,) = run_jobs(app, job)

    assert done.state is State.SUCCEEDED, done.errors
    for path in ("/ok/1", "/ok/2"):
        (seen,) = target.requests_to(path)
        assert seen.headers["authorization"] == "Bearer s3cret"


def test_credentials_that_cannot_be_opened_poison_without_showing_them(
    app: Conveyor, target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a job sealed with a key this worker does not have
    monkeypatch.delenv("CONVEYOR_SECRET_KEY", raising=False)
    stored = "enc:v1:gAAAAABnot-really-a-token"
    job = http_job(
        http_step("one", target.url("/ok"), max_attempts=5),
        metadata={"conveyor.http": {"auth": stored}},
    )

    (done,) = run_jobs(app, job)

    # Then it is poisoned at once, says what is wrong, never shows the stored value, and
    # sends nothing
    assert done.state is State.POISONED
    message = done.errors[-1]["message"]
    assert "CONVEYOR_SECRET_KEY" in message
    assert stored not in message and "not-really" not in message
    assert target.seen == []


# ---------------------------------------------------------------------------
# The retry rule (pure)
# ---------------------------------------------------------------------------
class _Fixed(random.Random):
    """An rng whose ``uniform`` gives the low or the high end of the range."""

    def __init__(self, high: bool) -> None:
        super().__init__(0)
        self.high = high

    def uniform(self, a: float, b: float) -> float:
        return b if self.high else a


@pytest.mark.parametrize(
    ("exponent", "low", "high"),
    [(2.0, 30.0, 33.0), (2.5, 54.0, 60.0), (3.0, 100.0, 110.0)],
)
def test_five_attempts_poison_after_the_documented_time(
    exponent: float, low: float, high: float
) -> None:
    # The delays after attempts 1..4 (the 5th failure poisons), at both ends of the jitter
    shortest = sum(retry_delay(n, exponent, rng=_Fixed(high=False)) for n in range(1, 5))
    longest = sum(retry_delay(n, exponent, rng=_Fixed(high=True)) for n in range(1, 5))
    assert low <= shortest <= longest <= high
    assert longest == pytest.approx(shortest * 1.1)


def test_retry_after_raises_the_delay_up_to_an_hour() -> None:
    no_jitter = _Fixed(high=False)
    assert retry_delay(1, 2.0, retry_after=7.5, rng=no_jitter) == 7.5
    assert retry_delay(3, 2.0, retry_after=2.0, rng=no_jitter) == 9.0
    assert retry_delay(2, 2.0, retry_after=86400.0, rng=no_jitter) == 3600.0
    assert retry_delay(100, 50.0, rng=no_jitter) == 3600.0


def test_retry_after_reads_seconds_and_http_dates_on_a_given_clock() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("120", now=now) == 120.0
    assert parse_retry_after(formatdate(now + 90, usegmt=True), now=now) == 90.0
    assert parse_retry_after(formatdate(now - 90, usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after("-5", now=now) is None
    assert parse_retry_after(None, now=now) is None


def test_a_job_a_recovery_finishes_calls_back(app: Conveyor, target: Target) -> None:
    # Given a job with a callback on its last attempt, claimed by a worker that died
    # running it (its lease runs out and nobody finishes it), in a queue the live worker
    # does not claim from
    job = http_job(
        http_step("only", target.url("/ok/never-reached")),
        metadata={PRIVATE: {"callback": target.url("/ok/callback")}},
    )
    job.queue = "elsewhere"

    async def scenario(worker: Worker) -> Job:
        backend = await app.backend()
        await backend.enqueue([job])
        (claimed,) = await backend.claim(["elsewhere"], "a-dead-worker", 1, 0.2)
        assert claimed.id == job.id
        # When a live worker's lease keeper recovers it (poisoned: no attempt left)
        deadline = time.monotonic() + 20
        while not target.requests_to("/ok/callback"):
            assert time.monotonic() < deadline, "no callback"
            await asyncio.sleep(0.05)
        return await backend.get(job.id)

    stored = run_with_worker(app, scenario, lease=1.0)

    # Then that worker calls back with the poisoned job's document, as a finish would
    assert stored.state is State.POISONED
    (callback,) = target.requests_to("/ok/callback")
    sent = json.loads(callback.body)
    assert (sent["id"], sent["state"]) == (job.id, "poisoned")
    assert callback.headers["idempotency-key"] == f"{job.id}:callback:{stored.version}"
    assert target.requests_to("/ok/never-reached") == []


def test_a_step_given_back_at_shutdown_spends_none_of_its_attempts(
    app: Conveyor, target: Target
) -> None:
    # Given a step of 2 attempts whose first request is held by the target (every later
    # one is a 503), running on a worker that stops without waiting for its jobs
    job = http_job(http_step("held", target.url("/held?key=release"), max_attempts=2))

    async def scenario() -> tuple[Job, Job]:
        backend = await app.backend()
        await backend.enqueue([job])
        first = Worker(app, WorkerConfig(lease=5.0, interval=0.1, shutdown_timeout=0.0))
        running = asyncio.create_task(first.run())
        while not target.requests_to("/held"):
            await asyncio.sleep(0.02)
        # When that worker stops while the request is in flight
        first.request_stop()
        await running
        released = await backend.get(job.id)
        # and another worker runs the job again
        second = Worker(app, WorkerConfig(lease=5.0, interval=0.1))
        running = asyncio.create_task(second.run())
        with contextlib.suppress(JobFailed):
            await app.job(job.id).wait_async(20)
        second.request_stop()
        await running
        done = await backend.get(job.id)
        await app.aclose()
        return released, done

    released, done = asyncio.run(scenario())

    # Then the job went back waiting, with neither its own attempt nor its step's spent
    assert released.state is State.QUEUED
    assert released.attempts == 0
    assert (released.steps[0].state, released.steps[0].attempts) == ("pending", 0)
    # And the step had both its attempts on the next worker: two 503s, then poisoned
    assert done.state is State.POISONED
    assert done.steps[0].attempts == 2
    assert len(target.requests_to("/held")) == 3
