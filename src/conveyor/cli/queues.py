"""``conveyor queues``: list, create, pause, resume, empty and delete queues."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from conveyor.backends.base import Backend, QueueInfo
from conveyor.cli.common import (
    IncludeOption,
    JsonOption,
    UrlOption,
    ago,
    console,
    err_console,
    fits,
    list_table,
    plain,
    print_json,
    store_url,
    with_store,
)
from conveyor.cli.errors import EXIT_FAILURE, EXIT_INTERRUPTED
from conveyor.exceptions import InvalidJob, QueueNotFound
from conveyor.job import State
from conveyor.task import validate_queue_name

if TYPE_CHECKING:
    from rich.table import Table

queues_app = typer.Typer(
    name="queues",
    help="List, create, pause, resume, empty and delete queues.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

QueueName = Annotated[str, typer.Argument(metavar="NAME", help="The queue.", show_default=False)]
YesOption = Annotated[
    bool,
    typer.Option(
        "--yes",
        "-y",
        help="Do not ask. Without it and without a terminal to ask on, nothing is deleted "
        "(exit 2).",
    ),
]

#: What ``empty`` removes (running jobs finish) and what ``delete`` keeps (running jobs).
WAITING = (State.SCHEDULED, State.QUEUED, State.RETRYING)
KEPT_BY_DELETE = (State.RUNNING, State.CANCELLING)


def _info(queues: list[QueueInfo], name: str) -> QueueInfo:
    for queue in queues:
        if queue.name == name:
            return queue
    raise QueueNotFound(name)


def _queue_dict(queue: QueueInfo) -> dict[str, object]:
    return {
        "name": queue.name,
        "paused": queue.paused,
        "counts": queue.counts,
        "created_at": queue.created_at,
    }


@queues_app.command("list")
def list_queues(
    includes: IncludeOption = None, url: UrlOption = None, json_out: JsonOption = False
) -> None:
    """Every queue with its jobs counted by state."""

    async def fetch(backend: Backend) -> tuple[list[QueueInfo], float]:
        return await backend.list_queues(), await backend.now()

    queues, now = with_store(store_url(includes, url), fetch)
    if json_out:
        print_json([_queue_dict(q) for q in queues])
        return
    out = console()
    if not queues:
        out.print("No queues.")
        return
    table = _counts_table(queues, now)
    out.print(table if fits(out, table) else _narrow_table(queues, now))


def _queue_column(table: Table, queues: list[QueueInfo]) -> None:
    # On a narrow terminal the name folds onto more lines, never cut short ("ema…"): it
    # is what people copy into the next command.
    longest = max(len(queue.name) for queue in queues)
    table.add_column("QUEUE", overflow="fold", min_width=min(max(longest, 5), 40))
    table.add_column("STATUS", no_wrap=True)


def _status(queue: QueueInfo) -> str:
    return "[yellow]paused[/]" if queue.paused else "active"


def _counts_table(queues: list[QueueInfo], now: float) -> Table:
    """A column per state: about 110 columns wide with short queue names."""
    table = list_table()
    _queue_column(table, queues)
    for state in State:
        table.add_column(state.value.upper(), justify="right", no_wrap=True)
    table.add_column("CREATED", no_wrap=True)
    for queue in queues:
        table.add_row(
            plain(queue.name),
            _status(queue),
            *(str(queue.counts.get(s.value, 0)) for s in State),
            ago(queue.created_at, now),
        )
    return table


def _narrow_table(queues: list[QueueInfo], now: float) -> Table:
    """The counts in one column, a line per state that has jobs: eight columns of
    states take 80 columns by their names alone."""
    table = list_table()
    _queue_column(table, queues)
    table.add_column("JOBS", no_wrap=True)
    table.add_column("CREATED", no_wrap=True)
    digits = max(len(str(n)) for queue in queues for n in (0, *queue.counts.values()))
    for queue in queues:
        counts = [
            f"{queue.counts[s.value]:>{digits}} {s.value}"
            for s in State
            if queue.counts.get(s.value)
        ]
        table.add_row(
            plain(queue.name),
            _status(queue),
            "\n".join(counts) or f"{0:>{digits}}",
            ago(queue.created_at, now),
        )
    return table


@queues_app.command("create")
def create(
    name: QueueName,
    includes: IncludeOption = None,
    url: UrlOption = None,
    json_out: JsonOption = False,
) -> None:
    """Create a queue (enqueueing into a new queue also creates it)."""
    validate_queue_name(name)

    async def create(backend: Backend) -> bool:
        existed = name in {q.name for q in await backend.list_queues()}
        if not existed:
            await backend.create_queue(name)
        return not existed

    created = with_store(store_url(includes, url), create, create=True)
    if json_out:
        print_json({"queue": name, "created": created})
    else:
        message = f"Queue {name} " + ("created." if created else "already exists.")
        console().print(message, markup=False)


def _set_paused(
    name: str, paused: bool, includes: list[str] | None, url: str | None, json_out: bool
) -> None:
    async def act(backend: Backend) -> None:
        if paused:
            await backend.pause_queue(name)
        else:
            await backend.resume_queue(name)

    with_store(store_url(includes, url), act)
    if json_out:
        print_json({"queue": name, "paused": paused})
    else:
        console().print(
            f"Queue {name} " + ("paused: workers skip it." if paused else "resumed."), markup=False
        )


@queues_app.command("pause")
def pause(
    name: QueueName,
    includes: IncludeOption = None,
    url: UrlOption = None,
    json_out: JsonOption = False,
) -> None:
    """Stop workers from taking jobs from a queue (running jobs finish; enqueue still works)."""
    _set_paused(name, True, includes, url, json_out)


@queues_app.command("resume")
def resume(
    name: QueueName,
    includes: IncludeOption = None,
    url: UrlOption = None,
    json_out: JsonOption = False,
) -> None:
    """Let workers take jobs from a paused queue again."""
    _set_paused(name, False, includes, url, json_out)


@queues_app.command("empty")
def empty(
    name: QueueName,
    yes: YesOption = False,
    includes: IncludeOption = None,
    url: UrlOption = None,
    json_out: JsonOption = False,
) -> None:
    """Delete the queue's waiting jobs (scheduled, queued, retrying); running jobs finish."""
    target = store_url(includes, url)
    info = with_store(target, lambda b: b.list_queues())
    count = sum(_info(info, name).counts.get(s.value, 0) for s in WAITING)
    if count == 0:
        deleted = 0
    else:
        _confirm(f"Delete {count} waiting job(s) from queue {name!r}?", count, yes)
        deleted = with_store(target, lambda b: b.empty_queue(name))
    if json_out:
        print_json({"queue": name, "deleted": deleted})
    else:
        console().print(f"Deleted {deleted} job(s) from queue {name}.", markup=False)


