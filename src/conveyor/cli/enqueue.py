"""``conveyor enqueue``: store one job from the command line."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer

from conveyor.app import Conveyor
from conveyor.cli.common import IncludeOption, JsonOption, UrlOption, err_console, load, print_json
from conveyor.cli.parsing import (
    DURATION_HELP,
    parse_args,
    parse_duration,
    parse_object,
    parse_time,
)
from conveyor.exceptions import ConfigError, TaskNotFound
from conveyor.job import Job
from conveyor.task import Task


def enqueue(
    task: Annotated[
        str,
        typer.Argument(
            help="A registered task name (after loading the includes) or an import path "
            "pkg.module:function.",
            show_default=False,
        ),
    ],
    args_json: Annotated[
        str | None,
        typer.Argument(
            metavar="ARGS_JSON",
            help="Positional arguments as a JSON array, e.g. '[1, \"a\"]'; any other JSON "
            "value is a single argument, e.g. '\"Ada\"' or 42.",
            show_default=False,
        ),
    ] = None,
    kwargs_json: Annotated[
        str | None,
        typer.Option("--kwargs", metavar="JSON", help="Keyword arguments as a JSON object."),
    ] = None,
    queue: Annotated[
        str | None, typer.Option("--queue", "-q", help="Queue (default: the task's).")
    ] = None,
    priority: Annotated[
        str | None,
        typer.Option(
            "--priority",
            "-p",
            metavar="P",
            help="An int (lower runs first) or high, normal, low, bulk.",
        ),
    ] = None,
    delay: Annotated[
        str | None,
        typer.Option("--delay", metavar="DURATION", help=f"Run later: {DURATION_HELP}."),
    ] = None,
    run_at: Annotated[
        str | None,
        typer.Option(
            "--run-at",
            metavar="TIME",
            help="Run at an ISO 8601 time with a timezone, e.g. 2030-01-02T03:04:05Z or "
            "...+02:00. A time without a timezone is refused (not guessed).",
        ),
    ] = None,
    unique_key: Annotated[
        str | None,
        typer.Option(
            "--unique-key",
            metavar="KEY",
            help="While a job with this key is active, return it instead of adding another.",
        ),
    ] = None,
    metadata: Annotated[
        str | None,
        typer.Option("--metadata", metavar="JSON", help="A JSON object kept with the job."),
    ] = None,
    max_attempts: Annotated[
        int | None, typer.Option("--max-attempts", help="Attempts before the job is poisoned.")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", metavar="SECONDS", help="Time limit per attempt.")
    ] = None,
    includes: IncludeOption = None,
    url: UrlOption = None,
    json_out: JsonOption = False,
) -> None:
    """Enqueue a job; prints its id (with --json, the job document).

    Examples:

        conveyor enqueue -i ./tasks.py tasks:send '["ada@example.com"]' --delay 5m

        conveyor enqueue billing.jobs:charge 42 --priority high --unique-key charge-42
    """
    # Parse everything first: bad input must stop before anything is imported or stored.
    args = parse_args(args_json)
    kwargs = parse_object(kwargs_json, "kwargs") or {}
    options: dict[str, Any] = {
        "queue": queue,
        "priority": priority,
        "delay": None if delay is None else parse_duration(delay, "delay"),
        "run_at": None if run_at is None else parse_time(run_at, "run_at"),
        "unique_key": unique_key,
        "metadata": parse_object(metadata, "metadata"),
        "max_attempts": max_attempts,
        "timeout": timeout,
    }
    app = _load_for(task, includes, url)
    job = (
        _task(app, task)
        .with_options(**{k: v for k, v in options.items() if v is not None})
        .prepare(*args, **kwargs)
    )
    stored = asyncio.run(_store(app, job))
    if stored.id != job.id:
        err_console().print(
            f"unique key {unique_key!r} is held by active job {stored.id} ({stored.state}): "
            "not enqueued again",
            markup=False,
        )
    if json_out:
        print_json(stored.to_dict())
    else:
        typer.echo(stored.id)


def _load_for(task: str, includes: list[str] | None, url: str | None) -> Conveyor:
    """The app; without includes, an import path's module is loaded as if ``-i`` named it,
    so that its app's task options (queue, retries, ...) apply."""
    if includes or ":" not in task:
        return load(includes, url)
    module = task.partition(":")[0]
    try:
        return load([module], url)
    except ConfigError as exc:
        if exc.field == "include":
            raise TaskNotFound(task, f"{task!r}: {exc.problem}") from None
        raise


def _task(app: Conveyor, name: str) -> Task:
    try:
        return app.get_task(name)
    except TaskNotFound as exc:
        if not app.tasks:
            raise
        known = ", ".join(sorted(app.tasks))
        raise TaskNotFound(name, f"unknown task {name!r}; registered: {known}") from exc


async def _store(app: Conveyor, job: Job) -> Job:
    try:
        return (await app.enqueue_jobs_async([job]))[0].job
    finally:
        await app.aclose()
