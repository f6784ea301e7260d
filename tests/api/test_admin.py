"""Queues, stats, health, metrics and the OpenAPI document of the API."""

from __future__ import annotations

from tests.api.server import RunningApi

JOB = {"steps": [{"name": "one", "url": "http://127.0.0.1:9/x"}]}


def test_queues_are_listed_paused_resumed_and_emptied_by_admins_only(api: RunningApi) -> None:
    acme = api.client("acme")
    for _ in range(3):
        acme.post("/v1/jobs", json={**JOB, "queue": "mail"})
    admin = api.client("admin")

    queues = {q["name"]: q for q in admin.get("/v1/queues").json()["queues"]}
    assert queues["mail"]["counts"]["queued"] == 3
    assert queues["mail"]["paused"] is False
    paused = admin.post("/v1/queues/mail/pause")
    assert paused.json() == {"queue": "mail", "paused": True}
    assert {q["name"]: q for q in admin.get("/v1/queues").json()["queues"]}["mail"]["paused"]
    resumed = admin.post("/v1/queues/mail/resume")
    assert resumed.json() == {"queue": "mail", "paused": False}
    emptied = admin.post("/v1/queues/mail/empty")
    assert emptied.json() == {"queue": "mail", "deleted": 3}
    # (answers a cache in front of the API must not keep: docs/caching.md)
    assert {a.headers.get("cache-control") for a in (paused, resumed, emptied)} == {"no-store"}
    assert acme.get("/v1/jobs").json()["jobs"] == []

    assert acme.get("/v1/queues").status_code == 403
    assert acme.post("/v1/queues/mail/pause").status_code == 403
    assert api.client(None).get("/v1/queues").status_code == 401
    missing = admin.post("/v1/queues/nothing/pause")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"


def test_a_queue_whose_name_holds_a_slash_is_steered_too(api: RunningApi) -> None:
    # Given a queue named team/mail with a job (names may hold anything but spaces and commas)
    api.client("acme").post("/v1/jobs", json={**JOB, "queue": "team/mail"})
    admin = api.client("admin")

    # When it is paused, resumed and emptied, its name in the path as is or escaped
    paused = admin.post("/v1/queues/team/mail/pause")
    resumed = admin.post("/v1/queues/team%2Fmail/resume")
    emptied = admin.post("/v1/queues/team/mail/empty")

    # Then each reached that queue
    assert paused.json() == {"queue": "team/mail", "paused": True}
    assert resumed.json() == {"queue": "team/mail", "paused": False}
    assert emptied.json() == {"queue": "team/mail", "deleted": 1}
    # and a queue named like an action's path is still told apart from it
    assert admin.post("/v1/queues/team/pause").status_code == 404


def test_stats_count_jobs_by_state(api: RunningApi) -> None:
    api.client("acme").post("/v1/jobs", json=JOB)
    stats = api.client("admin").get("/v1/stats").json()
    assert stats["counts"]["queued"] == 1
    assert {"processed", "failed", "store"} <= set(stats)
    assert api.client("acme").get("/v1/stats").status_code == 403


def test_healthz_answers_without_a_key(api: RunningApi) -> None:
    answer = api.client(None).get("/healthz")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok"}


def test_metrics_show_the_stores_figures_and_the_apis_counters(api: RunningApi) -> None:
    acme = api.client("acme")
    created = acme.post("/v1/jobs", json={**JOB, "queue": "mail"})
    api.client(None).get(created.headers["location"])
    api.client(None).get(created.headers["location"], headers={"If-None-Match": '"1"'})

    answer = api.client(None).get("/metrics")
    assert answer.headers["cache-control"] == "no-store"
    text = answer.text
    assert 'conveyor_jobs{queue="mail",state="queued"} 1.0' in text
    assert "conveyor_api_jobs_submitted_total 1.0" in text
    assert 'conveyor_api_polls_total{status="200"} 1.0' in text
    assert 'conveyor_api_polls_total{status="304"} 1.0' in text


def test_the_openapi_document_describes_every_route(api: RunningApi) -> None:
    spec = api.client(None).get("/openapi.json").json()
    paths = spec["paths"]
    assert {"post", "get"} <= set(paths["/v1/jobs"])
    assert {"get", "delete"} <= set(paths["/v1/jobs/{job_id}"])
    assert "/v1/jobs/{job_id}/events" in paths
    assert "/v1/queues/{name}/pause" in paths
    schemas = spec["components"]["schemas"]
    assert {"JobIn", "StepIn", "JobOut", "Problem"} <= set(schemas)
    body = paths["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/JobIn"}
    assert api.client(None).get("/docs").status_code == 200
