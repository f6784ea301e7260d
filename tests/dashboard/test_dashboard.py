"""The dashboard in Debian's headless chromium, on the API with a worker on SQLite: log in,
watch queues change as jobs run, open a poisoned job's traceback and retry it, pause and
empty a queue; CSRF, 404 pages, a phone's width, and no console error on any page.

Every test checks what the browser shows, and what the store holds after a click."""

from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from conveyor.exceptions import JobNotFound
from conveyor.job import Job, State, Step
from tests.api.server import ADMIN_KEY, KEYS, RunningApi
from tests.dashboard import store
from tests.dashboard.browser import LIVE_TIMEOUT_MS, Tab, expect
from tests.dashboard.conftest import tab
from tests.dashboard.tasks import fail_until, fail_with, ok, slow
from tests.http.target import Target

#: Secrets an HTTP job carries, which the dashboard must never show.
SECRETS = ["k-secret-4567", "bearer-secret-1234", "meta-secret-8910"]
PAGES = ["/", "/queues", "/jobs", "/jobs?state=succeeded", "/failed", "/workers", "/stats"]


def test_login_takes_an_admin_key_and_refuses_others(browser: Browser, served: RunningApi) -> None:
    with tab(browser, served) as t:
        # Given a browser without a session
        # When it opens the dashboard
        t.open("/jobs?state=poisoned")
        # Then it is sent to the login form, which will bring it back
        expect(t.page).to_have_url(re.compile(r"/dashboard/login\?next="))
        t.expected_statuses.update({401, 403})

        # When it logs in with an unknown key, then with a tenant's key
        t.page.get_by_label("Admin API key").fill("not-a-key-0123456789")
        t.page.get_by_role("button", name="Log in").click()
        expect(t.page.locator("#login-error")).to_contain_text("Unknown key")
        t.page.get_by_label("Admin API key").fill(KEYS["acme"])
        t.page.get_by_role("button", name="Log in").click()
        # Then both are refused, and no session cookie is set
        expect(t.page.locator("#login-error")).to_contain_text("tenant acme's key")
        assert "conveyor_session" not in {c["name"] for c in t.page.context.cookies()}

        # When it logs in with the admin key
        t.page.get_by_label("Admin API key").fill(ADMIN_KEY)
        t.page.get_by_role("button", name="Log in").click()
        # Then it lands on the page it asked for, with a secure, HttpOnly, strict cookie
        expect(t.page).to_have_url(re.compile(r"/dashboard/jobs\?state=poisoned$"))
        t.expect_flash("Logged in.")
        cookie = next(c for c in t.page.context.cookies() if c["name"] == "conveyor_session")
        assert (cookie["httpOnly"], cookie["secure"], cookie["sameSite"]) == (True, True, "Strict")
        assert cookie["path"] == "/dashboard"

        # When it logs out, the cookie no longer opens a page
        t.page.get_by_role("button", name="Log out").click()
        t.expect_flash("Logged out.")
        t.open("/")
        expect(t.page).to_have_url(re.compile(r"/dashboard/login"))


def test_a_queue_s_counts_change_as_its_jobs_run_without_a_reload(
    dash: Tab, served: RunningApi
) -> None:
    # Given three jobs waiting in a paused queue, and the overview open
    store.call(served, "create_queue", "counts")
    store.call(served, "pause_queue", "counts")
    ids = [store.enqueue(served, slow, 0.5, queue="counts") for _ in range(3)]
    dash.open("/")
    expect(dash.queue_count("counts", "queued")).to_have_text("3")
    expect(dash.queue_row("counts")).to_contain_text("paused")
    dash.page.evaluate("window.__sameDocument = true")

    # When the queue is resumed (elsewhere) and its jobs run
    store.call(served, "resume_queue", "counts")

    # Then the page shows them run and succeed, without a reload
    expect(dash.queue_count("counts", "succeeded")).to_have_text("3", timeout=LIVE_TIMEOUT_MS)
    expect(dash.queue_count("counts", "queued")).to_have_text("0")
    expect(dash.queue_row("counts")).not_to_contain_text("paused")
    assert dash.page.evaluate("window.__sameDocument") is True
    assert {store.job(served, i).state for i in ids} == {State.SUCCEEDED}
    expect(dash.page.locator("#live-updated")).to_contain_text("Updated")


