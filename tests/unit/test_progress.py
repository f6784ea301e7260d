"""A job's progress as the API, the CLI and the dashboard show it."""

from __future__ import annotations

import pytest

from conveyor.job import Progress


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
