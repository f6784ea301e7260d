"""``conveyor workers``, ``conveyor stats`` and ``conveyor prune``."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Any

import typer

from conveyor.backends.base import Backend, Stats, WorkerInfo
from conveyor.cli.common import (
    IncludeOption,
    JsonOption,
    UrlOption,
    ago,
    console,
    fits,
    list_table,
    plain,
    print_json,
    store_url,
    styled_state,
    with_store,
)
from conveyor.cli.parsing import DURATION_HELP, parse_duration, parse_states
from conveyor.exceptions import ConfigError, InvalidJob
from conveyor.job import FINAL_STATES, State

if TYPE_CHECKING:
    from rich.table import Table

STALE_AFTER = 60.0


def workers(
    stale_after: Annotated[
        float,
        typer.Option(
            "--stale-after",
            metavar="SECONDS",
            help="Mark workers whose last heartbeat is older than this as stale.",
        ),
    ] = STALE_AFTER,
    includes: IncludeOption = None,
    url: UrlOption = None,
    json_out: JsonOption = False,
) -> None:
    """Registered workers and what they are doing.

    Host, pid, queues, concurrency, started, last heartbeat, processed, failed and
    running jobs. STALE: no heartbeat for --stale-after seconds; the process is
    probably gone, and its jobs run again once their leases expire. After an hour
    without a heartbeat the live workers remove the registration.
    """

    if not 0 < stale_after < math.inf:  # (NaN too)
        raise ConfigError("stale_after", f"expected seconds > 0, got {stale_after}")

    async def fetch(backend: Backend) -> tuple[list[WorkerInfo], float]:
        return await backend.list_workers(), await backend.now()

    found, now = with_store(store_url(includes, url), fetch)
    if json_out:
        print_json([_worker_dict(w, now, stale_after) for w in found])
        return
    out = console()
    if not found:
        out.print("No workers.")
        return
    table = _workers_table(found, now, stale_after, narrow=False)
    if fits(out, table):
        out.print(table)
        return
    out.print(_workers_table(found, now, stale_after, narrow=True))
    for worker in found:
        if worker.running:
            # Below the table, whole: an id is 36 characters, more than a column gets.
            jobs = f"{len(worker.running)} job" + ("s" if len(worker.running) > 1 else "")
            out.print(plain(f"{worker.host} {worker.pid} runs {jobs}: {_ids(worker.running)}"))


_WORKER_COLUMNS = (
    "HOST",
    "PID",
    "QUEUES",
    "CONC",
    "STARTED",
    "HEARTBEAT",
    "PROCESSED",
    "FAILED",
    "RUNNING",
)
_NUMBERS = ("PID", "CONC", "PROCESSED", "FAILED")
_RUNNING_WIDTH = 40


def _workers_table(
    found: list[WorkerInfo], now: float, stale_after: float, *, narrow: bool
) -> Table:
    """A row per worker. ``narrow`` (its natural width does not fit): names and queues
    fold onto more lines, never cut ("default,…"); RUNNING is the count of jobs."""
    table = list_table()
    for column in _WORKER_COLUMNS:
        folds = column in ("HOST", "QUEUES")
        table.add_column(
            column,
            justify="right" if column in _NUMBERS or (narrow and column == "RUNNING") else "left",
            overflow="fold" if folds else "ellipsis",
            no_wrap=not folds and (narrow or column != "RUNNING"),
            # Wide: the ids one under the other, each whole ("4: " and an id and ", ").
            max_width=_RUNNING_WIDTH if column == "RUNNING" and not narrow else None,
        )
    for worker in found:
        stale = now - worker.heartbeat_at > stale_after
        heartbeat = ago(worker.heartbeat_at, now)
        table.add_row(
            plain(worker.host),
            str(worker.pid),
            plain(("\n" if narrow else ",").join(worker.queues)),
            str(worker.concurrency),
            ago(worker.started_at, now),
            f"[bold red]{heartbeat} STALE[/]" if stale else heartbeat,
            str(worker.processed),
            str(worker.failed),
            # ids as they are (see jobs._job_is)
            str(len(worker.running) or "-") if narrow else plain(_running(worker.running)),
        )
    return table


def _running(job_ids: list[str]) -> str:
    if not job_ids:
        return "-"
    return f"{len(job_ids)}: {_ids(job_ids)}"


def _ids(job_ids: list[str]) -> str:
    """The first three ids, and "…" for the others."""
    return ", ".join(job_ids[:3]) + (", …" if len(job_ids) > 3 else "")


def _worker_dict(worker: WorkerInfo, now: float, stale_after: float) -> dict[str, Any]:
    data = worker.to_dict()
    data["heartbeat_age"] = max(now - worker.heartbeat_at, 0.0)
    data["stale"] = now - worker.heartbeat_at > stale_after
    return data


def stats(
    includes: IncludeOption = None, url: UrlOption = None, json_out: JsonOption = False
) -> None:
    """Jobs processed and failed, jobs by state, and the store's own figures."""
    figures: Stats = with_store(store_url(includes, url), lambda b: b.stats())
    if json_out:
        print_json(figures.to_dict())
        return
    from rich.table import Table

    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("processed", str(figures.processed))
    table.add_row("failed", str(figures.failed))
    table.add_row("", "")
    for state, count in figures.counts.items():
        table.add_row(styled_state(state), str(count))
    table.add_row("total", str(sum(figures.counts.values())))
    table.add_row("", "")
    for key, value in figures.store.items():
        table.add_row(plain(f"store.{key}"), plain(str(value)))
    console().print(table)


def prune(
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than",
            metavar="DURATION",
            help=f"Delete jobs that finished longer ago than this: {DURATION_HELP}.",
            show_default=False,
        ),
    ],
    state: Annotated[
        list[str] | None,
        typer.Option(
            "--state",
            "-s",
            metavar="STATE",
            help="Only these finished states (repeatable or comma list; default all "
            "three): succeeded, poisoned, cancelled.",
        ),
    ] = None,
    includes: IncludeOption = None,
    url: UrlOption = None,
    json_out: JsonOption = False,
) -> None:
    """Delete finished jobs (succeeded, poisoned, cancelled) older than --older-than."""
    age = parse_duration(older_than, "older_than")
    if age < 0:
        raise InvalidJob("older_than", f"must be >= 0, got {older_than!r}")
    final = [s for s in State if s in FINAL_STATES]
    states = parse_states(state, final)

    async def run(backend: Backend) -> int:
        before = await backend.now() - age
        return await backend.prune(before, sorted(states or final))

    deleted = with_store(store_url(includes, url), run)
    if json_out:
        print_json({"deleted": deleted})
    else:
        console().print(f"Deleted {deleted} finished job(s) older than {older_than}.")
