"""The ``conveyor`` command (Typer + Rich).

One module per command group::

    worker.py    conveyor worker, conveyor serve
    api.py       conveyor api
    enqueue.py   conveyor enqueue
    jobs.py      conveyor jobs list | show | retry | cancel | delete
    queues.py    conveyor queues list | create | pause | resume | empty | delete
    admin.py     conveyor workers, conveyor stats, conveyor prune
    migrate.py   conveyor migrate
    errors.py    exit codes, and the one place errors become them
    common.py    --url / -i / --json, the store, output helpers
    parsing.py   JSON, durations, times, states

Every command takes ``--url`` (or ``$CONVEYOR_URL``) and ``-i MODULE``; the ones that
report take ``--json`` (one JSON document on stdout, nothing else). Exit codes:
0 ok, 1 operational failure, 2 bad input (nothing written), 3 no such job,
4 the job's state does not allow the action; see :mod:`conveyor.cli.errors`.

Rich is imported inside the functions that print with it, not at the top of a module:
every command imports all of these modules, and ``conveyor worker``, which prints no
table, would otherwise spend 25 ms of its start-up importing Rich (measured here).
"""

from __future__ import annotations

from typing import Annotated

import typer

from conveyor import __version__
from conveyor.cli import admin, api, enqueue, migrate, worker
from conveyor.cli.errors import ConveyorGroup
from conveyor.cli.jobs import jobs_app
from conveyor.cli.queues import queues_app

__all__ = ["app", "main"]

app = typer.Typer(
    name="conveyor",
    cls=ConveyorGroup,
    help="conveyor: background jobs for Python.\n\n"
    "Exit codes: 0 ok · 1 operational failure (store unavailable, ...) · 2 bad input, "
    "nothing written · 3 no such job · 4 the job's state does not allow the action.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_show_locals=False,  # locals may hold store passwords
    context_settings={"help_option_names": ["-h", "--help"]},
)

RUN = "Run"
JOBS = "Jobs and queues"
WATCH = "Watch and maintain"

app.command("worker", rich_help_panel=RUN)(worker.worker)
app.command("serve", rich_help_panel=RUN)(worker.serve)
app.command("api", rich_help_panel=RUN)(api.api)
app.command("enqueue", rich_help_panel=JOBS)(enqueue.enqueue)
app.add_typer(jobs_app, rich_help_panel=JOBS)
app.add_typer(queues_app, rich_help_panel=JOBS)
app.command("workers", rich_help_panel=WATCH)(admin.workers)
app.command("stats", rich_help_panel=WATCH)(admin.stats)
app.command("prune", rich_help_panel=WATCH)(admin.prune)
app.command("migrate", rich_help_panel=WATCH)(migrate.migrate)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"conveyor {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """conveyor: background jobs for Python."""


def main() -> None:
    """The console script ``conveyor`` (and ``python -m conveyor``)."""
    app()
