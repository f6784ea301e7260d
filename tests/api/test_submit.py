"""POST /v1/jobs and GET /v1/jobs/{id} on a real server: what is stored, who may read it,
and how the answers are cached."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from conveyor.backends.base import Backend
from tests.api.server import RunningApi

TARGET = "http://127.0.0.1:9/never-called"


def job_body(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "steps": [
            {"name": "create", "method": "post", "url": TARGET, "body": {"a": 1}},
            {
                "name": "fetch",
                "url": TARGET + "/{{ steps.create.response.json.id }}",
                "headers": {"X-From": "{{ steps.create.response.headers.x-request-id }}"},
            },
        ]
    }
    body.update(extra)
    return body


def test_a_posted_job_is_stored_and_answered_202_with_a_capability_location(
    api: RunningApi,
) -> None:
    client = api.client("acme")
    answer = client.post("/v1/jobs", json=job_body(metadata={"order": 7}, priority="high"))

    assert answer.status_code == 202, answer.text
    job = answer.json()
    location = answer.headers["location"]
    assert location == job["links"]["self"]
    assert location.startswith(f"/v1/jobs/{job['id']}?token=")
    assert job["state"] == "queued"
    assert job["priority"] == -10
    assert job["version"] == 1
    assert job["metadata"] == {"order": 7}
    assert [s["name"] for s in job["steps"]] == ["create", "fetch"]
    assert [s["method"] for s in job["steps"]] == ["POST", "GET"]
    assert job["progress"] == {
        "completed": 0,
        "total": 2,
        "percent": 0.0,
        "current_step": "create",
        "message": None,
    }
    # stored before it was acknowledged: the store has it
    stored = api.call(api.app.job_async(job["id"]))
    assert stored.job.tenant == "acme"  # type: ignore[attr-defined]
    assert stored.job.max_attempts == 10  # type: ignore[attr-defined]


def test_the_capability_url_reads_the_job_without_a_key_and_is_publicly_cacheable(
    api: RunningApi,
) -> None:
    created = api.client("acme").post("/v1/jobs", json=job_body())
    anonymous = api.client(None)

    answer = anonymous.get(created.headers["location"])

    assert answer.status_code == 200
    assert answer.headers["etag"] == '"1"'
    assert (
        answer.headers["cache-control"] == "public, max-age=1, s-maxage=1, stale-while-revalidate=2"
    )
    assert answer.json()["id"] == created.json()["id"]


def test_if_none_match_answers_304_without_a_body(api: RunningApi) -> None:
    location = api.client("acme").post("/v1/jobs", json=job_body()).headers["location"]
    anonymous = api.client(None)

    answer = anonymous.get(location, headers={"If-None-Match": '"1"'})
    assert answer.status_code == 304
    assert answer.content == b""
    assert answer.headers["etag"] == '"1"'
    assert "max-age=1" in answer.headers["cache-control"]
    # a list of tags, a weak tag and * match too; another version does not
    for header in ('"7", "1"', 'W/"1"', "*"):
        assert anonymous.get(location, headers={"If-None-Match": header}).status_code == 304
    assert anonymous.get(location, headers={"If-None-Match": '"2"'}).status_code == 200


def test_secrets_and_the_read_token_never_appear_in_the_document(api: RunningApi) -> None:
    answer = api.client("acme").post(
        "/v1/jobs", json=job_body(token="s3cret-token", callback="http://127.0.0.1:9/cb")
    )
    token = answer.headers["location"].split("token=")[1]

    for document in (
        answer.json(),
        api.client("acme").get(f"/v1/jobs/{answer.json()['id']}").json(),
    ):
        text = json.dumps(document)
        assert "s3cret-token" not in text
        assert token not in json.dumps({k: v for k, v in document.items() if k != "links"})
        assert "conveyor.http" not in text
        assert "callback" not in text


def test_reading_by_key_is_private_and_tenants_see_only_their_own_jobs(api: RunningApi) -> None:
    job_id = api.client("acme").post("/v1/jobs", json=job_body()).json()["id"]

    own = api.client("acme").get(f"/v1/jobs/{job_id}")
    assert own.status_code == 200
    assert own.headers["cache-control"] == "private, max-age=1"
    other = api.client("globex").get(f"/v1/jobs/{job_id}")
    assert other.status_code == 404
    assert other.headers["content-type"] == "application/problem+json"
    assert api.client("admin").get(f"/v1/jobs/{job_id}").status_code == 200
    assert api.client("globex").delete(f"/v1/jobs/{job_id}").status_code == 404
    assert api.client("acme").get(f"/v1/jobs/{job_id}").status_code == 200


def test_without_a_key_or_with_a_bad_one_401_with_a_wrong_token_404(api: RunningApi) -> None:
    created = api.client("acme").post("/v1/jobs", json=job_body())
    job_id = created.json()["id"]
    anonymous = api.client(None)

    assert anonymous.post("/v1/jobs", json=job_body()).status_code == 401
    unknown = api.client("not-a-key-of-anyone-at-all")
    answer = unknown.post("/v1/jobs", json=job_body())
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert anonymous.get(f"/v1/jobs/{job_id}").status_code == 401
    assert anonymous.get(f"/v1/jobs/{job_id}?token=wrong").status_code == 404
    other = api.client("globex").post("/v1/jobs", json=job_body()).headers["location"]
    other_token = other.split("token=")[1]
    assert anonymous.get(f"/v1/jobs/{job_id}?token={other_token}").status_code == 404


def test_the_same_idempotency_key_and_body_return_the_same_job(api: RunningApi) -> None:
    client = api.client("acme")
    headers = {"Idempotency-Key": "order-42"}
    first = client.post("/v1/jobs", json=job_body(), headers=headers)
    # the same JSON, keys in another order and spaced otherwise
    same = json.dumps(dict(reversed(list(job_body().items()))), indent=2)
    second = client.post(
        "/v1/jobs", content=same, headers={**headers, "Content-Type": "application/json"}
    )
    assert first.status_code == second.status_code == 202
    assert second.json()["id"] == first.json()["id"]
    assert second.headers["location"] == first.headers["location"]

    changed = client.post("/v1/jobs", json=job_body(priority=5), headers=headers)
    assert changed.status_code == 422
    assert changed.json()["errors"] == [
        {"header": "Idempotency-Key", "detail": "used for another request body"}
    ]
    # another tenant's key of the same name is another job
    theirs = api.client("globex").post("/v1/jobs", json=job_body(), headers=headers)
    assert theirs.json()["id"] != first.json()["id"]
    assert len(api.client("admin").get("/v1/jobs").json()["jobs"]) == 2


def test_an_idempotency_key_holds_after_its_job_has_finished_until_the_job_is_deleted(
    api: RunningApi,
) -> None:
    # Given a job posted with a key, which has finished (cancelled) since
    client = api.client("acme")
    headers = {"Idempotency-Key": "order-43"}
    first = client.post("/v1/jobs", json=job_body(), headers=headers)
    job_id = first.json()["id"]
    backend = api.call(api.app.backend())
    assert isinstance(backend, Backend)
    api.call(backend.cancel(job_id))

    # When the same POST comes again
    again = client.post("/v1/jobs", json=job_body(), headers=headers)

    # Then it is answered with that job, as it is now, and its Location
    assert again.status_code == 202, again.text
    assert again.json()["id"] == job_id
    assert again.json()["state"] == "cancelled"
    assert again.headers["location"] == first.headers["location"]
    # another body under the key is still refused, another tenant's key is its own
    changed = client.post("/v1/jobs", json=job_body(priority=5), headers=headers)
    assert changed.status_code == 422
    assert changed.json()["errors"][0]["header"] == "Idempotency-Key"
    theirs = api.client("globex").post("/v1/jobs", json=job_body(), headers=headers)
    assert theirs.status_code == 202
    assert theirs.json()["id"] != job_id

    # And once the job is deleted, the key makes a new job
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 204
    new = client.post("/v1/jobs", json=job_body(priority=5), headers=headers)
    assert new.status_code == 202
    assert new.json()["id"] not in (job_id, theirs.json()["id"])
    assert new.json()["state"] == "queued"


def test_delete_of_a_waiting_job_removes_it_and_a_repeat_changes_nothing(api: RunningApi) -> None:
    client = api.client("acme")
    created = client.post("/v1/jobs", json=job_body(delay=60))
    assert created.json()["state"] == "scheduled"
    job_id = created.json()["id"]

    deleted = client.delete(f"/v1/jobs/{job_id}")
    assert deleted.status_code == 204
    assert deleted.headers["cache-control"] == "no-store"
    assert client.get(f"/v1/jobs/{job_id}").status_code == 404
    assert api.client(None).get(created.headers["location"]).status_code == 404
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 404


def test_of_two_deletes_of_a_waiting_job_at_once_one_removes_it_the_other_is_404(
    api: RunningApi,
) -> None:
    # Given waiting jobs
    client = api.client("acme")
    ids = [client.post("/v1/jobs", json=job_body(delay=60)).json()["id"] for _ in range(10)]

    # When each is deleted by two clients at once
    def delete(job_id: str) -> int:
        return api.client("acme").delete(f"/v1/jobs/{job_id}").status_code

    with ThreadPoolExecutor(4) as pool:
        answers = [sorted(pool.map(delete, [job_id, job_id])) for job_id in ids]

    # Then one of the two removed it (204) and the other found it gone (404: both
    # answered 204, the store's "nothing removed" unread)
    assert answers == [[204, 404]] * len(ids)
    assert all(client.get(f"/v1/jobs/{job_id}").status_code == 404 for job_id in ids)


def test_jobs_are_listed_newest_first_by_state_a_page_at_a_time(api: RunningApi) -> None:
    acme = api.client("acme")
    ids = [acme.post("/v1/jobs", json=job_body()).json()["id"] for _ in range(5)]
    later = acme.post("/v1/jobs", json=job_body(delay=60)).json()["id"]
    api.client("globex").post("/v1/jobs", json=job_body())

    first = acme.get("/v1/jobs", params={"state": "queued", "limit": 3}).json()
    assert [j["id"] for j in first["jobs"]] == ids[::-1][:3]
    rest = acme.get(
        "/v1/jobs", params={"state": "queued", "limit": 3, "cursor": first["next_cursor"]}
    ).json()
    assert [j["id"] for j in rest["jobs"]] == ids[::-1][3:]
    assert rest["next_cursor"] is None
    scheduled = acme.get("/v1/jobs", params={"state": "scheduled,running"}).json()["jobs"]
    assert [j["id"] for j in scheduled] == [later]
    assert len(api.client("admin").get("/v1/jobs").json()["jobs"]) == 7
    # a state list naming no state is no filter, as an empty one is
    for empty in ("", ","):
        assert len(acme.get("/v1/jobs", params={"state": empty}).json()["jobs"]) == 6
    bad = acme.get("/v1/jobs", params={"state": "done"})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["parameter"] == "state"


def test_a_long_poll_answers_as_soon_as_the_version_moves(api: RunningApi) -> None:
    created = api.client("acme").post("/v1/jobs", json=job_body())
    job_id = created.json()["id"]
    anonymous = api.client(None)
    location = created.headers["location"]

    # nothing changes: the wait runs out and answers the same version
    quiet = anonymous.get(location + "&wait=0.3&version=1")
    assert quiet.status_code == 200
    assert quiet.json()["version"] == 1
    assert quiet.headers["cache-control"] == "no-store"

    # a change during the wait (a cancel) answers at once with the new version
    async def cancel_soon() -> None:
        import asyncio

        await asyncio.sleep(0.3)
        await (await api.app.backend()).cancel(job_id)

    future = __import__("asyncio").run_coroutine_threadsafe(cancel_soon(), api.loop)
    moved = anonymous.get(location + "&wait=20&version=1")
    future.result(5)
    assert moved.json()["version"] == 2
    assert moved.json()["state"] == "cancelled"
    assert moved.elapsed.total_seconds() < 10
    too_long = anonymous.get(location + "&wait=31")
    assert too_long.status_code == 422
    assert too_long.json()["errors"][0]["parameter"] == "wait"
