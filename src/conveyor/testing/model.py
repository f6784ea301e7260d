"""A hypothesis state machine that drives a backend and a small model of the rules side by side.

The model knows only what a user can see: each job's state and attempts, who holds
it, and its place in line (priority, then the order in which it became ready, then
id). Rules: enqueue, claim, finish succeeded, finish retry (due now), cancel,
release, and the worker's answer to a cancel request (finish cancelled).
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from typing import ClassVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from conveyor.backends.base import Backend, JobFilter
from conveyor.job import Job, Outcome, State
from conveyor.testing.harness import BackendFactory, all_jobs, error, make_job

MODEL_SETTINGS = settings(
    max_examples=25,
    stateful_step_count=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@dataclass
class ModelJob:
    id: str
    priority: int
    ready_seq: int  # when it last became ready: the model's run_at
    state: State = State.QUEUED
    attempts: int = 0
    held: Job | None = None  # the claimed job, while a worker holds it

    def line_key(self) -> tuple[int, int, str]:
        return (self.priority, self.ready_seq, self.id)


class BackendModel(RuleBasedStateMachine):
    """Each run uses a queue of its own, so runs share one store without meeting."""

    factory: ClassVar[BackendFactory]

    def __init__(self) -> None:
        super().__init__()
        self.backend: Backend = self.factory.backend
        self.queue = f"model-{uuid.uuid4().hex[:12]}"
        self.jobs: dict[str, ModelJob] = {}
        self.clock = itertools.count()

    # -- helpers ---------------------------------------------------------------------
    def held(self, *states: State) -> list[ModelJob]:
        return sorted(
            (j for j in self.jobs.values() if j.held is not None and j.state in states),
            key=lambda j: j.id,
        )

    def _held_by_worker(self, job: ModelJob) -> Job:
        assert job.held is not None
        return job.held

    # -- rules -----------------------------------------------------------------------
    @rule(priority=st.sampled_from([-10, 0, 0, 10]), count=st.integers(1, 3))
    def enqueue(self, priority: int, count: int) -> None:
        jobs = [make_job(self.queue, priority=priority) for _ in range(count)]
        stored = self.factory.run(self.backend.enqueue(jobs))
        assert [j.id for j in stored] == [j.id for j in jobs]
        for job in stored:
            assert job.state is State.QUEUED
            self.jobs[job.id] = ModelJob(job.id, priority, next(self.clock))

    @rule(worker=st.sampled_from(["worker-a", "worker-b"]), limit=st.integers(1, 3))
    def claim(self, worker: str, limit: int) -> None:
        ready = sorted(
            (j for j in self.jobs.values() if j.state is State.QUEUED), key=ModelJob.line_key
        )
        claimed = self.factory.run(self.backend.claim([self.queue], worker, limit, 60.0))
        assert [j.id for j in claimed] == [j.id for j in ready[:limit]], (
            "claim must take the ready jobs by priority, then FIFO"
        )
        for job in claimed:
            model = self.jobs[job.id]
            assert model.held is None, f"job {job.id} claimed while already held"
            model.state = State.RUNNING
            model.attempts += 1
            model.held = job
            assert job.state is State.RUNNING
            assert job.worker_id == worker
            assert job.attempts == model.attempts

    @precondition(lambda self: self.held(State.RUNNING, State.CANCELLING))
    @rule(data=st.data())
    def finish_succeeded(self, data: st.DataObject) -> None:
        model = data.draw(st.sampled_from(self.held(State.RUNNING, State.CANCELLING)))
        written = self.factory.run(
            self.backend.finish([(self._held_by_worker(model), Outcome.succeeded())])
        )
        assert written == [True]
        model.state, model.held = State.SUCCEEDED, None

    @precondition(lambda self: self.held(State.RUNNING))
    @rule(data=st.data())
    def finish_retry_now(self, data: st.DataObject) -> None:
        model = data.draw(st.sampled_from(self.held(State.RUNNING)))
        outcome = Outcome.retry_in(0.0, error("boom"))
        written = self.factory.run(self.backend.finish([(self._held_by_worker(model), outcome)]))
        assert written == [True]
        model.state, model.held = State.QUEUED, None
        model.ready_seq = next(self.clock)

    @precondition(lambda self: self.held(State.CANCELLING))
    @rule(data=st.data())
    def finish_cancelled(self, data: st.DataObject) -> None:
        """The worker saw the cancel request (extend) and stopped the job."""
        model = data.draw(st.sampled_from(self.held(State.CANCELLING)))
        status = self.factory.run(
            self.backend.extend([model.id], self._held_by_worker(model).worker_id or "", 60.0)
        )
        assert status.cancelling == [model.id]
        outcome = Outcome.cancelled(error("cancel requested"))
        written = self.factory.run(self.backend.finish([(self._held_by_worker(model), outcome)]))
        assert written == [True]
        model.state, model.held = State.CANCELLED, None

    @precondition(lambda self: self.jobs)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        model = data.draw(st.sampled_from(sorted(self.jobs.values(), key=lambda j: j.id)))
        job = self.factory.run(self.backend.cancel(model.id))
        if model.state.is_waiting:
            model.state = State.CANCELLED
        elif model.state is State.RUNNING:
            model.state = State.CANCELLING
        assert job.state is model.state

    @precondition(lambda self: self.held(State.RUNNING))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        """A released job keeps its place in line and gets its attempt back."""
        model = data.draw(st.sampled_from(self.held(State.RUNNING)))
        released = self.factory.run(self.backend.release([self._held_by_worker(model)]))
        assert released == 1
        model.state, model.held = State.QUEUED, None
        model.attempts -= 1

    # -- invariants ------------------------------------------------------------------
    @invariant()
    def store_matches_model(self) -> None:
        stored = {
            job.id: job
            for job in self.factory.run(all_jobs(self.backend, JobFilter(queue=self.queue)))
        }
        assert set(stored) == set(self.jobs)
        for job_id, model in self.jobs.items():
            job = stored[job_id]
            assert (job.state, job.attempts) == (model.state, model.attempts), job_id
            if model.held is None:
                assert job.worker_id is None, job_id
            else:
                assert job.worker_id == model.held.worker_id, job_id


def run_model(factory: BackendFactory) -> None:
    """Run :class:`BackendModel` against the factory's backend."""

    class Model(BackendModel):
        pass

    Model.factory = factory
    run_state_machine_as_test(Model, settings=MODEL_SETTINGS)
