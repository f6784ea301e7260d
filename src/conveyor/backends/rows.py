"""Rows of the SQL backends (SQLite, PostgreSQL): jobs to statement parameters and back.

Both stores keep the ``jobs`` columns in the same order, with JSON columns read
back as text, so one decoder serves both. Pure functions, no connection: a
backend encodes before it takes a lock and decodes after it releases it.
"""

from __future__ import annotations

import json
import json.scanner
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from conveyor.backends.base import JobFilter, WorkerInfo
from conveyor.exceptions import JobStateError
from conveyor.job import (
    DEFAULT_RETRY,
    STATE_OF,
    Job,
    Outcome,
    Progress,
    RetryPolicy,
    State,
    Step,
    is_default_retry,
)

Row = tuple[Any, ...]

# allow_nan=False: NaN and Infinity are not JSON, and SQLite's JSON functions refuse them.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
# JSONEncoder.encode builds the C encoder anew on every call, a third of the cost of
# encoding a job's steps (1.7 us); this one is built once. It keeps no record of the
# containers it is in (that record would be shared by every thread): a value that
# contains itself ends in RecursionError, told as JSONEncoder tells it.
_c_encode = getattr(json.encoder, "c_make_encoder", None)
_encode = (
    _c_encode(
        None, _ENCODER.default, json.encoder.encode_basestring, None, ":", ",", False, False, False
    )
    if _c_encode is not None
    else None
)


def dumps(value: Any) -> str:
    """``value`` as compact JSON text (non-ASCII kept); ValueError for NaN, Infinity or
    a value that contains itself, TypeError for what JSON cannot hold."""
    if _encode is None:
        return _ENCODER.encode(value)
    try:
        return "".join(_encode(value, 0))
    except RecursionError:
        raise ValueError("Circular reference detected") from None


def steps_text(steps: Sequence[Step]) -> str:
    """``dumps([s.to_storage() for s in steps])``: the ``steps`` column's JSON.

    A new task job's steps (one task step with its args and nothing else set: every
    ``enqueue`` and ``enqueue_many``) are the same text around their args, made once
    per step name and task: 0.5 against 1.0 us a job here, for bulk enqueues on every
    store. The test for that shape asks what ``Step.to_storage`` asks, field by field."""
    if len(steps) == 1:
        step = steps[0]
        if (
            step.args
            and type(step.name) is str
            and type(step.task) is str
            and step.kind == "task"
            and not step.kwargs
            and step.request is None
            and step.state == "pending"
            and not step.attempts
            and step.result is None
            and step.response is None
            and step.last_error is None
            and step.started_at is None
            and step.finished_at is None
        ):
            key = (step.name, step.task)
            around = _AROUND_ARGS.get(key)
            if around is None:
                if len(_AROUND_ARGS) >= 1024:  # names made per job: keep it small
                    _AROUND_ARGS.clear()
                around = _AROUND_ARGS[key] = (
                    f'[{{"name":{dumps(step.name)},"task":{dumps(step.task)},"args":'
                )
            return f"{around}{dumps(step.args)}}}]"
    return dumps([s.to_storage() for s in steps])


#: The text of a new task step before its args, by step name and task.
_AROUND_ARGS: dict[tuple[str, str], str] = {}

# json.loads goes through JSONDecoder.decode, which matches whitespace before and after
# with a regular expression: half the cost of reading a job's steps (1.26 us). The
# stored JSON has none, so the C scanner reads it directly; anything it does not read
# whole goes to json.loads, for the same value or the same error.
# (typeshed types make_scanner's argument as a scanner; it takes the decoder.)
_scan = json.scanner.make_scanner(cast(Any, json.JSONDecoder()))


def loads(text: str) -> Any:
    """The value of JSON ``text``, as json.loads reads it."""
    if type(text) is not str:
        return json.loads(text)
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        return json.loads(text)
    return value if end == len(text) else json.loads(text)


