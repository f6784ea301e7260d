"""A real nginx in front of a real API, configured as docs/caching.md says: polls of a job's
capability URL are answered by the cache, and the API's own poll counter shows it.

nginx keeps time in whole seconds: an entry of ``max-age=1`` lives from one to two seconds,
then is served stale once while a conditional request refreshes it. The waits below allow for
that, and no more.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from conveyor.job import Job
from tests.api.nginx import require_nginx, running_nginx
from tests.api.server import KEYS, RunningApi, running_api

JOB = {"steps": [{"name": "one", "url": "http://127.0.0.1:9/never-called"}]}
#: The longest a changed job may take to show through the cache: one to two seconds of
#: max-age (whole seconds), one stale answer while the entry refreshes, and slack.
CHANGE_SHOWS_WITHIN_S = 4.0


@dataclass
class Cached:
    api: RunningApi
    nginx: httpx.Client

    def polls(self) -> dict[str, float]:
        """The API's own count of the polls it answered, by status."""
        text = self.api.client(None).get("/metrics").text
        found = re.findall(r'^conveyor_api_polls_total\{status="(\d+)"\} (\S+)$', text, re.M)
        return {status: float(count) for status, count in found}

    def polls_answered(self) -> float:
        return sum(self.polls().values())

    def new_job(self) -> tuple[str, str]:
        """A queued job: its id and capability URL (path and query)."""
        created = self.api.client("acme").post("/v1/jobs", json=JOB)
        assert created.status_code == 202, created.text
        return created.json()["id"], created.headers["location"]

    def cancel(self, job_id: str) -> None:
        async def cancel() -> Job:
            return await (await self.api.app.backend()).cancel(job_id)

        self.api.call(cancel())


@pytest.fixture(scope="module")
def cached(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cached]:
    require_nginx()  # before the API starts: a skip costs nothing
    directory = tmp_path_factory.mktemp("cache")
    with (
        running_api(f"sqlite:///{directory / 'api.db'}") as api,
        running_nginx(api.base, directory / "nginx") as base,
        httpx.Client(base_url=base, timeout=30) as nginx,
    ):
        yield Cached(api, nginx)


def test_polls_of_the_capability_url_within_a_second_are_cache_hits(cached: Cached) -> None:
    _, location = cached.new_job()
    before = cached.polls_answered()

    answers = [cached.nginx.get(location) for _ in range(5)]

    assert [a.status_code for a in answers] == [200] * 5
    assert [a.headers["x-cache-status"] for a in answers] == ["MISS"] + ["HIT"] * 4
    assert {a.json()["version"] for a in answers} == {1}
    assert cached.polls_answered() == before + 1  # the API saw the first poll only


def test_a_request_with_an_api_key_is_never_cached(cached: Cached) -> None:
    job_id, location = cached.new_job()
    key = {"Authorization": f"Bearer {KEYS['acme']}"}
    before = cached.polls_answered()

    by_key = [
        cached.nginx.get(url, headers=key) for url in (location, location, f"/v1/jobs/{job_id}")
    ]

    assert [a.status_code for a in by_key] == [200] * 3
    assert [a.headers["x-cache-status"] for a in by_key] == ["BYPASS"] * 3
    assert {a.headers["cache-control"] for a in by_key} == {"private, max-age=1"}
    assert cached.polls_answered() == before + 3
    # nor did they fill the cache: the first poll without the key is a miss
    assert cached.nginx.get(location).headers["x-cache-status"] == "MISS"


def test_if_none_match_gets_a_304_from_the_cache(cached: Cached) -> None:
    _, location = cached.new_job()
    etag = cached.nginx.get(location).headers["etag"]
    before = cached.polls_answered()

    same = cached.nginx.get(location, headers={"If-None-Match": etag})
    other = cached.nginx.get(location, headers={"If-None-Match": '"0"'})

    assert etag == '"1"'
    assert (same.status_code, same.headers["x-cache-status"], same.content) == (304, "HIT", b"")
    assert (other.status_code, other.headers["x-cache-status"]) == (200, "HIT")
    assert cached.polls_answered() == before


def test_an_expired_entry_is_revalidated_with_a_304_from_the_api(cached: Cached) -> None:
    _, location = cached.new_job()
    assert cached.nginx.get(location).headers["x-cache-status"] == "MISS"
    before = cached.polls()

    statuses = _poll_until(cached, location, lambda a: a.headers["x-cache-status"] == "STALE")

    # the entry outlived its second, was answered once stale, and refreshed by a conditional
    # request the API answered 304 (the job did not change): no new document was sent
    assert statuses[-1] == "STALE"
    assert set(statuses[:-1]) <= {"HIT"}
    after = _wait_for(lambda: cached.polls().get("304", 0) > before.get("304", 0), cached)
    assert after.get("200") == before.get("200")


def test_a_changed_job_is_served_within_seconds(cached: Cached) -> None:
    job_id, location = cached.new_job()
    assert cached.nginx.get(location).json()["version"] == 1

    cached.cancel(job_id)
    changed_at = time.monotonic()
    right_after = cached.nginx.get(location)
    statuses = _poll_until(cached, location, lambda a: a.json()["version"] == 2)
    shown_after = time.monotonic() - changed_at

    assert (right_after.headers["x-cache-status"], right_after.json()["version"]) == ("HIT", 1)
    assert shown_after < CHANGE_SHOWS_WITHIN_S, statuses
    final = cached.nginx.get(location)
    assert final.json()["state"] == "cancelled"
    assert final.headers["cache-control"] == "public, max-age=3600, s-maxage=3600"
    assert final.headers["x-cache-status"] == "HIT"


def test_long_polls_and_events_bypass_the_cache_unbuffered(cached: Cached) -> None:
    _, location = cached.new_job()
    before = cached.polls_answered()

    waits = [cached.nginx.get(location + "&wait=0.2") for _ in range(2)]

    assert [a.status_code for a in waits] == [200, 200]
    assert [a.headers["cache-control"] for a in waits] == ["no-store", "no-store"]
    assert all("x-cache-status" not in a.headers for a in waits)
    assert cached.polls_answered() == before + 2
    # the job is active, so its stream stays open: its first event must come through at
    # once, not when a buffer fills or the stream ends
    events = location.replace("?", "/events?", 1)
    started = time.monotonic()
    with cached.nginx.stream("GET", events) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert "x-cache-status" not in stream.headers
        lines = stream.iter_lines()
        assert next(line for line in lines if line.startswith("event:")) == "event: job"
    assert time.monotonic() - started < 2.0


def _poll_until(
    cached: Cached, location: str, done: object, within: float = CHANGE_SHOWS_WITHIN_S
) -> list[str]:
    """Poll through nginx every 0.1 s until ``done(answer)``; the cache statuses seen."""
    assert callable(done)
    statuses: list[str] = []
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        answer = cached.nginx.get(location)
        statuses.append(answer.headers["x-cache-status"])
        if done(answer):
            return statuses
        time.sleep(0.1)
    raise AssertionError(f"not done within {within} s; cache statuses: {statuses}")


def _wait_for(condition: object, cached: Cached, within: float = 2.0) -> dict[str, float]:
    """The API's poll counts once ``condition()`` holds (a background refresh is async)."""
    assert callable(condition)
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"not within {within} s: {cached.polls()}"
        time.sleep(0.05)
    return cached.polls()
