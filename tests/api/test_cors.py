"""Cross-origin calls from web pages (``CONVEYOR_CORS_ORIGINS``): the setting, the headers
on every ``/v1/`` route (polls included), and a real page of another origin in Chromium."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import sync_playwright

from conveyor.exceptions import ConfigError
from conveyor.web.settings import ApiSettings
from tests.api.server import KEYS, RunningApi, free_port, running_api, settings
from tests.dashboard.browser import require_chromium

PAGE_ORIGIN = "http://app.example"
TARGET = "http://127.0.0.1:9/never-called"


def job_body() -> dict[str, Any]:
    return {"steps": [{"name": "fetch", "url": TARGET}]}


@contextmanager
def cors_api(tmp_path: Path, *origins: str) -> Iterator[RunningApi]:
    tmp_path.mkdir(exist_ok=True)
    with running_api(f"sqlite:///{tmp_path / 'cors.db'}", settings(cors_origins=origins)) as api:
        yield api


# -- the setting -------------------------------------------------------------------------
def test_origins_are_read_as_a_browser_sends_them() -> None:
    # Given origins written with capitals, a default port, spaces and a repeat
    text = " HTTPS://App.Example:443, http://127.0.0.1:5173,https://app.example ,http://[::1]:80"

    # When the API's settings are read
    found = ApiSettings.from_env({"CONVEYOR_CORS_ORIGINS": text}).cors_origins

    # Then each is the Origin header a browser sends, once
    assert found == ("https://app.example", "http://127.0.0.1:5173", "http://[::1]")
    assert ApiSettings.from_env({}).cors_origins == ()
    assert ApiSettings.from_env({"CONVEYOR_CORS_ORIGINS": "*"}).cors_origins == ("*",)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("https://app.example/", "without a path"),
        ("https://app.example/app", "without a path"),
        ("app.example", "expected http(s)://host[:port]"),
        ("ftp://app.example", "expected http(s)://host[:port]"),
        ("https://user@app.example", "without a path"),
        ("https://app.example:99999", "is not an origin"),
        ("*,https://app.example", "give it alone"),
    ],
)
def test_a_bad_origin_is_refused_naming_the_setting(text: str, problem: str) -> None:
    # Given a value a browser's Origin header could never match
    # When the API's settings are read
    with pytest.raises(ConfigError) as raised:
        ApiSettings.from_env({"CONVEYOR_CORS_ORIGINS": text})

    # Then the error names the setting and the problem
    assert raised.value.field == "CONVEYOR_CORS_ORIGINS"
    assert problem in raised.value.problem


# -- the headers -------------------------------------------------------------------------
def test_a_preflight_of_a_submit_is_answered_for_an_allowed_origin(tmp_path: Path) -> None:
    # Given an API that allows one origin
    with cors_api(tmp_path, PAGE_ORIGIN) as api:
        client = api.client(None)

        # When a browser asks whether that origin may POST with a key and an Idempotency-Key
        answer = client.options(
            "/v1/jobs",
            headers={
                "Origin": PAGE_ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
            },
        )
        # and whether another origin may
        other = client.options(
            "/v1/jobs",
            headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
        )

    # Then the allowed one may, without credentials (no cookies), and the other may not
    assert answer.status_code == 200, answer.text
    assert answer.headers["access-control-allow-origin"] == PAGE_ORIGIN
    assert "POST" in answer.headers["access-control-allow-methods"]
    allowed = answer.headers["access-control-allow-headers"].lower()
    assert {"authorization", "content-type", "idempotency-key"} <= set(allowed.split(", "))
    assert "access-control-allow-credentials" not in answer.headers
    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers


def test_answers_of_v1_carry_the_origin_and_vary_by_it_polls_included(tmp_path: Path) -> None:
    # Given an API that allows one origin, and a job submitted from a page of it
    with cors_api(tmp_path, PAGE_ORIGIN) as api:
        client = api.client("acme")
        submitted = client.post("/v1/jobs", json=job_body(), headers={"Origin": PAGE_ORIGIN})
        location = submitted.headers["location"]

        # When the page polls the job's capability URL, then again with its ETag; when a
        # client without an Origin polls it; when another origin does
        reader = api.client(None)
        poll = reader.get(location, headers={"Origin": PAGE_ORIGIN})
        again = reader.get(
            location, headers={"Origin": PAGE_ORIGIN, "If-None-Match": poll.headers["etag"]}
        )
        plain = reader.get(location)
        other = reader.get(location, headers={"Origin": "http://evil.example"})
        listed = client.get("/v1/jobs", headers={"Origin": PAGE_ORIGIN})

    # Then the allowed origin may read every answer and the headers it needs
    assert submitted.status_code == 202
    for answer in (submitted, poll, again, listed):
        assert answer.headers["access-control-allow-origin"] == PAGE_ORIGIN
        exposed = answer.headers["access-control-expose-headers"].lower()
        assert {"etag", "location", "retry-after"} <= set(exposed.split(", "))
    assert (poll.status_code, again.status_code) == (200, 304)
    # and no other origin may; every answer varies by Origin, so that a cache in front
    # never hands a page the copy made for another origin (or for none)
    assert "access-control-allow-origin" not in plain.headers
    assert "access-control-allow-origin" not in other.headers
    for answer in (submitted, poll, again, plain, other, listed):
        assert "origin" in answer.headers["vary"].lower(), answer.headers


def test_the_dashboard_and_an_api_without_origins_answer_no_cors(tmp_path: Path) -> None:
    # Given an API that allows one origin, and one that allows none
    with cors_api(tmp_path / "a", PAGE_ORIGIN) as api:
        # When a page of that origin reads the dashboard
        dashboard = api.client(None).get("/dashboard/login", headers={"Origin": PAGE_ORIGIN})
    with cors_api(tmp_path / "b") as bare:
        client = bare.client("acme")
        submitted = client.post("/v1/jobs", json=job_body(), headers={"Origin": PAGE_ORIGIN})
        preflight = client.options(
            "/v1/jobs",
            headers={"Origin": PAGE_ORIGIN, "Access-Control-Request-Method": "POST"},
        )

    # Then the dashboard stays same-origin, and without origins nothing is allowed
    assert dashboard.status_code == 200
    assert "access-control-allow-origin" not in dashboard.headers
    assert submitted.status_code == 202
    assert "access-control-allow-origin" not in submitted.headers
    assert preflight.status_code == 405


# -- a real page of another origin -------------------------------------------------------
@contextmanager
def page_server(directory: Path) -> Iterator[str]:
    """A static web server for ``directory`` on its own port: another origin."""
    port = free_port()

    def handler(*args: Any, **kwargs: Any) -> http.server.SimpleHTTPRequestHandler:
        return http.server.SimpleHTTPRequestHandler(*args, directory=str(directory), **kwargs)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


#: What the page does: submit a job with a key, then poll it through its capability URL
#: twice (the second time with the ETag), reading the headers CORS lets it read.
SCRIPT = """
async ([api, key, body]) => {
  try {
    const submitted = await fetch(api + "/v1/jobs", {
      method: "POST",
      headers: {"Authorization": "Bearer " + key, "Content-Type": "application/json",
                "Idempotency-Key": "page-1"},
      body: JSON.stringify(body),
    });
    // Relative to the API's URL, as Location is: resolved against the answer's URL.
    const location = new URL(submitted.headers.get("Location"), submitted.url).href;
    const poll = await fetch(location);
    const etag = poll.headers.get("ETag");
    const again = await fetch(location, {headers: {"If-None-Match": etag}, cache: "no-store"});
    const job = await poll.json();
    return {submitted: submitted.status, location: location, etag: etag,
            state: job.state, again: again.status};
  } catch (error) {
    return {error: String(error)};
  }
}
"""


def test_a_page_of_an_allowed_origin_submits_and_polls_in_a_browser(tmp_path: Path) -> None:
    # Given a page served from one origin, and two APIs on others: one allows the page's
    # origin, one allows another origin only
    pages = tmp_path / "pages"
    pages.mkdir()
    (pages / "index.html").write_text("<!doctype html><title>app</title><p>app</p>")
    path = require_chromium()
    with (
        page_server(pages) as origin,
        cors_api(tmp_path / "a", origin) as allowing,
        cors_api(tmp_path / "b") as refusing,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=path, headless=True)
        try:
            page = browser.new_page()
            page.goto(origin + "/index.html")

            # When the page submits a job to each and polls it
            allowed = page.evaluate(SCRIPT, [allowing.base, KEYS["acme"], job_body()])
            refused = page.evaluate(SCRIPT, [refusing.base, KEYS["acme"], job_body()])
        finally:
            browser.close()

    # Then the allowing API's answers reach the page, headers and all
    assert allowed.get("error") is None, allowed
    assert allowed["submitted"] == 202
    assert allowed["location"].startswith(allowing.base + "/v1/jobs/")
    assert allowed["etag"]
    assert allowed["state"] in ("queued", "running")
    assert allowed["again"] == 304
    # and the browser keeps the other's from the page
    assert "Failed to fetch" in refused["error"], refused
