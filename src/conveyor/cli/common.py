"""What every command shares: the ``--url`` / ``-i`` / ``--json`` options, finding
the store, running backend calls, and printing for humans or for scripts."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from urllib.parse import urlsplit

import typer

from conveyor.app import Conveyor
from conveyor.backends import create_backend
from conveyor.backends.base import Backend
from conveyor.exceptions import ConfigError, QueueNotFound
from conveyor.loader import load_app

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

T = TypeVar("T")


def _given_url(value: str | None) -> str | None:
    """``--url ''`` (a script's unset variable) is refused: taken for no --url, the
    command went on with the store of the app the includes define, and ``enqueue``
    wrote there. (An empty $CONVEYOR_URL is no URL, as for any variable click reads.)"""
    if value is not None and not value.strip():
        raise ConfigError("url", f"empty ({value!r}): pass a store URL such as sqlite:///jobs.db")
    return value


UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="CONVEYOR_URL",
        callback=_given_url,
        metavar="URL",
        help="The store, e.g. sqlite:///jobs.db, postgresql://user@host/db?schema=conveyor "
        "or redis://host:6379/0?prefix=conveyor "
        "(default: $CONVEYOR_URL, else the URL of the app the includes define).",
    ),
]
IncludeOption = Annotated[
    list[str] | None,
    typer.Option(
        "--include",
        "-i",
        metavar="MODULE",
        help="Import tasks from ./tasks.py, pkg.module or pkg.module:app (repeatable).",
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout, nothing else.")
]


def verbose_option(help: str) -> Any:
    """``-v`` / ``-vv`` (a count: no value shown in --help) for the commands that log."""
    return typer.Option("--verbose", "-v", count=True, metavar="", show_default=False, help=help)


NO_URL = "no store URL: pass --url URL (e.g. sqlite:///jobs.db) or set CONVEYOR_URL"


# -- finding the app and the store ------------------------------------------------
def load(includes: Sequence[str] | None, url: str | None) -> Conveyor:
    """The app the includes define, on ``url`` when given (loader.load_app, with the
    CLI's words when no URL can be found)."""
    if not includes and not url:
        raise ConfigError("url", NO_URL)
    try:
        return load_app(list(includes or ()), url)
    except ConfigError as exc:
        if exc.field == "url" and not url and "CONVEYOR_URL" in exc.problem:
            raise ConfigError("url", f"{NO_URL} (the includes define no Conveyor app)") from None
        raise


def store_url(includes: Sequence[str] | None, url: str | None) -> str:
    """``--url`` / $CONVEYOR_URL, else the URL of the app the includes define."""
    if url:
        return url
    return load(includes, None).url


def with_store(url: str, action: Callable[[Backend], Awaitable[T]], *, create: bool = False) -> T:
    """Open the store, run ``action(backend)`` on a fresh event loop, close the store.

    A SQLite file that is not there is refused (ConfigError) unless ``create``: opening
    one makes it, and a mistyped path would show an empty store and leave a file behind.
    """
    backend = create_backend(url)  # a bad URL fails here, before anything is touched
    if not create:
        _refuse_missing_file(url)

    async def run() -> T:
        try:
            await backend.open()
            return await action(backend)
        finally:
            await backend.close()

    return asyncio.run(run())


def _refuse_missing_file(url: str) -> None:
    # (the scheme as the store reads it: any case, "SQLITE:///jobs.db" is SQLite too)
    if urlsplit(url).scheme != "sqlite":
        return  # a server's store: a missing schema is refused by the store itself
    from conveyor.backends.sqlite import parse_sqlite_url

    path, _ = parse_sqlite_url(url)
    if not os.path.exists(path):
        raise ConfigError(
            "url",
            f"no store at {url}: {path} does not exist (a worker, `conveyor enqueue` "
            "or `conveyor migrate` creates it)",
        )


def check_store(url: str) -> None:
    """Refuse to start on a store that cannot be used now: one clear error (a server that
    does not answer, a schema older than the code, a right the role lacks) before any
    process or socket is started, instead of workers restarting over and over or an API
    answering 503s.
    Only the long-running commands ask, so this is also where they warn about the
    store's set-up (a Redis without persistence): once, as they start."""
    backend = create_backend(url)

    async def run() -> None:
        await backend.check()
        await backend.check_rights()
        await backend.warn_about_setup()

    asyncio.run(run())


async def require_queue(backend: Backend, name: str) -> None:
    """QueueNotFound unless the store knows a queue of that name."""
    if name not in {q.name for q in await backend.list_queues()}:
        raise QueueNotFound(name)


# -- output -------------------------------------------------------------------------
def console() -> Console:
    """stdout for humans. Made per call so that it sees the streams and $COLUMNS of
    this invocation; wide when piped so that lines are not folded at 80 columns."""
    from rich.console import Console

    wide = not sys.stdout.isatty() and not os.environ.get("COLUMNS")
    return Console(highlight=False, width=160 if wide else None)


def list_table(*, spaced: bool = False) -> Table:
    """The table of a list command: no box, bold headers, no margin; ``spaced``: a
    blank line after each row (a row of several lines)."""
    from rich.table import Table  # (Rich is imported where it prints: see cli/__init__)

    padding = (0, 1, 1, 0) if spaced else (0, 1)
    return Table(box=None, header_style="bold", pad_edge=False, padding=padding)


def fits(out: Console, table: Table) -> bool:
    """Whether ``table`` prints in ``out`` with no column squeezed: every header and
    cell at its own width. A list command prints a narrower form of its table when
    not: Rich squeezes a table that is too wide into headers cut to "SC…", times cut
    to "2026-12" and ids to "01a24f07-…"."""
    from rich.measure import Measurement

    natural = Measurement.get(out, out.options.update_width(10_000), table)
    return natural.maximum <= out.width


def err_console() -> Console:
    """stderr: a message is one line, however narrow (scripts' logs read it by lines)."""
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(document: Any) -> None:
    """The one JSON document a ``--json`` command prints on stdout."""
    sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


#: C0 and C1 control characters but newline and tab: an escape sequence among them is
#: a command to the terminal that prints it.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def plain(text: str, style: str = "") -> Text:
    """Stored text for a human's terminal: as it is, not markup, its control characters
    shown escaped (``\\x1b``). A job's error may quote a remote server's response body,
    a name or message comes from any client: an escape sequence in them was played by
    the terminal of whoever ran ``jobs list`` (cleared it, retitled it, ...)."""
    from rich.text import Text

    return Text(_CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}", text), style=style)


STATE_STYLES = {
    "scheduled": "cyan",
    "queued": "blue",
    "running": "yellow",
    "retrying": "magenta",
    "succeeded": "green",
    "poisoned": "bold red",
    "cancelling": "dim yellow",
    "cancelled": "dim",
}


def styled_state(state: str) -> str:
    return f"[{STATE_STYLES.get(state, '')}]{state}[/]" if state in STATE_STYLES else state


def timestamp(ts: float | None) -> str:
    """Local time, ISO-like, seconds precision (``-`` when unset)."""
    if not ts:
        return "-"
    try:
        return dt.datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M:%S%z")
    except (ValueError, OverflowError, OSError):
        return f"{ts:.0f} (epoch seconds)"  # beyond the dates Python shows: stored long ago


def ago(ts: float | None, now: float) -> str:
    """``5s ago`` / ``in 2m`` (``-`` when unset)."""
    if not ts:
        return "-"
    delta = now - ts
    text = duration(abs(delta))
    return f"{text} ago" if delta >= 0 else f"in {text}"


def duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            major, rest = divmod(int(seconds), size)
            minor = {"d": 3600, "h": 60, "m": 1}[unit]
            sub = {"d": "h", "h": "m", "m": "s"}[unit]
            return f"{major}{unit}{rest // minor}{sub}" if rest // minor else f"{major}{unit}"
    return f"{seconds:.0f}s"  # pragma: no cover


def when(ts: float | None, now: float) -> str:
    return "-" if not ts else f"{timestamp(ts)} ({ago(ts, now)})"
