"""The dashboard on PostgreSQL and on Redis: the same pages, read through the same Backend
interface, with a worker running jobs. (The SQLite tests in test_dashboard.py cover the rest.)

The browser is launched in the test body, after the store's fixture: Playwright's
synchronous API would not let that fixture's ``asyncio.run`` start (see conftest.py)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from conveyor.job import State
from tests.api.server import running_api
from tests.dashboard import store
from tests.dashboard.browser import LIVE_TIMEOUT_MS, expect
from tests.dashboard.conftest import launched, tab, worker_config
from tests.dashboard.tasks import fail_until, ok
from tests.postgres.proxy import TcpProxy


@pytest.fixture(params=["postgres", "redis"])
def store_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue("pg_url" if request.param == "postgres" else "redis_url")
    return url


def test_the_overview_and_a_job_page_work_on_every_store(store_url: str, tmp_path: Path) -> None:
    with (
        running_api(store_url, worker=worker_config()) as api,
        launched() as browser,
        tab(browser, api) as t,
    ):
        # Given a job that succeeded and one that was poisoned
        done = store.enqueue(api, ok, 5, queue="default")
        flag = tmp_path / "flag"
        poisoned = store.enqueue(api, fail_until, str(flag), queue="poison", max_attempts=1)
        store.wait_state(api, done, State.SUCCEEDED)
        store.wait_state(api, poisoned, State.POISONED)
        t.login()

        # When the overview is opened
        # Then it shows each queue's counts, the worker, and the totals
        expect(t.queue_count("default", "succeeded")).to_have_text("1")
        expect(t.queue_count("poison", "poisoned")).to_have_text("1")
        expect(t.page.locator("#workers tbody tr")).to_have_count(1)
        expect(t.page.locator('[data-total="processed"]')).to_have_text("2")
        expect(t.page.locator('[data-total="failed"]')).to_have_text("1")
        # and the two runs in the chart of the hour, from the store's per-minute counts
        expect(t.page.locator("#chart-throughput .summary")).to_have_text(
            "Last hour: 2 runs, 1 failed."
        )
        expect(t.page.locator("#chart-throughput rect.bar-failed")).to_have_count(1)

        # When the poisoned job is opened from the Failed page
        t.open("/failed")
        t.page.get_by_role("link", name=poisoned).click()
        # Then its traceback is there
        expect(t.page).to_have_url(re.compile(f"/dashboard/jobs/{poisoned}$"))
        expect(t.page.locator("details.traceback pre").first).to_contain_text(
            "RuntimeError: the flag flag is not there yet"
        )

        # When its cause is fixed and it is retried
        flag.touch()
        t.page.get_by_role("button", name="Retry").click()
        # Then it succeeds, on the page as in the store
        t.expect_flash(f"Job {poisoned} is queued again")
        expect(t.page.locator("#job-summary .state").first).to_have_text(
            "succeeded", timeout=LIVE_TIMEOUT_MS
        )
        assert store.job(api, poisoned).state is State.SUCCEEDED

        # And the job list pages through the store's cursor
        t.open("/jobs?state=succeeded")
        expect(t.page.locator("#jobs tbody tr")).to_have_count(2)


def test_a_503_page_shows_the_page_again_once_the_store_is_back(redis_url: str) -> None:
    server = urlsplit(redis_url)
    with (
        TcpProxy(server.hostname or "127.0.0.1", server.port or 6379) as proxy,
        running_api(proxy.rewrite(redis_url)) as api,
        launched() as browser,
        tab(browser, api) as t,
    ):
        # Given a queue on the Queues page, and then a store that goes away
        store.enqueue(api, ok, 1, queue="mail")
        t.expected_statuses.add(503)
        t.login()
        t.open("/queues")
        expect(t.queue_row("mail")).to_be_visible()
        proxy.cut()

        # When a button's action is sent meanwhile
        t.queue_row("mail").get_by_role("button", name=re.compile("^Pause")).click()
        # Then its 503 page says so and is not fetched again (it was a POST)
        expect(t.page.locator(".error-page")).to_have_attribute("data-status", "503")
        assert t.page.locator("body").get_attribute("data-refresh") == "0"

        # When the Queues page is opened while the store is away
        answer = t.open("/queues")
        assert answer.status == 503
        # Then, once the store is back, the page shows itself without a reload by hand
        proxy.restore()
        expect(t.queue_row("mail")).to_be_visible(timeout=LIVE_TIMEOUT_MS)
        # and the action sent during the outage was not done
        assert store.queue(api, "mail").paused is False
