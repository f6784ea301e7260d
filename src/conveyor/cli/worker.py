"""``conveyor worker`` and ``conveyor serve``: run workers, in this process or in
several processes under a supervisor."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Annotated, Any, TextIO

import typer

from conveyor.app import Conveyor
from conveyor.backends import redact_url as redact
from conveyor.cli.api import HostOption, PortOption, announce, bind, dev_keys
from conveyor.cli.common import (
    IncludeOption,
    UrlOption,
    check_store,
    console,
    load,
    verbose_option,
)
from conveyor.cli.parsing import split_list
from conveyor.environment import check_worker as check_worker_environment
from conveyor.eventloop import loop_factory, run_loop
from conveyor.exceptions import ConfigError
from conveyor.loader import add_working_dir, import_include
from conveyor.portal import portal
from conveyor.web.settings import ApiSettings
from conveyor.worker.config import WorkerConfig
from conveyor.worker.runtime import TASK_THREAD_PREFIX, run_worker
from conveyor.worker.supervisor import (
    EXIT_CONFIG,
    STOP_NOW_SIGNAL,
    STOP_SIGNALS,
    Supervisor,
    flush_std_streams,
    watch_parent,
)
from conveyor.worker.watchdog import stop_watchdog

logger = logging.getLogger("conveyor.cli")

#: ``conveyor serve`` with no --url, no $CONVEYOR_URL and no app URL: a SQLite file here.
DEFAULT_SERVE_URL = "sqlite:///.conveyor/conveyor.db"

QueuesOption = Annotated[
    list[str] | None,
    typer.Option(
        "--queues",
        "-q",
        metavar="Q1,Q2",
        help="Queues to work, highest priority first (comma list or repeated).",
        show_default=False,
    ),
]
ConcurrencyOption = Annotated[
    int, typer.Option("--concurrency", "-c", help="Jobs run at once by each process.")
]
FetchOption = Annotated[
    int | None,
    typer.Option("--fetch", "-f", help="Jobs taken per claim (default: the concurrency)."),
]
RegisteredOnlyOption = Annotated[
    bool,
    typer.Option(
        "--registered-only",
        help="Run only tasks the app registers: a job naming any other import path "
        "fails instead of importing and calling it.",
    ),
]
PrefetchOption = Annotated[
    int,
    typer.Option(
        "--prefetch",
        metavar="N",
        help="Jobs claimed ahead of free slots, started the moment a slot frees "
        "(good for many short jobs; they wait their turn here, not in the store).",
    ),
]
IntervalOption = Annotated[
    float,
    typer.Option(
        "--interval",
        metavar="SECONDS",
        help="Seconds between claims when the store sends no wake-up.",
    ),
]
LeaseOption = Annotated[
    float,
    typer.Option(
        "--lease",
        metavar="SECONDS",
        help="A running job's lease in seconds (at least 1); a job whose worker stops "
        "renewing it runs again.",
    ),
]
ProcessesOption = Annotated[
    int, typer.Option("--processes", "-P", help="Worker processes, under a supervisor when > 1.")
]
MaxJobsOption = Annotated[
    int | None,
    typer.Option(
        "--max-jobs",
        metavar="N",
        help="Replace each process with a fresh one after N jobs (runs a supervisor).",
    ),
]
ShutdownOption = Annotated[
    float,
    typer.Option(
        "--shutdown-timeout",
        metavar="SECONDS",
        help="On SIGTERM / Ctrl-C, wait this long for running jobs, then give them "
        "back to the queue. A second signal stops at once.",
    ),
]
VerboseOption = Annotated[
    int,
    verbose_option(
        "-v: a line per job start and finish (INFO); -vv: claim-loop decisions "
        "(DEBUG). $VERBOSE=1 and $VVERBOSE=1 do the same."
    ),
]
SupervisedOption = Annotated[bool, typer.Option("--supervised", hidden=True)]


@dataclass
class WorkerOptions:
    queues: list[str]
    concurrency: int
    fetch: int | None
    prefetch: int
    registered_only: bool
    interval: float
    lease: float
    processes: int
    max_jobs: int | None
    shutdown_timeout: float
    includes: list[str]
    url: str | None
    verbosity: int
    supervised: bool = False
    host: str = "127.0.0.1"
    port: int = 8000


def worker(
    queues: QueuesOption = None,
    concurrency: ConcurrencyOption = 10,
    fetch: FetchOption = None,
    prefetch: PrefetchOption = 0,
    registered_only: RegisteredOnlyOption = False,
    interval: IntervalOption = 1.0,
    lease: LeaseOption = 30.0,
    includes: IncludeOption = None,
    processes: ProcessesOption = 1,
    max_jobs: MaxJobsOption = None,
    shutdown_timeout: ShutdownOption = 30.0,
    verbose: VerboseOption = 0,
    url: UrlOption = None,
    supervised: SupervisedOption = False,
) -> None:
    """Run jobs until SIGTERM / Ctrl-C (queues: -q, default: default).

    The first signal stops claiming, waits up to --shutdown-timeout for running jobs
    and gives the rest back; a second one stops at once. Exit code 0 on a clean stop.

    HTTP jobs read the environment: CONVEYOR_HTTP_ALLOW (destinations beyond public
    addresses), CONVEYOR_SECRET_KEY (the API's, to open stored credentials),
    CONVEYOR_CACHE_PURGE_URL (the cache in front of the API, purged on each change).

    Example: conveyor worker -i ./tasks.py -q high,default,low -c 10 --processes 2 -v
    """
    # The parameters carry the names of WorkerOptions fields (see _options).
    start(_options(locals()), serve=False)


def serve(
    url: UrlOption = None,
    includes: IncludeOption = None,
    host: HostOption = "127.0.0.1",
    port: PortOption = 8000,
    queues: QueuesOption = None,
    concurrency: ConcurrencyOption = 10,
    processes: ProcessesOption = 1,
    fetch: FetchOption = None,
    prefetch: PrefetchOption = 0,
    registered_only: RegisteredOnlyOption = False,
    interval: IntervalOption = 1.0,
    lease: LeaseOption = 30.0,
    max_jobs: MaxJobsOption = None,
    shutdown_timeout: ShutdownOption = 30.0,
    verbose: VerboseOption = 0,
    seed: Annotated[
        bool, typer.Option("--seed/--no-seed", help="Call seed() of the included modules.")
    ] = True,
) -> None:
    """Run conveyor in one command: the HTTP API, the dashboard and workers on one store.

    The store: --url, else $CONVEYOR_URL, else the app's URL, else
    sqlite:///.conveyor/conveyor.db (the folder is created).
    The queues: -q, else every queue the loaded tasks use.
    The API (--host, --port) takes the settings of `conveyor api`; with no key in
    CONVEYOR_API_KEYS / CONVEYOR_ADMIN_KEYS it makes a development admin key and prints
    it (kept in .conveyor/api-key on the default store); it also logs in to the
    dashboard at /dashboard. With --processes 1 the API and
    the worker share one process; with more, the API gets a process of its own.

    Seeding: when an included module defines a function seed() (no arguments), serve
    calls it once before the workers start, e.g. to enqueue example jobs
    (conveyor.demo does); --no-seed skips it.

    Example: conveyor serve -i conveyor.demo
    """
    start(_options(locals()), serve=True, seed=seed)


def _options(params: dict[str, Any]) -> WorkerOptions:
    """WorkerOptions from a command's parameters, which are named after its fields."""
    fields = {name: params[name] for name in WorkerOptions.__dataclass_fields__ if name in params}
    if params["queues"] and not split_list(params["queues"]):
        # -q '' named no queue: not the same as no -q at all (the default queue)
        raise ConfigError("queues", f"no queue named in {params['queues']!r}")
    fields["queues"] = split_list(params["queues"])
    fields["includes"] = list(params["includes"] or ())
    fields["verbosity"] = verbosity(params["verbose"])
    return WorkerOptions(**fields)


#: The shortest --lease: a job whose lease ends before the worker's store round trips
#: renew it is taken for its worker's and run again, over and over (--lease 0.001,
#: milliseconds for seconds, ran a 2-second job five times and poisoned it).
MIN_LEASE = 1.0
#: The most worker processes one supervisor starts: a typo's extra zeros would fork
#: until the machine runs out of memory or pids.
MAX_PROCESSES = 1000


def start(options: WorkerOptions, *, serve: bool, seed: bool = False) -> None:
    if not 1 <= options.processes <= MAX_PROCESSES:
        raise ConfigError(
            "processes", f"must be from 1 to {MAX_PROCESSES:,}, got {options.processes}"
        )
    add_working_dir()  # import-path tasks of the working directory run here too
    app = _serve_app(options) if serve else load(options.includes, options.url)
    queues = options.queues or (_app_queues(app) if serve else ["default"])
    config = WorkerConfig(
        queues=queues,
        concurrency=options.concurrency,
        fetch=options.fetch,
        prefetch=options.prefetch,
        registered_only=options.registered_only,
        interval=options.interval,
        lease=options.lease,
        max_jobs=options.max_jobs,
        shutdown_timeout=options.shutdown_timeout,
        includes=options.includes,
    )
    config.validate()  # bad options stop here, before any process starts or job is seeded
    if config.lease < MIN_LEASE:
        raise ConfigError(
            "lease", f"must be at least {MIN_LEASE:g} second, got {config.lease:g} (seconds)"
        )
    check_worker_environment()  # and bad settings of HTTP jobs, before they fail jobs
    configure_logging(options.verbosity)
    supervise = not options.supervised and (options.processes > 1 or options.max_jobs is not None)
    if serve or supervise:
        check_store(app.url)
    settings: ApiSettings | None = None
    sockets: list[socket.socket] | None = None
    if serve:
        settings, dev_key = _api_settings(app)
        sockets = bind(options.host, options.port)
        if seed:
            _seed(app, options.includes)
        processes = f"{options.processes} worker process(es)"
        console().print(
            f"conveyor serve: {processes} running queues {','.join(queues)} on store "
            f"{redact(app.url)}. Ctrl-C stops.",
            markup=False,
            soft_wrap=True,
        )
        announce(app, settings.secrets.encrypts, options.host, options.port, dev_key)
    if supervise:
        _supervise(app, config, options, settings, sockets)
    elif settings is not None:
        # Armed at the stop, disarmed once the loop is closed: closing it waits for the
        # asyncio tasks task code left, which may never end (conveyor.worker.watchdog).
        watchdog = stop_watchdog(config.shutdown_timeout)
        run_loop(
            _serve_api(
                app, settings, options.host, options.port, config, sockets, on_stop=watchdog.arm
            )
        )
        watchdog.disarm()
    else:
        _run_here(app, config, options)


def _api_settings(app: Conveyor) -> tuple[ApiSettings, str | None]:
    """The API's settings from the environment; a development key when it names none."""
    settings = ApiSettings.from_env()
    if len(settings.keys):
        return settings, None
    keys, key = dev_keys(default_store=app.url == DEFAULT_SERVE_URL)
    return replace(settings, keys=keys), key


def _serve_app(options: WorkerOptions) -> Conveyor:
    try:
        app = load(options.includes, options.url)
    except ConfigError as exc:
        if exc.field != "url" or options.url:
            raise
        app = load(options.includes, DEFAULT_SERVE_URL)
    if app.url == DEFAULT_SERVE_URL:
        os.makedirs(".conveyor", exist_ok=True)
    return app


def _app_queues(app: Conveyor) -> list[str]:
    return list(dict.fromkeys([app.default_queue, *(t.options.queue for t in app.tasks.values())]))


def _seed(app: Conveyor, includes: list[str]) -> None:
    seeded = False
    for include in includes:
        module = import_include(include)
        seed = getattr(module, "seed", None)
        if callable(seed):
            logger.info("seeding: %s.seed()", module.__name__)
            seed()
            seeded = True
    if seeded:
        app.close()  # the synchronous connection seed() used; workers open their own


def _supervise(
    app: Conveyor,
    config: WorkerConfig,
    options: WorkerOptions,
    api: ApiSettings | None = None,
    sockets: list[socket.socket] | None = None,
) -> None:
    """Worker processes under a supervisor; with ``api``, one more process serves the API
    on ``sockets`` (bound here once: a restarted API process serves on them again)."""
    portal.stop()  # no threads may be alive when the children are forked
    loop_factory()  # imported once here, not in every child
    logger.info(
        "supervisor %d started: %d worker process(es), queues %s, concurrency %d each, store %s",
        os.getpid(),
        options.processes,
        ",".join(config.queues),
        config.concurrency,
        redact(app.url),
    )
    child_options = replace(options, supervised=True)
    api_slot = options.processes if api is not None else None

    def run_child() -> int:
        try:
            if supervisor.slot == api_slot and api is not None:
                watchdog = stop_watchdog()
                serving = _serve_api(
                    app,
                    api,
                    options.host,
                    options.port,
                    sockets=sockets,
                    supervised=True,
                    on_stop=watchdog.arm,
                )
                run_loop(_supervised(serving))
                watchdog.disarm()
            else:
                # A worker serves no API: the port closes when the API process stops,
                # not when the last worker has finished its jobs.
                for sock in sockets or ():
                    sock.close()
                _run_here(app, config, child_options)
        except ConfigError as exc:
            # A restart cannot fix it: exit 2 tells the supervisor to stop.
            logger.error("worker %d: %s", os.getpid(), exc)
            return EXIT_CONFIG
        return 0

    def close_sockets() -> None:
        # The supervisor keeps the API's sockets for a restart of its process; once
        # stopping, it restarts nothing, and a port still open would take connections
        # nobody serves while the workers finish.
        for sock in sockets or ():
            sock.close()

    supervisor = Supervisor(run_child, options.processes + (api is not None), close_sockets)
    code = supervisor.run()
    logger.info("supervisor %d stopped", os.getpid())
    if code:
        raise typer.Exit(code)


def _run_here(app: Conveyor, config: WorkerConfig, options: WorkerOptions) -> None:
    started = time.monotonic()
    if not options.verbosity:  # with -v the runtime logs its own start and stop lines
        logger.info(
            "worker %d started: queues %s, concurrency %d, store %s",
            os.getpid(),
            ",".join(config.queues),
            config.concurrency,
            redact(app.url),
        )
    grace = config.shutdown_timeout
    watchdog = stop_watchdog(grace)  # a stop ends in any case (conveyor.worker.watchdog)
    if options.supervised:
        run = _supervised(
            run_worker(app, config, STOP_SIGNALS, (STOP_NOW_SIGNAL,), on_stop_begun=watchdog.arm)
        )
    else:
        run = run_worker(app, config, STOP_SIGNALS, on_stop_begun=watchdog.arm)
    run_loop(_leave_asyncio_tasks(run, grace))
    watchdog.disarm()  # what follows has bounds of its own
    if not options.verbosity:
        logger.info("worker %d stopped after %.1fs", os.getpid(), time.monotonic() - started)
    _leave_task_threads(others_grace=config.shutdown_timeout)


def _leave_task_threads(grace: float = 0.5, others_grace: float = 0.0) -> None:
    """End the process now when a sync task's thread still runs after the worker stopped.

    Its job was given back (the shutdown timeout passed, or a second signal came), and a
    thread cannot be stopped: the interpreter would wait for it at exit, the task running
    on while another worker runs the job again. A supervised worker process ends with
    os._exit, which leaves such threads behind; this is the same for one run alone. The
    pool's idle threads end as soon as they see it is shut down: they get ``grace``.

    Threads that task code started and left running (not daemons) get ``others_grace``
    to end, then the process ends without them too: the interpreter would wait for them
    at exit, for ever if they never end, and the worker would not stop.
    """
    deadline = time.monotonic() + grace
    for thread in threading.enumerate():
        if thread.name.startswith(TASK_THREAD_PREFIX):
            thread.join(max(0.0, deadline - time.monotonic()))
    running = [t for t in threading.enumerate() if t.name.startswith(TASK_THREAD_PREFIX)]
    if running:
        logger.warning(
            "worker %d: %d task thread(s) still running, their jobs given back: exiting "
            "without waiting for them",
            os.getpid(),
            len(running),
        )
        _exit_now()
    deadline = time.monotonic() + others_grace
    for thread in _threads_left():
        thread.join(max(0.0, deadline - time.monotonic()))
    if left := _threads_left():
        logger.warning(
            "worker %d: %d thread(s) that tasks started still running (%s): exiting "
            "without waiting for them",
            os.getpid(),
            len(left),
            ", ".join(t.name for t in left[:10]),
        )
        _exit_now()


async def _leave_asyncio_tasks(run: Coroutine[Any, Any, None], grace: float) -> None:
    """Run the worker; then cancel the asyncio tasks that task code started and left on
    the loop, and give them ``grace`` to end. The loop's close would wait for them for
    ever, and the worker would not stop, if one swallows its cancellation: the process
    then ends without them, naming them in its log."""
    failed = True
    try:
        await run
        failed = False
    finally:
        left = asyncio.all_tasks() - {asyncio.current_task()}
        for task in left:
            task.cancel()
        if left:
            _, pending = await asyncio.wait(left, timeout=grace)
            if pending:
                logger.warning(
                    "worker %d: %d asyncio task(s) that tasks started do not end when "
                    "cancelled (%s): exiting without waiting for them",
                    os.getpid(),
                    len(pending),
                    ", ".join(sorted(t.get_name() for t in pending)[:10]),
                )
                _exit_now(1 if failed else 0)


def _threads_left() -> list[threading.Thread]:
    """The threads the interpreter would wait for at exit (not daemons), but this one."""
    main = threading.main_thread()
    return [t for t in threading.enumerate() if t is not main and not t.daemon]


def _exit_now(code: int = 0) -> None:
    logging.shutdown()
    flush_std_streams()
    os._exit(code)


async def _serve_api(
    app: Conveyor,
    settings: ApiSettings,
    host: str,
    port: int,
    worker: WorkerConfig | None = None,
    sockets: list[socket.socket] | None = None,
    supervised: bool = False,
    on_stop: Callable[[], object] | None = None,
) -> None:
    """Serve the API (and run a worker, with ``worker``); ``on_stop``: the stop
    watchdog's ``arm``, which the caller disarms once the event loop is closed."""
    # Imported here: FastAPI and the API's modules take half a second to import, which a
    # `conveyor worker` process, which serves no API, does not pay.
    from conveyor.web.server import serve

    now_signals = (STOP_NOW_SIGNAL,) if supervised else ()
    await serve(app, settings, host, port, worker, sockets, now_signals, on_stop)


async def _supervised(run: Coroutine[Any, Any, None]) -> None:
    """A supervisor's child: also stop gracefully when the supervisor vanishes (kill -9)."""
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_parent(os.getppid(), stop, _stop_self))
    try:
        await run
    finally:
        stop.set()
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)


