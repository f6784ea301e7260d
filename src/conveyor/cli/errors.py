"""Exit codes, and the one place where errors become them.

Scripts can trust these codes:

====  ==========================================================================
code  meaning
====  ==========================================================================
0     done
1     operational failure: the store did not answer, a worker crashed, the
      API's port is in use, or the user answered "no" to a confirmation
2     bad input, nothing was written: a usage error, an invalid value (the
      message names the field), an unknown task, an unknown queue in an admin
      command, a bad store URL or include, a store schema missing or older than
      the code, a SQLite file that is damaged or not a database, an API host
      that is not this machine's, or a destructive command run without
      ``--yes`` and without a terminal to ask on
3     no job with that id
4     the job's state does not allow the action (retry a succeeded job, delete
      a running one, cancel a finished one)
130   interrupted (Ctrl-C)
====  ==========================================================================

Every error is printed to stderr as one line: ``error: <field>: <problem>``.
"""

from __future__ import annotations

from typing import Any

import typer
from typer._click.exceptions import NoArgsIsHelpError, UsageError
from typer.core import TyperGroup

from conveyor.exceptions import (
    BackendUnavailable,
    ConfigError,
    ConveyorError,
    InvalidJob,
    JobNotFound,
    JobStateError,
    QueueNotFound,
)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_NOT_FOUND = 3
EXIT_CONFLICT = 4
EXIT_INTERRUPTED = 130

#: First match wins; anything else conveyor raises is an operational failure.
EXIT_CODES: tuple[tuple[type[ConveyorError], int], ...] = (
    (JobNotFound, EXIT_NOT_FOUND),
    (JobStateError, EXIT_CONFLICT),
    (QueueNotFound, EXIT_BAD_INPUT),
    (InvalidJob, EXIT_BAD_INPUT),  # TaskNotFound is an InvalidJob too
    (ConfigError, EXIT_BAD_INPUT),
    (BackendUnavailable, EXIT_FAILURE),
)


def exit_code(exc: ConveyorError) -> int:
    """The exit code for a conveyor error."""
    for kind, code in EXIT_CODES:
        if isinstance(exc, kind):
            return code
    return EXIT_FAILURE


def describe(exc: ConveyorError) -> str:
    """One line that names the field: ``run_at: expected an ISO 8601 time ...``."""
    if isinstance(exc, InvalidJob | ConfigError):
        text = f"{exc.field}: {exc.problem}"
    elif isinstance(exc, JobNotFound):
        text = f"id: no job {exc.job_id!r}"
    elif isinstance(exc, JobStateError):
        text = f"state: {exc}"
    elif isinstance(exc, BackendUnavailable):
        text = f"store: {exc}"
    else:
        text = str(exc)  # QueueNotFound already reads "queue: no queue named 'x'"
    return one_line(text)


def one_line(text: str) -> str:
    return " ".join(text.split())


def print_error(text: str) -> None:
    """``error: ...`` on stderr, never wrapped (one line per error, for scripts' logs)."""
    from rich.console import Console
    from rich.text import Text

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    console.print(Text.assemble(("error: ", "bold red"), one_line(text)))


def fail(exc: ConveyorError) -> typer.Exit:
    """Print ``exc`` and return the Exit to raise."""
    print_error(describe(exc))
    return typer.Exit(exit_code(exc))


class ConveyorGroup(TyperGroup):
    """The root command group: turns errors raised by any subcommand into one line on
    stderr and the exit code of :data:`EXIT_CODES` (usage errors exit 2, as in click)."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except ConveyorError as exc:
            raise fail(exc) from None
        except NoArgsIsHelpError:
            raise
        except UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            print_error(exc.format_message() + hint)
            raise typer.Exit(exc.exit_code) from None
