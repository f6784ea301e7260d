"""`conveyor jobs list | show | retry | cancel | delete` on a real store."""

from __future__ import annotations

import socket

import pytest

from conveyor.backends.base import Backend
from conveyor.job import Job, Outcome, State, Step

from .conftest import Cli, Store

BOOM = {
    "attempt": 1,
    "step": "main",
    "at": 1700000000.0,
    "type": "RuntimeError",
    "message": "RuntimeError: this task always fails",
    "traceback": 'Traceback (most recent call last):\n  File "clitasks.py", line 30, in boom\n'
    "RuntimeError: this task always fails\n",
}


def poisoned(cli: Cli, store: Store, queue: str = "failing") -> str:
    job_id = cli.enqueue("boom", "--queue", queue)
    store.finish(queue, Outcome.poisoned(BOOM))
    return job_id


def test_list_shows_jobs_newest_first_filtered_by_state_queue_and_task(
    cli: Cli, store: Store
) -> None:
    # Given jobs in several queues and states
    first = cli.enqueue("add", "[1, 2]")
    mail = cli.enqueue("mail", '"ada@example.com"')
    bad = poisoned(cli, store)
    later = cli.enqueue("add", "[3, 4]", "--delay", "1h")

    # Then list shows them all, newest first, and the filters narrow it
    assert [j["id"] for j in cli.json("jobs", "list")["jobs"]] == [later, bad, mail, first]
    assert ids(cli, "--state", "queued") == [mail, first]
    assert ids(cli, "--state", "queued,scheduled") == [later, mail, first]
    assert ids(cli, "-s", "poisoned", "-s", "scheduled") == [later, bad]
    assert ids(cli, "--queue", "mail") == [mail]
    assert ids(cli, "--task", "add") == [later, first]


def ids(cli: Cli, *args: str) -> list[str]:
    return [j["id"] for j in cli.json("jobs", "list", *args)["jobs"]]


def test_list_pages_with_a_cursor(cli: Cli) -> None:
    created = [cli.enqueue("add", f"[{i}, 0]") for i in range(5)]
    seen: list[str] = []
    cursor: list[str] = []
    while True:
        page = cli.json("jobs", "list", "--limit", "2", *cursor)
        seen += [j["id"] for j in page["jobs"]]
        if page["next_cursor"] is None:
            break
        cursor = ["--cursor", page["next_cursor"]]
    assert seen == created[::-1]


def test_list_for_humans_is_a_table_with_a_hint_for_the_next_page(cli: Cli, store: Store) -> None:
    cli.enqueue("add", "[1, 2]")
    bad = poisoned(cli, store)
    result = cli.ok("jobs", "list", "--limit", "1")
    assert bad in result.stdout
    assert "poisoned" in result.stdout
    assert "RuntimeError: this task always fails" in result.stdout
    assert f"--cursor {bad}" in result.stdout
    assert cli.ok("jobs", "list", "--state", "running").stdout.strip() == "No jobs."


def test_list_at_80_columns_prints_each_job_as_a_record_with_nothing_cut(
    cli: Cli, store: Store
) -> None:
    # Given a poisoned job in a queue with a long name, and a job scheduled for later
    bad = poisoned(cli, store, queue="emails-transactional-high-priority")
    later = cli.enqueue("add", "[1, 2]", "--delay", "1h")

    # When the jobs are listed for a terminal of 80 columns
    text = cli.ok("jobs", "list", COLUMNS="80").stdout
    lines = [line.rstrip() for line in text.splitlines()]

    # Then each job is a record within 80 columns: its id, state and attempts on a line,
    # its task and queue whole on the next (they folded into slivers beside the id),
    # when it runs if later, and its last error whole
    assert max(len(line) for line in lines) <= 80, text
    assert lines[0].split() == ["JOB", "STATE", "ATTEMPTS"], text
    first = next(i for i, line in enumerate(lines) if line.startswith(later))
    assert lines[first].split() == [later, "scheduled", "0/5"], text
    assert lines[first + 1].startswith("add in default, runs in 59m"), text
    second = next(i for i, line in enumerate(lines) if line.startswith(bad))
    assert lines[second].split() == [bad, "poisoned", "1/1"], text
    assert lines[second + 1] == "boom in emails-transactional-high-priority", text
    assert lines[second + 2] == "RuntimeError: this task always fails", text


def test_show_prints_every_field_the_steps_and_the_error_history(cli: Cli, store: Store) -> None:
    job_id = poisoned(cli, store)

    document = cli.json("jobs", "show", job_id)
    assert document == store.job(job_id).to_dict()

    text = cli.ok("jobs", "show", job_id).stdout
    for expected in (
        job_id,
        "poisoned",
        "attempts",
        "1/1",
        "boom()",
        "errors (1)",
        "Traceback (most recent call last)",
        'File "clitasks.py", line 30',
    ):
        assert expected in text