@queues_app.command("delete")
def delete(
    name: QueueName,
    yes: YesOption = False,
    includes: IncludeOption = None,
    url: UrlOption = None,
    json_out: JsonOption = False,
) -> None:
    """Delete a queue and all its jobs that are not running."""
    target = store_url(includes, url)
    info = _info(with_store(target, lambda b: b.list_queues()), name)
    count = sum(n for state, n in info.counts.items() if State(state) not in KEPT_BY_DELETE)
    _confirm(f"Delete queue {name!r} and its {count} job(s)?", count, yes)
    deleted = with_store(target, lambda b: b.drop_queue(name))
    if json_out:
        print_json({"queue": name, "deleted": True, "jobs_deleted": deleted})
    else:
        console().print(f"Deleted queue {name} and {deleted} job(s).", markup=False)


def _confirm(question: str, count: int, yes: bool) -> None:
    """Ask on the terminal; refuse (exit 2) when there is none to ask on and no --yes."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise InvalidJob(
            "confirmation",
            f"refusing to delete {count} job(s) without --yes (stdin is not a terminal to ask on)",
        )
    try:
        answer = typer.confirm(question, default=False, err=True)
    except typer.Abort as exc:
        # Ctrl-C at the question: exit 130 as anywhere else (the prompt turns it into
        # an Abort); Ctrl-D stays an Abort: exit 1, as a "no".
        if not isinstance(exc.__context__, KeyboardInterrupt):
            raise
        err_console().print("\nAborted: nothing deleted.")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if not answer:
        err_console().print("Aborted: nothing deleted.")
        raise typer.Exit(EXIT_FAILURE)