def statements(script: str) -> Iterable[str]:
    """The statements of a SQL script, one at a time."""
    buffer: list[str] = []
    for line in script.splitlines():
        buffer.append(line)
        text = "\n".join(buffer)
        if sqlite3.complete_statement(text):
            statement = text.strip()
            if statement.strip(";").strip():
                yield statement
            buffer = []


def prepare_insert(job: Job, now: float) -> Row:
    """Stamp a new job with the store's time and state; its INSERT parameters (SQLite's
    INSERT, PostgreSQL's COPY: the columns of both, in this order)."""
    stamp_new(job, now)
    return (
        job.id,
        job.queue,
        job.task,
        job.priority,
        job.state.value,
        job.run_at,
        job.max_attempts,
        None if is_default_retry(job.retry) else dumps(job.retry.to_dict()),
        job.timeout,
        steps_text(job.steps),
        job.unique_key,
        dumps(job.metadata) if job.metadata else None,
        job.tenant,
        now,
        now,
    )


def stamp_new(job: Job, now: float) -> None:
    """What storing a new job at ``now`` makes of it (run_at 0 means now; a later
    run_at means scheduled). The SQL of every store decides the same way."""
    job.created_at = job.updated_at = now
    if not job.run_at:
        job.run_at = now
    job.state = State.SCHEDULED if job.run_at > now else State.QUEUED
    job.version = 1


def held_params(job: Job, now: float) -> dict[str, Any]:
    """Parameters of the writes a lease holder makes to a running job (save, release)."""
    return {
        "steps": dumps([s.to_storage() for s in job.steps]),
        "current_step": job.current_step,
        "progress": dumps(job.progress.to_dict()) if has_progress(job) else None,
        "now": now,
        "id": job.id,
        "worker": job.worker_id,
        "held_attempts": job.attempts,
    }


def row_to_job(r: Row) -> Job:
    # Positional, in Job's field order (a test holds every column to its field): a
    # dataclass takes 24 arguments positionally in 40 % of the time it takes them by
    # keyword (0.9 against 2.3 us here), and every claimed job is read here.
    return Job(
        r[0],  # id
        r[1],  # queue
        [Step(**s) for s in loads(r[10])],  # steps
        r[3],  # priority
        STATE_OF[r[4]],  # state
        r[5],  # run_at
        r[6],  # attempts
        r[7],  # max_attempts
        RetryPolicy.from_dict(loads(r[8])) if r[8] else DEFAULT_RETRY,  # retry
        r[9],  # timeout
        r[11],  # current_step
        Progress.from_dict(loads(r[12])) if r[12] else Progress(),  # progress
        loads(r[13]) if r[13] is not None else None,  # result
        loads(r[14]) if r[14] else [],  # errors
        r[15],  # unique_key
        loads(r[16]) if r[16] else {},  # metadata
        r[17],  # tenant
        r[18],  # version
        r[19],  # created_at
        r[20],  # started_at
        r[21],  # finished_at
        r[22],  # updated_at
        r[23],  # worker_id
        r[24],  # lease_until
    )


def row_to_worker(r: Row) -> WorkerInfo:
    return WorkerInfo(
        id=r[0],
        host=r[1],
        pid=r[2],
        queues=loads(r[3]),
        concurrency=r[4],
        started_at=r[5],
        heartbeat_at=r[6],
        processed=r[7],
        failed=r[8],
        running=loads(r[9]),
    )


def has_progress(job: Job) -> bool:
    p = job.progress
    return bool(p.total or p.completed or p.message)


@dataclass(slots=True)  # not frozen: a frozen one takes 3.7 times as long to make
class Ending:
    """What an outcome makes of a run, for every store to write: the job's next
    state, the retry delay, its attempts and errors, and whether the run failed."""

    state: State
    delay: float
    attempts: int
    errors: list[dict[str, Any]]
    failed: bool


