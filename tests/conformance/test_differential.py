"""SQLite, PostgreSQL and Redis driven through one random sequence of Backend calls.

A hypothesis state machine makes the same call on the three real stores at each step
and checks, after every step, that each store answers and holds what a small model of
the documented rules says, so that the stores agree with each other and with the docs
(DESIGN.md, conveyor.backends.base).

Every job is built once and a copy of it is enqueued in each store, so the three
stores hold jobs of the same ids. Time never decides an outcome: jobs are due at once
(``run_at`` 0, or far in the past) or far in the future, and leases last an hour or
run out at once (a lease of 0, for ``recover_expired``).

Where the docs leave a behaviour open and the stores differ, the model accepts each
answer or steers clear of the case (see the comments marked "open").
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from conveyor.backends import create_backend
from conveyor.backends.base import Backend, JobFilter, RetriedAll
from conveyor.exceptions import ConveyorError, JobNotFound, JobStateError, QueueNotFound
from conveyor.job import (
    ACTIVE_STATES,
    DEFAULT_MAX_ATTEMPTS,
    FINAL_STATES,
    Job,
    Outcome,
    Progress,
    State,
    new_job_id,
)
from conveyor.testing import BackendFactory, all_jobs, error, make_job, task_step
from tests.stores import STORES, store_url

T = TypeVar("T")

#: CONVEYOR_DIFF_EXAMPLES=400 looks further than CI does (about 4 minutes).
DIFF_SETTINGS = settings(
    max_examples=int(os.environ.get("CONVEYOR_DIFF_EXAMPLES", "60")),
    stateful_step_count=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

#: Due long ago: claimable at once, ahead of every job due "now" of its priority.
PAST = 1_000_000_000.0
#: Due long after any test run: never claimable here (about 2096).
FUTURE = 4_000_000_000.0
#: A retry delay that outlasts any test run.
LONG_DELAY = 30 * 24 * 3600.0
#: Leases outlast the test run: no job is recovered behind the model's back.
LEASE = 3600.0
WORKERS = ("worker-a", "worker-b")
WAITING = (State.SCHEDULED, State.QUEUED, State.RETRYING)
HELD = (State.RUNNING, State.CANCELLING)


@dataclass
class ModelJob:
    """What a user can see of one job, as the rules say it should be."""

    id: str
    queue: str
    task: str
    priority: int
    #: place in line among ready jobs of one priority: (0, run_at) for a run_at given in
    #: the past, (1, n) for "due now" at the model's n-th event; then the id
    line: tuple[int, float]
    unique_key: str | None
    state: State
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    attempts: int = 0
    worker: str | None = None
    #: held under a lease that ran out at once (claimed with a lease of 0): left to
    #: recover_expired; what its holder may still write is not the model's business
    expiring: bool = False
    errors: list[str] = field(default_factory=list)
    #: steps done, as its workers saved them
    progress: float = 0

    def line_key(self) -> tuple[int, tuple[int, float], str]:
        return (self.priority, self.line, self.id)


@dataclass
class Answer:
    """One store's answer to a call: a value, or the ConveyorError it raised."""

    value: Any = None
    error: ConveyorError | None = None


