"""HTTP jobs end to end: submitted to the real API, run by a real worker (in the API's
loop, as `conveyor serve` runs them) against a real target server."""

from __future__ import annotations

import base64
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conveyor.secrets import SecretBox
from conveyor.worker.config import WorkerConfig
from tests.api.server import RunningApi, api_process, running_api, settings
from tests.http.target import Seen, Target


@pytest.fixture
def target() -> Iterator[Target]:
    server = Target()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: Target) -> Iterator[RunningApi]:
    """API + worker on a SQLite file; steps may reach the target on loopback."""
    monkeypatch.setenv("CONVEYOR_HTTP_ALLOW", "127.0.0.0/8")
    worker = WorkerConfig(queues=["default"], concurrency=4, interval=0.2, lease=30)
    with running_api(f"sqlite:///{tmp_path / 'api.db'}", worker=worker) as running:
        yield running


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def served_on_each_store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: Target
) -> Iterator[RunningApi]:
    """As ``served``, on each store in turn."""
    monkeypatch.setenv("CONVEYOR_HTTP_ALLOW", "127.0.0.0/8")
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'api.db'}"
    else:
        url = str(request.getfixturevalue("pg_url" if request.param == "postgres" else "redis_url"))
    worker = WorkerConfig(queues=["default"], concurrency=4, interval=0.2, lease=30)
    with running_api(url, worker=worker) as running:
        yield running


def wait_for(what: str, check: Callable[[], Any], timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def poll_until_final(client: httpx.Client, location: str) -> dict[str, Any]:
    final = ("succeeded", "poisoned", "cancelled")

    def done() -> dict[str, Any] | None:
        job: dict[str, Any] = client.get(location).json()
        return job if job["state"] in final else None

    result: dict[str, Any] = wait_for("a final state", done)
    return result


def test_a_three_step_job_runs_in_order_with_placeholders_and_calls_back(
    served: RunningApi, target: Target
) -> None:
    body = {
        "steps": [
            {"name": "item", "url": target.url("/item")},
            {
                "name": "update",
                "method": "PUT",
                "url": target.url("/ok/items/{{ steps.item.response.json.id }}"),
                "headers": {"X-Token": "{{ steps.item.response.headers.x-token }}"},
                "body": {"id": "{{ steps.item.response.json.id }}", "name": "new"},
            },
            {"name": "tidy", "method": "DELETE", "url": target.url("/ok/tmp")},
        ],
        "token": "bearer-for-steps",
        "callback": target.url("/ok/callback"),
    }
    created = served.client("acme").post("/v1/jobs", json=body)
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]

    job = poll_until_final(served.client(None), created.headers["location"])

    assert job["state"] == "succeeded", job
    assert [s["state"] for s in job["steps"]] == ["succeeded"] * 3
    assert job["progress"]["completed"] == job["progress"]["total"] == 3
    assert job["progress"]["percent"] == 100.0
    assert job["response"]["status"] == 200
    assert job["steps"][0]["response"]["json"] == {"id": 4711, "name": "widget"}
    update = target.requests_to("/ok/items/4711")[0]
    assert update.method == "PUT"
    assert update.headers["x-token"] == "t-1"
    assert json.loads(update.body) == {"id": 4711, "name": "new"}
    assert update.headers["authorization"] == "Bearer bearer-for-steps"
    assert update.headers["idempotency-key"] == f"{job_id}:update"
    # the callback receives the final document, without the secrets
    callback = wait_for("the callback", lambda: target.requests_to("/ok/callback"))[0]
    sent = json.loads(callback.body)
    assert (sent["id"], sent["state"], sent["version"]) == (job_id, "succeeded", job["version"])
    assert "conveyor.http" not in callback.body  # the job's own secrets stay home
    assert callback.headers["idempotency-key"] == f"{job_id}:callback:{job['version']}"


