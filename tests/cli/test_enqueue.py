"""`conveyor enqueue`: a job from the command line; bad input is refused and stores nothing."""

from __future__ import annotations

import datetime as dt
import json
import os
import time

import pytest

from conveyor.cli import app as cli_app
from conveyor.job import Priority, State

from .conftest import Cli, Store


def test_enqueue_prints_the_id_of_the_stored_job(cli: Cli, store: Store) -> None:
    # When a registered task is enqueued with a JSON array of arguments
    result = cli.ok("enqueue", "-i", str(cli.tasks_file), "add", "[1, 2]")

    # Then stdout is exactly the job id, and the job is stored with those arguments
    job_id = result.stdout.strip()
    assert result.stdout == job_id + "\n"
    job = store.job(job_id)
    assert job.task == "add"
    assert job.steps[0].args == [1, 2]
    assert job.state is State.QUEUED


def test_a_single_json_value_is_one_argument_and_kwargs_are_an_object(
    cli: Cli, store: Store
) -> None:
    job_id = cli.enqueue("mail", '"ada@example.com"', "--kwargs", '{"subject": "hi"}')

    job = store.job(job_id)
    assert job.steps[0].args == ["ada@example.com"]
    assert job.steps[0].kwargs == {"subject": "hi"}
    assert job.queue == "mail"  # the task's own queue
    assert job.max_attempts == 3


def test_options_reach_the_job_and_json_prints_the_document(cli: Cli, store: Store) -> None:
    # When every option is given, with --json
    document = cli.json(
        "enqueue",
        "-i",
        str(cli.tasks_file),
        "add",
        "[1, 2]",
        "--queue",
        "urgent",
        "--priority",
        "high",
        "--delay",
        "1h30m",
        "--unique-key",
        "k1",
        "--metadata",
        '{"by": "cli"}',
        "--max-attempts",
        "7",
        "--timeout",
        "2.5",
    )

    # Then the document is the stored job, with each option applied
    job = store.job(document["id"])
    assert document == job.to_dict()
    assert (job.queue, job.priority, job.unique_key) == ("urgent", Priority.HIGH, "k1")
    assert (job.metadata, job.max_attempts, job.timeout) == ({"by": "cli"}, 7, 2.5)
    assert job.state is State.SCHEDULED
    assert job.run_at == pytest.approx(time.time() + 5400, abs=30)


@pytest.mark.parametrize(
    ("priority", "expected"), [("bulk", 20), ("LOW", 10), ("normal", 0), ("-3", -3), ("42", 42)]
)
def test_priority_takes_an_int_or_a_level_name(
    cli: Cli, store: Store, priority: str, expected: int
) -> None:
    job_id = cli.enqueue("add", "[1, 2]", "--priority", priority)
    assert store.job(job_id).priority == expected


@pytest.mark.parametrize(
    ("delay", "seconds"), [("45", 45), ("30s", 30), ("5m", 300), ("2h", 7200), ("1d", 86400)]
)
def test_delay_takes_seconds_or_a_duration(
    cli: Cli, store: Store, delay: str, seconds: float
) -> None:
    job_id = cli.enqueue("add", "[1, 2]", "--delay", delay)
    job = store.job(job_id)
    assert job.state is State.SCHEDULED
    assert job.run_at == pytest.approx(time.time() + seconds, abs=30)


def test_run_at_with_a_timezone(cli: Cli, store: Store) -> None:
    job_id = cli.enqueue("add", "[1, 2]", "--run-at", "2030-01-02T05:04:05+02:00")
    expected = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC).timestamp()
    assert store.job(job_id).run_at == expected
    job_id = cli.enqueue("add", "[1, 2]", "--run-at", "2030-01-02T03:04:05Z")
    assert store.job(job_id).run_at == expected


