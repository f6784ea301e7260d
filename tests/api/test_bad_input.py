"""Bad input to the API: a problem+json answer that names the field, and nothing stored."""

from __future__ import annotations

import contextlib
import json
import socket
from typing import Any

import pytest

from conveyor.testing.harness import make_job
from tests.api.server import KEYS, RunningApi, running_api, settings
from tests.pg import fresh_schema
from tests.rd import fresh_namespace

URL = "http://127.0.0.1:9/x"


def step(**fields: Any) -> dict[str, Any]:
    return {"name": "one", "url": URL, **fields}


def assert_nothing_stored(api: RunningApi) -> None:
    assert api.client("admin").get("/v1/jobs").json()["jobs"] == []


def problem(answer: Any, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = answer.json()
    assert body["status"] == status
    assert body["title"] and body["detail"]
    return body


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({}, "/steps"),
        ({"steps": []}, "/steps"),
        ({"steps": [{"url": URL}]}, "/steps/0/name"),
        ({"steps": [step(name="has space")]}, "/steps/0/name"),
        ({"steps": [step(), step()]}, "/steps/1/name"),
        ({"steps": [step(url="ftp://127.0.0.1/x")]}, "/steps/0/url"),
        ({"steps": [step(url="file:///etc/passwd")]}, "/steps/0/url"),
        ({"steps": [step(method="BREW")]}, "/steps/0/method"),
        ({"steps": [step(headers={"X-A": "1\r\nX-Injected: 2"})]}, "/steps/0/headers"),
        ({"steps": [step(headers={"Bad Name": "1"})]}, "/steps/0/headers"),
        ({"steps": [step(headers={"Host": "evil"})]}, "/steps/0/headers"),
        ({"steps": [step(timeout=0)]}, "/steps/0/timeout"),
        ({"steps": [step(expect=[700])]}, "/steps/0/expect/0"),
        ({"steps": [step(max_attempts=0)]}, "/steps/0/max_attempts"),
        ({"steps": [step(retry_exponent=-1)]}, "/steps/0/retry_exponent"),
        ({"steps": [step(surprise=1)]}, "/steps/0/surprise"),
        (
            {"steps": [step(url=URL + "/{{ steps.later.response.status }}"), step(name="later")]},
            "/steps/0/url",
        ),
        ({"steps": [step(body={"id": "{{ steps.nope.response.json.id }}"})]}, "/steps/0/body/id"),
        ({"steps": [step(url=URL + "/{{ eval('1') }}")]}, "/steps/0/url"),
        ({"steps": [step()], "priority": "urgent"}, "/priority"),
        ({"steps": [step()], "priority": True}, "/priority"),
        ({"steps": [step()], "delay": -1}, "/delay"),
        ({"steps": [step()], "delay": 1, "run_at": "2030-01-01T00:00:00Z"}, "/run_at"),
        ({"steps": [step()], "run_at": "2030-01-01T00:00:00"}, "/run_at"),
        ({"steps": [step()], "run_at": "9999-12-31T23:59:59-14:00"}, "/run_at"),
        ({"steps": [step()], "run_at": "0001-01-01T00:00:00+14:00"}, "/run_at"),
        ({"steps": [step()], "queue": "a b"}, "/queue"),
        ({"steps": [step()], "credentials": "not base64!"}, "/credentials"),
        ({"steps": [step()], "credentials": "dXNlcg=="}, "/credentials"),
        ({"steps": [step()], "credentials": "dTpw", "token": "t"}, "/token"),
        ({"steps": [step()], "token": "a\nb"}, "/token"),
        ({"steps": [step()], "metadata": {"conveyor.http": {}}}, "/metadata"),
        ({"steps": [step()], "callback": "gopher://x"}, "/callback"),
        ({"steps": [step()], "extra": 1}, "/extra"),
        # JSON types as the schema says them, not what lax parsing would make of them
        ({"steps": [step(max_attempts=True)]}, "/steps/0/max_attempts"),
        ({"steps": [step(max_attempts="3")]}, "/steps/0/max_attempts"),
        ({"steps": [step(timeout="30")]}, "/steps/0/timeout"),
        ({"steps": [step(retry_exponent="2")]}, "/steps/0/retry_exponent"),
        ({"steps": [step(expect=["200"])]}, "/steps/0/expect/0"),
        ({"steps": [step()], "delay": "5"}, "/delay"),
        ({"steps": [step()], "delay": True}, "/delay"),
        ({"steps": [step()], "run_at": 1700000000}, "/run_at"),
        ({"steps": [step()], "run_at": "1700000000"}, "/run_at"),
        ({"steps": [step(query={"a/b": None})]}, "/steps/0/query/a~1b"),
        # Text some store cannot keep (a NUL: PostgreSQL; a lone surrogate: UTF-8)
        ({"steps": [step(body={"a": "x\u0000"})]}, "/steps/0/body/a"),
        ({"steps": [step()], "metadata": {"k": "\u0000"}}, "/metadata/k"),
        ({"steps": [step()], "queue": "q\u0000"}, "/queue"),
    ],
)
def test_a_job_with_a_bad_field_is_422_with_a_pointer_to_it(
    api: RunningApi, body: dict[str, Any], pointer: str
) -> None:
    answer = api.client("acme").post("/v1/jobs", json=body)
    errors = problem(answer, 422)["errors"]
    assert pointer in [e.get("pointer") for e in errors], errors
    # (one problem per field: not one per member of a union of types)
    assert len([e for e in errors if e.get("pointer") == pointer]) == 1, errors
    assert_nothing_stored(api)


