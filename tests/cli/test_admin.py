"""`conveyor workers`, `conveyor stats`, `conveyor prune`, and the exit-code table."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from conveyor.backends.base import WorkerInfo
from conveyor.cli import errors
from conveyor.exceptions import (
    BackendUnavailable,
    ConfigError,
    ConveyorError,
    InvalidJob,
    JobNotFound,
    JobStateError,
    QueueNotFound,
    TaskNotFound,
)
from conveyor.job import Outcome, State

from .conftest import Cli, Store


def register(store: Store, pid: int = 4242) -> WorkerInfo:
    info = WorkerInfo(
        id=f"box:{pid}:abc",
        host="box",
        pid=pid,
        queues=["default", "mail"],
        concurrency=8,
        processed=12,
        failed=3,
        running=["job-1", "job-2"],
    )
    store.run(lambda b: b.register_worker(info))
    return info


def test_workers_lists_what_each_worker_reports(cli: Cli, store: Store) -> None:
    register(store)
    (worker,) = cli.json("workers")
    assert worker["host"] == "box"
    assert worker["pid"] == 4242
    assert worker["queues"] == ["default", "mail"]
    assert (worker["concurrency"], worker["processed"], worker["failed"]) == (8, 12, 3)
    assert worker["running"] == ["job-1", "job-2"]
    assert worker["stale"] is False
    assert 0 <= worker["heartbeat_age"] < 60

    text = cli.ok("workers").stdout
    for expected in ("HOST", "box", "4242", "default,mail", "2: job-1, job-2"):
        assert expected in text
    assert "STALE" not in text


def test_a_worker_without_a_recent_heartbeat_is_marked_stale(cli: Cli, store: Store) -> None:
    register(store)
    time.sleep(0.01)
    assert cli.json("workers", "--stale-after", "0.001")[0]["stale"] is True
    assert "STALE" in cli.ok("workers", "--stale-after", "0.001").stdout


@pytest.mark.parametrize("seconds", ["nan", "-5", "0", "inf"])
def test_a_stale_after_that_is_not_seconds_is_refused(cli: Cli, seconds: str) -> None:
    result = cli("workers", "--stale-after", seconds)
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("error: stale_after: ")


def test_a_store_and_running_ids_that_look_like_markup_are_printed_as_they_are(
    cli: Cli, store: Store, tmp_path: Path
) -> None:
    # Given a worker running jobs whose ids were given by hand, holding "[/]"
    info = register(store)
    info.running = ["by-hand[/]"]
    store.run(lambda b: b.heartbeat_worker(info))

    # Then `conveyor workers` shows them as they are
    assert "1: by-hand[/]" in cli.ok("workers").stdout

    # Given a SQLite file in a folder whose name holds "[/]"
    folder = tmp_path / "jobs[/]"
    folder.mkdir(parents=True)
    url = f"sqlite:///{folder}/jobs.db"

    # When it is migrated (a MarkupError traceback and exit 1, after migrating)
    # Then the command says what it did, naming the store as it is
    assert f"Migrated {url} from version 0 to " in cli.ok("migrate", "--url", url).stdout


def test_on_an_80_column_terminal_every_column_of_workers_is_readable(
    cli: Cli, store: Store
) -> None:
    # Given a worker on three queues, running four jobs
    running = [f"01a24f07-74fa-706d-b3f7-c3d37b4c80f{n}" for n in range(4)]
    info = WorkerInfo(
        id="w-80",
        host="build-07",
        pid=31337,
        queues=["default", "emails", "high-priority-billing"],
        concurrency=4,
        processed=1234,
        failed=56,
        running=running,
    )
    store.run(lambda b: b.register_worker(info))
    store.run(lambda b: b.heartbeat_worker(info))

    # When the workers are listed for a terminal of 80 columns
    text = cli.ok("workers", COLUMNS="80").stdout
    lines = text.splitlines()

    # Then every header and value is there whole, within 80 columns: the queues one under
    # the other (they were cut to "default,…"), the running jobs counted and their ids
    # whole below the table (they were cut to "01a24f07-…")
    assert lines[0].split() == [
        "HOST",
        "PID",
        "QUEUES",
        "CONC",
        "STARTED",
        "HEARTBEAT",
        "PROCESSED",
        "FAILED",
        "RUNNING",
    ], text
    assert max(len(line.rstrip()) for line in lines) <= 80, text
    row = lines[1].split()
    assert row[:4] == ["build-07", "31337", "default", "4"], text
    assert row[-3:] == ["1234", "56", "4"] and row.count("ago") == 2, text
    queues = [line.split()[0] for line in lines[2:] if line.startswith(" ")]
    assert queues[0] == "emails" and "".join(queues[1:]) == "high-priority-billing", text
    below = " ".join(text[text.index("build-07 31337 runs 4 jobs: ") :].split())
    for job_id in running[:3]:
        assert job_id in below, text
    assert below.endswith("…"), text


def test_no_workers(cli: Cli) -> None:
    cli.ok("migrate")
    assert cli.json("workers") == []
    assert cli.ok("workers").stdout.strip() == "No workers."


@pytest.mark.parametrize(
    "command",
    [
        ["workers"],
        ["stats"],
        ["prune", "--older-than", "1d"],
        ["jobs", "list"],
        ["jobs", "show", "some-id"],
        ["jobs", "retry", "--all-poisoned"],
        ["jobs", "cancel", "some-id"],
        ["jobs", "delete", "some-id"],
        ["queues", "list"],
        ["queues", "pause", "default"],
        ["queues", "empty", "default", "--yes"],
        ["queues", "delete", "default", "--yes"],
    ],
)
def test_a_sqlite_file_that_is_not_there_is_refused_and_not_made(
    cli: Cli, tmp_path: Path, command: list[str]
) -> None:
    # Given a mistyped path of a SQLite store
    typo = tmp_path / "jbos.db"

    # When an admin command is given it
    result = cli(*command, "--url", f"sqlite:///{typo}")

    # Then it exits 2 naming the URL and the missing file, and makes no file
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith(f"error: url: no store at sqlite:///{typo}: ")
    assert "does not exist" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("jbos")) == []


@pytest.mark.parametrize("scheme", ["SQLITE", "SQLite"])
def test_a_missing_sqlite_file_is_refused_whatever_the_case_of_the_scheme(
    cli: Cli, tmp_path: Path, scheme: str
) -> None:
    # Given a mistyped path of a SQLite store, in a URL whose scheme is not lower case
    # (URL schemes are case-insensitive: the store takes it as sqlite://)
    typo = tmp_path / "jbos.db"
    url = f"{scheme}:///{typo}"

    # When an admin command is given it
    result = cli("jobs", "list", "--url", url)

    # Then it is refused as with "sqlite:", and no file is made (the check looked for a
    # lower-case "sqlite:" only: the command answered "No jobs." and left jbos.db)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "does not exist" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("jbos")) == []


def test_queues_create_makes_the_store_it_names(cli: Cli, tmp_path: Path) -> None:
    # Given a SQLite store that does not exist yet
    url = f"sqlite:///{tmp_path}/new.db"

    # When a queue is created in it, then listed
    created = cli("queues", "create", "reports", "--url", url, "--json")

    # Then the store is made, holding the queue
    assert created.exit_code == 0, created.stderr
    listed = json.loads(cli.ok("queues", "list", "--url", url, "--json").stdout)
    assert [q["name"] for q in listed] == ["reports"]


def test_stats_counts_jobs_by_state_and_shows_the_store(cli: Cli, store: Store) -> None:
    cli.enqueue("add", "[1, 2]")
    cli.enqueue("add", "[1, 2]", "--delay", "1h")
    cli.enqueue("boom", "--queue", "failing")
    store.finish("failing", Outcome.poisoned(None))

    figures = cli.json("stats")
    assert figures["counts"]["queued"] == 1
    assert figures["counts"]["scheduled"] == 1
    assert figures["counts"]["poisoned"] == 1
    assert (figures["processed"], figures["failed"]) == (1, 1)
    assert figures["store"]["backend"] == "sqlite"

    text = cli.ok("stats").stdout
    assert "processed" in text
    assert "store.path" in text


def test_prune_deletes_finished_jobs_older_than_the_cutoff(cli: Cli, store: Store) -> None:
    # Given a succeeded job, a poisoned one and a waiting one
    cli.enqueue("add", "[1, 2]", "--queue", "done")
    store.finish("done", Outcome.succeeded())
    bad = cli.enqueue("boom", "--queue", "failing")
    store.finish("failing", Outcome.poisoned(None))
    waiting = cli.enqueue("add", "[1, 2]")

    # Nothing finished a day ago
    assert cli.json("prune", "--older-than", "1d") == {"deleted": 0}
    # Only succeeded ones, of any age
    time.sleep(0.01)
    assert cli.json("prune", "--older-than", "0s", "--state", "succeeded") == {"deleted": 1}
    assert {j.id for j in store.jobs()} == {bad, waiting}
    # Every finished one
    assert "Deleted 1 finished job(s)" in cli.ok("prune", "--older-than", "0").stdout
    assert [j.id for j in store.jobs()] == [waiting]


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--older-than", "soon"], "older_than"),
        (["--older-than", "-1d"], "older_than"),
        (["--older-than", "1d", "--state", "queued"], "state"),
        (["--older-than", "1d", "--state", "nonsense"], "state"),
        # a --state naming none (an unset variable) is not "every finished state"
        (["--older-than", "0", "--state", ""], "state"),
        (["--older-than", "0", "--state", " , "], "state"),
    ],
)
def test_prune_bad_input_exits_2_and_deletes_nothing(
    cli: Cli, store: Store, args: list[str], field: str
) -> None:
    cli.enqueue("add", "[1, 2]", "--queue", "done")
    store.finish("done", Outcome.succeeded())
    result = cli("prune", *args)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {field}: ")
    assert [j.state for j in store.jobs()] == [State.SUCCEEDED]


def test_prune_needs_older_than(cli: Cli) -> None:
    result = cli("prune")
    assert result.exit_code == 2
    assert "--older-than" in result.stderr


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (InvalidJob("delay", "x"), 2),
        (TaskNotFound("t"), 2),
        (ConfigError("url", "x"), 2),
        (QueueNotFound("q"), 2),
        (JobNotFound("j"), 3),
        (JobStateError("j", "running", "delete"), 4),
        (BackendUnavailable("down"), 1),
        (ConveyorError("other"), 1),
    ],
)
def test_each_error_has_one_exit_code(exc: ConveyorError, code: int) -> None:
    assert errors.exit_code(exc) == code
    assert "\n" not in errors.describe(exc)


def test_version(cli: Cli) -> None:
    assert cli.ok("--version").stdout.startswith("conveyor ")


def test_commands_and_the_serve_seed_convention_are_documented(cli: Cli) -> None:
    text = cli.ok("--help").stdout
    for command in ("worker", "serve", "enqueue", "jobs", "queues", "workers", "stats", "prune"):
        assert command in text
    assert "seed()" in cli.ok("serve", "--help").stdout
