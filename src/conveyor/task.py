"""Tasks: registered Python callables, their options and hooks, and how a call
becomes a :class:`~conveyor.job.Job`."""

from __future__ import annotations

import datetime as dt
import importlib
import importlib.util
import inspect
import math
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from conveyor.exceptions import InvalidJob, TaskNotFound, shown
from conveyor.garbage import collector_paused
from conveyor.job import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_RETRY,
    LATEST_RUN_AT,
    Job,
    Priority,
    Progress,
    RetryPolicy,
    State,
    Step,
    new_job_id,
    new_job_ids,
    parse_priority,
)
from conveyor.storable import json_problem, problem

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.handle import JobHandle

ExecutorKind = Literal["async", "thread", "process"]
#: A hook is called with the task context (and the result or exception); sync or async.
Hook = Callable[..., Any]
HOOK_NAMES = ("before", "after", "success", "error", "failure")


@dataclass(frozen=True)
class TaskOptions:
    """Defaults a task gives its jobs; ``with_options`` overrides them per call."""

    queue: str = "default"
    priority: int = Priority.NORMAL
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    retry: RetryPolicy = DEFAULT_RETRY
    timeout: float | None = None


@dataclass(frozen=True)
class EnqueueOptions:
    """Per-call options (everything a job has besides its arguments)."""

    queue: str | None = None
    priority: int | str | None = None
    delay: float | dt.timedelta | None = None
    run_at: float | dt.datetime | None = None
    unique_key: str | None = None
    metadata: Mapping[str, Any] | None = None
    max_attempts: int | None = None
    retry: RetryPolicy | Mapping[str, Any] | None = None
    timeout: float | None = None