def test_show_prints_the_head_of_a_large_result_and_json_all_of_it(cli: Cli, store: Store) -> None:
    # Given a job whose result is 5 MB of JSON
    job_id = cli.enqueue("add", "[1, 2]")
    (job,) = store.claim("default")
    store.run(lambda backend: _finish(backend, job))

    # Then jobs show prints its head and says how much there is; --json prints it all
    text = cli.ok("jobs", "show", job_id).stdout
    assert "characters in all; --json shows them" in text
    assert len(text) < 100_000
    assert cli.json("jobs", "show", job_id)["result"] == BIG


BIG = ["x" * 1000] * 5000


async def _finish(backend: Backend, job: Job) -> None:
    job.result = BIG
    await backend.finish([(job, Outcome.succeeded())])


def test_retry_queues_a_poisoned_job_again(cli: Cli, store: Store) -> None:
    job_id = poisoned(cli, store)
    document = cli.json("jobs", "retry", job_id)
    assert document["state"] == "queued"
    job = store.job(job_id)
    assert (job.state, job.attempts) == (State.QUEUED, 0)


def test_retry_all_poisoned_of_one_queue(cli: Cli, store: Store) -> None:
    in_failing = poisoned(cli, store)
    in_mail = poisoned(cli, store, "mail")
    assert cli.json("jobs", "retry", "--all-poisoned", "--queue", "mail") == {
        "retried": 1,
        "held": 0,
    }
    assert store.job(in_mail).state is State.QUEUED
    assert store.job(in_failing).state is State.POISONED
    assert "Retried 1 poisoned job(s)." in cli.ok("jobs", "retry", "--all-poisoned").stdout
    assert store.job(in_failing).state is State.QUEUED


def test_retry_all_says_how_many_jobs_stay_poisoned_for_a_held_unique_key(
    cli: Cli, store: Store
) -> None:
    # Given a poisoned job of key "report-7", and a new job of that key waiting
    held = cli.enqueue("boom", "--queue", "keys", "--unique-key", "report-7")
    free = cli.enqueue("boom", "--queue", "keys", "--unique-key", "report-8")
    store.finish("keys", Outcome.poisoned(BOOM), count=2)
    holder = cli.enqueue("boom", "--queue", "keys", "--unique-key", "report-7")

    # When every poisoned job is retried
    out = cli.ok("jobs", "retry", "--all-poisoned", "--queue", "keys").stdout

    # Then the free one is queued, and the output says one stays poisoned, and why
    assert "Retried 1 poisoned job(s)." in out
    assert "1 job(s) left poisoned: another job with the same unique key waits or runs" in out
    assert store.job(free).state is State.QUEUED
    assert store.job(held).state is State.POISONED
    assert store.job(holder).state is State.QUEUED
    # and --json counts them
    assert cli.json("jobs", "retry", "--all-poisoned", "--queue", "keys") == {
        "retried": 0,
        "held": 1,
    }


def test_cancel_a_waiting_job_and_a_running_one(cli: Cli, store: Store) -> None:
    waiting = cli.enqueue("add", "[1, 2]", "--delay", "1h")
    assert cli.json("jobs", "cancel", waiting)["state"] == "cancelled"
    assert store.job(waiting).state is State.CANCELLED

    running = cli.enqueue("mail", '"ada@example.com"')
    store.claim("mail")
    result = cli.ok("jobs", "cancel", running)
    assert "cancelling" in result.stdout
    assert store.job(running).state is State.CANCELLING


def test_a_cancel_reason_that_is_not_utf8_exits_2_and_changes_nothing(
    cli: Cli, store: Store
) -> None:
    # Given a waiting job
    waiting = cli.enqueue("add", "[1, 2]")
    before = store.job(waiting)

    # When it is cancelled with a reason holding a byte that is not UTF-8 (Python
    # gives it as a lone surrogate; it was a traceback and exit 1)
    result = cli("jobs", "cancel", waiting, "--reason", "bad \udcff byte")

    # Then exit 2 with one line naming the reason, and the job is as it was
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("error: reason: contains a lone surrogate")
    assert store.job(waiting).version == before.version