class DifferentialModel(RuleBasedStateMachine):
    """Each run uses queues and unique keys of its own, so runs share the stores."""

    factories: ClassVar[dict[str, BackendFactory]]

    def __init__(self) -> None:
        super().__init__()
        tag = uuid.uuid4().hex[:10]
        self.queues = [f"diff-{tag}-a", f"diff-{tag}-b"]
        self.keys = [f"{tag}-k1", f"{tag}-k2"]
        self.tasks = [f"{tag}-send", f"{tag}-bounce"]
        #: the queues that have their row (a job was stored in them, they were created,
        #: paused or resumed, and not dropped since), and those paused
        self.existing: set[str] = set()
        self.paused: set[str] = set()
        self.jobs: dict[str, ModelJob] = {}
        self.clock = itertools.count()
        #: per store, the job as its current holder got it from claim
        self.held: dict[str, dict[str, Job]] = {name: {} for name in self.factories}
        #: per store, copies of jobs from earlier claims, whose holders lost them
        self.stale: dict[str, dict[str, Job]] = {name: {} for name in self.factories}
        #: per store, the version each job was last seen with, and what was seen
        self.seen: dict[str, dict[str, tuple[int, tuple[Any, ...]]]] = {
            name: {} for name in self.factories
        }

    # -- plumbing --------------------------------------------------------------------
    def each(self, call: Callable[[Backend], Awaitable[T]]) -> dict[str, Answer]:
        """``call`` on every store in turn; each store's answer."""
        return self.each_own(lambda _, backend: call(backend))

    def each_own(self, call: Callable[[str, Backend], Awaitable[T]]) -> dict[str, Answer]:
        """``call`` on every store with the store's name (for per-store job copies)."""
        answers: dict[str, Answer] = {}
        for name, factory in self.factories.items():
            try:
                answers[name] = Answer(factory.run(call(name, factory.backend)))
            except ConveyorError as exc:
                answers[name] = Answer(error=exc)
        return answers

    @staticmethod
    def values(answers: dict[str, Answer]) -> dict[str, Any]:
        for name, answer in answers.items():
            assert answer.error is None, f"{name}: unexpected {answer.error!r}"
        return {name: answer.value for name, answer in answers.items()}

    @staticmethod
    def errors(answers: dict[str, Answer], kind: type[ConveyorError]) -> None:
        for name, answer in answers.items():
            assert isinstance(answer.error, kind), (
                f"{name}: expected {kind.__name__}, got {answer.error!r} / {answer.value!r}"
            )

    def tick(self) -> tuple[int, float]:
        return (1, float(next(self.clock)))

    def in_state(self, *states: State) -> list[ModelJob]:
        return sorted((j for j in self.jobs.values() if j.state in states), key=lambda j: j.id)

    def leased(self) -> list[ModelJob]:
        """Held jobs whose leases are live."""
        return [j for j in self.in_state(*HELD) if not j.expiring]

    def holds_key(self, key: str | None, other_than: str | None = None) -> ModelJob | None:
        if key is None:
            return None
        for job in self.jobs.values():
            if job.unique_key == key and job.state in ACTIVE_STATES and job.id != other_than:
                return job
        return None

    def exists(self, queue: str) -> bool:
        """Whether ``queue`` exists: by its row, or by its jobs. A queue dropped while
        some of its jobs ran (they stay) is listed by them, and can be paused, emptied
        or dropped, until none of its jobs is left."""
        return queue in self.existing or any(j.queue == queue for j in self.jobs.values())

    def make_queue(self, queue: str) -> None:
        self.existing.add(queue)

    def lose(self, job_id: str) -> None:
        """The job's holder gave it up: its copies become stale handles."""
        for name in self.factories:
            copy = self.held[name].pop(job_id, None)
            if copy is not None:
                self.stale[name][job_id] = copy

    # -- rules: enqueue ---------------------------------------------------------------
    @rule(
        specs=st.lists(
            st.tuples(
                st.integers(0, 1),  # queue
                st.sampled_from([-10, 0, 0, 10]),  # priority
                st.sampled_from(["now", "now", "past", "future"]),
                st.integers(0, 2),  # which past moment: ties are broken by id
                st.sampled_from([None, None, 0, 1]),  # unique key
                st.integers(0, 1),  # task
                st.sampled_from([DEFAULT_MAX_ATTEMPTS, 1, 2]),
                st.booleans(),  # two steps
            ),
            min_size=1,
            max_size=3,
        )
    )
    def enqueue(self, specs: list[tuple[int, int, str, int, int | None, int, int, bool]]) -> None:
        # Given jobs as an application would build them (one copy per store)
        jobs: list[Job] = []
        for queue, priority, when, moment, key, task, max_attempts, two in specs:
            run_at = {"now": 0.0, "past": PAST + moment, "future": FUTURE}[when]
            jobs.append(
                make_job(
                    self.queues[queue],
                    priority=priority,
                    run_at=run_at,
                    unique_key=None if key is None else self.keys[key],
                    task=self.tasks[task],
                    max_attempts=max_attempts,
                    steps=[task_step(self.tasks[task], 1), task_step("store")] if two else None,
                )
            )

        # When they are enqueued in one call
        answers = self.values(self.each(lambda b: b.enqueue([j.copy() for j in jobs])))

        # Then each is stored, unless its key is held by an active job (one stored
        # earlier, or earlier in the batch): that job comes back in its place
        expected: list[str] = []
        for job, (_, _, when, moment, *_) in zip(jobs, specs, strict=True):
            holder = self.holds_key(job.unique_key)
            if holder is not None:
                expected.append(holder.id)
                continue
            expected.append(job.id)
            self.make_queue(job.queue)
            self.jobs[job.id] = ModelJob(
                job.id,
                job.queue,
                job.task or "",
                job.priority,
                (0, PAST + moment) if when == "past" else self.tick(),
                job.unique_key,
                State.SCHEDULED if when == "future" else State.QUEUED,
                job.max_attempts,
            )
        for name, stored in answers.items():
            assert [j.id for j in stored] == expected, name
            for got in stored:
                assert got.state is self.jobs[got.id].state, (name, got.id)

    # -- rules: workers ---------------------------------------------------------------
    @rule(
        worker=st.sampled_from(WORKERS),
        order=st.sampled_from([(0,), (1,), (0, 1), (1, 0)]),
        limit=st.integers(1, 3),
        lease=st.sampled_from([LEASE, LEASE, LEASE, 0.0]),
    )
    def claim(self, worker: str, order: tuple[int, ...], limit: int, lease: float) -> None:
        queues = [self.queues[i] for i in order]
        # Given the ready jobs of each queue in line: priority, then run_at, then id
        expected: list[str] = []
        for queue in queues:
            if queue in self.paused:
                continue
            ready = sorted(
                (j for j in self.jobs.values() if j.queue == queue and j.state is State.QUEUED),
                key=ModelJob.line_key,
            )
            expected += [j.id for j in ready[: limit - len(expected)]]

        # When a worker claims from the queues in that order
        answers = self.values(self.each(lambda b: b.claim(queues, worker, limit, lease)))

        # Then every store hands it the same jobs, leased to it, an attempt spent
        for name, claimed in answers.items():
            assert [j.id for j in claimed] == expected, name
        for job_id in expected:
            model = self.jobs[job_id]
            model.state, model.worker = State.RUNNING, worker
            model.attempts += 1
            model.expiring = lease == 0.0
        for name, claimed in answers.items():
            for job in claimed:
                assert (job.state, job.worker_id) == (State.RUNNING, worker), name
                assert job.attempts == self.jobs[job.id].attempts, name
                assert job.lease_until is not None, name
                self.held[name][job.id] = job

    @precondition(lambda self: self.leased())
    @rule(
        data=st.data(),
        kinds=st.lists(
            st.sampled_from(
                ["succeeded", "retry_now", "retry_later", "snooze", "poisoned", "cancelled"]
            ),
            min_size=1,
            max_size=2,
        ),
    )
    def finish(self, data: st.DataObject, kinds: list[str]) -> None:
        # Given held jobs and how their runs ended
        chosen = data.draw(
            st.lists(
                st.sampled_from(self.leased()),
                min_size=1,
                max_size=len(kinds),
                unique_by=lambda j: j.id,
            )
        )
        items = list(zip(chosen, kinds, strict=False))
        outcomes = {
            "succeeded": Outcome.succeeded(),
            "retry_now": Outcome.retry_in(0.0, error("flaky")),
            "retry_later": Outcome.retry_in(LONG_DELAY, error("down")),
            "snooze": Outcome.retry_in(0.0, None, count_attempt=False),
            "poisoned": Outcome.poisoned(error("bad input")),
            "cancelled": Outcome.cancelled(error("stopped")),
        }

        # (the executor leaves the first of two steps done, and a result on success)
        for name in self.factories:
            for model, kind in items:
                held = self.held[name][model.id]
                if len(held.steps) == 2 and held.current_step == 0:
                    held.steps[0].state, held.steps[0].result = "succeeded", {"rows": 3}
                    held.current_step = 1
                if kind != "succeeded":
                    held.steps[held.current_step].state = "failed"
                    held.steps[held.current_step].attempts += 1
                else:
                    held.steps[-1].state, held.result = "succeeded", {"done": model.attempts}

        # When their worker records the outcomes in one call
        answers = self.values(
            self.each_own(
                lambda name, b: b.finish(
                    [(self.held[name][m.id], outcomes[kind]) for m, kind in items]
                )
            )
        )

        # Then each is written; a cancel asked meanwhile wins over a retry
        for name, written in answers.items():
            assert written == [True] * len(items), name
        for model, kind in items:
            outcome = outcomes[kind]
            if outcome.kind == "retry" and model.state is State.CANCELLING:
                state = State.CANCELLED
            else:
                state = {
                    "succeeded": State.SUCCEEDED,
                    "retry_now": State.QUEUED,
                    "retry_later": State.RETRYING,
                    "snooze": State.QUEUED,
                    "poisoned": State.POISONED,
                    "cancelled": State.CANCELLED,
                }[kind]
            if kind in ("retry_now", "snooze"):
                model.line = self.tick()
            if not outcome.count_attempt:
                model.attempts -= 1  # a snooze gives the attempt back
            model.state, model.worker = state, None
            if outcome.error is not None:
                model.errors.append(outcome.error["message"])
            self.lose(model.id)

    @precondition(lambda self: self.leased())
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        # Given a held job
        model = data.draw(st.sampled_from(self.leased()))

        # When its worker shuts down and gives it back
        answers = self.values(self.each_own(lambda name, b: b.release([self.held[name][model.id]])))

        # Then it waits again in its old place (cancelled if a cancel was asked), the
        # attempt given back
        for name, released in answers.items():
            assert released == 1, name
        model.state = State.CANCELLED if model.state is State.CANCELLING else State.QUEUED
        model.worker = None
        model.attempts -= 1
        self.lose(model.id)

    @precondition(lambda self: self.leased())
    @rule(data=st.data())
    def save(self, data: st.DataObject) -> None:
        # Given a held job one more step of which is done
        model = data.draw(st.sampled_from(self.leased()))
        model.progress += 1
        for name in self.factories:
            self.held[name][model.id].progress = Progress(model.progress, 10, "working")

        # When its worker saves it
        answers = self.values(self.each_own(lambda name, b: b.save(self.held[name][model.id])))

        # Then it is written, the job still running
        for name, saved in answers.items():
            assert saved is True, name

    @precondition(lambda self: any(self.stale.values()))
    @rule(data=st.data(), how=st.sampled_from(["finish", "release", "extend", "save"]))
    def stale_holder(self, data: st.DataObject, how: str) -> None:
        # Given a job copy whose holder lost it (finished, released, or claimed again)
        job_id = data.draw(st.sampled_from(sorted(self.stale["sqlite"])))
        model = self.jobs.get(job_id)
        copy = self.stale["sqlite"][job_id]
        if model is not None and model.state in HELD:
            if model.expiring:
                return  # what a holder of a lease run out may write is left open
            if (model.worker, model.attempts) == (copy.worker_id, copy.attempts):
                # The same worker holds it again under the same attempt (a snooze or a
                # release gave the attempt back): the documented compare-and-set on
                # (id, worker, attempts) cannot tell the two runs apart.
                return

        # When that holder still writes
        def write(name: str, b: Backend) -> Awaitable[Any]:
            copy = self.stale[name][job_id]
            if how == "finish":
                return b.finish([(copy, Outcome.succeeded())])
            if how == "release":
                return b.release([copy])
            if how == "save":
                return b.save(copy)
            return b.extend([job_id], copy.worker_id or "", LEASE)

        answers = self.values(self.each_own(write))

        # Then nothing is written
        for name, answer in answers.items():
            if how == "finish":
                assert answer == [False], name
            elif how == "release":
                assert answer == 0, name
            elif how == "save":
                assert answer is False, name
            elif model is not None and model.state in HELD and model.worker == copy.worker_id:
                # extend names the worker, not the run: the worker holds the job again
                assert answer.extended == [job_id], name
            else:
                assert (answer.extended, answer.lost) == ([], [job_id]), name

    @rule(worker=st.sampled_from(WORKERS), data=st.data())
    def extend(self, worker: str, data: st.DataObject) -> None:
        # Given some of the jobs, held by this worker or not
        pool = sorted(i for i, j in self.jobs.items() if not j.expiring)
        ids = data.draw(st.lists(st.sampled_from(pool or ["none"]), unique=True))
        ids = [i for i in ids if i in self.jobs]

        # When the worker extends their leases
        answers = self.values(self.each(lambda b: b.extend(ids, worker, LEASE)))

        # Then those it holds are extended, those asked to cancel are named, the rest lost
        mine = [i for i in ids if self.jobs[i].state in HELD and self.jobs[i].worker == worker]
        cancelling = [i for i in mine if self.jobs[i].state is State.CANCELLING]
        for name, status in answers.items():
            assert status.extended == mine, name
            assert status.cancelling == cancelling, name
            assert status.lost == [i for i in ids if i not in mine], name

    @rule()
    def recover_expired(self) -> None:
        # Given jobs held under leases that ran out (claimed with a lease of 0), and
        # others whose leases outlast the test
        expired = [j for j in self.in_state(*HELD) if j.expiring]

        # When expired leases are recovered
        answers = self.values(self.each(lambda b: b.recover_expired()))

        # Then exactly the expired ones of this run change: a cancel asked ends them
        # cancelled, spent attempts poisoned, the others wait again from now
        for model in expired:  # by id: one clock reading, ties broken by id
            if model.state is State.CANCELLING:
                model.state = State.CANCELLED
            elif model.attempts >= model.max_attempts:
                model.state = State.POISONED
            else:
                model.state, model.line = State.QUEUED, self.tick()
            model.errors.append(f"lease expired: worker {model.worker} stopped heartbeating")
            model.worker, model.expiring = None, False
            self.lose(model.id)
        for name, recovered in answers.items():
            mine = {j.id: j.state for j in recovered if j.id in self.jobs}
            assert mine == {j.id: j.state for j in expired}, name

    # -- rules: operators -------------------------------------------------------------
    @precondition(lambda self: self.jobs)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        # Given any job
        model = data.draw(st.sampled_from(sorted(self.jobs.values(), key=lambda j: j.id)))

        # When it is cancelled
        answers = self.values(self.each(lambda b: b.cancel(model.id, "not needed")))

        # Then a waiting job ends, a running one is asked to stop, a finished one stays
        if model.state in WAITING:
            model.state = State.CANCELLED
            model.errors.append("not needed")
        elif model.state is State.RUNNING:
            model.state = State.CANCELLING
        for name, job in answers.items():
            assert job.state is model.state, name

    @precondition(lambda self: self.jobs)
    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        # Given any job
        model = data.draw(st.sampled_from(sorted(self.jobs.values(), key=lambda j: j.id)))

        # When an operator retries it
        answers = self.each(lambda b: b.retry(model.id))

        # Then a poisoned or cancelled one is queued now with fresh attempts; any other
        # is refused, and so is one whose unique key another active job holds now
        if model.state in (State.POISONED, State.CANCELLED) and (
            self.holds_key(model.unique_key, other_than=model.id) is None
        ):
            for name, job in self.values(answers).items():
                assert (job.state, job.attempts) == (State.QUEUED, 0), name
            model.state, model.attempts, model.line = State.QUEUED, 0, self.tick()
        else:
            self.errors(answers, JobStateError)

    @precondition(lambda self: self.jobs)
    @rule(
        data=st.data(),
        states=st.none() | st.sets(st.sampled_from(list(State)), min_size=1, max_size=3),
    )
    def delete(self, data: st.DataObject, states: set[State] | None) -> None:
        # Given any job, and maybe the states an operator saw it in
        model = data.draw(st.sampled_from(sorted(self.jobs.values(), key=lambda j: j.id)))
        wanted = None if states is None else sorted(states)

        # When it is deleted
        answers = self.each(lambda b: b.delete(model.id, wanted))

        # Then a job that is held, or in none of the states, stays; any other goes
        if model.state in HELD or (wanted is not None and model.state not in wanted):
            self.errors(answers, JobStateError)
            return
        for name, removed in self.values(answers).items():
            assert removed is True, name
        del self.jobs[model.id]
        for name in self.factories:
            self.stale[name].pop(model.id, None)
        # and it is gone
        self.errors(self.each(lambda b: b.get(model.id)), JobNotFound)
        for name, again in self.values(self.each(lambda b: b.delete(model.id, wanted))).items():
            assert again is False, name

    @rule(
        states=st.none() | st.sets(st.sampled_from(list(State)), min_size=1, max_size=3),
        by=st.sampled_from(["queue", "task"]),
        which=st.integers(0, 1),
        limit=st.integers(1, 3),
    )
    def list_jobs(self, states: set[State] | None, by: str, which: int, limit: int) -> None:
        # Given the jobs of a queue, or of a task, in some states
        if by == "queue":
            wanted = JobFilter(
                states=None if states is None else frozenset(states), queue=self.queues[which]
            )
        else:
            wanted = JobFilter(
                states=None if states is None else frozenset(states), task=self.tasks[which]
            )
        expected = sorted(
            (
                j.id
                for j in self.jobs.values()
                if (states is None or j.state in states)
                and (j.queue if by == "queue" else j.task) == (wanted.queue or wanted.task)
            ),
            reverse=True,
        )

        # When they are listed a few at a time
        answers = self.values(self.each(lambda b: _list_all(b, wanted, limit)))

        # Then every store lists exactly them, newest first, each once
        for name, ids in answers.items():
            assert ids == expected, name

    @precondition(lambda self: self.jobs)
    @rule(data=st.data())
    def get(self, data: st.DataObject) -> None:
        # Given any job
        model = data.draw(st.sampled_from(sorted(self.jobs.values(), key=lambda j: j.id)))

        # When it is read whole and by its head
        jobs = self.values(self.each(lambda b: b.get(model.id)))
        heads = self.values(self.each(lambda b: b.head(model.id)))

        # Then both show its state, and the head the job's version
        for name, job in jobs.items():
            assert job.state is model.state, name
            assert (heads[name].state, heads[name].version) == (job.state, job.version), name

    @rule(key=st.integers(0, 1), queue=st.integers(0, 1))
    def enqueue_once(self, key: int, queue: int) -> None:
        # Given a job whose key a stored job (of any state) may carry
        job = make_job(self.queues[queue], unique_key=self.keys[key], task=self.tasks[0])
        carriers = sorted(
            (j for j in self.jobs.values() if j.unique_key == job.unique_key), key=lambda j: j.id
        )

        # When it is enqueued once
        answers = self.values(self.each(lambda b: b.enqueue_once(job.copy())))

        # Then the newest job carrying the key comes back, or it is stored
        if carriers:
            want = carriers[-1]
        else:
            want = ModelJob(
                job.id, job.queue, self.tasks[0], 0, self.tick(), job.unique_key, State.QUEUED
            )
            self.jobs[job.id] = want
            self.make_queue(job.queue)
        for name, got in answers.items():
            assert (got.id, got.state) == (want.id, want.state), name
        found = self.values(self.each(lambda b: b.find_unique(job.unique_key or "")))
        for name, got in found.items():
            assert got is not None and got.id == want.id, name

    @rule(
        states=st.sampled_from(
            [None, {State.POISONED}, {State.CANCELLED}, {State.POISONED, State.CANCELLED}]
        ),
        queue=st.integers(0, 1),
    )
    def retry_all(self, states: set[State] | None, queue: int) -> None:
        # Given the finished jobs of a queue
        wanted = JobFilter(
            states=None if states is None else frozenset(states), queue=self.queues[queue]
        )
        looked_for = states or {State.POISONED}

        # When an operator retries all of them in some states
        answers = self.values(self.each(lambda b: b.retry_all(wanted)))

        # Then those are queued again, but for one whose key another active job holds
        # (the newest first, as list_jobs goes; a retried one holds its key at once),
        # which is counted apart
        count = held = 0
        for model in sorted(self.jobs.values(), key=lambda j: j.id, reverse=True):
            if model.queue != self.queues[queue] or model.state not in looked_for:
                continue
            if self.holds_key(model.unique_key, other_than=model.id) is not None:
                held += 1
                continue
            model.state, model.attempts, model.line = State.QUEUED, 0, self.tick()
            count += 1
        for name, done in answers.items():
            assert done == RetriedAll(retried=count, held=held), name

    @rule(queue=st.integers(0, 1), how=st.sampled_from(["create", "pause", "resume"]))
    def queue_state(self, queue: int, how: str) -> None:
        name_ = self.queues[queue]

        # When an operator creates, pauses or resumes a queue
        call = {
            "create": lambda b: b.create_queue(name_),
            "pause": lambda b: b.pause_queue(name_),
            "resume": lambda b: b.resume_queue(name_),
        }[how]
        answers = self.each(call)

        # Then it is done, or QueueNotFound for a queue that is not there
        if how != "create" and not self.exists(name_):
            self.errors(answers, QueueNotFound)
            return
        self.values(answers)
        # (a queue that exists by its jobs alone gets its row back)
        self.make_queue(name_)
        if how == "pause":
            self.paused.add(name_)
        elif how == "resume":
            self.paused.discard(name_)

    @rule(queue=st.integers(0, 1), how=st.sampled_from(["empty", "drop"]))
    def empty_or_drop(self, queue: int, how: str) -> None:
        name_ = self.queues[queue]

        # When an operator empties or drops a queue
        answers = self.each(
            (lambda b: b.empty_queue(name_)) if how == "empty" else (lambda b: b.drop_queue(name_))
        )

        # Then its waiting jobs (dropping: all but the held ones) are gone, and dropping
        # removes the queue's row (its held jobs stay, and it exists by them);
        # QueueNotFound for a queue that is not there
        if not self.exists(name_):
            self.errors(answers, QueueNotFound)
            return
        gone = [
            j
            for j in self.jobs.values()
            if j.queue == name_ and (j.state in WAITING if how == "empty" else j.state not in HELD)
        ]
        for name, removed in self.values(answers).items():
            assert removed == len(gone), name
        for job in gone:
            del self.jobs[job.id]
            for name in self.factories:
                self.stale[name].pop(job.id, None)
        if how == "drop":
            self.existing.discard(name_)
            self.paused.discard(name_)

    @precondition(lambda self: self.in_state(*HELD))
    @rule(data=st.data())
    def drop_under_a_held_job(self, data: st.DataObject) -> None:
        # Given a job its worker holds (running, or asked to cancel)
        job = data.draw(st.sampled_from(self.in_state(*HELD)))

        # When an operator drops its queue meanwhile (which empty_or_drop alone rarely
        # draws), the held job staying; the queue exists by it (see exists)
        self.empty_or_drop(self.queues.index(job.queue), "drop")

    @rule(
        long_ago=st.booleans(),
        states=st.sampled_from(
            [None, (State.SUCCEEDED,), (State.POISONED, State.CANCELLED), (State.QUEUED,)]
        ),
    )
    def prune(self, long_ago: bool, states: tuple[State, ...] | None) -> None:
        # Given finished jobs, all finished after PAST and before FUTURE
        before = PAST if long_ago else FUTURE

        # When the jobs finished before a time are pruned, maybe of some states only
        answers = self.values(self.each(lambda b: b.prune(before, states)))

        # Then finished jobs of those states go if they finished before it, others stay
        gone = [
            j
            for j in self.jobs.values()
            if not long_ago and j.state in FINAL_STATES and (states is None or j.state in states)
        ]
        for job in gone:
            del self.jobs[job.id]
            for name in self.factories:
                self.stale[name].pop(job.id, None)
        # (the stores hold what earlier runs left too, the same in each store)
        assert len(set(answers.values())) == 1, answers
        assert all(count >= len(gone) for count in answers.values()), answers

    @rule()
    def unknown_job(self) -> None:
        # Given an id no job has
        job_id = new_job_id()

        # When operators and workers name it
        # Then it is not found, not deleted, and no lease of it is held
        for call in (
            lambda b: b.get(job_id),
            lambda b: b.cancel(job_id),
            lambda b: b.retry(job_id),
        ):
            self.errors(self.each(call), JobNotFound)
        for name, removed in self.values(self.each(lambda b: b.delete(job_id))).items():
            assert removed is False, name
        for name, status in self.values(
            self.each(lambda b: b.extend([job_id], WORKERS[0], LEASE))
        ).items():
            assert (status.extended, status.lost) == ([], [job_id]), name

    # -- invariants ------------------------------------------------------------------
    @invariant()
    def stores_match_the_model(self) -> None:
        documents: dict[str, dict[str, dict[str, Any]]] = {}
        for name, factory in self.factories.items():
            stored: dict[str, Job] = {}
            for queue in self.queues:
                for job in factory.run(all_jobs(factory.backend, JobFilter(queue=queue))):
                    stored[job.id] = job
            assert set(stored) == set(self.jobs), name
            documents[name] = {job_id: _comparable(job) for job_id, job in stored.items()}
            for job_id, model in self.jobs.items():
                job = stored[job_id]
                seen = (
                    job.state,
                    job.attempts,
                    job.worker_id,
                    job.priority,
                    job.queue,
                    job.unique_key,
                    [e.get("message") for e in job.errors],
                    job.progress.completed,
                )
                want = (
                    model.state,
                    model.attempts,
                    model.worker,
                    model.priority,
                    model.queue,
                    model.unique_key,
                    model.errors,
                    model.progress,
                )
                assert seen == want, (name, job_id)
                assert (job.lease_until is not None) == (model.worker is not None), (name, job_id)
                assert (job.finished_at is not None) == (model.state in FINAL_STATES), (
                    name,
                    job_id,
                    job.state,
                )
                if model.state is State.SCHEDULED:
                    assert job.run_at == FUTURE, (name, job_id)
                elif model.line[0] == 0 and model.state is State.QUEUED:
                    assert job.run_at == model.line[1], (name, job_id)
                # the version goes up on every change a user can see, and never down
                before = self.seen[name].get(job_id)
                if before is not None:
                    assert job.version >= before[0], (name, job_id)
                    if seen != before[1]:
                        assert job.version > before[0], (name, job_id, before, seen)
                self.seen[name][job_id] = (job.version, seen)
        # and beyond the model, every store shows the same job, but for the times a
        # store's clock stamps and the version
        first, *others = documents
        for name in others:
            for job_id, document in documents[first].items():
                assert documents[name][job_id] == document, (first, name, job_id)

    @invariant()
    def queue_counts_match_the_model(self) -> None:
        for name, factory in self.factories.items():
            infos = {q.name: q for q in factory.run(factory.backend.list_queues())}
            mine = {q: info.paused for q, info in infos.items() if q in self.queues}
            assert mine == {q: q in self.paused for q in self.queues if self.exists(q)}, name
            for queue in mine:
                want = {s.value: 0 for s in State}
                for job in self.jobs.values():
                    if job.queue == queue:
                        want[job.state.value] += 1
                got = infos[queue].counts
                assert {s: got.get(s, 0) for s in want} == want, (name, queue)