def test_a_poisoned_job_shows_its_traceback_and_its_retry_succeeds_once(
    dash: Tab, served: RunningApi, tmp_path: Path
) -> None:
    # Given a job that failed for good
    flag = tmp_path / "flag"
    job_id = store.enqueue(served, fail_until, str(flag), queue="poison", max_attempts=1)
    store.wait_state(served, job_id, State.POISONED)

    # When the Failed page is opened, and the job in it
    dash.open("/failed?queue=poison")
    row = dash.page.locator(f'tr[data-job="{job_id}"]')
    expect(row).to_contain_text("RuntimeError: the flag flag is not there yet")
    row.get_by_role("link", name=job_id).click()

    # Then its page shows the error, and the whole traceback a click away
    expect(dash.page.locator("h1")).to_contain_text(job_id)
    expect(dash.page.locator("#job-summary .state").first).to_have_text("poisoned")
    traceback = dash.page.locator("details.traceback").first
    traceback.locator("summary").click()
    expect(traceback.locator("pre")).to_contain_text("Traceback (most recent call last)")
    expect(traceback.locator("pre")).to_contain_text('tests/dashboard/tasks.py", line')
    expect(traceback.locator("pre")).to_contain_text("in fail_until")
    csrf = dash.page.locator('#job-summary form[action$="/retry"] input[name=csrf]').input_value()

    # When the cause is fixed and Retry is clicked
    flag.touch()
    dash.page.get_by_role("button", name="Retry").click()

    # Then the page says so, and shows the job succeed without a reload
    dash.expect_flash(f"Job {job_id} is queued again, from step main.")
    expect(dash.page.locator("#job-summary .state").first).to_have_text(
        "succeeded", timeout=LIVE_TIMEOUT_MS
    )
    expect(dash.page.locator("#job-progress")).to_have_attribute("value", "100.0")
    done = store.job(served, job_id)
    assert (done.state, done.result) == (State.SUCCEEDED, "the flag is there")

    # When the same Retry is sent again (a double click, a stale tab)
    again = dash.page.request.post(
        f"{dash.base}/jobs/{job_id}/retry",
        form={"csrf": csrf, "state": "poisoned"},
    )
    # Then nothing is done, and the page says why
    assert again.ok
    assert "is succeeded now (it was poisoned on your page): not retried" in again.text()
    assert store.job(served, job_id).version == done.version


def test_a_paused_queue_starts_no_job_and_emptying_it_says_how_many_it_deletes(
    dash: Tab, served: RunningApi
) -> None:
    # Given a queue on the Queues page
    store.call(served, "create_queue", "mail")
    dash.open("/queues")

    # When it is paused there, and jobs arrive
    dash.queue_row("mail").get_by_role("button", name="Pause").click()
    dash.expect_flash("Paused queue mail: none of its jobs start until it is resumed.")
    expect(dash.queue_row("mail")).to_contain_text("paused")
    ids = [store.enqueue(served, ok, n, queue="mail") for n in range(2)]

    # Then no job starts (the worker looks every 0.2 s)
    expect(dash.queue_count("mail", "queued")).to_have_text("2", timeout=LIVE_TIMEOUT_MS)
    dash.page.wait_for_timeout(1500)
    expect(dash.queue_count("mail", "running")).to_have_text("0")
    expect(dash.queue_count("mail", "succeeded")).to_have_text("0")
    assert {store.job(served, i).state for i in ids} == {State.QUEUED}

    # When it is emptied: first a confirmation that says what it destroys
    dash.queue_row("mail").get_by_role("link", name="Empty").click()
    expect(dash.page.locator("#empty-count")).to_contain_text("This deletes 2 jobs")
    dash.page.get_by_role("button", name="Delete 2 jobs").click()

    # Then the jobs are gone, and the page says how many
    dash.expect_flash("Emptied queue mail: 2 jobs deleted.")
    expect(dash.queue_count("mail", "queued")).to_have_text("0")
    assert store.queue(served, "mail").counts["queued"] == 0

    # And resuming answers too
    dash.queue_row("mail").get_by_role("button", name="Resume").click()
    dash.expect_flash("Resumed queue mail")
    assert store.queue(served, "mail").paused is False


def test_an_action_without_its_csrf_token_is_refused_and_does_nothing(
    dash: Tab, served: RunningApi
) -> None:
    # Given the Queues page, with a form whose CSRF token has been taken out
    store.call(served, "create_queue", "guarded")
    dash.open("/queues")
    form = dash.queue_row("guarded").locator('form[action$="/pause"]')
    form.locator("input[name=csrf]").evaluate("input => input.remove()")
    dash.expected_statuses.add(403)

    # When it is submitted
    with dash.page.expect_navigation() as navigation:
        form.get_by_role("button", name="Pause").click()

    # Then the answer is a 403 page, and the queue is not paused
    assert navigation.value is not None and navigation.value.status == 403
    expect(dash.page.locator("h1")).to_have_text("Refused: this form is not valid here")
    assert store.queue(served, "guarded").paused is False

    # And a token of another value, or a POST from a browser without a session, neither
    forged = dash.page.request.post(
        f"{dash.base}/queues/guarded/empty", form={"csrf": "forged"}, max_redirects=0
    )
    assert forged.status == 403
    anonymous = dash.page.context.browser.new_context()  # type: ignore[union-attr]
    try:
        stranger = anonymous.request.post(
            f"{dash.base}/queues/guarded/pause", form={"csrf": "x"}, max_redirects=0
        )
        assert stranger.status == 303
        assert "/dashboard/login" in stranger.headers["location"]
    finally:
        anonymous.close()
    assert store.queue(served, "guarded").paused is False


