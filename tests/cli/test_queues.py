"""`conveyor queues ...`: admin commands; destructive ones count first and ask."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conveyor.job import Outcome, State

from .conftest import Cli, Store


def test_list_counts_jobs_by_state_and_shows_paused_queues(cli: Cli, store: Store) -> None:
    cli.enqueue("add", "[1, 2]")
    cli.enqueue("add", "[1, 2]", "--delay", "1h")
    cli.enqueue("mail", '"ada@example.com"')
    cli.ok("queues", "pause", "mail")

    queues = {q["name"]: q for q in cli.json("queues", "list")}
    assert set(queues) == {"default", "mail"}
    assert queues["default"]["counts"]["queued"] == 1
    assert queues["default"]["counts"]["scheduled"] == 1
    assert queues["mail"]["paused"] is True

    text = cli.ok("queues", "list").stdout
    assert "paused" in text
    assert "SCHEDULED" in text


def test_on_an_80_column_terminal_queue_names_are_shown_whole(cli: Cli) -> None:
    # Given queues with names longer than a narrow table's share of 80 columns
    names = ["emails_for_customers_of_europe", "invoices.monthly.retry"]
    for name in names:
        cli.ok("queues", "create", name)

    # When they are listed for a terminal of 80 columns
    text = cli.ok("queues", "list", COLUMNS="80").stdout

    # Then each name is on one line, whole (it was cut to "ema…"), and the table fits
    for name in names:
        assert any(line.startswith(name + " ") for line in text.splitlines()), text
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 80


def test_on_an_80_column_terminal_every_column_is_readable(cli: Cli, store: Store) -> None:
    # Given queues with jobs in several states, one queue paused and one empty
    for _ in range(3):
        cli.enqueue("add", "[1, 2]", "--queue", "high-priority-billing")
    cli.enqueue("add", "[1, 2]", "--delay", "1h")
    cli.enqueue("mail", '"ada@example.com"')
    store.finish("high-priority-billing", Outcome.succeeded())
    cli.ok("queues", "pause", "mail")
    cli.ok("queues", "create", "reports")

    # When they are listed for a terminal of 80 columns
    text = cli.ok("queues", "list", COLUMNS="80").stdout
    lines = text.splitlines()

    # Then every header is there whole (the states' were cut to "SC…", the creation time
    # to "2026-12"), and so is a value of each column, within 80 columns
    assert lines[0].split() == ["QUEUE", "STATUS", "JOBS", "CREATED"], text
    assert max(len(line.rstrip()) for line in lines) <= 80, text
    rows = {line.split()[0]: line for line in lines[1:] if not line.startswith(" ")}
    assert set(rows) == {"default", "high-priority-billing", "mail", "reports"}, text
    assert rows["mail"].split()[1:4] == ["paused", "1", "queued"], text
    assert rows["default"].split()[1:4] == ["active", "1", "scheduled"], text
    assert rows["reports"].split()[1:3] == ["active", "0"], text
    assert rows["reports"].rstrip().endswith(" ago"), text
    # And a queue's other states are on the lines below its first
    billing = text[text.index("high-priority-billing") :]
    assert "2 queued" in billing and "1 succeeded" in billing, text

    # When the terminal is wide enough for a column per state
    wide = cli.ok("queues", "list", COLUMNS="200").stdout

    # Then it has them, and the same creation times
    assert wide.splitlines()[0].split() == [
        "QUEUE",
        "STATUS",
        *(s.value.upper() for s in State),
        "CREATED",
    ]
    assert "ago" in wide.splitlines()[1]


def test_create_pause_resume(cli: Cli) -> None:
    assert cli.json("queues", "create", "reports") == {"queue": "reports", "created": True}
    assert cli.json("queues", "create", "reports") == {"queue": "reports", "created": False}
    assert "paused" in cli.ok("queues", "pause", "reports").stdout
    assert paused(cli) == {"reports": True}
    assert cli.json("queues", "resume", "reports") == {"queue": "reports", "paused": False}
    assert paused(cli) == {"reports": False}


def paused(cli: Cli) -> dict[str, bool]:
    return {q["name"]: q["paused"] for q in cli.json("queues", "list")}


def test_empty_with_yes_deletes_the_waiting_jobs_and_keeps_running_ones(
    cli: Cli, store: Store
) -> None:
    # Given a queue with a running job and three waiting ones
    running = cli.enqueue("add", "[0, 0]")
    store.claim("default")
    for i in range(3):
        cli.enqueue("add", f"[{i}, 1]")

    # When it is emptied with --yes
    assert cli.json("queues", "empty", "default", "--yes") == {"queue": "default", "deleted": 3}

    # Then only the running job is left
    assert [j.id for j in store.jobs()] == [running]


def test_delete_with_yes_drops_the_queue_and_its_jobs(cli: Cli, store: Store) -> None:
    cli.enqueue("mail", '"a@example.com"')
    keep = cli.enqueue("add", "[1, 2]")
    result = cli.ok("queues", "delete", "mail", "-y")
    assert "Deleted queue mail and 1 job(s)." in result.stdout
    assert [j.id for j in store.jobs()] == [keep]
    assert "mail" not in paused(cli)


@pytest.mark.parametrize("command", ["empty", "delete"])
def test_without_yes_and_without_a_terminal_nothing_is_deleted(
    cli: Cli, store: Store, command: str
) -> None:
    cli.enqueue("add", "[1, 2]")
    cli.enqueue("add", "[3, 4]")

    result = cli("queues", command, "default")

    assert result.exit_code == 2
    assert result.stderr == (
        "error: confirmation: refusing to delete 2 job(s) without --yes "
        "(stdin is not a terminal to ask on)\n"
    )
    assert store.count() == 2


def test_emptying_an_empty_queue_asks_nothing(cli: Cli) -> None:
    cli.ok("queues", "create", "idle")
    assert cli.json("queues", "empty", "idle") == {"queue": "idle", "deleted": 0}


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["pause", "nope"], "queue"),
        (["resume", "nope"], "queue"),
        (["empty", "nope", "--yes"], "queue"),
        (["delete", "nope", "--yes"], "queue"),
        (["create", "two words"], "queue"),
        (["create", "a,b"], "queue"),
        # an escape sequence: `queues list` played it on the operator's terminal
        (["create", "q\x1b[2J"], "queue"),
        (["create", "bell\x07"], "queue"),
    ],
)
def test_an_unknown_or_bad_queue_exits_2_and_changes_nothing(
    cli: Cli, store: Store, args: list[str], field: str
) -> None:
    cli.enqueue("add", "[1, 2]")
    result = cli("queues", *args)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {field}: ")
    assert [q["name"] for q in cli.json("queues", "list")] == ["default"]
    assert store.count() == 1


# -- on a terminal: the question is asked -------------------------------------------
def run_on_terminal(args: list[str], answer: str, url: str, cwd: Path) -> tuple[int, str]:
    """Run `python -m conveyor ARGS` on a pseudo-terminal, answer the prompt (``"^C"``:
    interrupt it, as Ctrl-C does), and return the exit code and everything it wrote."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "conveyor", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=cwd,
        env=dict(os.environ, CONVEYOR_URL=url, COLUMNS="200"),
    )
    os.close(slave)
    output = b""
    answered = False
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # the terminal closed: the process is gone
                    break
                if not chunk:
                    break
                output += chunk
            if not answered and b"[y/N]" in output:
                if answer == "^C":
                    if not _reading_stdin(proc.pid):
                        continue
                    proc.send_signal(signal.SIGINT)
                else:
                    os.write(master, answer.encode() + b"\n")
                answered = True
            if proc.poll() is not None and not ready:
                break
        return proc.wait(10), output.decode(errors="replace")
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _reading_stdin(pid: int) -> bool:
    """Whether the process waits in read(2) on its stdin (Linux: /proc/PID/syscall).

    Ctrl-C is sent only then: a person presses it at the prompt, and a SIGINT that came
    between the prompt's text and the read would be noted by Python and then wait
    behind the read that follows (Python checks its signals when a read is interrupted,
    and one already handled interrupts none): the prompt then waits for a line.
    """
    try:
        with open(f"/proc/{pid}/syscall") as f:
            call = f.read().split()
    except OSError:
        return True  # (gone, or no /proc: send it anyway)
    return len(call) > 1 and call[0] == "0" and int(call[1], 16) == 0


@pytest.mark.parametrize(("answer", "code", "left"), [("y", 0, 0), ("n", 1, 2), ("^C", 130, 2)])
def test_on_a_terminal_it_asks_saying_how_many_jobs_go(
    cli: Cli, store: Store, url: str, answer: str, code: int, left: int
) -> None:
    cli.enqueue("add", "[1, 2]")
    cli.enqueue("add", "[3, 4]", "--delay", "1h")
    finished = cli.enqueue("boom", "--queue", "other")
    store.finish("other", Outcome.poisoned(None))

    exit_code, output = run_on_terminal(["queues", "empty", "default"], answer, url, cli.dir)

    assert "Delete 2 waiting job(s) from queue 'default'? [y/N]" in output
    assert exit_code == code, output
    assert store.count() == left + 1
    assert store.job(finished).state is State.POISONED