#: Fields of a job each store stamps from its own clock, or counts in its own way.
_OWN_FIELDS = (
    "created_at",
    "updated_at",
    "started_at",
    "finished_at",
    "run_at",
    "lease_until",
    "version",
)


def _comparable(job: Job) -> dict[str, Any]:
    """The job's document without what each store stamps for itself (see _OWN_FIELDS);
    error entries without their times."""
    document = job.to_dict()
    for name in _OWN_FIELDS:
        document.pop(name)
    document["errors"] = [{k: v for k, v in e.items() if k != "at"} for e in job.errors]
    return document


async def _list_all(backend: Backend, wanted: JobFilter, limit: int) -> list[str]:
    """The ids of every job matching ``wanted``, following the cursor page by page."""
    ids: list[str] = []
    cursor: str | None = None
    while True:
        page = await backend.list_jobs(wanted, cursor, limit)
        ids += [j.id for j in page.jobs]
        if page.next_cursor is None:
            return ids
        cursor = page.next_cursor


@pytest.fixture
def factories(tmp_path: Path) -> Iterator[dict[str, BackendFactory]]:
    """An entered BackendFactory on a fresh store of each kind (see tests/stores.py)."""
    with (
        store_url("sqlite", tmp_path) as sqlite_url,
        store_url("postgres", tmp_path) as pg_url,
        store_url("redis", tmp_path) as redis_url,
    ):
        urls = {"sqlite": sqlite_url, "postgres": pg_url, "redis": redis_url}
        assert list(urls) == STORES
        opened: dict[str, BackendFactory] = {}
        try:
            for name, url in urls.items():
                factory = BackendFactory(lambda url=url: create_backend(url))
                factory.__enter__()
                opened[name] = factory
            yield opened
        finally:
            for factory in opened.values():
                factory.__exit__(None, None, None)


def test_the_three_stores_agree_with_the_model(factories: dict[str, BackendFactory]) -> None:
    # Given SQLite, PostgreSQL and Redis, fresh
    class Model(DifferentialModel):
        pass

    Model.factories = factories

    # When one random sequence of Backend calls runs on all three
    # Then, after every step, each store holds what the model says
    run_state_machine_as_test(Model, settings=DIFF_SETTINGS)