def _stop_self() -> None:
    # Through the signal handler run_worker installed: the same graceful stop as SIGTERM.
    os.kill(os.getpid(), signal.SIGTERM)


# -- logging -------------------------------------------------------------------------
def verbosity(count: int) -> int:
    """-v / -vv, or Resque's $VERBOSE / $VVERBOSE."""
    if _truthy(os.environ.get("VVERBOSE")):
        count = max(count, 2)
    if _truthy(os.environ.get("VERBOSE")):
        count = max(count, 1)
    return min(count, 2)


def _truthy(value: str | None) -> bool:
    return value is not None and value.strip().lower() not in ("", "0", "false", "no", "off")


def _own_stderr() -> TextIO:
    """The log's stream: stderr on a descriptor of its own. Task code runs in this
    process and may close ``sys.stderr`` (or fd 2): on the shared stream every log line
    after that raised ValueError out of the worker's own code, and the worker died."""
    try:
        fd = os.dup(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):  # not a file (a test's capture, say)
        return sys.stderr
    return open(fd, "w", buffering=1, encoding=sys.stderr.encoding, errors="backslashreplace")


def configure_logging(verbosity: int) -> None:
    """Time, pid and level on stderr. Default: warnings plus one line at start and stop;
    -v: INFO (a line per job); -vv: DEBUG (claim loop)."""
    handler = logging.StreamHandler(_own_stderr())
    handler.setFormatter(
        logging.Formatter(
            "%(asctime)s.%(msecs)03d %(process)d %(levelname)-7s %(name)s: %(message)s",
            "%Y-%m-%d %H:%M:%S",
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[verbosity]
    logging.getLogger("conveyor").setLevel(level)
    logging.getLogger("conveyor.cli").setLevel(min(level, logging.INFO))
    # While PostgreSQL is away, psycopg's pool warns on every reconnection attempt, in
    # several lines and without the URL; conveyor's own lines say what failed and
    # where, and when it works again. The pool's are kept for -vv.
    logging.getLogger("psycopg.pool").setLevel(logging.WARNING if verbosity >= 2 else logging.ERROR)