def test_a_lone_surrogate_anywhere_in_the_body_is_422_with_a_pointer_to_it(
    api: RunningApi,
) -> None:
    # Given JSON text with an escaped lone surrogate (valid JSON; not storable as UTF-8)
    body = '{"steps": [{"name": "one", "url": "%s", "body": {"k\\udfff": ["\\ud800"]}}]}'
    answer = api.client("acme").post(
        "/v1/jobs", content=(body % URL).encode(), headers={"Content-Type": "application/json"}
    )

    # Then 422 points at the key and at the value (the surrogate shown as U+FFFD: the
    # answer is UTF-8 too), and nothing is stored
    errors = problem(answer, 422)["errors"]
    pointers = {e["pointer"] for e in errors}
    assert {"/steps/0/body/k\ufffd", "/steps/0/body/k\ufffd/0"} <= pointers, errors
    assert_nothing_stored(api)


def test_malformed_json_400_not_json_415_too_large_413(api: RunningApi) -> None:
    client = api.client("acme")
    malformed = problem(
        client.post(
            "/v1/jobs", content=b'{"steps": [', headers={"Content-Type": "application/json"}
        ),
        400,
    )
    assert malformed["errors"][0]["pointer"] == ""  # the body as a whole
    problem(
        client.post("/v1/jobs", content=b"steps=1", headers={"Content-Type": "text/plain"}), 415
    )
    problem(client.post("/v1/jobs", content=b'{"steps": []}'), 415)
    # Python reads these; JSON has none of them, and no store keeps them (they were 500s)
    for number in (b"NaN", b"Infinity", b"-Infinity", b"1e999"):
        body = b'{"steps": [{"name": "a", "url": "%s", "body": {"x": %s}}]}' % (
            URL.encode(),
            number,
        )
        answer = client.post("/v1/jobs", content=body, headers={"Content-Type": "application/json"})
        assert number.decode().lstrip("-") in problem(answer, 400)["detail"]
    huge = {"steps": [step(body="x" * (1 << 20))]}
    assert problem(client.post("/v1/jobs", json=huge), 413)["errors"][0]["pointer"] == ""
    problem(client.post("/v1/jobs", json=[step()]), 422)
    assert_nothing_stored(api)