def test_an_unknown_job_is_a_404_page_with_a_way_back(dash: Tab) -> None:
    dash.expected_statuses.add(404)
    # When a job that does not exist is opened, or searched for
    response = dash.open("/jobs/0190ffff-0000-7000-8000-000000000000")
    # Then the answer is a 404 page that links back to the jobs
    assert response.status == 404
    expect(dash.page.locator("h1")).to_have_text("No such job")
    dash.page.get_by_role("link", name="Back to the jobs").click()
    expect(dash.page).to_have_url(re.compile(r"/dashboard/jobs$"))

    dash.page.get_by_label("Job id").fill("no-such-job")
    dash.page.get_by_role("button", name="Find").click()
    expect(dash.page.locator(".error-page")).to_contain_text("There is no job no-such-job")

    # And an unknown page is a 404 too
    assert dash.open("/nowhere").status == 404


def test_every_page_fits_a_phone_and_logs_no_error(browser: Browser, served: RunningApi) -> None:
    # Given jobs of every kind, so that tables have rows
    job_id = store.enqueue(served, ok, 1, queue="phone")
    store.wait_state(served, job_id, State.SUCCEEDED)
    store.enqueue(served, ok, 2, queue="phone", delay=3600)
    with tab(browser, served, viewport={"width": 375, "height": 740}, is_mobile=True) as t:
        t.login()
        # When each page is opened at a phone's width
        for path in [*PAGES, f"/jobs/{job_id}", "/queues/phone/empty", "/failed/remove"]:
            response = t.open(path)
            assert response.status == 200, path
            # Then nothing scrolls sideways (and the tab checks that no error was logged)
            sizes = t.fits_width()
            assert sizes["scroll"] <= sizes["client"], (path, sizes)


def test_every_page_renders_on_a_desktop_without_errors(dash: Tab, served: RunningApi) -> None:
    job_id = store.enqueue(served, ok, 3, queue="default", kwargs={})
    store.wait_state(served, job_id, State.SUCCEEDED)
    for path in [*PAGES, f"/jobs/{job_id}"]:
        response = dash.open(path)
        assert response.status == 200, path
        expect(dash.page.locator("h1")).to_be_visible()
        # the navigation marks where the page is
        assert dash.page.locator('header nav a[aria-current="page"]').count() == 1, path


def test_an_http_job_s_page_shows_its_responses_and_no_secret(
    dash: Tab, served: RunningApi
) -> None:
    # Given an HTTP job with a bearer token, a key header and a secret in its metadata,
    # whose second step fails for good against a real target
    target = Target()
    target.start()
    try:
        body = {
            "steps": [
                {"name": "item", "url": target.url("/item"), "headers": {"X-Api-Key": SECRETS[0]}},
                {"name": "flaky", "url": target.url("/flaky?key=dash&fails=1"), "max_attempts": 1},
            ],
            "queue": "http",
            "token": SECRETS[1],
            "metadata": {"order": 7781, "password": SECRETS[2]},
        }
        created = served.client("acme").post("/v1/jobs", json=body)
        assert created.status_code == 202, created.text
        job_id = created.json()["id"]
        read_token = created.headers["location"].split("token=")[1]
        store.wait_state(served, job_id, State.POISONED)
    finally:
        target.stop()

    # When its page is opened
    dash.open(f"/jobs/{job_id}")

    # Then each step shows its request and its response: status, headers, body
    item = dash.page.locator('li[data-step="item"]')
    expect(item).to_contain_text(f"GET {target.url('/item')}")
    item.locator("summary", has_text="Response").click()
    expect(item.locator(".response .status")).to_have_text("200")
    expect(item.locator(".response pre.body")).to_contain_text('"name": "widget"')
    expect(item.locator(".response .headers")).to_contain_text("content-type")
    flaky = dash.page.locator('li[data-step="flaky"]')
    expect(flaky.locator(".state")).to_have_text("failed")
    expect(flaky.locator(".response .status")).to_have_text("503")
    expect(flaky).to_contain_text("status 503")
    expect(dash.page.locator("#job-progress")).to_have_attribute("value", "50.0")
    # and the metadata, with its secret redacted
    expect(dash.page.locator("#metadata")).to_contain_text('"order": 7781')
    expect(dash.page.locator("#metadata")).to_contain_text('"password": "[redacted]"')
    item.locator("summary", has_text="Request").click()
    expect(item).to_contain_text('"X-Api-Key": "[redacted]"')
    # And no secret is anywhere in the page: not the token, the key, the metadata's
    # password, nor the job's read token and private metadata
    html = dash.page.content()
    for secret in [*SECRETS, read_token, "conveyor.http"]:
        assert secret not in html


