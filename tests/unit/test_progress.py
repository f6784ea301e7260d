"""A job's progress as the API, the CLI and the dashboard show it."""

from __future__ import annotations

import math

import pytest

from conveyor.context import TaskContext
from conveyor.job import Job, Progress, Step, new_job_id


@pytest.mark.parametrize(
    ("completed", "total", "percent"),
    [(3, 10, 30.0), (1, 3, 33.33), (0, 0, None), (5, 0, None), (10, 10, 100.0)],
)
def test_percent_of_a_progress_reported_within_its_total(
    completed: float, total: float, percent: float | None
) -> None:
    assert Progress(completed, total).percent == percent


@pytest.mark.parametrize(("completed", "total"), [(5, 3), (-1, 10), (3, -10)])
def test_percent_stays_within_0_and_100_when_a_task_reports_past_its_total(
    completed: float, total: float
) -> None:
    # Given a progress a task reported past its total, or below zero
    progress = Progress(completed, total)

    # Then its numbers are kept as reported, and the percent shown fits a bar
    assert (progress.completed, progress.total) == (completed, total)
    assert progress.percent is not None and 0.0 <= progress.percent <= 100.0
    assert progress.to_dict()["percent"] == progress.percent


@pytest.mark.parametrize(
    ("done", "total", "field"),
    [
        (10**400, 10, "progress.done"),
        (1, 10**400, "progress.total"),
        (math.nan, 10, "progress.done"),
        (10**5000, 10, "progress.done"),  # too long to write out: "Exceeds the limit ..."
    ],
    ids=["huge done", "huge total", "NaN done", "done of 5,001 digits"],
)
def test_a_progress_that_is_not_a_finite_number_is_a_value_error(
    done: float, total: float, field: str
) -> None:
    # Given a task's context
    step = Step(name="main", task="t")
    ctx = TaskContext(
        job=Job(id=new_job_id(), queue="default", steps=[step]), step=step, worker_id="w"
    )

    # When the task reports a number no float holds (it was an OverflowError)
    # Then the ValueError its docstring promises names the number, and nothing changed
    with pytest.raises(ValueError, match=field):
        ctx.progress(done, total)
    assert (ctx.job.progress.completed, ctx.job.progress.total) == (0, 0)