def ending(job: Job, outcome: Outcome) -> Ending:
    attempts = job.attempts
    delay = 0.0
    if outcome.kind == "succeeded":
        state = State.SUCCEEDED
    elif outcome.kind == "retry":
        delay = outcome.delay
        state = State.RETRYING if delay > 0 else State.QUEUED
        if not outcome.count_attempt:
            attempts -= 1  # a snooze gives the attempt back
    elif outcome.kind == "poisoned":
        state = State.POISONED
    else:
        state = State.CANCELLED
    errors = [*job.errors, outcome.error] if outcome.error else job.errors
    failed = outcome.kind == "poisoned" or (outcome.kind == "retry" and outcome.count_attempt)
    return Ending(state, delay, attempts, errors, failed)


def outcome_rows(
    items: Sequence[tuple[Job, Outcome]], *, as_text: bool
) -> tuple[list[list[Any]], dict[str, tuple[str, int]]]:
    """Per run, the values an outcome writes: id, worker, attempts held, state, delay,
    attempts, steps, current_step, progress, result, errors. Steps, progress and errors
    are lists and dicts, or with ``as_text`` JSON text; the result is always JSON text
    (it may be a bare string). Also per job id its queue and whether the run failed
    (1 or 0), for the counters and the counts per minute."""
    rows: list[list[Any]] = []
    counts: dict[str, tuple[str, int]] = {}
    for job, outcome in items:
        end = ending(job, outcome)
        steps: Any = [s.to_storage() for s in job.steps]
        progress: Any = job.progress.to_dict() if has_progress(job) else None
        errors: Any = end.errors or None
        if as_text:
            steps = dumps(steps)
            progress = None if progress is None else dumps(progress)
            errors = None if errors is None else dumps(errors)
        rows.append(
            [
                job.id,
                job.worker_id,
                job.attempts,
                end.state.value,
                end.delay,
                end.attempts,
                steps,
                job.current_step,
                progress,
                None if job.result is None else dumps(job.result),
                errors,
            ]
        )
        counts[job.id] = (job.queue, int(end.failed))
    return rows, counts


def finish_batch(items: Sequence[tuple[Job, Outcome]]) -> str:
    """PostgreSQL's ``finish_batch`` parameter: the ``outcome_rows`` as one JSON array,
    each row ending with its failed flag (PostgreSQL counts in SQL)."""
    rows, counts = outcome_rows(items, as_text=False)
    for row in rows:
        row.append(counts[row[0]][1])
    return dumps(rows)


def minute_of(t: float) -> int:
    """The start of the minute holding time ``t`` (epoch seconds)."""
    return int(t // 60) * 60


def tally(written: Iterable[str], counts: dict[str, tuple[str, int]]) -> dict[str, list[int]]:
    """Per queue, [processed, failed] of the written runs (``outcome_rows``' counts)."""
    per_queue: dict[str, list[int]] = {}
    for job_id in written:
        queue, failed = counts[job_id]
        found = per_queue.get(queue)
        if found is None:
            per_queue[queue] = [1, failed]
        else:
            found[0] += 1
            found[1] += failed
    return per_queue


#: The states ``retry`` and ``retry_all`` take a job from.
RETRYABLE = frozenset({State.POISONED, State.CANCELLED})


def retry_filter(filter: JobFilter) -> JobFilter:
    """What ``retry_all`` looks for: poisoned jobs unless told; JobStateError for a
    state that cannot be retried."""
    states = filter.states or frozenset({State.POISONED})
    if not states <= RETRYABLE:
        bad = sorted(s.value for s in states - RETRYABLE)
        raise JobStateError("*", ",".join(bad), "retry (only poisoned or cancelled)")
    return JobFilter(states=states, queue=filter.queue, task=filter.task, tenant=filter.tenant)


def retried_steps(job: Job) -> str:
    """The steps of a job run again: from the failed step on, every one not succeeded
    is pending again, with its attempts back to 0 (an HTTP step counts its own, and a
    retried job gets them all again); earlier results are kept. The ``steps`` column's JSON."""
    for step in job.steps[job.current_step :]:
        if step.state != "succeeded":
            step.state = "pending"
            step.attempts = 0
    return dumps([s.to_storage() for s in job.steps])