def test_the_overview_charts_the_runs_of_the_last_hour(dash: Tab, served: RunningApi) -> None:
    # Given jobs that ran in the last hour, one of them failing for good
    ids = [store.enqueue(served, ok, n, queue="chart") for n in range(4)]
    bad = store.enqueue(served, fail_until, "/nonexistent/flag", queue="chart", max_attempts=1)
    for job_id in ids:
        store.wait_state(served, job_id, State.SUCCEEDED)
    store.wait_state(served, bad, State.POISONED)
    totals = store.call(served, "stats")
    assert totals.failed >= 1

    # When the overview is opened
    dash.open("/")

    # Then the throughput chart counts every run of the hour (all of this test module's),
    # with the failed ones apart, as the store's totals do
    chart = dash.page.locator("#chart-throughput")
    expect(chart.locator(".summary")).to_have_text(
        f"Last hour: {totals.processed:,} runs, {totals.failed:,} failed."
    )
    expect(chart.locator("rect.bar-failed").first).to_be_visible()
    assert chart.locator("rect.bar-ok").count() >= 1
    expect(chart.locator(".nodata")).to_have_count(0)
    # and the depth chart has the queues' lengths as sampled this minute
    expect(dash.page.locator("#chart-depth polyline").first).to_be_attached()


def test_poisoned_jobs_are_retried_and_removed_in_bulk_by_queue(
    dash: Tab, served: RunningApi
) -> None:
    # Given two jobs poisoned in queue bulk (and the other tests' elsewhere)
    never = "/nonexistent/flag"
    ids = [store.enqueue(served, fail_until, never, queue="bulk", max_attempts=1) for _ in "ab"]
    for job_id in ids:
        store.wait_state(served, job_id, State.POISONED)
    versions = {job_id: store.job(served, job_id).version for job_id in ids}

    # When the Failed page is filtered to the queue, and all of it retried
    dash.open("/failed")
    dash.page.get_by_label("Queue").select_option("bulk")
    dash.page.get_by_role("button", name="Filter").click()
    expect(dash.page.locator("#failed .bulk")).to_contain_text("2 poisoned jobs of queue bulk.")
    dash.page.get_by_role("button", name="Retry all of queue bulk").click()

    # Then both ran again (and, the cause still there, were poisoned again), and the page
    # shows the queue's failed jobs still
    dash.expect_flash("Retried 2 poisoned jobs (queue bulk).")
    expect(dash.page).to_have_url(re.compile(r"/dashboard/failed\?queue=bulk$"))
    for job_id in ids:
        again = store.wait_for(
            "the retried job poisoned again",
            lambda job_id=job_id: (
                (j := store.job(served, job_id)).state is State.POISONED
                and j.version > versions[job_id]
                and j
            ),
        )
        assert len(again.errors) == 2

    # When all of the queue is removed: first a confirmation with the count
    dash.open("/failed?queue=bulk")
    dash.page.get_by_role("link", name="Remove all of queue bulk…").click()
    expect(dash.page.locator("#remove-count")).to_contain_text("This deletes 2 jobs")
    dash.page.get_by_role("button", name="Remove 2 jobs").click()

    # Then they are gone, and only they
    dash.expect_flash("Removed 2 poisoned jobs (queue bulk).")
    expect(dash.page.locator("#failed")).to_contain_text("No poisoned jobs of queue bulk.")
    assert store.queue(served, "bulk").counts["poisoned"] == 0


def test_a_waiting_job_is_cancelled_then_deleted_from_its_page(
    dash: Tab, served: RunningApi
) -> None:
    # Given a job scheduled for later
    job_id = store.enqueue(served, ok, 1, queue="default", delay=3600)
    dash.open(f"/jobs/{job_id}")
    expect(dash.page.locator("#job-summary .state").first).to_have_text("scheduled")

    # When it is cancelled
    dash.page.get_by_role("button", name="Cancel").click()
    dash.expect_flash(f"Job {job_id} is cancelled.")
    assert store.job(served, job_id).state is State.CANCELLED

    # When Delete is clicked: the browser asks first; refused, nothing happens
    dash.page.once("dialog", lambda dialog: dialog.dismiss())
    dash.page.get_by_role("button", name="Delete").click()
    expect(dash.page).to_have_url(re.compile(f"/dashboard/jobs/{job_id}$"))
    assert store.job(served, job_id).state is State.CANCELLED
    # accepted, the job is deleted and the list of jobs shown
    dash.page.once("dialog", lambda dialog: dialog.accept())
    dash.page.get_by_role("button", name="Delete").click()
    dash.expect_flash(f"Job {job_id} deleted.")
    expect(dash.page).to_have_url(re.compile(r"/dashboard/jobs$"))
    with pytest.raises(JobNotFound):
        store.job(served, job_id)


def test_the_job_list_pages_with_a_cursor(dash: Tab, served: RunningApi) -> None:
    # Given 55 jobs in a queue no worker takes
    ids = [store.enqueue(served, ok, n, queue="paged") for n in range(55)]
    # When its list is opened: the newest 50, then the 5 older ones
    dash.open("/jobs?queue=paged")
    rows = dash.page.locator("#jobs tbody tr")
    expect(rows).to_have_count(50)
    expect(rows.first).to_have_attribute("data-job", ids[-1])
    expect(dash.page.get_by_role("tab", name="queued")).to_have_count(0)
    dash.page.get_by_role("link", name="Older »").click()
    expect(rows).to_have_count(5)
    expect(rows.last).to_have_attribute("data-job", ids[0])
    expect(dash.page.get_by_role("link", name="Older »")).to_have_count(0)
    dash.page.get_by_role("link", name="« Newest").click()
    expect(rows).to_have_count(50)
    # and the state tabs count the queue's jobs
    expect(dash.page.locator(".tabs a", has_text="queued")).to_contain_text("55")


