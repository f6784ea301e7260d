"""GET /v1/jobs/{id}, the poll, is answered before FastAPI's middleware
(:mod:`conveyor.web.poll`): the same answers whichever way a request comes in."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from starlette.applications import Starlette
from starlette.datastructures import QueryParams
from starlette.routing import Mount

from conveyor import Conveyor
from conveyor.web.api import create_api
from conveyor.web.poll import query_params
from tests.api.server import KEYS, RunningApi, settings

JOB = {"steps": [{"name": "one", "url": "http://127.0.0.1:9/never-called"}]}


def test_head_answers_a_polls_headers_without_its_body(api: RunningApi) -> None:
    # Given a job's capability URL
    location = api.client("acme").post("/v1/jobs", json=JOB).headers["location"]
    anonymous = api.client(None)

    # When it is asked with HEAD (which the router answers, not the fast path)
    answer = anonymous.head(location)

    # Then it answers what GET answers, without the body
    got = anonymous.get(location)
    assert (answer.status_code, answer.content) == (200, b"")
    for name in ("etag", "cache-control", "content-type", "content-length"):
        assert answer.headers[name] == got.headers[name]


def test_a_percent_encoded_token_opens_the_job(api: RunningApi) -> None:
    # Given a job's read token, every character of it percent-encoded
    created = api.client("acme").post("/v1/jobs", json=JOB)
    token = created.headers["location"].split("token=")[1]
    encoded = "".join(f"%{ord(c):02X}" for c in token)

    # When the job is polled with it
    answer = api.client(None).get(f"/v1/jobs/{created.json()['id']}?token={encoded}")

    # Then it opens the job as the plain token does
    assert answer.status_code == 200
    assert answer.json()["id"] == created.json()["id"]


def test_a_long_poll_that_runs_out_answers_304_to_a_current_etag(api: RunningApi) -> None:
    # Given a job nobody changes, and its ETag
    location = api.client("acme").post("/v1/jobs", json=JOB).headers["location"]

    # When a client waits for a change with that ETag
    answer = api.client(None).get(location + "&wait=0.2", headers={"If-None-Match": '"1"'})

    # Then the wait runs out on a 304, which no cache keeps
    assert answer.status_code == 304
    assert answer.headers["cache-control"] == "no-store"


def test_polls_of_an_app_mounted_under_a_prefix_answer_alike(tmp_path: Path) -> None:
    # Given the API mounted under /api in another application
    app = Conveyor(f"sqlite:///{tmp_path / 'api.db'}")
    outer = Starlette(routes=[Mount("/api", app=create_api(app, settings()))])

    async def polls() -> tuple[httpx.Response, ...]:
        transport = httpx.ASGITransport(app=outer)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            created = await client.post(
                "/api/v1/jobs", json=JOB, headers={"Authorization": f"Bearer {KEYS['acme']}"}
            )
            location = "/api" + created.headers["location"]
            # When its job is polled there
            first = await client.get(location)
            again = await client.get(location, headers={"If-None-Match": first.headers["etag"]})
            wrong = await client.get(location.split("?")[0] + "?token=wrong")
        await app.aclose()
        return created, first, again, wrong

    created, first, again, wrong = asyncio.run(polls())

    # Then the answers are those of the API served alone
    assert (first.status_code, first.json()["id"]) == (200, created.json()["id"])
    assert (again.status_code, again.content) == (304, b"")
    assert wrong.status_code == 404
    assert wrong.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    "query",
    [
        "",
        "token=abc-DEF_123",
        "token=a&wait=1.5&version=3",
        "token=first&token=second",
        "wait=&token",
        "&&token=x&",
        "token=" + quote("a b+c/é", safe=""),
        "token=a+b",
        "msg=caf%C3%A9&token=%",
    ],
)
def test_query_params_reads_a_query_string_as_starlette_does(query: str) -> None:
    assert query_params(query.encode("latin-1")) == dict(QueryParams(query))