@pytest.mark.parametrize(
    ("body", "named"),
    [
        # a key twice in one object: JSON leaves the meaning open, and Python kept the last
        # (the job stored had no step of the first "steps")
        (b'{"steps": [{"name": "a", "url": "%s"}], "steps": []}' % URL.encode(), "'steps'"),
        (
            b'{"steps": [{"name": "a", "url": "%s", "method": "GET", "method": "DELETE"}]}'
            % URL.encode(),
            "'method'",
        ),
        # JSON in UTF-16 (or 32), which Python's json.loads detects and reads from bytes:
        # JSON between systems is UTF-8 (RFC 8259), and the API says so
        (
            json.dumps({"steps": [step()], "delay": 60}).encode("utf-16-le"),
            "UTF-8",
        ),
    ],
)
def test_a_key_given_twice_or_a_body_not_in_utf8_is_400_naming_it(
    api: RunningApi, body: bytes, named: str
) -> None:
    # Given a body that Python's JSON parser reads, but no JSON text says one thing with
    client = api.client("acme")

    # When it is posted as a job
    answer = client.post("/v1/jobs", content=body, headers={"Content-Type": "application/json"})

    # Then it is a 400 naming the key (or the encoding), and nothing is stored
    found = problem(answer, 400)
    assert named in found["detail"]
    assert found["errors"][0]["pointer"] == ""
    assert_nothing_stored(api)


def test_a_body_may_start_with_a_utf8_byte_order_mark(api: RunningApi) -> None:
    # Given a UTF-8 body after a byte order mark, which RFC 8259 lets a parser ignore
    body = b"\xef\xbb\xbf" + json.dumps({"steps": [step()], "delay": 60}).encode()

    # When it is posted, then the job is stored
    answer = api.client("acme").post(
        "/v1/jobs", content=body, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 202, answer.text


def test_too_many_steps_and_a_bad_idempotency_key_are_422(api: RunningApi) -> None:
    client = api.client("acme")
    many = {"steps": [step(name=f"s{i}") for i in range(51)]}
    assert problem(client.post("/v1/jobs", json=many), 422)["errors"][0]["pointer"] == "/steps"
    answer = client.post(
        "/v1/jobs", json={"steps": [step()]}, headers={"Idempotency-Key": "x" * 300}
    )
    assert problem(answer, 422)["errors"][0]["header"] == "Idempotency-Key"
    assert_nothing_stored(api)


@pytest.mark.parametrize("key", [b"", b"   ", b"\t", b"\xa0"])
def test_an_idempotency_key_of_blanks_alone_is_422(api: RunningApi, key: bytes) -> None:
    # Given an Idempotency-Key of nothing but blanks (HTTP drops those around a value),
    # sent as it is (an HTTP client refuses to send some of them)
    body = json.dumps({"steps": [step()]}).encode()
    host, port = api.base.removeprefix("http://").split(":")
    request = (
        b"POST /v1/jobs HTTP/1.1\r\nHost: %b\r\nAuthorization: Bearer %b\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n"
        b"Idempotency-Key: %b\r\nConnection: close\r\n\r\n%b"
    ) % (host.encode(), KEYS["acme"].encode(), len(body), key, body)

    # When a job is posted with it
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk

    # Then it is refused naming the header, and nothing is stored
    head, _, document = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 422 "), answer
    assert b"content-type: application/problem+json" in head.lower()
    assert json.loads(document)["errors"][0]["header"] == "Idempotency-Key"
    assert_nothing_stored(api)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x",
        "http://localhost:8080/x",
        "http://0x7f000001/x",
        "http://2130706433/",
        "http://[::ffff:127.0.0.1]/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://100.64.0.1/",
        "http://metadata.google.internal/",
    ],
)
def test_a_destination_the_guard_refuses_is_422_at_post(tmp_path: Any, url: str) -> None:
    with running_api(
        f"sqlite:///{tmp_path / 'api.db'}",
        settings(guard=__import__("conveyor.steps.guard", fromlist=["Guard"]).Guard()),
    ) as api:
        answer = api.client("acme").post("/v1/jobs", json={"steps": [step(url=url)]})
        errors = problem(answer, 422)["errors"]
        assert errors[0]["pointer"] == "/steps/0/url"
        assert "CONVEYOR_HTTP_ALLOW" in errors[0]["detail"]
        assert_nothing_stored(api)


