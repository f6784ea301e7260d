"""Screenshots of every dashboard page, for docs/dashboard/ and the README.

    .venv/bin/python -m tests.dashboard.screenshots [--minutes 3] [--out docs/dashboard]

Starts the API with a worker on a fresh SQLite file (as ``conveyor serve`` does), feeds it
real jobs for ``--minutes`` minutes (a stream of short ones, some that fail for good, a
backlog in a paused queue, an HTTP job against a local target) so that the charts have a
few minutes of history, then opens each page in Debian's headless chromium and saves it.
Nothing is made up: every figure on the pictures is what the store recorded. Not run by
the test suite (it takes minutes); run it again when the pages change.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from conveyor.job import State
from tests.api.server import RunningApi, running_api
from tests.dashboard import store
from tests.dashboard.conftest import launched, tab, worker_config
from tests.dashboard.tasks import fail_until, ok, slow
from tests.http.target import Target

ROOT = Path(__file__).resolve().parents[2]


def feed(api: RunningApi, minutes: float, target: Target, flag: Path) -> str:
    """Jobs for the charts and the tables; the id of a poisoned job to show."""
    store.call(api, "create_queue", "images")
    store.call(api, "pause_queue", "images")
    poisoned = store.enqueue(api, fail_until, str(flag), queue="poison", max_attempts=1)
    body = {
        "steps": [
            {"name": "item", "url": target.url("/item"), "headers": {"X-Api-Key": "k-1234"}},
            {"name": "update", "method": "PUT", "url": target.url("/ok/items/4711")},
        ],
        "queue": "http",
        "token": "bearer-for-steps",
        "metadata": {"order": 7781},
    }
    api.client("acme").post("/v1/jobs", json=body)
    deadline = time.monotonic() + minutes * 60
    rounds = 0
    while True:
        rounds += 1
        for n in range(6 + rounds % 5):
            store.enqueue(api, ok, n, queue="default")
        store.enqueue(api, slow, 1.5, queue="counts")
        store.enqueue(api, slow, 2.0, queue="images")
        if rounds % 3 == 0:
            store.enqueue(api, fail_until, str(flag) + ".never", queue="poison", max_attempts=1)
        if time.monotonic() >= deadline:
            break
        time.sleep(5)
    store.enqueue(api, ok, 1, queue="default", delay=600)
    store.wait_state(api, poisoned, State.POISONED)
    return poisoned


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard")
    options = parser.parse_args()
    options.out.mkdir(parents=True, exist_ok=True)
    target = Target()
    target.start()
    with tempfile.TemporaryDirectory() as directory:
        os.environ["CONVEYOR_HTTP_ALLOW"] = "127.0.0.0/8"
        url = f"sqlite:///{directory}/jobs.db"
        with running_api(url, worker=worker_config()) as api, launched() as browser:
            poisoned = feed(api, options.minutes, target, Path(directory) / "flag")
            time.sleep(3)  # the last short jobs finish
            with tab(browser, api, viewport={"width": 1280, "height": 900}) as t:
                t.open("/login")
                t.page.screenshot(path=options.out / "login.png")
                t.login()
                shots = {
                    "overview": "/",
                    "queues": "/queues",
                    "jobs": "/jobs",
                    "failed": "/failed",
                    "workers": "/workers",
                    "stats": "/stats",
                    "empty": "/queues/images/empty",
                }
                for name, path in shots.items():
                    t.open(path)
                    # The long lists are cut at the window's height: enough to show them.
                    whole = name not in ("jobs", "failed")
                    t.page.screenshot(path=options.out / f"{name}.png", full_page=whole)
                t.open(f"/jobs/{poisoned}")
                t.page.locator("details.traceback summary").first.click()
                t.page.screenshot(path=options.out / "job.png", full_page=True)
            with tab(browser, api, viewport={"width": 390, "height": 844}, is_mobile=True) as t:
                t.login()
                t.open("/")
                t.page.screenshot(path=options.out / "overview-phone.png", full_page=True)
    target.stop()
    print(f"saved to {options.out}")


if __name__ == "__main__":
    main()