def test_a_post_sent_again_after_its_job_has_run_gets_that_job_and_runs_nothing(
    served_on_each_store: RunningApi, target: Target
) -> None:
    # Given a job posted with an Idempotency-Key, which has run and succeeded
    served = served_on_each_store
    client = served.client("acme")
    headers = {"Idempotency-Key": "booking-7781"}
    body = {"steps": [{"name": "book", "method": "POST", "url": target.url("/ok/book")}]}
    created = client.post("/v1/jobs", json=body, headers=headers)
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]
    job = poll_until_final(served.client(None), created.headers["location"])
    assert job["state"] == "succeeded"

    # When the client sends the same POST again (its first answer was lost, say)
    again = client.post("/v1/jobs", json=body, headers=headers)

    # Then it gets the same job, finished, and the target was booked once
    assert again.status_code == 202, again.text
    assert again.json()["id"] == job_id
    assert again.json()["state"] == "succeeded"
    assert again.json()["version"] == job["version"]
    assert again.headers["location"] == created.headers["location"]
    time.sleep(0.5)  # a second job, had one been made, would run meanwhile
    assert len(target.requests_to("/ok/book")) == 1
    assert [j["id"] for j in client.get("/v1/jobs").json()["jobs"]] == [job_id]

    # And another body under that key is refused
    other = {"steps": [{"name": "book", "method": "POST", "url": target.url("/ok/other")}]}
    refused = client.post("/v1/jobs", json=other, headers=headers)
    assert refused.status_code == 422
    assert refused.json()["errors"] == [
        {"header": "Idempotency-Key", "detail": "used for another request body"}
    ]

    # And once the job is deleted, the key makes a new job, which runs
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 204
    new = client.post("/v1/jobs", json=body, headers=headers)
    assert new.status_code == 202, new.text
    assert new.json()["id"] != job_id
    assert poll_until_final(served.client(None), new.headers["location"])["state"] == "succeeded"
    assert len(target.requests_to("/ok/book")) == 2


