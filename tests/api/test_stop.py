"""A `conveyor api` process stops on SIGTERM while clients wait on it: event streams
end (their clients connect again, elsewhere) and long polls answer (a real process,
real HTTP clients)."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path

import httpx

from tests.api.server import api_process


def test_a_stop_ends_event_streams_and_long_polls(tmp_path: Path) -> None:
    # Given an API process (no worker: the job stays queued, and its event stream
    # would stay open for as long as the job waits)
    with api_process(f"sqlite:///{tmp_path / 'api.db'}") as api:
        client = api.client("acme")
        created = client.post(
            "/v1/jobs", json={"steps": [{"name": "one", "url": "http://127.0.0.1:9/x"}]}
        )
        assert created.status_code == 202, created.text
        document = created.json()
        location = created.headers["location"]

        # ... a client that follows the job's events, and one that waits for a change
        streamed: list[str] = []
        first_event = threading.Event()
        polled: list[httpx.Response] = []

        def follow() -> None:
            with client.stream("GET", location.replace("?", "/events?")) as stream:
                for line in stream.iter_lines():
                    streamed.append(line)
                    if line.startswith("data: "):
                        first_event.set()

        def wait_for_a_change() -> None:
            polled.append(
                api.client("acme").get(location, params={"wait": 30, "version": 1}, timeout=60)
            )

        following = threading.Thread(target=follow)
        following.start()
        assert first_event.wait(30)
        waiting = threading.Thread(target=wait_for_a_change)
        waiting.start()

        # When the process gets SIGTERM
        api.process.send_signal(signal.SIGTERM)

        # Then it stops (it waited for the stream as long as the job waited), the
        # stream has ended after the job's one event, and the long poll was answered
        assert api.process.wait(20) == 0
        following.join(10)
        waiting.join(10)
        assert not following.is_alive() and not waiting.is_alive()
        events = [json.loads(line[6:]) for line in streamed if line.startswith("data: ")]
        assert [e["id"] for e in events] == [document["id"]]
        assert [r.status_code for r in polled] == [200]
        assert polled[0].json()["state"] == "queued"