def test_unknown_routes_and_methods_are_problems(api: RunningApi) -> None:
    client = api.client("acme")
    problem(client.get("/v1/nothing"), 404)
    problem(client.put("/v1/jobs"), 405)
    problem(client.get("/v1/jobs/not-an-id"), 404)
    problem(client.post("/v1/jobs/not-an-id/retry"), 404)
    problem(client.get("/v1/jobs", params={"limit": 0}), 422)


def test_a_405_allows_every_method_the_path_takes(api: RunningApi) -> None:
    # Given paths that several routes share (the list and the submit, the poll and the
    # delete)
    client = api.client("acme")
    for path, allowed in (
        ("/v1/jobs", "GET, POST"),
        ("/v1/jobs/some-id", "GET, HEAD, DELETE"),
        ("/v1/jobs/some-id/retry", "POST"),
    ):
        # When a method none of them takes is used
        answer = client.request("PATCH", path)

        # Then the 405 lists all the methods they take, not those of one route
        problem(answer, 405)
        assert answer.headers["allow"] == allowed, path


@pytest.mark.parametrize("store", ["postgres", "redis"])
def test_an_id_no_store_holds_is_404_on_every_store(store: str) -> None:
    # Given the API on PostgreSQL or Redis (whose drivers refuse a NUL or a lone
    # surrogate: the store's error was a 500)
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(fresh_schema() if store == "postgres" else fresh_namespace())
        client = stack.enter_context(running_api(url)).client("admin")
        # When a job is asked for by such an id; Then it is not found, as any unknown id
        for odd in ("a%00b", "lone%ED%A0%80"):
            problem(client.get(f"/v1/jobs/{odd}"), 404)
            problem(client.delete(f"/v1/jobs/{odd}"), 404)
            problem(client.post(f"/v1/jobs/{odd}/retry"), 404)
            problem(client.post(f"/v1/queues/{odd}/pause"), 404)
            problem(client.post(f"/v1/queues/{odd}/empty"), 404)
        # A NUL as a list's filter or cursor: a 422 naming the parameter (bytes that are
        # not UTF-8 in a query string are read with U+FFFD in their place)
        for parameter in ("queue", "cursor"):
            listed = problem(client.get(f"/v1/jobs?{parameter}=a%00b"), 422)
            assert listed["errors"][0]["parameter"] == parameter


def test_every_problem_of_the_fields_is_listed_in_our_own_words(api: RunningApi) -> None:
    # Given a job with two bad fields in different steps
    steps = [step(name="hold"), step(name="pay", url="ftp://x"), step(name="ship", method="BREW")]
    body = {"steps": steps}

    # When it is submitted
    answer = api.client("acme").post("/v1/jobs", json=body)

    # Then both are listed, each in the validator's own words (no "Value error, " of
    # pydantic's before them), and nothing is stored
    errors = problem(answer, 422)["errors"]
    assert errors == [
        {"pointer": "/steps/1/url", "detail": "must be an http:// or https:// URL"},
        {
            "pointer": "/steps/2/method",
            "detail": "must be one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS",
        },
    ]
    assert_nothing_stored(api)


@pytest.mark.parametrize("depth", [101, 3000])
def test_a_body_nested_too_deep_is_422_not_a_500(api: RunningApi, depth: int) -> None:
    # Given a small body whose metadata nests arrays thousands deep (or one past the limit)
    deep = "[" * (depth - 2) + "]" * (depth - 2)
    body = json.dumps({"steps": [step()], "metadata": {"x": "DEEP"}}).replace('"DEEP"', deep)

    # When it is submitted
    answer = api.client("acme").post(
        "/v1/jobs", content=body.encode(), headers={"Content-Type": "application/json"}
    )

    # Then a problem says so, and nothing is stored
    assert problem(answer, 422)["detail"] == "the body is nested deeper than 100 levels"
    assert_nothing_stored(api)


