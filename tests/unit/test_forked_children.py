"""A process forked after the app was used (a pre-forking server: gunicorn --preload,
uWSGI, Celery's prefork pool) uses connections of its own, on every store."""

from __future__ import annotations

import functools
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable

import pytest

from conveyor import Conveyor, State
from conveyor.task import Task

CHILDREN = 3
JOBS_EACH = 50


@pytest.fixture
def noop(app_on_each_store: Conveyor) -> Task:
    @app_on_each_store.task(name="noop")
    def noop(i: int) -> int:
        return i

    return noop


def test_children_forked_after_use_enqueue_and_read_on_their_own_connections(
    app_on_each_store: Conveyor, noop: Task
) -> None:
    app = app_on_each_store
    # Given an app whose sync paths the parent has used: its enqueue connection, and the
    # portal thread behind a handle's refresh
    first = noop.enqueue(-1)
    assert first.refresh().state is State.QUEUED

    # When children forked now enqueue and read, while the parent goes on enqueueing
    def child_work(child: int) -> bool:
        for i in range(JOBS_EACH):
            noop.enqueue(child * 1000 + i)
        return noop.enqueue(-2).refresh().state is State.QUEUED

    pids = [_forked(functools.partial(child_work, child)) for child in range(CHILDREN)]
    for i in range(JOBS_EACH):
        noop.enqueue(9000 + i)
    codes = [_exit_code(pid) for pid in pids]

    # Then every child did its work (none mixed its messages with the parent's on a
    # shared socket, none waited for ever for the parent's portal thread), and the
    # parent's own connections still work
    assert codes == [0] * CHILDREN
    assert first.refresh().state is State.QUEUED
    queued = app.portal_call(_queued(app))
    assert queued == 1 + JOBS_EACH + CHILDREN * (JOBS_EACH + 1)


def test_a_child_that_closes_the_app_leaves_its_parents_connections_alone(
    app_on_each_store: Conveyor, noop: Task
) -> None:
    app = app_on_each_store
    # Given an app whose sync enqueue connection the parent has opened
    noop.enqueue(1)

    # When a child forked now closes the app before it used it (a worker process of a
    # pre-forking server that shuts down)
    def close() -> bool:
        app.close()
        return True

    pid = _forked(close)

    # Then the parent's connections still work (a child closing the parent's PostgreSQL
    # connection said goodbye on the parent's socket)
    assert _exit_code(pid) == 0
    assert noop.enqueue(2).refresh().state is State.QUEUED


def _forked(work: Callable[[], bool]) -> int:
    """Fork a child that runs ``work`` and exits 0 if it returned True (1 if it raised,
    3 if it returned False), never returning into pytest; its pid."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = 0 if work() else 3
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    return pid


def _exit_code(pid: int, timeout: float = 60.0) -> int | str:
    """The child's exit code; "hung" (and killed) when it has not exited in ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return "hung"


async def _queued(app: Conveyor) -> int:
    backend = await app.backend()
    return (await backend.stats()).counts.get("queued", 0)