def test_ids_that_look_like_markup_are_printed_as_they_are(cli: Cli, store: Store) -> None:
    # Given jobs whose ids were given by hand, holding what Rich reads as markup
    ids = ["by-hand[/]", "[bold]by-hand", "by-hand[/]2"]
    store.run(lambda b: b.enqueue([Job(i, "default", [Step("main", task="add")]) for i in ids]))

    # When every jobs command prints them (each was a MarkupError traceback and exit 1,
    # after the cancel, retry or delete had been done; `jobs list` failed for the store)
    listed = cli.ok("jobs", "list", "--limit", "1")
    shown = cli.ok("jobs", "show", ids[0])
    cancelled = cli.ok("jobs", "cancel", ids[0])
    retried = cli.ok("jobs", "retry", ids[0])
    deleted = cli.ok("jobs", "delete", ids[1])

    # Then each prints the id as it is
    assert ids[2] in listed.stdout and f"--cursor {ids[2]}" in listed.stdout
    assert ids[0] in shown.stdout
    assert f"Job {ids[0]} is cancelled." in cancelled.stdout
    assert f"Job {ids[0]} is queued again." in retried.stdout
    assert f"Deleted job {ids[1]}." in deleted.stdout


def test_ids_that_end_with_a_backslash_are_printed_as_they_are(cli: Cli, store: Store) -> None:
    # Given jobs whose ids, given by hand, end with a backslash
    ids = ["a-back\\", "b-back\\"]
    store.run(lambda b: b.enqueue([Job(i, "default", [Step("main", task="add")]) for i in ids]))

    # When the jobs commands print them
    listed = cli.ok("jobs", "list", "--limit", "1")
    shown = cli.ok("jobs", "show", ids[0])
    cancelled = cli.ok("jobs", "cancel", ids[0])
    retried = cli.ok("jobs", "retry", ids[0])

    # Then each prints the id as it is, one backslash, as it is to be copied (escaped
    # as markup, the backslash was doubled: "Job a-back\\ is cancelled.", and a
    # copied id named no job)
    for result in (listed, shown, cancelled, retried):
        assert "\\\\" not in result.stdout, result.stdout
    assert f"{ids[1]} " in listed.stdout and f"--cursor {ids[1]}" in listed.stdout
    assert f" {ids[0]} " in shown.stdout
    assert f"Job {ids[0]} is cancelled." in cancelled.stdout
    assert f"Job {ids[0]} is queued again." in retried.stdout


def test_control_characters_of_stored_text_are_shown_escaped_not_sent_to_the_terminal(
    cli: Cli, store: Store
) -> None:
    # Given a job whose id, task, step name and unique key hold escape sequences, and
    # whose error quotes a response body holding one (as an HTTP step's error does)
    job = Job(
        "id-\x1b[2J",
        "default",
        [Step("step\x1b]0;title\x07", task="task\x1b[31m")],
        unique_key="key\x9b1m",
    )
    store.run(lambda b: b.enqueue([job]))
    error = {"attempt": 1, "type": "HttpStepError", "message": "status 500: \x1b[2Jgone"}
    store.finish("default", Outcome.poisoned(error))

    # When the jobs and queues commands print them for a human
    listed = cli.ok("jobs", "list")
    shown = cli.ok("jobs", "show", job.id)
    retried = cli.ok("jobs", "retry", job.id)

    # Then no control character reaches the terminal: each is shown as \xNN
    for result in (listed, shown, retried):
        assert not any(c in result.stdout for c in "\x1b\x07\x9b"), repr(result.stdout)
    assert "id-\\x1b[2J" in listed.stdout and "status 500: \\x1b[2Jgone" in listed.stdout
    for text in ("task\\x1b[31m", "step\\x1b]0;title\\x07", "key\\x9b1m"):
        assert text in shown.stdout, shown.stdout
    # and --json keeps them as they are (JSON escapes them itself)
    assert cli.json("jobs", "show", job.id)["id"] == job.id


def test_names_and_texts_that_end_with_a_backslash_are_printed_as_they_are(
    cli: Cli, store: Store
) -> None:
    # Given a job whose queue, task, unique key and step name end with a backslash
    job = Job(
        "job-1",
        "q\\",
        [Step("main\\", task="tasks:add\\")],
        unique_key="key\\",
    )
    store.run(lambda b: b.enqueue([job]))

    # When the queues and jobs commands print them
    queues = cli.ok("queues", "list")
    listed = cli.ok("jobs", "list")
    shown = cli.ok("jobs", "show", "job-1")

    # Then each is printed with its one backslash (escaped as markup in a table cell,
    # each came out with two: "q\\\\")
    for result in (queues, listed, shown):
        assert "\\\\" not in result.stdout, result.stdout
    assert "q\\ " in queues.stdout
    assert "tasks:add\\ " in listed.stdout and "q\\ " in listed.stdout
    for text in ("tasks:add\\", "key\\", "main\\"):
        assert text in shown.stdout, shown.stdout