def test_a_page_link_the_dashboard_did_not_make_is_a_400(dash: Tab, served: RunningApi) -> None:
    # Given jobs to page through
    for n in range(3):
        store.enqueue(served, ok, n, queue="paged")
    dash.expected_statuses.add(400)
    # When a cursor is made up, or a job id pasted in as one
    for forged in ("zzz", store.enqueue(served, ok, 9, queue="paged")):
        for page in ("/jobs", "/failed"):
            answer = dash.open(f"{page}?cursor={forged}")

            # Then the page says the link is not the dashboard's, rather than list a page
            assert answer.status == 400
            expect(dash.page.locator(".error-page")).to_contain_text("not one the dashboard made")


def test_a_queue_whose_name_holds_a_slash_is_steered_too(dash: Tab, served: RunningApi) -> None:
    # Given a queue named team/mail (names may hold anything but spaces and commas)
    store.call(served, "create_queue", "team/mail")
    dash.open("/queues")
    # When it is paused, and its empty confirmation opened
    dash.queue_row("team/mail").get_by_role("button", name="Pause").click()
    # Then both reach that queue
    dash.expect_flash("Paused queue team/mail")
    assert store.queue(served, "team/mail").paused is True
    dash.queue_row("team/mail").get_by_role("link", name="Empty").click()
    expect(dash.page.locator("h1")).to_have_text("Empty queue team/mail?")


def test_a_job_whose_arguments_nest_hundreds_deep_has_its_page(
    dash: Tab, served: RunningApi
) -> None:
    # Given a waiting job whose arguments nest 500 lists deep: stored by the store as it
    # was given (a version of conveyor before the 100 levels a job's values may nest
    # stored such jobs)
    deep: list[object] = []
    for _ in range(499):
        deep = [deep]
    step = Step("main", task="tests.dashboard.tasks:ok", args=[deep], kwargs={"nested": deep})
    job_id = "deep-1"
    store.call(served, "enqueue", [Job(job_id, "deep", [step])])

    # When its page is opened
    response = dash.open(f"/jobs/{job_id}")

    # Then it is the job's page, with its arguments
    assert response.status == 200
    expect(dash.page.locator("h1")).to_contain_text(job_id)
    dash.page.get_by_text("Arguments").click()
    expect(dash.page.locator("#args-1 pre")).to_contain_text('"args": [')


def test_a_job_of_megabytes_shows_the_first_10_000_characters_of_each_value(
    dash: Tab, served: RunningApi
) -> None:
    # Given a job that failed for good with an error of a million characters, after it was
    # called with an argument of a million characters
    huge = "x" * 1_000_000
    job_id = store.enqueue(served, fail_with, huge, queue="default", max_attempts=1)
    store.wait_state(served, job_id, State.POISONED)

    # When its page is opened
    assert dash.open(f"/jobs/{job_id}").status == 200

    # Then each value shows its first 10,000 characters and says how long it is (the
    # error as the worker stored it: cut to 10,000 characters, saying so)
    stored = re.compile(r"\.\.\. \(990,0\d\d more characters\)$")
    expect(dash.page.locator("#last-error")).to_contain_text(stored)
    expect(dash.page.locator(".step .error-text")).to_contain_text(stored)
    expect(dash.page.locator(".event-failed .error-text")).to_contain_text(stored)
    dash.page.get_by_text("Arguments").click()
    note = re.compile(r"\[… cut here: 1,000,0\d\d characters in all\]$")
    expect(dash.page.locator("#args-1 pre")).to_contain_text(note)
    # and the page (fetched again every few seconds) stays small
    assert len(dash.page.content()) < 100_000


def test_a_remove_all_form_with_a_time_that_is_no_time_is_refused(
    dash: Tab, served: RunningApi
) -> None:
    # Given a poisoned job, and the confirmation to remove the poisoned jobs of its queue,
    # whose hidden time has been made "nan", then "inf"
    job_id = store.enqueue(served, fail_with, "no", queue="default", max_attempts=1)
    store.wait_state(served, job_id, State.POISONED)
    dash.expected_statuses.add(400)
    for forged in ("nan", "inf"):
        dash.open("/failed/remove")
        dash.page.locator("input[name=seen]").evaluate(f"input => input.value = '{forged}'")

        # When it is submitted
        with dash.page.expect_navigation() as navigation:
            dash.page.get_by_role("button", name=re.compile("^Remove")).click()

        # Then the answer is a 400 page that says why, and the job is still there
        assert navigation.value is not None and navigation.value.status == 400
        expect(dash.page.locator(".error-page")).to_have_text(
            "The form lacks the time it was shown at."
        )
        assert store.job(served, job_id).state is State.POISONED