def test_an_import_path_needs_no_include(
    cli: Cli, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the tasks module importable from the working directory
    monkeypatch.chdir(cli.dir)

    # When a task is named by its import path and no -i is given
    job_id = cli.enqueue("clitasks:mail", '["ada@example.com"]')

    # Then the module's own app is used: the registered task with its options
    job = store.job(job_id)
    assert (job.task, job.queue, job.max_attempts) == ("mail", "mail", 3)


def test_a_held_unique_key_returns_the_active_job(cli: Cli, store: Store) -> None:
    first = cli.enqueue("add", "[1, 2]", "--unique-key", "once")
    result = cli.ok("enqueue", "-i", str(cli.tasks_file), "add", "[3, 4]", "--unique-key", "once")
    assert result.stdout.strip() == first
    assert "held by active job" in result.stderr
    assert store.count() == 1


def test_the_held_unique_key_notice_is_one_line_on_a_narrow_stderr(cli: Cli) -> None:
    # Given a job holding a unique key
    cli.enqueue("add", "[1, 2]", "--unique-key", "nightly-report-2026-12-06")

    # When the key is enqueued again, with stderr 80 columns wide (as when not a terminal)
    result = cli(
        "enqueue", "-i", str(cli.tasks_file), "add", "[3, 4]", "--unique-key",
        "nightly-report-2026-12-06", COLUMNS="80",
    )  # fmt: skip

    # Then the notice is one line for the script's log (it was folded in two at 80)
    assert result.exit_code == 0
    assert len(result.stderr.splitlines()) == 1, result.stderr


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["nope"], "task"),
        (["add", "Ada"], "args"),
        (["add", "[1, 2"], "args"),
        (["add", "[1]"], "args"),
        (["add", "[1, 2, 3]"], "args"),
        (["add", "[NaN, 1]"], "args"),
        (["add", "--kwargs", "[1, 2]"], "kwargs"),
        (["add", "[1, 2]", "--metadata", "{oops"], "metadata"),
        (["add", "[1, 2]", "--metadata", '"text"'], "metadata"),
        (["add", "[1, 2]", "--priority", "urgent"], "priority"),
        (["add", "[1, 2]", "--priority", "1.5"], "priority"),
        (["add", "[1, 2]", "--delay", "-5m"], "delay"),
        (["add", "[1, 2]", "--delay", "-1"], "delay"),
        (["add", "[1, 2]", "--delay", "soon"], "delay"),
        (["add", "[1, 2]", "--delay", "5x"], "delay"),
        (["add", "[1, 2]", "--delay", "nan"], "delay"),
        (["add", "[1, 2]", "--run-at", "tomorrow"], "run_at"),
        (["add", "[1, 2]", "--run-at", "2030-13-45T00:00:00Z"], "run_at"),
        (["add", "[1, 2]", "--run-at", "2030-01-02T03:04:05"], "run_at"),
        (["add", "[1, 2]", "--delay", "5", "--run-at", "2030-01-02T03:04:05Z"], "delay"),
        (["add", "[1, 2]", "--delay", "99999999999d"], "delay"),
        (["add", "[1, 2]", "--run-at", "9999-12-31T23:59:59-14:00"], "run_at"),
        (["add", "[" + "[" * 3000 + "]" * 3000 + ", 1]"], "args"),
        (["add", "[1, 2]", "--metadata", '{"a": ' + "[" * 3000 + "]" * 3000 + "}"], "metadata"),
        (["add", "[1, 2]", "--queue", "two words"], "queue"),
        (["add", "[1, 2]", "--max-attempts", "0"], "max_attempts"),
        (["add", "[1, 2]", "--timeout", "-1"], "timeout"),
        (["add", "[1, 2]", "--unique-key", ""], "unique_key"),
        (["add", "[1, 2]", "--unique-key", "   "], "unique_key"),
        (["nosuchmodule_xyz:func"], "task"),
        (["clitasks:nosuchfunc"], "task"),
    ],
)
def test_bad_input_exits_2_names_the_field_and_stores_nothing(
    cli: Cli, store: Store, args: list[str], field: str
) -> None:
    result = cli("enqueue", "-i", str(cli.tasks_file), *args)

    assert result.exit_code == 2, result.stdout + result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"error: {field}: "), lines
    assert store.count() == 0


def test_unknown_task_lists_the_registered_ones(cli: Cli) -> None:
    result = cli("enqueue", "-i", str(cli.tasks_file), "ad")
    assert result.exit_code == 2
    assert "registered: add, boom, mail, pid" in result.stderr


@pytest.mark.parametrize(
    ("option", "value", "field"),
    [
        ("--url", "postgresx://db/jobs", "url"),
        ("--url", "sqlite:///{dir}/missing/dir/jobs.db", "url"),
        ("--url", "sqlite:///{dir}/jobs.db?nope=1", "url"),
        # a script's unset variable: not "no --url" (the job went to the include's store)
        ("--url", "", "url"),
        ("--url", "  ", "url"),
        ("-i", "no_such_module_xyz", "include"),
        ("-i", "{dir}/missing.py", "include"),
    ],
)
def test_a_bad_url_or_include_exits_2(
    cli: Cli, store: Store, option: str, value: str, field: str
) -> None:
    include = [] if option == "-i" else ["-i", str(cli.tasks_file)]
    result = cli("enqueue", *include, option, value.format(dir=cli.dir), "add", "[1, 2]")
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith(f"error: {field}: ")
    assert store.count() == 0


def test_no_url_anywhere_is_a_clear_error(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONVEYOR_URL", raising=False)
    result = cli.runner.invoke(cli_app, ["enqueue", "add", "[1, 2]"])
    assert result.exit_code == 2
    assert "url: no store URL: pass --url" in result.stderr


def test_json_output_is_one_document_and_nothing_else(cli: Cli) -> None:
    result = cli.ok("enqueue", "-i", str(cli.tasks_file), "add", "[1, 2]", "--json")
    assert json.loads(result.stdout)["steps"][0]["args"] == [1, 2]
    assert result.stderr == ""


def test_url_is_the_store_of_an_include_whose_app_names_none(
    cli: Cli, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a tasks file whose app is made without a URL (it reads $CONVEYOR_URL), and
    # no $CONVEYOR_URL
    tasks = cli.dir / "urlless_tasks.py"
    tasks.write_text(
        "from conveyor import Conveyor\n"
        "app = Conveyor()\n"
        "@app.task(name='hello')\n"
        "def hello():\n"
        "    return 1\n"
    )
    monkeypatch.delenv("CONVEYOR_URL", raising=False)

    # When a job of it is enqueued with --url (it was "no store URL" at the import)
    result = cli.runner.invoke(cli_app, ["enqueue", "-i", str(tasks), "--url", cli.url, "hello"])

    # Then it is stored there, and $CONVEYOR_URL is as it was
    assert result.exit_code == 0, result.stderr
    assert store.job(result.stdout.strip()).task == "hello"
    assert "CONVEYOR_URL" not in os.environ


def test_a_time_out_of_range_is_told_as_it_was_written(cli: Cli, store: Store) -> None:
    # When --run-at names a time before 1970
    result = cli(
        "enqueue", "-i", str(cli.tasks_file), "add", "[1, 2]", "--run-at", "1900-01-01T00:00:00Z"
    )

    # Then the error gives it back in ISO 8601, not as Python's datetime(...) repr
    assert result.exit_code == 2
    assert result.stderr == (
        "error: run_at: must be from 1970-01-01 to 9999-12-31 UTC, got 1900-01-01T00:00:00+00:00\n"
    )
    assert store.count() == 0