def test_delete_removes_the_job(cli: Cli, store: Store) -> None:
    job_id = cli.enqueue("add", "[1, 2]")
    assert cli.json("jobs", "delete", job_id) == {"deleted": job_id}
    assert store.count() == 0


@pytest.mark.parametrize("command", ["show", "retry", "cancel", "delete"])
def test_an_unknown_job_id_exits_3(cli: Cli, store: Store, command: str) -> None:
    cli.enqueue("add", "[1, 2]")
    result = cli("jobs", command, "01900000-0000-7000-8000-000000000000")
    assert result.exit_code == 3
    assert result.stderr == "error: id: no job '01900000-0000-7000-8000-000000000000'\n"
    assert result.stdout == ""
    assert [j.state for j in store.jobs()] == [State.QUEUED]


@pytest.mark.parametrize("command", ["show", "retry", "cancel", "delete"])
@pytest.mark.parametrize(
    ("job_id", "problem"),
    [
        ("", "must be a non-blank string"),  # a script's unset variable: jobs delete "$ID"
        ("  ", "must be a non-blank string"),
        ("id-\udcff", "lone surrogate"),  # a byte that is not UTF-8, as Python reads argv
        ("x" * 1001, "at most 1,000 bytes"),
    ],
)
def test_a_job_id_no_job_can_have_is_bad_input_exit_2_and_changes_nothing(
    cli: Cli, store: Store, command: str, job_id: str, problem: str
) -> None:
    # Given a store with a job
    cli.enqueue("add", "[1, 2]")
    before = [(j.id, j.version) for j in store.jobs()]

    # When a jobs command is given an id no job can have
    result = cli("jobs", command, job_id, "--json")

    # Then it is refused as bad input naming the id (not "no job", exit 3), the JSON
    # output stays empty, and the store is as it was
    assert result.exit_code == 2, (result.exit_code, result.stderr)
    assert result.stderr.startswith("error: id: "), result.stderr
    assert problem in result.stderr
    assert result.stdout == ""
    assert [(j.id, j.version) for j in store.jobs()] == before


def test_a_state_that_does_not_allow_the_action_exits_4_and_changes_nothing(
    cli: Cli, store: Store
) -> None:
    # Given a succeeded job and a running one
    done = cli.enqueue("add", "[1, 2]")
    store.finish("default", Outcome.succeeded())
    running = cli.enqueue("mail", '"ada@example.com"')
    store.claim("mail")
    before = {j.id: j.version for j in store.jobs()}

    # Then retrying or cancelling the finished one, and deleting the running one, exit 4
    for args in (("retry", done), ("cancel", done), ("delete", running)):
        result = cli("jobs", *args)
        assert result.exit_code == 4, result.stderr
        assert result.stderr.startswith("error: state: ")
    assert {j.id: j.version for j in store.jobs()} == before


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["list", "--state", "bogus"], "state"),
        (["list", "--state", ""], "state"),
        (["list", "--task", ""], "task"),
        (["list", "--cursor", ""], "cursor"),
        (["list", "--cursor", "id-\udcff"], "cursor"),
        (["retry", "--all-poisoned", "--task", " "], "task"),
        (["list", "--limit", "0"], "limit"),
        (["list", "--limit", "5000"], "limit"),
        (["list", "--queue", "nope"], "queue"),
        (["retry"], "id"),
        (["retry", "some-id", "--all-poisoned"], "id"),
        (["retry", "--all-poisoned", "--queue", "nope"], "queue"),
        (["retry", "some-id", "--queue", "default"], "queue"),
    ],
)
def test_bad_input_exits_2_and_names_the_field(
    cli: Cli, store: Store, args: list[str], field: str
) -> None:
    poisoned(cli, store)
    result = cli("jobs", *args)
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith(f"error: {field}: ")
    assert len(result.stderr.splitlines()) == 1
    assert [j.state for j in store.jobs()] == [State.POISONED]


def test_a_usage_error_is_one_line_and_exits_2(cli: Cli) -> None:
    result = cli("jobs", "list", "--limit", "many")
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1
    assert "'--limit'" in result.stderr
    assert "conveyor jobs list --help" in result.stderr


def test_an_unavailable_store_exits_1(cli: Cli) -> None:
    # Given a store whose server does not answer (a port nobody listens on)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = cli("jobs", "list", "--url", f"redis://127.0.0.1:{port}/0")
    assert result.exit_code == 1, result.stderr
    assert result.stderr.startswith("error: store: ")


def test_a_store_file_that_is_not_a_database_exits_2(cli: Cli) -> None:
    # Given a "store" that is not a SQLite database: a file to fix, not an outage
    garbage = cli.dir / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    result = cli("jobs", "list", "--url", f"sqlite:///{garbage}")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: url: ")
    assert "file is not a database" in result.stderr