def test_odd_digits_in_parameters_and_headers_are_refused_not_a_500(api: RunningApi) -> None:
    # Given a job and its capability URL
    created = api.client("acme").post("/v1/jobs", json={"steps": [step()]})
    location = created.headers["location"]
    anonymous = api.client(None)

    # When a poll's version is a digit int() does not take, or beyond any version
    for version in ("%C2%B2", "9" * 5000):
        answer = anonymous.get(f"{location}&wait=0&version={version}")
        # Then it is a 422 naming the parameter
        errors = problem(answer, 422)["errors"]
        assert errors[0]["parameter"] == "version"

    # And an odd Last-Event-ID is read as none: the stream starts from the job as it is
    job_id = created.json()["id"]
    with api.client("acme").stream(
        "GET", f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": b"\xb2"}
    ) as events:
        assert events.status_code == 200
        for line in events.iter_lines():
            if line.startswith("event: "):
                assert line == "event: job"
                break


def test_a_cursor_the_api_did_not_make_is_422_naming_it(api: RunningApi) -> None:
    # Given three jobs, listed two to a page
    acme = api.client("acme")
    ids = [acme.post("/v1/jobs", json={"steps": [step()]}).json()["id"] for _ in range(3)]
    first = acme.get("/v1/jobs", params={"limit": 2}).json()
    assert [job["id"] for job in first["jobs"]] == ids[::-1][:2]

    # When the next page is asked for with made-up text, or a job's id, as the cursor
    for cursor in ("zzz", "0", ids[1], ids[1].upper(), "ag==", first["next_cursor"] + "A"):
        answer = acme.get("/v1/jobs", params={"limit": 2, "cursor": cursor})
        # Then it is a 422 naming the parameter, not a page
        assert problem(answer, 422)["errors"][0]["parameter"] == "cursor", cursor

    # And the cursor the API made still pages on, to the end
    rest = acme.get("/v1/jobs", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [job["id"] for job in rest["jobs"]] == [ids[0]]
    assert rest["next_cursor"] is None


def test_the_list_pages_past_a_job_whose_id_is_long(api: RunningApi) -> None:
    # Given jobs the library stored with ids of 800 characters and more (ids are the
    # enqueuer's to choose), listed two to a page
    ids = [("j" * 800) + str(n) for n in range(3)]

    async def store() -> None:
        backend = await api.app.backend()
        jobs = [make_job() for _ in ids]
        for job, job_id in zip(jobs, ids, strict=True):
            job.id = job_id
        await backend.enqueue(jobs)

    api.call(store())
    admin = api.client("admin")
    first = admin.get("/v1/jobs", params={"limit": 2}).json()
    assert [job["id"] for job in first["jobs"]] == ids[::-1][:2]

    # When the next page is asked for with the cursor the API handed out (over 1,000
    # characters)
    answer = admin.get("/v1/jobs", params={"limit": 2, "cursor": first["next_cursor"]})

    # Then it is that page, not a refusal of the API's own cursor
    assert answer.status_code == 200, answer.text
    assert [job["id"] for job in answer.json()["jobs"]] == [ids[0]]


def test_no_key_or_an_unknown_one_is_401_naming_the_authorization_header(
    api: RunningApi,
) -> None:
    # Given a job, and clients without a key or with one nobody has
    job_id = api.client("acme").post("/v1/jobs", json={"steps": [step()]}).json()["id"]
    for client in (api.client(None), api.client("not-a-key-of-anyone-at-all")):
        # When they submit, list, delete or read a job
        for answer in (
            client.post("/v1/jobs", json={"steps": [step()]}),
            client.get("/v1/jobs"),
            client.delete(f"/v1/jobs/{job_id}"),
            client.get(f"/v1/jobs/{job_id}"),
            client.get(f"/v1/jobs/{job_id}/events"),
        ):
            # Then each is a 401 problem that names the header to send
            errors = problem(answer, 401)["errors"]
            assert errors == [{"header": "Authorization", "detail": errors[0]["detail"]}]