def test_the_page_to_come_back_to_after_login_is_always_the_dashboard_s(
    browser: Browser, served: RunningApi
) -> None:
    for escape in ("/dashboard/../v1/stats", "/dashboard/%2e%2e/v1/stats"):
        with tab(browser, served) as t:
            # Given the login form, asked to come back to a path that leaves the dashboard
            t.open("/login?next=" + escape.replace("%", "%25"))
            # When the admin logs in
            t.page.get_by_label("Admin API key").fill(ADMIN_KEY)
            t.page.get_by_role("button", name="Log in").click()
            # Then the browser lands on the overview, not elsewhere
            t.expect_flash("Logged in.")
            expect(t.page).to_have_url(re.compile(r"/dashboard/$"))


#: Whether the text ``a`` is shown left of the text ``b`` in an element (read left to right).
LEFT_OF = """(element, [a, b]) => {
    const left = (text) => {
        const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
        for (let node = walker.nextNode(); node; node = walker.nextNode()) {
            const at = node.data.indexOf(text);
            if (at >= 0) {
                const range = document.createRange();
                range.setStart(node, at);
                range.setEnd(node, at + text.length);
                return range.getBoundingClientRect().left;
            }
        }
        throw new Error("no " + text);
    };
    return left(a) < left(b);
}"""


def test_a_name_holding_a_right_to_left_override_does_not_turn_the_sentence_around_it(
    dash: Tab, served: RunningApi
) -> None:
    # Given a queue whose name holds U+202E RIGHT-TO-LEFT OVERRIDE (names may hold it)
    name = "rtl\u202eeman"
    store.enqueue(served, ok, 1, queue=name, delay=3600)

    # When it is paused from the Queues page
    dash.open("/queues")
    dash.queue_row(name).get_by_role("button", name="Pause").click()

    # Then the message about it still reads left to right after the name
    dash.expect_flash("none of its jobs start until it is resumed.")
    assert dash.flash().evaluate(LEFT_OF, ["none", "resumed"])
    assert store.queue(served, name).paused is True

    # And so does the confirmation of emptying it, which says what it deletes
    dash.queue_row(name).get_by_role("link", name="Empty").click()
    count = dash.page.locator("#empty-count")
    expect(count).to_contain_text("This deletes 1 job")
    assert count.evaluate(LEFT_OF, ["queued", "scheduled"])
    assert count.evaluate(LEFT_OF, ["Running jobs", "finished jobs stay"])


def test_queues_named_dot_and_dot_dot_are_paused_and_emptied_too(
    dash: Tab, served: RunningApi
) -> None:
    for name in (".", ".."):
        # Given a queue named so, with a waiting job (a browser resolves such a path segment)
        store.enqueue(served, ok, 1, queue=name, delay=3600)
        dash.open("/queues")

        # When it is paused, then emptied through its confirmation
        dash.queue_row(name).get_by_role("button", name="Pause").click()
        dash.expect_flash(f"Paused queue {name}:")
        dash.queue_row(name).get_by_role("link", name="Empty").click()
        expect(dash.page.locator("h1")).to_have_text(f"Empty queue {name}?")
        dash.page.get_by_role("button", name="Delete 1 job").click()

        # Then both reached that queue
        dash.expect_flash(f"Emptied queue {name}: 1 job deleted.")
        found = store.queue(served, name)
        assert found.paused is True
        assert found.counts.get("scheduled", 0) == 0


def test_the_overview_s_waiting_count_lists_queued_scheduled_and_retrying_jobs(
    dash: Tab, served: RunningApi
) -> None:
    # Given a queued job and a scheduled one, in a queue no worker takes
    queued = store.enqueue(served, ok, 1, queue="waits")
    scheduled = store.enqueue(served, ok, 2, queue="waits", delay=3600)

    # When the overview's Waiting count is clicked
    dash.open("/")
    dash.page.locator('[data-total="waiting"] a').click()

    # Then the list is of every waiting job, the scheduled one too
    expect(dash.page.locator("h1")).to_have_text("Jobs: waiting")
    for job_id in (queued, scheduled):
        expect(dash.page.locator(f'#jobs tr[data-job="{job_id}"]')).to_have_count(1)
    # and, for the queue, its tab counts both
    dash.open("/jobs?state=waiting&queue=waits")
    expect(dash.page.locator("#jobs tbody tr")).to_have_count(2)
    expect(dash.page.locator(".tabs a", has_text="waiting")).to_contain_text("2")


def test_an_action_on_an_id_of_thousands_of_characters_still_says_why_nothing_was_done(
    dash: Tab, served: RunningApi
) -> None:
    # Given a form sent for a job id, and a queue name, of 5,000 characters
    dash.open("/queues")
    csrf = dash.page.locator("input[name=csrf]").first.input_value()
    long = "a" * 5000
    for path, page, said in [
        (f"/jobs/{long}/retry", "/jobs", "no longer exists: nothing done."),
        (f"/queues/{long}/pause", "/queues", ": nothing done."),
    ]:
        # When it is posted
        answer = dash.page.request.post(dash.base + path, form={"csrf": csrf}, max_redirects=0)
        assert answer.status == 303
        # Then the page it leads to says why nothing was done, the name cut short
        dash.open(page)
        dash.expect_flash(said)
        assert len(dash.flash().inner_text()) < 300


