"""An API that stops while clients wait on it: event streams end (their clients connect
again, elsewhere) and long polls answer at once."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
from pathlib import Path

from conveyor.job import Job
from tests.api.server import api_process, running_api

STEPS = {"steps": [{"name": "one", "url": "http://127.0.0.1:9/x"}]}


def test_a_stop_ends_the_event_streams_of_jobs_that_do_not_finish(tmp_path: Path) -> None:
    # Given a `conveyor api` process (no worker: the job stays queued, and its event
    # stream would stay open for as long as the job waits) and a client following
    # that job's events
    with api_process(f"sqlite:///{tmp_path / 'api.db'}") as api:
        client = api.client("acme")
        created = client.post("/v1/jobs", json=STEPS)
        assert created.status_code == 202, created.text
        streamed: list[str] = []
        first_event = threading.Event()

        def follow() -> None:
            url = created.headers["location"].replace("?", "/events?")
            with client.stream("GET", url) as stream:
                for line in stream.iter_lines():
                    streamed.append(line)
                    if line.startswith("data: "):
                        first_event.set()

        following = threading.Thread(target=follow)
        following.start()
        assert first_event.wait(30)

        # When the process gets SIGTERM
        api.process.send_signal(signal.SIGTERM)

        # Then it stops (it used to wait for the stream, as long as the job waited),
        # and the stream has ended after the job's one event
        assert api.process.wait(20) == 0
        following.join(10)
        assert not following.is_alive()
        events = [json.loads(line[6:]) for line in streamed if line.startswith("data: ")]
        assert [event["id"] for event in events] == [created.json()["id"]]


def test_a_stop_answers_the_long_polls_at_once(tmp_path: Path) -> None:
    # Given an API and a long poll of a queued job, waiting 30 s for a change
    with running_api(f"sqlite:///{tmp_path / 'api.db'}") as api:
        created = api.client("acme").post("/v1/jobs", json=STEPS)
        assert created.status_code == 202, created.text
        job_id = created.json()["id"]
        web_api = api.service.api

        async def poll_then_stop() -> tuple[bool, Job | None]:
            backend = await web_api.backend()
            polling = asyncio.ensure_future(web_api.watch(backend, job_id, 1, 30.0))
            await asyncio.sleep(0.05)
            waiting = not polling.done()

            # When the API begins to stop
            web_api.stop_watching()
            return waiting, await asyncio.wait_for(polling, 10)

        waiting, changed = api.call(poll_then_stop())  # type: ignore[misc]

        # Then the poll that was waiting is answered at once: no change
        assert waiting
        assert changed is None
