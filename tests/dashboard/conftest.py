"""Fixtures of the dashboard's tests: a browser, and the API with a worker on a real store.

Playwright's synchronous API keeps an event loop running on the test's thread while the
browser is open, and ``asyncio.run`` refuses to start under it: fixtures that use it (the
``pg_url`` of tests/conftest.py migrates with it) must be set up before the browser is
launched. The SQLite tests share one browser per module; the PostgreSQL and Redis ones
launch theirs in the test body (:func:`launched`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from conveyor.worker.config import WorkerConfig
from tests.api.server import RunningApi, running_api
from tests.dashboard.browser import Tab, require_chromium

#: The queues the worker under test takes jobs from; each test uses its own.
QUEUES = [
    "default",
    "counts",
    "poison",
    "mail",
    "guarded",
    "http",
    "phone",
    "chart",
    "bulk",
    "handmade",
    "held-keys",
]


def worker_config() -> WorkerConfig:
    return WorkerConfig(queues=QUEUES, concurrency=4, interval=0.2, lease=30)


@contextmanager
def launched() -> Iterator[Browser]:
    """Debian's chromium, headless, through Playwright."""
    path = require_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def tab(browser: Browser, api: RunningApi, **context: object) -> Iterator[Tab]:
    """A fresh browser context (no cookies) on the dashboard; fails the test if a page
    logged a console error or raised."""
    ctx = browser.new_context(**context)  # type: ignore[arg-type]
    ctx.set_default_timeout(15_000)
    try:
        opened = Tab(ctx.new_page(), api.base + "/dashboard")
        yield opened
        opened.check_no_errors()
    finally:
        ctx.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launched() as found:
        yield found


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApi]:
    """The API (and so the dashboard) with a worker in its loop, as ``conveyor serve``
    runs them, on a SQLite file; HTTP steps may reach loopback."""
    previous = os.environ.get("CONVEYOR_HTTP_ALLOW")
    os.environ["CONVEYOR_HTTP_ALLOW"] = "127.0.0.0/8"
    directory: Path = tmp_path_factory.mktemp("dashboard")
    try:
        with running_api(f"sqlite:///{directory / 'jobs.db'}", worker=worker_config()) as api:
            yield api
    finally:
        if previous is None:
            os.environ.pop("CONVEYOR_HTTP_ALLOW", None)
        else:
            os.environ["CONVEYOR_HTTP_ALLOW"] = previous


@pytest.fixture
def dash(browser: Browser, served: RunningApi) -> Iterator[Tab]:
    """A logged-in tab on the SQLite dashboard."""
    with tab(browser, served) as opened:
        opened.login()
        yield opened
