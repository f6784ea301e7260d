"""``handle.cancel(reason)``: the reason is kept in the job's error history, so it is text
every store keeps, checked at the call on every store alike."""

from __future__ import annotations

import pytest

from conveyor import Conveyor, InvalidJob, State


@pytest.mark.parametrize("reason", ["nul\x00here", "lone\ud800", None, 5])
def test_a_reason_no_store_keeps_is_refused_and_the_job_still_waits(
    app_on_each_store: Conveyor, reason: object
) -> None:
    app = app_on_each_store

    @app.task(name="noop")
    def noop() -> None: ...

    # Given a waiting job
    handle = noop.enqueue()

    # When it is cancelled with a reason that is not text every store keeps
    # (it was a psycopg DataError on PostgreSQL, a UnicodeEncodeError everywhere for a
    # lone surrogate, and None or 5 were kept as they were on one store, as text or
    # refused on the others)
    with pytest.raises(InvalidJob) as info:
        handle.cancel(reason)  # type: ignore[arg-type]

    # Then InvalidJob names the reason, and the job is as it was
    assert info.value.field == "reason"
    job = app.job(handle.id).job
    assert (job.state, job.errors, job.version) == (State.QUEUED, [], handle.job.version)


def test_a_reason_is_kept_in_the_error_history(app_on_each_store: Conveyor) -> None:
    app = app_on_each_store

    @app.task(name="noop")
    def noop() -> None: ...

    # Given a waiting job; When it is cancelled with a reason
    handle = noop.enqueue()
    assert handle.cancel("no longer needé") is State.CANCELLED

    # Then the reason is its last error
    assert app.job(handle.id).job.last_error == "no longer needé"