@dataclass
class Task:
    """A registered task. Calling it runs the function directly; ``enqueue`` runs it later."""

    app: Conveyor
    fn: Callable[..., Any]
    name: str
    options: TaskOptions
    executor: ExecutorKind
    hooks: dict[str, list[Hook]] = field(default_factory=dict)
    _call_options: EnqueueOptions = field(default_factory=EnqueueOptions)
    #: the caller's database connection: enqueue inside its transaction
    _connection: Any = field(default=None, repr=False, compare=False)
    _resolved_options: ResolvedOptions | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    @property
    def is_async(self) -> bool:
        return self.executor == "async"

    # -- enqueue -------------------------------------------------------------
    def with_options(self, **options: Any) -> Task:
        """A copy whose jobs use these options: queue, priority, delay, run_at,
        unique_key, metadata, max_attempts, retry, timeout.

        ``connection``: a psycopg connection (``Connection`` for ``enqueue``,
        ``AsyncConnection`` for ``enqueue_async``) to store the jobs through, inside
        its open transaction, on a PostgreSQL store: they exist once that
        transaction commits, never if it rolls back."""
        if "connection" in options:
            connection = options.pop("connection")
            return replace(self.with_options(**options), _connection=connection)
        try:
            merged = replace(self._call_options, **options)
        except TypeError:
            known = ", ".join(EnqueueOptions.__dataclass_fields__)
            unknown = sorted(set(options) - set(EnqueueOptions.__dataclass_fields__))
            raise InvalidJob("options", f"unknown option(s) {unknown}; known: {known}") from None
        return replace(self, _call_options=merged)

    def prepare(self, *args: Any, **kwargs: Any) -> Job:
        """The job ``enqueue`` would store, validated, not stored."""
        self._check_signature(args, kwargs)
        return build_job(self.name, args, kwargs, self._resolved())

    def _resolved(self) -> ResolvedOptions:
        # Validated once per Task object: with_options makes a new one.
        if self._resolved_options is None:
            self._resolved_options = resolve_options(self.options, self._call_options)
        return self._resolved_options

    def enqueue(self, *args: Any, **kwargs: Any) -> JobHandle:
        """Store a job that calls this task with these arguments; returns its handle."""
        job = self.prepare(*args, **kwargs)
        return self.app.enqueue_jobs([job], built_here=True, connection=self._connection)[0]

    async def enqueue_async(self, *args: Any, **kwargs: Any) -> JobHandle:
        job = self.prepare(*args, **kwargs)
        return (
            await self.app.enqueue_jobs_async([job], built_here=True, connection=self._connection)
        )[0]

    def enqueue_many(self, calls: Iterable[Sequence[Any] | Mapping[str, Any]]) -> list[JobHandle]:
        """One job per item (a sequence of args, or a mapping of kwargs), one round trip."""
        with collector_paused():
            jobs = self.prepare_many(calls)
            return self.app.enqueue_jobs(jobs, built_here=True, connection=self._connection)

    async def enqueue_many_async(
        self, calls: Iterable[Sequence[Any] | Mapping[str, Any]]
    ) -> list[JobHandle]:
        jobs = self.prepare_many(calls)
        return await self.app.enqueue_jobs_async(jobs, built_here=True, connection=self._connection)

    def prepare_many(self, calls: Iterable[Sequence[Any] | Mapping[str, Any]]) -> list[Job]:
        """The jobs ``enqueue_many`` would store, validated, not stored: what
        ``prepare`` makes of each item, in one pass (one run of ids for the batch, no
        call per job: 1.6 instead of 2.4 us a job here)."""
        items = iterate(calls, "calls", "args lists or kwargs dicts")
        arity = _positional_arity(self.fn)
        arguments: list[tuple[list[Any], dict[str, Any]]] = []
        kwargs: dict[str, Any]
        for call in items:
            if type(call) is list or type(call) is tuple:  # before the slower ABC checks
                args, kwargs = list(call), {}
                if arity is None or not arity[0] <= len(args) <= arity[1]:
                    self._check_signature(args, kwargs)
            elif isinstance(call, Mapping):
                args, kwargs = [], dict(call)
                self._check_signature(args, kwargs)
            elif isinstance(call, Iterable) and not isinstance(call, str | bytes):
                args, kwargs = list(call), {}
                self._check_signature(args, kwargs)
            else:
                raise InvalidJob(
                    "calls",
                    f"each item is a sequence of args or a mapping of kwargs, got {call!r:.80}",
                )
            arguments.append((args, kwargs))
        return build_jobs(self.name, arguments, self._resolved())

    def _check_signature(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        if not kwargs:
            arity = _positional_arity(self.fn)
            if arity is not None and arity[0] <= len(args) <= arity[1]:
                return  # the common case, without the cost of Signature.bind
        signature = _signature(self.fn)
        if signature is None:
            return
        try:
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            hint = ""
            if "connection" in kwargs:
                hint = "; to enqueue in your transaction use task.with_options(connection=conn)"
            raise InvalidJob("args", f"{exc} (task {self.name!r}){hint}") from None

    # -- hooks -------------------------------------------------------------------
    def on(self, event: str) -> Callable[[Hook], Hook]:
        """Decorator: ``@task.on("success")`` adds a hook.

        Events: before, after, success, error, failure."""
        if event not in HOOK_NAMES:
            raise InvalidJob("event", f"expected one of {', '.join(HOOK_NAMES)}, got {event!r}")

        def register(hook: Hook) -> Hook:
            if not callable(hook):
                raise InvalidJob(event, f"a hook is a function, got {hook!r:.80}")
            self.hooks.setdefault(event, []).append(hook)
            return hook

        return register


_signatures: dict[Callable[..., Any], inspect.Signature | None] = {}


def _signature(fn: Callable[..., Any]) -> inspect.Signature | None:
    """The function's signature, computed once (it is checked on every enqueue)."""
    try:
        return _signatures[fn]
    except KeyError:
        pass
    try:
        signature: inspect.Signature | None = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins without a signature
        signature = None
    _signatures[fn] = signature
    return signature


_arities: dict[Callable[..., Any], tuple[int, int] | None] = {}


def _positional_arity(fn: Callable[..., Any]) -> tuple[int, int] | None:
    """(required, allowed) positional args when only plain positional parameters
    exist; None when the signature needs the full check."""
    try:
        return _arities[fn]
    except KeyError:
        pass
    arity: tuple[int, int] | None = None
    signature = _signature(fn)
    if signature is not None:
        params = list(signature.parameters.values())
        plain = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        if all(p.kind in plain for p in params):
            required = sum(1 for p in params if p.default is inspect.Parameter.empty)
            arity = (required, len(params))
    _arities[fn] = arity
    return arity


# ---------------------------------------------------------------------------
# Building jobs
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ResolvedOptions:
    """A task's defaults and a call's options, validated once (``enqueue_many`` builds
    every job from one of these)."""

    queue: str
    priority: int
    delay: float  # seconds from now; 0 with run_at
    run_at: float  # epoch seconds, 0 = now
    max_attempts: int
    retry: RetryPolicy
    timeout: float | None
    unique_key: str | None
    metadata: Mapping[str, Any]


def resolve_options(defaults: TaskOptions, call: EnqueueOptions) -> ResolvedOptions:
    """Validate per-call options against a task's defaults; InvalidJob names the field."""
    queue = call.queue if call.queue is not None else defaults.queue
    validate_queue_name(queue)
    priority = defaults.priority
    if call.priority is not None:
        try:
            priority = parse_priority(call.priority)
        except ValueError as exc:
            raise InvalidJob("priority", str(exc).removeprefix("priority: ")) from None
    if call.delay is not None and call.run_at is not None:
        raise InvalidJob("delay", "give delay or run_at, not both")
    delay = 0.0
    if call.delay is not None:
        raw = call.delay.total_seconds() if isinstance(call.delay, dt.timedelta) else call.delay
        if not _finite(raw):
            raise InvalidJob(
                "delay", f"expected a finite number of seconds, got {shown(call.delay)}"
            )
        if raw < 0:
            raise InvalidJob("delay", f"must be >= 0 seconds, got {shown(raw)}")
        if raw > LATEST_RUN_AT - time.time():
            raise InvalidJob("delay", f"would run after 9999-12-31, got {shown(raw)} seconds")
        delay = float(raw)
    run_at = _epoch(call.run_at) if call.run_at is not None else 0.0
    if not -(2**31) <= priority < 2**31:
        raise InvalidJob("priority", f"must fit in 32 bits, got {shown(priority)}")
    max_attempts = call.max_attempts if call.max_attempts is not None else defaults.max_attempts
    check_max_attempts(max_attempts)
    retry = retry_policy(call.retry) if call.retry is not None else defaults.retry
    timeout = call.timeout if call.timeout is not None else defaults.timeout
    check_timeout(timeout)
    if call.unique_key is not None:
        check_unique_key(call.unique_key)
    if call.metadata is not None and not isinstance(call.metadata, Mapping):
        raise InvalidJob("metadata", f"expected a dict, got {call.metadata!r:.80}")
    metadata = dict(call.metadata or {})
    if metadata:
        check_json("metadata", metadata)
    return ResolvedOptions(
        queue, priority, delay, run_at, max_attempts, retry, timeout, call.unique_key, metadata
    )


def build_job(
    task_name: str, args: Sequence[Any], kwargs: Mapping[str, Any], options: ResolvedOptions
) -> Job:
    """A new Job calling ``task_name`` (run_at 0 = now on the store's clock)."""
    args_list = list(args)
    kwargs_dict = dict(kwargs)
    _check_arguments(args_list, kwargs_dict)
    return _new_job(new_job_id(), task_name, args_list, kwargs_dict, _run_at(options), options)


def build_jobs(
    task_name: str, arguments: Sequence[tuple[list[Any], dict[str, Any]]], options: ResolvedOptions
) -> list[Job]:
    """``build_job`` for each (args, kwargs) pair, the lists and dicts taken as they are."""
    run_at = _run_at(options)
    jobs = []
    for job_id, (args, kwargs) in zip(new_job_ids(len(arguments)), arguments, strict=True):
        _check_arguments(args, kwargs)
        jobs.append(_new_job(job_id, task_name, args, kwargs, run_at, options))
    return jobs


def _check_arguments(args: list[Any], kwargs: dict[str, Any]) -> None:
    if args and not _plain(args):
        check_json("args", args)
    if kwargs:
        check_json("kwargs", kwargs)


def _plain(args: list[Any]) -> bool:
    """True for the common args (ids, names, flags) that every store keeps as they are:
    no check of their JSON needed. Floats are not here (NaN and infinity are not JSON),
    nor strings with a NUL or a character beyond ASCII (it could be a lone surrogate),
    nor ints of more than 64 bits (one of thousands of digits has no JSON text)."""
    for value in args:
        kind = type(value)
        if kind is str:
            if not value.isascii() or "\x00" in value:
                return False
        elif kind is int:
            if not -_INT64 <= value < _INT64:
                return False
        elif kind not in _PLAIN:
            return False
    return True


_INT64 = 2**63


def _run_at(options: ResolvedOptions) -> float:
    return options.run_at or (time.time() + options.delay if options.delay else 0.0)


def _new_job(
    job_id: str,
    task_name: str,
    args: list[Any],
    kwargs: dict[str, Any],
    run_at: float,
    options: ResolvedOptions,
) -> Job:
    # Positional, in the fields' order (the defaults between them spelled out): by
    # keyword, making the Job and its Step took 3.8 us here, positionally 1.3, and an
    # enqueue_many makes one per job.
    return Job(
        job_id,  # id
        options.queue,  # queue
        [Step("main", "task", task_name, args, kwargs)],  # steps
        options.priority,  # priority
        State.QUEUED,  # state (the store's decides: queued, or scheduled)
        run_at,  # run_at
        0,  # attempts
        options.max_attempts,  # max_attempts
        options.retry,  # retry
        options.timeout,  # timeout
        0,  # current_step
        Progress(),  # progress
        None,  # result
        [],  # errors
        options.unique_key,  # unique_key
        dict(options.metadata),  # metadata
    )


_PLAIN = frozenset({int, bool, type(None)})  # and str (see _plain)


def validate_job(job: Job) -> None:
    """InvalidJob (naming the field) unless a hand-built or middleware-changed job is
    one a worker can run and the store can keep."""
    if not isinstance(job, Job):
        raise InvalidJob("jobs", f"expected Job objects (task.prepare(...)), got {job!r:.80}")
    check_job_id(job.id)
    validate_queue_name(job.queue)
    if not job.steps:
        raise InvalidJob("steps", "a job needs at least one step")
    names = [step.name for step in job.steps]
    if len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
        raise InvalidJob("steps", f"step names must be unique non-empty strings: {names}")
    for step in job.steps:
        check_text("steps", step.name)
        ran = (step.state, step.attempts, step.result, step.response, step.last_error)
        if ran != _NOT_RUN or step.started_at is not None or step.finished_at is not None:
            # The stores keep a new step's fields as given: a set as its result was a
            # TypeError out of the store, a state of "bogus" was stored as it was.
            raise InvalidJob(
                "steps",
                f"step {step.name!r}: a new job's step has not run: its state, attempts, "
                "result, response, last_error and times are left to the worker",
            )
        if step.kind == "task":
            if not isinstance(step.task, str) or not step.task:
                raise InvalidJob("steps", f"step {step.name!r}: a task step names its task")
            check_text("steps", step.task)
            if not isinstance(step.args, list) or not isinstance(step.kwargs, dict):
                raise InvalidJob("steps", f"step {step.name!r}: args is a list, kwargs a dict")
            check_json("args", step.args)
            check_json("kwargs", step.kwargs)
        elif step.kind == "http":
            if not isinstance(step.request, dict):
                raise InvalidJob("steps", f"step {step.name!r}: an http step needs its request")
            check_json("request", step.request)
        else:
            raise InvalidJob("steps", f"step {step.name!r}: unknown kind {step.kind!r}")
    if not 0 <= job.current_step < len(job.steps):
        raise InvalidJob("current_step", f"out of range: {job.current_step}")
    if isinstance(job.priority, bool) or not isinstance(job.priority, int):
        raise InvalidJob("priority", f"expected an int, got {job.priority!r}")
    if not -(2**31) <= job.priority < 2**31:
        raise InvalidJob("priority", f"must fit in 32 bits, got {shown(job.priority)}")
    check_max_attempts(job.max_attempts)
    _epoch(job.run_at)
    check_timeout(job.timeout)
    if not isinstance(job.retry, RetryPolicy):
        raise InvalidJob("retry", f"expected a RetryPolicy, got {job.retry!r:.80}")
    if job.tenant is not None:
        if not isinstance(job.tenant, str) or not job.tenant:
            raise InvalidJob(
                "tenant", f"must be a non-empty string or None, got {job.tenant!r:.80}"
            )
        check_text("tenant", job.tenant)
    if not isinstance(job.metadata, dict):
        raise InvalidJob("metadata", "expected a dict")
    check_json("metadata", job.metadata)
    if job.unique_key is not None:
        check_unique_key(job.unique_key)


#: A step before its first run: state, attempts, result, response, last_error.
_NOT_RUN = ("pending", 0, None, None, None)


#: The longest job id or unique key, in bytes as UTF-8: PostgreSQL indexes both, and its
#: btree refuses an entry past 2,704 bytes (text that does not compress gets there).
MAX_KEY_BYTES = 1000


def check_job_id(job_id: Any) -> None:
    """InvalidJob unless ``job_id`` is an id a job can have: text, not blank (an empty
    id is a script's unset variable, not a job), that every store keeps and indexes."""
    if not isinstance(job_id, str) or not job_id.strip():
        raise InvalidJob("id", f"must be a non-blank string, got {job_id!r:.80}")
    check_text("id", job_id)
    check_key_size("id", job_id)


def check_unique_key(key: Any) -> None:
    """InvalidJob unless ``key`` is a unique key: text, not blank (a key of spaces alone,
    like an empty one, is a script's unset variable, and would hold every job it meets),
    that every store keeps and indexes."""
    if not isinstance(key, str) or not key.strip():
        raise InvalidJob("unique_key", f"must be a non-blank string, got {key!r:.80}")
    check_text("unique_key", key)
    check_key_size("unique_key", key)


def check_key_size(field_name: str, key: str) -> None:
    """InvalidJob unless ``key`` (storable text) fits every store's index."""
    if len(key) > MAX_KEY_BYTES // 4 and len(key.encode()) > MAX_KEY_BYTES:
        raise InvalidJob(
            field_name,
            f"must be at most {MAX_KEY_BYTES:,} bytes as UTF-8, got {len(key.encode()):,}",
        )


def check_reason(reason: Any) -> None:
    """InvalidJob unless a cancel's ``reason``, kept in the job's error history, is
    text every store keeps."""
    if not isinstance(reason, str):
        raise InvalidJob("reason", f"expected a string, got {reason!r:.80}")
    check_text("reason", reason)


_valid_queues: set[str] = set()


def validate_queue_name(queue: Any) -> None:
    if queue in _valid_queues:
        return
    if not isinstance(queue, str) or not queue or len(queue) > 200:
        raise InvalidJob("queue", f"must be a non-empty string of at most 200 chars, got {queue!r}")
    if any(c.isspace() or c == "," for c in queue):
        raise InvalidJob("queue", f"may not contain spaces or commas: {queue!r}")
    if any(c < " " or "\x7f" <= c <= "\x9f" for c in queue):
        # An escape sequence in a name would be played on the terminal of whoever runs
        # `conveyor queues list`; the queue may come from any client of the HTTP API.
        # (C0 and C1 controls only: format characters such as an emoji's zero-width
        # joiner are text, and the dashboard and the CLI isolate right-to-left marks.)
        raise InvalidJob("queue", f"may not contain control characters: {queue!r}")
    check_text("queue", queue)
    if len(_valid_queues) < 10_000:
        _valid_queues.add(queue)


def check_json(field_name: str, value: Any) -> None:
    """InvalidJob unless ``value`` is plain JSON (what a worker elsewhere will get back)
    that every store can keep."""
    try:
        why = json_problem(value)
    except (TypeError, ValueError) as exc:
        raise InvalidJob(field_name, f"not JSON-serializable: {exc}") from None
    except RecursionError:
        raise InvalidJob(field_name, "nested too deeply to be JSON") from None
    if why is not None:
        raise InvalidJob(field_name, why)


def iterate(value: Any, field_name: str, items: str) -> Iterator[Any]:
    """An iterator over ``value``; InvalidJob naming the field when it is not iterable
    (``items`` says what it should hold)."""
    try:
        return iter(value)
    except TypeError:
        raise InvalidJob(
            field_name, f"expected an iterable of {items}, got {value!r:.80}"
        ) from None


def check_text(field_name: str, value: str) -> None:
    """InvalidJob unless every store can keep the string ``value``."""
    why = problem(value)
    if why is not None:
        raise InvalidJob(field_name, f"{why}: {value!r:.80}")


def check_max_attempts(max_attempts: Any) -> None:
    if (
        isinstance(max_attempts, bool)
        or not isinstance(max_attempts, int)
        or not 1 <= max_attempts <= 1_000_000
    ):
        raise InvalidJob(
            "max_attempts", f"must be an int from 1 to 1,000,000, got {shown(max_attempts)}"
        )


def check_timeout(timeout: Any) -> None:
    if timeout is None:
        return
    # Finite: an infinite timeout is no timeout (None), and JSON has no infinity. An int
    # fits in 64 bits: SQLite keeps an int as one, and refuses a larger one at the insert.
    if not _finite(timeout) or timeout <= 0:
        raise InvalidJob("timeout", f"must be a finite number of seconds > 0, got {shown(timeout)}")
    if isinstance(timeout, int) and timeout >= 2**63:
        raise InvalidJob(
            "timeout", f"an int of seconds must be below 2**63 (64 bits), got {shown(timeout)}"
        )


def retry_policy(value: RetryPolicy | Mapping[str, Any]) -> RetryPolicy:
    if isinstance(value, RetryPolicy):
        return value
    if not isinstance(value, Mapping):
        raise InvalidJob("retry", f"expected a RetryPolicy or a dict, got {value!r:.80}")
    try:
        return RetryPolicy.from_dict(dict(value))
    except (TypeError, ValueError) as exc:
        # RetryPolicy's messages start with "retry." or "retry: ": the field says it
        # once ("retry: base: must be ...", not "retry: retry.base: must be ...").
        problem = str(exc).removeprefix("retry: ").removeprefix("retry.")
        raise InvalidJob("retry", problem) from None


def _epoch(value: float | dt.datetime) -> float:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise InvalidJob("run_at", "a datetime needs a timezone (e.g. datetime.now(UTC))")
        seconds = value.timestamp()
    elif not _finite(value):
        raise InvalidJob(
            "run_at", f"expected a datetime or finite epoch seconds, got {shown(value)}"
        )
    else:
        seconds = value
    if not 0 <= seconds <= LATEST_RUN_AT:  # (compared before float(): an int may be huge)
        # A datetime as ISO 8601, the way it was likely written (its repr is Python's)
        got = value.isoformat() if isinstance(value, dt.datetime) else shown(value)
        raise InvalidJob("run_at", f"must be from 1970-01-01 to 9999-12-31 UTC, got {got}")
    return float(seconds)


def _finite(value: Any) -> bool:
    """True for an int or a finite float (not a bool). An int is finite however large:
    ``math.isfinite`` raises OverflowError for one past a float's range."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


# ---------------------------------------------------------------------------
# Names and import paths
# ---------------------------------------------------------------------------
def default_task_name(fn: Callable[..., Any]) -> str:
    """``module:qualname``: also an import path a worker can load without a registry.
    InvalidJob (``name``) for a callable that has none (a partial, an instance)."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        raise InvalidJob(
            "name", f"{fn!r:.80} has no import path (module:qualname): give it a name="
        )
    if module == "__main__":
        main = sys.modules["__main__"]
        path = getattr(main, "__file__", None)
        if path:
            module = os.path.splitext(os.path.basename(path))[0]
    return f"{module}:{qualname}"


