"""``conveyor jobs``: list, show, retry, cancel and delete jobs."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from conveyor.backends.base import HELD_KEY_WHY, Backend, JobFilter, Page, RetriedAll
from conveyor.cli.common import (
    IncludeOption,
    JsonOption,
    UrlOption,
    ago,
    console,
    list_table,
    plain,
    print_json,
    require_queue,
    store_url,
    styled_state,
    when,
    with_store,
)
from conveyor.cli.parsing import parse_states
from conveyor.exceptions import InvalidJob, JobNotFound, JobStateError
from conveyor.task import check_job_id, check_reason

if TYPE_CHECKING:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text
from conveyor.job import Job, State

jobs_app = typer.Typer(
    name="jobs",
    help="List, show, retry, cancel and delete jobs.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

JobId = Annotated[str, typer.Argument(metavar="ID", help="The job id.", show_default=False)]


def _given_cursor(value: str | None) -> str | None:
    """A cursor is the id of the last job of a page: one no job can have (blank, not
    UTF-8) is refused, where ``--cursor ''`` listed from the start and one not UTF-8
    said "No more jobs."."""
    if value is not None:
        try:
            check_job_id(value)
        except InvalidJob as exc:
            raise InvalidJob("cursor", f"{exc.problem} (pass the one a page printed)") from None
    return value


def _named_task(value: str | None) -> str | None:
    """``--task ''`` (a script's unset variable) names no task: refused. It matched no
    job, and ``retry --all-poisoned`` said "Retried 0" as if none had failed."""
    if value is not None and not value.strip():
        raise InvalidJob("task", f"empty ({value!r}): name a task as `jobs list` shows it")
    return value


MAX_LIMIT = 1000


@jobs_app.command("list")
def list_jobs(
    state: Annotated[
        list[str] | None,
        typer.Option(
            "--state",
            "-s",
            metavar="STATE",
            help="Only jobs in these states (repeatable or comma list): "
            + ", ".join(s.value for s in State)
            + ".",
        ),
    ] = None,
    queue: Annotated[str | None, typer.Option("--queue", "-q", help="Only this queue.")] = None,
    task: Annotated[
        str | None, typer.Option("--task", "-t", callback=_named_task, help="Only this task.")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", help=f"Jobs per page (1-{MAX_LIMIT}).")
    ] = 50,
    cursor: Annotated[
        str | None,
        typer.Option(
            "--cursor",
            callback=_given_cursor,
            help="Continue after this page (printed below a full page).",
        ),
    ] = None,
    includes: IncludeOption = None,
    url: UrlOption = None,
    json_out: JsonOption = False,
) -> None:
    """Jobs, newest first, one page at a time."""
    states = parse_states(state)
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidJob("limit", f"must be between 1 and {MAX_LIMIT}, got {limit}")

    async def fetch(backend: Backend) -> tuple[Page, float]:
        if queue is not None:
            await require_queue(backend, queue)
        page = await backend.list_jobs(
            JobFilter(states=states, queue=queue, task=task), cursor, limit
        )
        return page, await backend.now()

    page, now = with_store(store_url(includes, url), fetch)
    if json_out:
        print_json({"jobs": [j.to_dict() for j in page.jobs], "next_cursor": page.next_cursor})
        return
    out = console()
    if not page.jobs:
        out.print("No jobs." if cursor is None else "No more jobs.")
        return
    if out.width < NARROW:
        out.print(_jobs_records(page.jobs, now))
    else:
        out.print(_jobs_table(page.jobs, now, wide=out.width >= WIDE))
    if page.next_cursor:
        from rich.text import Text

        out.print(Text(f"More: add --cursor {page.next_cursor}", style="dim"))


#: Terminal width from which `jobs list` also shows priority and times.
WIDE = 140
#: Terminal width below which a job is a record of three lines, not a row: beside
#: an id (36 characters) and the state, task names, queues and errors would fold into
#: slivers of a few characters.
NARROW = 100


def _jobs_table(jobs: list[Job], now: float, *, wide: bool) -> Table:
    table = list_table()
    table.add_column("ID", no_wrap=True)  # never folded: it is what people copy
    table.add_column("TASK", overflow="fold")
    table.add_column("QUEUE", overflow="fold")
    table.add_column("STATE", no_wrap=True)
    if wide:
        table.add_column("PRI", justify="right", no_wrap=True)
    table.add_column("ATTEMPTS", justify="right", no_wrap=True)
    if wide:
        table.add_column("CREATED", no_wrap=True)
        table.add_column("RUN AT", no_wrap=True)
    table.add_column("LAST ERROR", overflow="fold")
    for job in jobs:
        cells: list[str | Text] = [
            plain(job.id),  # as it is, not markup: see _job_is
            plain(job.task or "-"),
            plain(job.queue),
            styled_state(job.state.value) + _progress_suffix(job),
            str(job.priority),
            f"{job.attempts}/{job.max_attempts}",
            ago(job.created_at, now),
            ago(job.run_at, now) if job.state.is_waiting else "",
            plain(_clip(job.last_error or "", 60)),
        ]
        if not wide:
            del cells[6:8], cells[4]
        table.add_row(*cells)
    return table


def _jobs_records(jobs: list[Job], now: float) -> Table:
    """A job per record: its id, state and attempts on the first line, its task and
    queue on the next, its last error (if any) on the third, a blank line after."""
    from rich.text import Text

    table = list_table(spaced=True)
    table.add_column("JOB", overflow="fold")
    table.add_column("STATE", no_wrap=True)
    table.add_column("ATTEMPTS", justify="right", no_wrap=True)
    for job in jobs:
        lines = [plain(job.id), plain(f"{job.task or '-'} in {job.queue}")]
        if job.state.is_waiting and job.run_at > now:
            lines[1].append(f", runs {ago(job.run_at, now)}")
        if job.last_error:
            lines.append(plain(_clip(job.last_error, 120)))
        table.add_row(
            Text("\n").join(lines),
            styled_state(job.state.value) + _progress_suffix(job),
            f"{job.attempts}/{job.max_attempts}",
        )
    return table


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _progress_suffix(job: Job) -> str:
    percent = job.progress.percent
    return f" {percent:g}%" if job.state is State.RUNNING and percent is not None else ""


@jobs_app.command("show")
def show(
    job_id: JobId,
    includes: IncludeOption = None,
    url: UrlOption = None,
    json_out: JsonOption = False,
) -> None:
    """Everything about one job: fields, steps, progress, result, error history."""
    check_job_id(job_id)

    async def fetch(backend: Backend) -> tuple[Job, float]:
        return await backend.get(job_id), await backend.now()

    job, now = with_store(store_url(includes, url), fetch)
    if json_out:
        print_json(job.to_dict())
        return
    from rich.panel import Panel
    from rich.text import Text

    out = console()
    out.print(_fields(job, now))
    out.print(_steps(job))
    if job.result is not None:
        out.print(Panel(_json_text(job.result), title="result", title_align="left", expand=False))
    if job.metadata:
        out.print(
            Panel(_json_text(job.metadata), title="metadata", title_align="left", expand=False)
        )
    if job.errors:
        out.print(Text(f"errors ({len(job.errors)})", style="bold"))
        for error in job.errors:
            out.print(_error(error, now))


def _fields(job: Job, now: float) -> Table:
    from rich.table import Table

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    progress = job.progress
    rows: list[tuple[str, str | Text]] = [
        ("id", plain(job.id)),  # as it is, not markup: see _job_is
        ("task", plain(job.task or "-")),
        ("queue", plain(job.queue)),
        ("state", styled_state(job.state.value)),
        ("priority", str(job.priority)),
        ("attempts", f"{job.attempts}/{job.max_attempts}"),
        ("retry", ", ".join(f"{k}={v:g}" for k, v in job.retry.to_dict().items())),
        ("timeout", "-" if job.timeout is None else f"{job.timeout:g}s"),
        ("run at", when(job.run_at, now)),
        ("current step", f"{job.current_step + 1}/{len(job.steps)}"),
        ("progress", _progress(job) if progress.total or progress.message else "-"),
        ("unique key", plain(job.unique_key or "-")),
        ("tenant", plain(job.tenant or "-")),
        ("version", str(job.version)),
        ("created", when(job.created_at, now)),
        ("started", when(job.started_at, now)),
        ("finished", when(job.finished_at, now)),
        ("updated", when(job.updated_at, now)),
        ("worker", plain(job.worker_id or "-")),
        ("lease until", when(job.lease_until, now)),
    ]
    for key, value in rows:
        grid.add_row(key, value)
    return grid


def _progress(job: Job) -> Text:

    p = job.progress
    text = f"{p.completed:g}/{p.total:g}"
    if p.percent is not None:
        text += f" ({p.percent:g}%)"
    if p.message:
        text += f" {p.message}"
    return plain(text)  # as it is, not markup: the message is the task's own text


def _steps(job: Job) -> Table:
    from rich.table import Table

    table = Table(title="steps", title_justify="left", title_style="bold", header_style="bold")
    for column in ("#", "NAME", "KIND", "CALL", "STATE", "ATTEMPTS", "RESULT / LAST ERROR"):
        table.add_column(column, overflow="fold")
    for index, step in enumerate(job.steps):
        if step.kind == "task":
            call = f"{step.task}({_call_args(step.args, step.kwargs)})"
        else:
            request = step.request or {}
            call = f"{request.get('method', 'GET')} {request.get('url', '?')}"
        marker = "▶ " if index == job.current_step and not job.state.is_final else ""
        outcome = step.last_error if step.last_error else _short_json(step.result)
        table.add_row(
            f"{marker}{index + 1}",
            plain(step.name),
            step.kind,
            plain(call),
            styled_state(step.state) if step.state != "failed" else "[red]failed[/]",
            str(step.attempts),
            plain(outcome),
        )
    return table


def _call_args(args: list[Any], kwargs: dict[str, Any]) -> str:
    parts = [json.dumps(a, ensure_ascii=False) for a in args]
    parts += [f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in kwargs.items()]
    return _clip(", ".join(parts), 200)


def _short_json(value: Any) -> str:
    if value is None:
        return ""
    return _clip(json.dumps(value, ensure_ascii=False, default=str), 200)


#: Characters of a result (or progress, ...) `jobs show` prints; --json prints it all.
SHOWN_JSON = 20_000


def _json_text(value: Any) -> Text:
    from rich.text import Text

    # Rich lays out every character of a panel: a 30 MB result took minutes.
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    if len(text) > SHOWN_JSON:
        text = f"{text[:SHOWN_JSON]}\n… ({len(text):,} characters in all; --json shows them)"
    return Text(text)


def _error(error: dict[str, Any], now: float) -> Group:
    from rich.console import Group
    from rich.text import Text

    head = Text.assemble(
        (f"attempt {error.get('attempt', '?')}", "bold"),
        f" · step {error.get('step') or '-'} · {when(error.get('at'), now)} · ",
        (str(error.get("type", "error")), "red"),
    )
    parts: list[Any] = [head, plain("  " + str(error.get("message", "")))]
    trace = error.get("traceback")
    if trace:
        parts.append(
            plain("\n".join("    " + ln for ln in str(trace).rstrip().splitlines()), style="dim")
        )
    return Group(*parts)


@jobs_app.command("retry")
def retry(
    job_id: Annotated[
        str | None, typer.Argument(metavar="ID", help="The job id.", show_default=False)
    ] = None,
    all_poisoned: Annotated[
        bool, typer.Option("--all-poisoned", help="Retry every poisoned job (of --queue / --task).")
    ] = False,
    queue: Annotated[str | None, typer.Option("--queue", "-q", help="With --all-poisoned.")] = None,
    task: Annotated[
        str | None,
        typer.Option("--task", "-t", callback=_named_task, help="With --all-poisoned."),
    ] = None,
    includes: IncludeOption = None,
    url: UrlOption = None,
    json_out: JsonOption = False,
) -> None:
    """Queue a poisoned or cancelled job again (attempts reset, resuming at the failed step)."""
    if (job_id is None) == (not all_poisoned):
        raise InvalidJob("id", "give a job ID or --all-poisoned (not both)")
    if job_id is not None and (queue is not None or task is not None):
        raise InvalidJob("queue", "--queue and --task go with --all-poisoned, not with an ID")
    if job_id is not None:
        check_job_id(job_id)
    target = store_url(includes, url)
    if job_id is not None:
        job = with_store(target, lambda b: b.retry(job_id))
        if json_out:
            print_json(job.to_dict())
        else:
            console().print(_job_is(job.id, styled_state(job.state.value), " again."))
        return

    async def retry_all(backend: Backend) -> RetriedAll:
        if queue is not None:
            await require_queue(backend, queue)
        return await backend.retry_all(
            JobFilter(states=frozenset({State.POISONED}), queue=queue, task=task)
        )

    done = with_store(target, retry_all)
    if json_out:
        print_json({"retried": done.retried, "held": done.held})
        return
    console().print(f"Retried {done.retried} poisoned job(s).")
    if done.held:
        console().print(f"{done.held} job(s) left poisoned: {HELD_KEY_WHY}")


@jobs_app.command("cancel")
def cancel(
    job_id: JobId,
    reason: Annotated[str, typer.Option("--reason", help="Kept in the job's error history.")] = (
        "cancelled from the command line"
    ),
    includes: IncludeOption = None,
    url: UrlOption = None,
    json_out: JsonOption = False,
) -> None:
    """Cancel a job: a waiting one ends cancelled; a running one goes cancelling and its
    worker stops it. Exit 4 when the job had already finished otherwise."""
    check_job_id(job_id)
    check_reason(reason)
    job = with_store(store_url(includes, url), lambda b: b.cancel(job_id, reason))
    if job.state in (State.SUCCEEDED, State.POISONED):
        raise JobStateError(job.id, job.state.value, "cancel a finished job")
    if json_out:
        print_json(job.to_dict())
    elif job.state is State.CANCELLING:
        console().print(_job_is(job.id, styled_state("cancelling"), ": its worker will stop it."))
    else:
        console().print(_job_is(job.id, styled_state(job.state.value), "."))


@jobs_app.command("delete")
def delete(
    job_id: JobId,
    includes: IncludeOption = None,
    url: UrlOption = None,
    json_out: JsonOption = False,
) -> None:
    """Delete a job that is not running (cancel a running one first)."""
    check_job_id(job_id)
    if not with_store(store_url(includes, url), lambda b: b.delete(job_id)):
        raise JobNotFound(job_id)
    if json_out:
        print_json({"deleted": job_id})
    else:
        console().print(f"Deleted job {job_id}.", markup=False)


def _job_is(job_id: str, state: str, rest: str) -> Text:
    """ "Job <id> is <state><rest>", the id as it is and ``state`` markup. An id given by
    hand may hold "[/]", and one ending with a backslash came out with two once
    escaped as markup (Rich's escape adds one in case a tag follows)."""
    from rich.text import Text

    return Text.assemble("Job ", plain(job_id), " is ", Text.from_markup(state), rest)
