"""The API while its store is away (a TCP proxy in front of the real server, cut and
restored): 503 problems, never a 2xx for a job that was not stored, and service again
once the store is back."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from conveyor import Conveyor
from conveyor.job import Job, Outcome
from conveyor.web import outage
from tests.api.server import RunningApi, running_api
from tests.postgres.proxy import TcpProxy
from tests.unit.test_sqlite_damaged_file import random_bytes

JOB = {"steps": [{"name": "one", "url": "http://127.0.0.1:9/x"}]}


@pytest.fixture(params=["postgres", "redis"])
def store_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("pg_url" if request.param == "postgres" else "redis_url"))


@pytest.fixture
def proxied(store_url: str) -> Iterator[tuple[RunningApi, TcpProxy]]:
    server = urlsplit(store_url)
    with TcpProxy(server.hostname or "127.0.0.1", server.port or 0) as proxy:
        # Short connect timeouts: a cut store answers 503 in seconds, not after the defaults.
        separator = "&" if "?" in store_url else "?"
        url = proxy.rewrite(store_url) + separator + "connect_timeout=2"
        with running_api(url) as api:
            yield api, proxy


def test_while_the_store_is_down_the_api_answers_503_and_stores_nothing(
    proxied: tuple[RunningApi, TcpProxy],
) -> None:
    api, proxy = proxied
    acme = api.client("acme")
    first = acme.post("/v1/jobs", json=JOB)
    assert first.status_code == 202
    job_id = first.json()["id"]

    proxy.cut()
    anonymous = api.client(None)
    calls = [
        lambda: acme.post("/v1/jobs", json=JOB),
        lambda: acme.get(f"/v1/jobs/{job_id}"),
        lambda: anonymous.get(first.headers["location"]),
        lambda: acme.get("/v1/jobs"),
    ]
    # At once: PostgreSQL's pool gives up on a connection after 5 s, each call alike.
    with ThreadPoolExecutor(len(calls)) as pool:
        answers = list(pool.map(lambda call: call(), calls))
    for answer in answers:
        assert answer.status_code == 503, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.headers["retry-after"] == "1"
    assert api.client(None).get("/healthz").status_code == 503

    proxy.restore()
    deadline = time.monotonic() + 30
    while (answer := acme.get(f"/v1/jobs/{job_id}")).status_code != 200:
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.2)
    # the refused POST stored nothing: only the first job is there
    assert [j["id"] for j in acme.get("/v1/jobs").json()["jobs"]] == [job_id]
    assert acme.post("/v1/jobs", json=JOB).status_code == 202


def test_an_outage_is_one_log_line_and_a_count_not_a_line_per_request(
    proxied: tuple[RunningApi, TcpProxy],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given an API whose "store unavailable" lines come at most once an hour
    monkeypatch.setattr(outage, "REMIND_S", 3600.0)
    api, proxy = proxied
    acme = api.client("acme")
    assert acme.post("/v1/jobs", json=JOB).status_code == 202
    caplog.set_level(logging.WARNING, logger="conveyor.api")

    # When its store goes away and 24 requests arrive meanwhile
    proxy.cut()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: acme.post("/v1/jobs", json=JOB), range(24)))

    # Then every one is refused with a 503, and the log says so once, with the reason
    assert [a.status_code for a in answers] == [503] * 24
    said = [r.getMessage() for r in caplog.records if "store unavailable" in r.getMessage()]
    assert len(said) == 1, said
    assert api.app.url.split("?")[0].split("@")[-1].split("/")[0] in said[0]

    # And the next line, once it is due, counts the refusals it did not tell
    monkeypatch.setattr(outage, "REMIND_S", 0.0)
    assert acme.post("/v1/jobs", json=JOB).status_code == 503
    said = [r.getMessage() for r in caplog.records if "store unavailable" in r.getMessage()]
    assert len(said) == 2 and "(and 23 more request(s) answered 503 in the last" in said[1], said
    proxy.restore()


# On Redis only: on PostgreSQL the 2 s limit cancels a query on the muted connection, and
# psycopg's cancellation (through the muted proxy too) leaves an asyncio transport for the
# garbage collector, whose warning then fails whichever test it lands in.
@pytest.mark.parametrize("store_url", ["redis"], indirect=True)
def test_healthz_says_why_the_store_is_unavailable(
    proxied: tuple[RunningApi, TcpProxy],
) -> None:
    api, proxy = proxied
    assert api.client(None).get("/healthz").status_code == 200
    # Given a store that stopped answering (its connections open, nothing comes back)
    proxy.mute()
    # When a probe asks for the API's health
    answer = api.client(None).get("/healthz")
    # Then the 503 names the store and a reason, not an empty one
    assert answer.status_code == 503
    where, _, reason = answer.json()["detail"].partition(": ")
    assert where.startswith("store ")
    assert reason.strip(), answer.text
    proxy.cut()
    proxy.restore()
    # (and healthy again once it answers: the API stops on a store it can reach, as in
    # the other tests, rather than amid the connections the mute left behind)
    deadline = time.monotonic() + 30
    while api.client(None).get("/healthz").status_code != 200:
        assert time.monotonic() < deadline, "the API did not find its store again"
        time.sleep(0.2)


@pytest.mark.parametrize("store_url", ["redis"], indirect=True)
def test_a_deleted_running_job_is_removed_once_stopped_even_after_a_store_outage(
    proxied: tuple[RunningApi, TcpProxy], store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    api, proxy = proxied
    acme = api.client("acme")
    job_id = acme.post("/v1/jobs", json=JOB).json()["id"]
    # Given the job running on a worker (claimed here, on the store itself, not the proxy)
    worker = Conveyor(store_url)

    async def claim() -> Job:
        (claimed,) = await (await worker.backend()).claim(["default"], "worker-1", 1, 120.0)
        return claimed

    # (on the API's loop, as every call to the worker's store here: one loop for its
    # connections)
    claimed = api.call(claim())
    # and deleted: the API answers 202 and waits for the worker to stop it
    deleted = acme.delete(f"/v1/jobs/{job_id}")
    assert (deleted.status_code, deleted.json()["state"]) == (202, "cancelling")

    # When the store goes away meanwhile, until the API's wait has run into it
    caplog.set_level(logging.WARNING, logger="conveyor.api")
    proxy.cut()
    deadline = time.monotonic() + 30
    while not any(job_id in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline, "the API's wait did not meet the outage"
        time.sleep(0.1)
    proxy.restore()
    # and once it is back, the worker stops the job

    async def stop() -> None:
        error = {"attempt": 1, "step": "one", "at": time.time(), "type": "Cancelled"}
        await (await worker.backend()).finish([(claimed, Outcome.cancelled(error))])
        await worker.aclose()

    api.call(stop())

    # Then the API removes the job, as its 202 promised (it gave up at the outage: the
    # job stayed cancelled, and its Idempotency-Key held, until a second DELETE)
    deadline = time.monotonic() + 30
    while (answer := acme.get(f"/v1/jobs/{job_id}")).status_code != 404:
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.2)


def test_a_store_file_replaced_by_a_damaged_one_is_503_saying_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given an API on a SQLite file, holding a job
    path = tmp_path / "api.db"
    with running_api(f"sqlite:///{path}") as api:
        acme = api.client("acme")
        first = acme.post("/v1/jobs", json=JOB)
        assert first.status_code == 202
        caplog.set_level(logging.WARNING, logger="conveyor.api")

        # When the file at its path is replaced by one that is not a database
        restored = tmp_path / "restored.db"
        random_bytes(restored)
        os.replace(restored, path)

        # Then requests are refused as the store's trouble (503, not a 500), and the log
        # says why, naming the file
        deadline = time.monotonic() + 30
        while (answer := acme.get(f"/v1/jobs/{first.json()['id']}")).status_code == 200:
            assert time.monotonic() < deadline, "the replaced file was never looked at"
            time.sleep(0.2)
        assert answer.status_code == 503, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        # without a Retry-After: no retry mends it
        assert "retry-after" not in answer.headers
        assert "cannot be read" in answer.json()["detail"]
        assert acme.post("/v1/jobs", json=JOB).status_code == 503
        said = [r.getMessage() for r in caplog.records if "store unavailable" in r.getMessage()]
        assert said and "file is not a database" in said[0] and str(path) in said[0], said
