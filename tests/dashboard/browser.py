"""Debian's headless chromium, driven through Playwright, for the dashboard's tests.

Playwright is launched with ``executable_path``: its own browser download (``playwright
install``) is never used. ``make test`` installs Debian's ``chromium`` when it is missing
(the Makefile's ``chromium`` target); without it the tests skip with a loud reason, or fail
when ``CI`` is set, so that CI never passes without the dashboard tested in a browser.

:class:`Tab` is one browser page on the dashboard: it logs in, opens pages, reads flash
messages, and collects every console error and uncaught exception, which the fixture that
made it asserts away at the end of the test (a page that logs an error fails its test).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

import pytest
from playwright.sync_api import ConsoleMessage, Error, Locator, Page, Response, expect

from tests.api.server import ADMIN_KEY

CHROMIUM = "/usr/bin/chromium"
#: How long a live part may take to show a change: a refresh every 3 s, and slack.
LIVE_TIMEOUT_MS = 15_000
#: What Chromium logs when a page's own document answers 4xx: expected on error pages.
_DOCUMENT_STATUS = re.compile(
    r"^Failed to load resource: the server responded with a status of (\d+)"
)


def require_chromium() -> str:
    """chromium's path; skip (fail under CI) without it."""
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    message = (
        f"DASHBOARD NOT TESTED IN A BROWSER: no {CHROMIUM} "
        "(make test installs Debian's package: apt-get install chromium)"
    )
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@dataclass
class Tab:
    page: Page
    base: str  # http://127.0.0.1:<port>/dashboard
    errors: list[str] = field(default_factory=list)
    #: Statuses of documents this test expects to be errors (a 404 page, a 403 page).
    expected_statuses: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        status = _DOCUMENT_STATUS.match(message.text)
        if status and int(status.group(1)) in self.expected_statuses:
            return
        self.errors.append(f"{message.text} (on {self.page.url})")

    def open(self, path: str = "/") -> Response:
        response = self.page.goto(self.base + path)
        assert response is not None
        return response

    def login(self, key: str = ADMIN_KEY) -> None:
        self.open("/login")
        self.page.get_by_label("Admin API key").fill(key)
        self.page.get_by_role("button", name="Log in").click()

    def flash(self) -> Locator:
        return self.page.locator(".flash")

    def expect_flash(self, text: str | re.Pattern[str]) -> None:
        expect(self.flash()).to_contain_text(text)

    def queue_row(self, name: str) -> Locator:
        return self.page.locator(f'#queues tr[data-queue="{name}"]')

    def queue_count(self, name: str, state: str) -> Locator:
        return self.queue_row(name).locator(f'td[data-count="{state}"]')

    def fits_width(self) -> dict[str, Any]:
        """The page's widths: it fits when nothing scrolls sideways."""
        sizes: dict[str, Any] = self.page.evaluate(
            "() => ({scroll: document.documentElement.scrollWidth,"
            " client: document.documentElement.clientWidth})"
        )
        return sizes

    def check_no_errors(self) -> None:
        assert self.errors == [], "the browser logged errors:\n" + "\n".join(self.errors)


__all__ = ["CHROMIUM", "LIVE_TIMEOUT_MS", "Error", "Tab", "expect", "require_chromium"]