def test_a_scheduled_job_s_page_says_when_it_runs(dash: Tab, served: RunningApi) -> None:
    # Given a job scheduled a year ahead
    job_id = store.enqueue(served, ok, 1, queue="later", delay=365 * 86400)
    run_at = store.job(served, job_id).run_at

    # When its page is opened
    dash.open(f"/jobs/{job_id}")

    # Then it says the date and time it runs at, in UTC, and how far ahead that is
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(run_at))
    expect(dash.page.locator("#job-summary dt", has_text="Runs").locator("+ dd")).to_have_text(
        re.compile(rf"^{re.escape(when)} \(in 36[45] d")
    )


def test_emptying_a_queue_that_grew_since_its_confirmation_deletes_nothing(
    dash: Tab, served: RunningApi
) -> None:
    # Given the confirmation to empty a queue of one waiting job, left open while three
    # more jobs are enqueued
    store.enqueue(served, ok, 1, queue="grows")
    dash.open("/queues/empty?queue=grows")
    expect(dash.page.locator("#empty-count")).to_contain_text("This deletes 1 job")
    for n in range(3):
        store.enqueue(served, ok, n, queue="grows")

    # When its Delete button is clicked
    dash.page.get_by_role("button", name="Delete 1 job").click()

    # Then nothing is deleted, and the confirmation is shown again with the count of now
    dash.expect_flash("Queue grows has 4 waiting jobs now, not the 1 you confirmed")
    assert store.queue(served, "grows").counts["queued"] == 4
    expect(dash.page.locator("#empty-count")).to_contain_text("This deletes 4 jobs")

    # When that one is confirmed
    dash.page.get_by_role("button", name="Delete 4 jobs").click()
    # Then the four are deleted
    dash.expect_flash("Emptied queue grows: 4 jobs deleted.")
    assert store.queue(served, "grows").counts.get("queued", 0) == 0


def test_an_empty_form_whose_count_is_not_a_number_is_refused_and_deletes_nothing(
    dash: Tab, served: RunningApi
) -> None:
    # Given a queue with a waiting job, and a session's CSRF token
    store.enqueue(served, ok, 1, queue="counted")
    dash.open("/queues/empty?queue=counted")
    csrf = dash.page.locator("input[name=csrf]").first.input_value()

    for count in ["\u00b2", "9" * 5000, "-1", "1e3", ""]:
        # When the Empty form is posted with that count
        answer = dash.page.request.post(
            f"{dash.base}/queues/counted/empty",
            form={"csrf": csrf, "count": count},
            max_redirects=0,
        )

        # Then it is refused as bad input, not a server error, and the job stays
        assert answer.status == 400, (count, answer.status)
        assert "count is not a whole number" in answer.text()
        assert store.queue(served, "counted").counts["queued"] == 1


def test_a_retry_the_store_refuses_for_a_held_unique_key_says_so(
    dash: Tab, served: RunningApi
) -> None:
    # Given a poisoned job with a unique key, and a newer job holding that key, waiting
    poisoned = store.enqueue(
        served, fail_with, "boom", queue="held-keys", max_attempts=1, unique_key="invoice-42"
    )
    store.wait_state(served, poisoned, State.POISONED)
    holder = store.enqueue(served, ok, 1, queue="unserved", unique_key="invoice-42")
    dash.open(f"/jobs/{poisoned}")

    # When Retry is clicked on the poisoned job's page
    dash.page.get_by_role("button", name="Retry").click()

    # Then the page says the store refused, and why: not that the job moved on
    dash.expect_flash(
        f"Job {poisoned} is not retried: job {holder} holds its unique key invoice-42"
    )
    expect(dash.flash()).not_to_contain_text("poisoned now")
    assert store.job(served, poisoned).state is State.POISONED
    assert store.job(served, holder).state is State.QUEUED

    # When all the queue's poisoned jobs are retried
    dash.open("/failed?queue=held-keys")
    dash.page.get_by_role("button", name="Retry all of queue held-keys").click()

    # Then the message counts the one left, and why
    dash.expect_flash(
        "Retried 0 poisoned jobs (queue held-keys). 1 job left poisoned: another job with the "
        "same unique key waits or runs. Retry them once it ends."
    )
    assert store.job(served, poisoned).state is State.POISONED


def _poisoned_with_id(api: RunningApi, job_id: str, queue: str) -> str:
    """A job given ``job_id`` by hand (any text of at most 1,000 bytes), poisoned."""
    task = api.app.get_task(fail_with).with_options(queue=queue, max_attempts=1)
    api.app.enqueue_many([dataclasses.replace(task.prepare("boom"), id=job_id)])
    store.wait_state(api, job_id, State.POISONED)
    return job_id