def is_importable(fn: Callable[..., Any], path: str) -> bool:
    """Whether ``path`` (``default_task_name(fn)``) leads a worker to ``fn`` itself.

    A function of the running script is looked up in it: imported again under its
    file's name, the script's top level would run a second time in this process. That
    name must still be one a module is found by (not so for ``python -m pkg.script``),
    which finding it does not run."""
    if fn.__module__ == "__main__":
        target: Any = sys.modules["__main__"]
        for part in fn.__qualname__.split("."):
            target = getattr(target, part, None)
        module_name = path.partition(":")[0]
        return target is fn and (module_name == "__main__" or _findable(module_name))
    try:
        return import_callable(path) is fn
    except TaskNotFound:
        return False


def _findable(module_name: str) -> bool:
    """Whether an import of ``module_name`` would find a module (none is run; the
    packages above it are imported, and may fail as they are)."""
    try:
        return importlib.util.find_spec(module_name) is not None
    except Exception:
        return False


def import_callable(path: str) -> Callable[..., Any]:
    """``pkg.mod:func`` (or ``pkg.mod:Class.method``) → the callable (a :class:`Task`
    when the path names one); TaskNotFound otherwise."""
    module_name, sep, attr_path = path.partition(":")
    if not sep or not module_name or not attr_path:
        raise TaskNotFound(
            path,
            f"unknown task {path!r} (not registered; not an import path "
            "of the form 'package.module:function')",
        )
    if module_name.startswith("."):  # importlib raises TypeError for a relative name
        raise TaskNotFound(path, f"{path!r}: an import path names its module in full")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise TaskNotFound(
            path, f"cannot import module {module_name!r} for task {path!r}: {exc}"
        ) from None
    except (Exception, SystemExit) as exc:
        # The module is broken (it raises, or calls sys.exit(), as it is imported): the
        # task cannot be found, and the caller, an enqueue or a worker, says so as for
        # any other. Its exception out of the call would have been a surprise there, its
        # SystemExit the end of the program.
        said = exc.code if isinstance(exc, SystemExit) else exc
        raise TaskNotFound(
            path,
            f"importing module {module_name!r} for task {path!r} failed: "
            f"{type(exc).__name__}: {said}",
        ) from None
    for part in attr_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise TaskNotFound(
                path, f"module {module_name!r} has no {attr_path!r} (task {path!r})"
            ) from None
    if not callable(target):
        raise TaskNotFound(path, f"{path!r} is not callable")
    return target  # type: ignore[no-any-return]


def executor_for(fn: Callable[..., Any], requested: ExecutorKind | None) -> ExecutorKind:
    is_async = inspect.iscoroutinefunction(fn)
    if requested is None:
        return "async" if is_async else "thread"
    if requested == "async" and not is_async:
        raise ValueError("executor: 'async' needs an async def function")
    if requested in ("thread", "process") and is_async:
        raise ValueError(f"executor: {requested!r} needs a plain (non-async) function")
    if requested not in ("async", "thread", "process"):
        raise ValueError(f"executor: expected async, thread or process, got {requested!r}")
    return requested


AsyncHook = Callable[..., Awaitable[Any]]