def _all_at_once(clients: list[httpx.Client], body: Any, key: str) -> list[httpx.Response]:
    """Each client POSTs ``body`` under ``key``, all released at one instant."""
    barrier = threading.Barrier(len(clients))
    answers: list[httpx.Response] = []

    def send(client: httpx.Client) -> None:
        barrier.wait()
        answers.append(client.post("/v1/jobs", json=body, headers={"Idempotency-Key": key}))

    threads = [threading.Thread(target=send, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def test_clients_racing_with_one_idempotency_key_get_one_job(
    served_on_each_store: RunningApi, target: Target
) -> None:
    # Given a job that runs in a few milliseconds (a worker waits for work), two API
    # processes on its store, and clients that send it to either at the same instant
    # under one Idempotency-Key, round after round
    api = served_on_each_store
    body = {"steps": [{"name": "one", "url": target.url("/ok/race")}]}
    with api_process(api.app.url) as other, api_process(api.app.url) as third:
        clients = [(api, other, third)[n % 3].client("acme") for n in range(18)]
        for round_ in range(20):
            # When they all POST it
            answers = _all_at_once(clients, body, f"race-{round_}")

            # Then every one of them gets the same job, even when it has run meanwhile
            assert [answer.status_code for answer in answers] == [202] * len(clients)
            assert len({answer.json()["id"] for answer in answers}) == 1, f"round {round_}"


def test_a_poll_shows_each_finished_step_while_the_job_runs(
    served: RunningApi, target: Target
) -> None:
    # Given a job whose second and third steps are slow
    body = {
        "steps": [
            {"name": "book", "url": target.url("/ok/book"), "method": "POST", "body": {}},
            {"name": "pay", "url": target.url("/slow?seconds=2")},
            {"name": "mail", "url": target.url("/slow?seconds=2")},
        ]
    }
    created = served.client("acme").post("/v1/jobs", json=body)
    poller = served.client(None)

    def at(step: str) -> dict[str, Any] | None:
        job: dict[str, Any] = poller.get(created.headers["location"]).json()
        return job if job["progress"]["current_step"] == step else None

    # When it is polled while the steps run
    # Then each poll shows the steps done so far, and the kept responses
    paying = wait_for("the second step", lambda: at("pay"), timeout=10)
    assert paying["state"] == "running"
    assert paying["progress"]["completed"] == 1
    assert paying["progress"]["percent"] == pytest.approx(33.33)
    assert [s["state"] for s in paying["steps"]] == ["succeeded", "running", "pending"]
    assert paying["steps"][0]["response"]["status"] == 200
    mailing = wait_for("the third step", lambda: at("mail"), timeout=10)
    assert mailing["progress"]["completed"] == 2
    assert mailing["version"] > paying["version"]
    assert poll_until_final(poller, created.headers["location"])["state"] == "succeeded"


def test_the_worker_purges_the_cache_on_each_change_it_makes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: Target
) -> None:
    # Given a worker told of a cache in front of the API (here: the target, which records
    # the purges it gets), and a job whose second step is slow
    monkeypatch.setenv("CONVEYOR_HTTP_ALLOW", "127.0.0.0/8")
    monkeypatch.setenv("CONVEYOR_CACHE_PURGE_URL", target.url("/cache"))
    worker = WorkerConfig(queues=["default"], concurrency=4, interval=0.2, lease=30)
    purged = settings(purge_url=target.url("/cache"))
    with running_api(f"sqlite:///{tmp_path / 'api.db'}", purged, worker) as served:
        body = {
            "steps": [
                {"name": "one", "url": target.url("/ok/one")},
                {"name": "two", "url": target.url("/slow?seconds=1.5")},
            ]
        }
        created = served.client("acme").post("/v1/jobs", json=body)
        job_id = created.json()["id"]
        # (and since every change purges it, a shared cache may keep an active job longer)
        active = served.client(None).get(created.headers["location"])
        assert active.json()["state"] in ("queued", "running")
        assert active.headers["cache-control"] == (
            "public, max-age=1, s-maxage=30, stale-while-revalidate=2"
        )
        # When it runs to the end
        job = poll_until_final(served.client(None), created.headers["location"])

        def purges() -> list[Seen]:
            return target.requests_to(f"/cache/v1/jobs/{job_id}")

        wait_for("three purges", lambda: len(purges()) >= 3, timeout=5)
    # Then the cache was told when the job started, when its first step was done (saved
    # while the slow one ran), and once its outcome was stored
    assert job["state"] == "succeeded"
    slow = target.requests_to("/slow")[0]
    assert all(p.method == "PURGE" and p.headers["x-conveyor-job"] == job_id for p in purges())
    assert [p for p in purges() if p.at < slow.at]  # started
    assert [p for p in purges() if slow.at < p.at < slow.at + 1.4]  # step one saved
    assert purges()[-1].at > slow.at + 1.4  # the outcome


def test_delete_of_a_running_job_aborts_its_request_and_removes_it(
    served: RunningApi, target: Target
) -> None:
    body = {
        "steps": [
            {"name": "slow", "url": target.url("/slow?seconds=30")},
            {"name": "after", "url": target.url("/ok/after")},
        ]
    }
    created = served.client("acme").post("/v1/jobs", json=body)
    location = created.headers["location"]
    anonymous = served.client(None)
    wait_for("the slow request", lambda: target.requests_to("/slow"))

    deleted = served.client("acme").delete(f"/v1/jobs/{created.json()['id']}")
    assert deleted.status_code == 202
    assert deleted.json()["state"] == "cancelling"
    asked = time.monotonic()

    wait_for("the aborted request", lambda: target.aborted == ["/slow"], timeout=5)
    aborted_after = time.monotonic() - asked
    wait_for("the job removed", lambda: anonymous.get(location).status_code == 404, timeout=10)
    assert target.requests_to("/ok/after") == []
    # generous: the worker checks for cancels every half second
    assert aborted_after < 3
    assert served.client("acme").delete(f"/v1/jobs/{created.json()['id']}").status_code == 404


def test_a_deleted_running_job_calls_back_cancelled_before_it_is_removed(
    served: RunningApi, target: Target
) -> None:
    # Given running jobs with a callback, their steps held by the target
    acme = served.client("acme")
    body = {
        "steps": [{"name": "slow", "url": target.url("/slow?seconds=30")}],
        "callback": target.url("/ok/callback"),
    }
    created = [acme.post("/v1/jobs", json=body) for _ in range(4)]
    wait_for("the slow requests", lambda: len(target.requests_to("/slow")) == 4)

    # When each is deleted
    for answer in created:
        assert acme.delete(f"/v1/jobs/{answer.json()['id']}").status_code == 202

    # Then each calls back, cancelled (the API removed some before their worker had
    # read them for the callback: "not found", no callback), and each is then removed
    wait_for("4 callbacks", lambda: len(target.requests_to("/ok/callback")) == 4)
    sent = [json.loads(call.body) for call in target.requests_to("/ok/callback")]
    assert sorted(d["id"] for d in sent) == sorted(a.json()["id"] for a in created)
    assert {d["state"] for d in sent} == {"cancelled"}
    locations = [answer.headers["location"] for answer in created]
    wait_for("the jobs removed", lambda: all(acme.get(u).status_code == 404 for u in locations))


def test_a_poisoned_job_is_retried_from_the_failed_step(served: RunningApi, target: Target) -> None:
    body = {
        "steps": [
            {"name": "first", "url": target.url("/ok/first")},
            {"name": "flaky", "url": target.url("/flaky?key=k1&fails=1"), "max_attempts": 1},
        ]
    }
    acme = served.client("acme")
    created = acme.post("/v1/jobs", json=body)
    job = poll_until_final(acme, created.headers["location"])
    assert job["state"] == "poisoned"
    assert job["steps"][1]["state"] == "failed"
    assert "status 503" in job["last_error"]
    assert job["steps"][1]["response"]["status"] == 503

    retried = acme.post(f"/v1/jobs/{job['id']}/retry")
    assert retried.status_code == 200
    assert retried.json()["state"] == "queued"
    job = poll_until_final(acme, created.headers["location"])

    assert job["state"] == "succeeded"
    assert len(target.requests_to("/ok/first")) == 1  # the first step did not run again
    assert len(target.requests_to("/flaky")) == 2
    assert acme.post(f"/v1/jobs/{job['id']}/retry").status_code == 409


def test_each_finish_of_a_retried_job_calls_back_under_its_own_idempotency_key(
    served: RunningApi, target: Target
) -> None:
    # Given a job with a callback whose only step fails once (503, one attempt)
    body = {
        "steps": [{"name": "flaky", "url": target.url("/flaky?key=cb&fails=1"), "max_attempts": 1}],
        "callback": target.url("/ok/callback"),
    }
    acme = served.client("acme")
    created = acme.post("/v1/jobs", json=body)
    poisoned = poll_until_final(acme, created.headers["location"])
    assert poisoned["state"] == "poisoned"
    wait_for("the first callback", lambda: target.requests_to("/ok/callback"))

    # When it is retried by hand, and succeeds
    assert acme.post(f"/v1/jobs/{poisoned['id']}/retry").status_code == 200
    succeeded = poll_until_final(acme, created.headers["location"])
    assert succeeded["state"] == "succeeded"

    # Then each finish was called back, under keys that differ: a target that drops
    # duplicates by key still gets the outcome that counts
    wait_for("two callbacks", lambda: len(target.requests_to("/ok/callback")) >= 2)
    calls = target.requests_to("/ok/callback")
    assert [json.loads(call.body)["state"] for call in calls] == ["poisoned", "succeeded"]
    keys = [call.headers["idempotency-key"] for call in calls]
    assert keys[0] != keys[1]
    assert keys[1] == f"{succeeded['id']}:callback:{succeeded['version']}"


def test_events_stream_every_change_until_the_job_finishes(
    served: RunningApi, target: Target
) -> None:
    body = {
        "steps": [
            {"name": "one", "url": target.url("/slow?seconds=0.3")},
            {"name": "two", "url": target.url("/ok/two")},
        ]
    }
    created = served.client("acme").post("/v1/jobs", json=body)
    events: list[dict[str, Any]] = []
    url = created.headers["location"].replace("?", "/events?")
    with served.client(None).stream("GET", url) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        event, data, ident = None, None, None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
            elif line.startswith("id: "):
                ident = line[4:]
            elif line == "" and event == "job" and data is not None:
                document = json.loads(data)
                assert str(document["version"]) == ident
                events.append(document)
                event = data = None
    versions = [e["version"] for e in events]
    assert versions == sorted(set(versions))
    assert events[0]["state"] in ("queued", "running")
    assert events[-1]["state"] == "succeeded"
    assert "running" in [e["state"] for e in events]


def test_the_events_of_a_finished_job_seen_to_its_end_answer_204(
    served: RunningApi, target: Target
) -> None:
    # Given a job that has finished, and its event stream read to its end
    created = served.client("acme").post(
        "/v1/jobs", json={"steps": [{"name": "one", "url": target.url("/ok/one")}]}
    )
    final = poll_until_final(served.client(None), created.headers["location"])
    url = created.headers["location"].replace("?", "/events?")
    reader = served.client(None)
    assert f"id: {final['version']}" in reader.get(url).text

    # When the client comes back with the last event's id, as an EventSource does by
    # itself once a stream ends (a second after, with retry: 1000)
    again = reader.get(url, headers={"Last-Event-ID": str(final["version"])})

    # Then the answer is a 204, which tells an EventSource to stop (an empty stream,
    # which made it come back every second for as long as the page stayed open)
    assert again.status_code == 204, again.text
    assert again.content == b""
    # while a client that has not seen the end gets it
    assert (
        f"id: {final['version']}"
        in reader.get(url, headers={"Last-Event-ID": str(final["version"] - 1)}).text
    )


def test_credentials_are_stored_sealed_and_sent_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: Target
) -> None:
    # Given the API and its worker sharing one CONVEYOR_SECRET_KEY
    monkeypatch.setenv("CONVEYOR_HTTP_ALLOW", "127.0.0.0/8")
    monkeypatch.setenv("CONVEYOR_SECRET_KEY", "a shared secret of this deployment")
    worker = WorkerConfig(queues=["default"], concurrency=2, interval=0.2)
    api_settings = settings(secrets=SecretBox.from_env())
    with running_api(f"sqlite:///{tmp_path / 'api.db'}", api_settings, worker) as served:
        credentials = base64.b64encode(b"shop:pa55word").decode()
        created = served.client("acme").post(
            "/v1/jobs",
            json={
                "steps": [{"name": "one", "url": target.url("/ok/one")}],
                "credentials": credentials,
            },
        )
        job = poll_until_final(served.client(None), created.headers["location"])
        assert job["state"] == "succeeded"

        # Then the target got the credentials, and the store holds them only sealed
        assert target.requests_to("/ok/one")[0].headers["authorization"] == f"Basic {credentials}"
        with sqlite3.connect(tmp_path / "api.db") as db:
            (metadata,) = db.execute("SELECT metadata FROM jobs").fetchone()
        assert credentials not in metadata
        assert "pa55word" not in metadata
        assert json.loads(metadata)["conveyor.http"]["auth"].startswith("enc:v1:")
