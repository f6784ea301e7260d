"""Finding the user's tasks: ``-i ./tasks.py``, ``-i pkg.tasks`` or ``-i pkg.tasks:app``."""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import traceback
from collections.abc import Iterator, Sequence
from types import ModuleType

from conveyor.app import Conveyor
from conveyor.backends import create_backend
from conveyor.exceptions import ConfigError


def import_include(include: str) -> ModuleType:
    """Import a module given as a dotted name or as a path to a ``.py`` file.

    A file is imported under its own name with its folder put first on
    ``sys.path``, so ``tasks.py`` becomes module ``tasks`` and its task names
    (``tasks:send``) are import paths that other processes can resolve too.
    """
    module_part = include.partition(":")[0] if not include.endswith(".py") else include
    if module_part.endswith(".py") or os.sep in module_part:
        path = os.path.abspath(module_part)
        if not os.path.isfile(path):
            raise ConfigError("include", f"no such file: {module_part!r}")
        folder, filename = os.path.split(path)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        name = os.path.splitext(filename)[0]
    else:
        name = module_part
        add_working_dir()
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ConfigError("include", f"cannot import {include!r}: {exc}") from None
    except (Exception, SystemExit) as exc:
        # The module itself is broken (a syntax error, an exception at import): one line
        # that says what and where, as for any other bad include. A sys.exit() of its own
        # too (a script's guard, say): else the worker would end with the module's code,
        # 0 for sys.exit(0), without a word, and nothing restarts a worker that did so.
        raise ConfigError("include", f"importing {include!r} failed: {_where(exc)}") from None


def add_working_dir() -> None:
    """Make modules of the working directory importable, as ``python -m`` does: a task
    named by its import path (``tasks:send``) is found by a worker started in the
    folder that holds ``tasks.py``, as by ``conveyor enqueue`` run there."""
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


def _where(exc: BaseException) -> str:
    """``SyntaxError: invalid syntax (tasks.py, line 3)``, or ``RuntimeError: boom
    (tasks.py, line 9)``: the exception and the line of the user's file that raised it."""
    message = exc.code if isinstance(exc, SystemExit) else exc
    text = f"{type(exc).__name__}: {message}"
    if isinstance(exc, SyntaxError):
        return text  # its message names the file and line already
    frames = traceback.extract_tb(exc.__traceback__)
    user = [f for f in frames if not f.filename.startswith("<frozen ")]
    if user:
        return f"{text} ({os.path.basename(user[-1].filename)}, line {user[-1].lineno})"
    return text


def load_app(includes: Sequence[str], url: str | None = None) -> Conveyor:
    """The Conveyor app defined by the includes (with ``url`` overriding its store).

    Without includes, or when they define no app, an app on ``url`` (or
    ``$CONVEYOR_URL``) with no registered tasks: import-path tasks still run.
    """
    if url and includes:
        # Checked first: the includes are imported with it as $CONVEYOR_URL, and an app
        # made there without a URL failed on it, as the include's error, not the url's.
        create_backend(url)
    found: list[Conveyor] = []
    for include in includes:
        with _store_url_as_environment(url):
            module = import_include(include)
        _, sep, attr = include.partition(":")
        if sep and not include.endswith(".py"):
            app = getattr(module, attr, None)
            if not isinstance(app, Conveyor):
                raise ConfigError("include", f"{include!r} is not a Conveyor app")
            found.append(app)
            continue
        found.extend(v for v in vars(module).values() if isinstance(v, Conveyor))
    apps = list(dict.fromkeys(found))
    if len(apps) > 1:
        raise ConfigError(
            "include",
            "the includes define several Conveyor apps; name one as module:attribute "
            f"({', '.join(repr(a) for a in apps)})",
        )
    if apps:
        app = apps[0]
        if url and url != app.url:
            app.use_url(url)
        return app
    return Conveyor(url)


@contextlib.contextmanager
def _store_url_as_environment(url: str | None) -> Iterator[None]:
    """``$CONVEYOR_URL`` set to ``url`` while an include is imported: the CLI's --url
    stands for it, and an app the include makes without a URL (``Conveyor()``, which
    reads the variable) is on that store. It raised "no store URL" there before."""
    if not url:
        yield
        return
    before = os.environ.get("CONVEYOR_URL")
    os.environ["CONVEYOR_URL"] = url
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("CONVEYOR_URL", None)
        else:
            os.environ["CONVEYOR_URL"] = before