def test_jobs_whose_ids_were_given_by_hand_open_and_are_acted_on_by_their_links(
    dash: Tab, served: RunningApi
) -> None:
    # Given poisoned jobs whose ids, given by hand, hold what a URL gives a meaning to,
    # or are longer than 200 characters
    odd = ["orders/2024/17", "invoice#42?draft", "50%off", "n" * 300]
    for job_id in odd:
        _poisoned_with_id(served, job_id, "handmade")

    for job_id in odd:
        # When a job's link is followed from the failed jobs
        dash.open("/failed?queue=handmade")
        dash.page.locator(f'#failed tr[data-job="{job_id}"]').get_by_role("link").click()
        # Then it is that job's page
        expect(dash.page.locator("h1")).to_have_text(f"Job {job_id}")

    # When the one job is retried from its page
    dash.page.get_by_role("button", name="Retry").click()
    # Then it is that job which is queued again (and fails a second time)
    dash.expect_flash(f"Job {odd[-1][:200]}… is queued again")
    store.wait_for("the second run", lambda: len(store.job(served, odd[-1]).errors) == 2)


def test_removing_a_job_whose_id_looks_like_another_s_action_removes_that_job_only(
    dash: Tab, served: RunningApi
) -> None:
    # Given two poisoned jobs: inv-7, and one whose id, given by hand, reads as an
    # action on it in a URL
    kept = _poisoned_with_id(served, "inv-7", "handmade")
    removed = _poisoned_with_id(served, "inv-7/delete?x=", "handmade")
    dash.open("/failed?queue=handmade")

    # When the second one's Remove is clicked, and confirmed
    dash.page.once("dialog", lambda dialog: dialog.accept())
    dash.page.locator(f'#failed tr[data-job="{removed}"]').get_by_role(
        "button", name="Remove"
    ).click()

    # Then that job is removed, and the other one kept
    dash.expect_flash(f"Job {removed} deleted.")
    with pytest.raises(JobNotFound):
        store.job(served, removed)
    assert store.job(served, kept).state is State.POISONED


def test_a_screen_reader_hears_when_updates_stop_not_every_refresh(
    dash: Tab, served: RunningApi
) -> None:
    # Given the overview open, its live parts refreshed once
    dash.open("/")
    shown = dash.page.locator("footer").get_by_text(re.compile(r"^Updated "))
    expect(shown).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    announced = dash.page.locator('footer [role="status"], footer [aria-live]')
    first = shown.inner_text()

    # When it is refreshed again
    expect(shown).not_to_have_text(first, timeout=LIVE_TIMEOUT_MS)

    # Then nothing in a live region changed: a screen reader is not told every 3 s
    assert [text.strip() for text in announced.all_inner_texts()] == [""]

    # When the session ends (logged out in another tab)
    csrf = dash.page.locator("form.logout input[name=csrf]").input_value()
    dash.page.request.post(f"{dash.base}/logout", form={"csrf": csrf})

    # Then that is announced
    expect(announced).to_contain_text("Your session has ended", timeout=LIVE_TIMEOUT_MS)


def test_names_of_the_longest_length_wrap_instead_of_widening_the_page(
    browser: Browser, served: RunningApi
) -> None:
    # Given a job in a queue whose name has the 200 characters a name may have, none a
    # space, of a task with a long path
    queue = "q" * 200
    task = "billing.reconciliation.tasks:" + "reconcile_" * 12
    step = Step("main", task=task, kwargs={"invoice": "x" * 300})
    store.call(served, "enqueue", [Job("long-names-1", queue, [step])])
    pages = ["/", "/queues", "/jobs", "/jobs/long-names-1", "/failed", f"/jobs?queue={queue}"]
    pages.append(f"/queues/empty?queue={queue}")

    for width in (375, 1280):
        with tab(browser, served, viewport={"width": width, "height": 800}) as t:
            t.login()
            for path in pages:
                # When each page is opened at a phone's width, and a desktop's
                t.open(path)
                # Then nothing scrolls sideways
                sizes = t.fits_width()
                assert sizes["scroll"] <= sizes["client"], (width, path[:40], sizes)
            # and the queue's buttons are in sight, not past the edge of its table
            t.open("/queues")
            button = t.queue_row(queue).get_by_role("button", name="Pause").bounding_box()
            assert button is not None and button["x"] + button["width"] <= width, button


def test_a_row_s_buttons_name_what_they_act_on_for_a_screen_reader(
    dash: Tab, served: RunningApi
) -> None:
    # Given two queues, and a poisoned job among others
    for name in ("phone", "mail"):
        store.call(served, "create_queue", name)
    job_id = store.enqueue(served, fail_with, "boom", queue="poison", max_attempts=1)
    store.wait_state(served, job_id, State.POISONED)

    # When the Queues page is read by its buttons and links, as a screen reader lists them
    dash.open("/queues")
    # Then each one names its queue
    expect(dash.page.get_by_role("button", name="Pause queue mail", exact=True)).to_have_count(1)
    empty = dash.page.get_by_role("link", name=re.compile(r"^Empty queue mail ?…$"))
    expect(empty).to_have_count(1)

    # And on the failed jobs, each job's buttons name the job
    dash.open("/failed?queue=poison")
    row = dash.page.locator(f'tr[data-job="{job_id}"]')
    expect(row.get_by_role("button", name=f"Retry job {job_id}", exact=True)).to_have_count(1)
    expect(row.get_by_role("button", name=f"Remove job {job_id}", exact=True)).to_have_count(1)
