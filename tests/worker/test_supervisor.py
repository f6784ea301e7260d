"""The supervisor of `conveyor worker --processes N` and stop signals that arrive while
it is still forking its worker processes (real forks, real signals)."""

from __future__ import annotations

import logging
import os
import signal
import time

import pytest

from conveyor.worker import supervisor as supervisor_module
from conveyor.worker.supervisor import Supervisor

#: How long a child waits for a stop before it gives up on its own (exit code 3): a
#: child that never hears of the stop ends the test instead of hanging it.
CHILD_WAITS_S = 10.0


def _child() -> int:
    """A worker process that waits to be stopped (SIGTERM keeps its default action in a
    child until the worker installs its own: the signal ends it, exit -15)."""
    time.sleep(CHILD_WAITS_S)
    return 3


def _lines(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    """The supervisor's log lines containing ``text``, from that text on."""
    messages = [r.getMessage() for r in caplog.records]
    return [m[m.index(text) :] for m in messages if text in m]


def test_a_stop_between_two_forks_starts_no_more_worker_processes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a supervisor of two worker processes that gets SIGTERM right after the
    # first fork, before the second
    class StoppedWhileForking(Supervisor):
        def _spawn(self, slot: int) -> None:
            super()._spawn(slot)
            if slot == 0:
                os.kill(os.getpid(), signal.SIGTERM)

    supervisor = StoppedWhileForking(_child, 2)

    # When it runs
    with caplog.at_level(logging.INFO, logger="conveyor.supervisor"):
        code = supervisor.run()

    # Then the one child it started was stopped by the signal, and no other started
    assert code == 0
    assert len(_lines(caplog, "started worker process")) == 1
    assert [line.rsplit(" ", 1)[1] for line in _lines(caplog, "stopped (")] == ["(-15)"]


def test_a_stop_handled_during_a_fork_reaches_the_child_being_forked(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a supervisor whose stop handler runs just after a fork returns, before the
    # new child is known (Python runs a handler between two bytecodes: a signal that
    # came just before the fork can be handled there)
    supervisor = Supervisor(_child, 1)
    real_fork = os.fork

    def fork_then_handle_a_stop() -> int:
        pid = real_fork()
        if pid != 0:
            supervisor._on_signal(signal.SIGTERM, None)
        return pid

    monkeypatch.setattr(supervisor_module.os, "fork", fork_then_handle_a_stop)
    previous = {sig: signal.getsignal(sig) for sig in supervisor_module.STOP_SIGNALS}

    # When it runs
    with caplog.at_level(logging.INFO, logger="conveyor.supervisor"):
        code = supervisor.run()

    # Then the child got the stop all the same, and the supervisor's handlers are gone
    assert code == 0
    assert len(_lines(caplog, "started worker process")) == 1
    assert [line.rsplit(" ", 1)[1] for line in _lines(caplog, "stopped (")] == ["(-15)"]
    assert {sig: signal.getsignal(sig) for sig in previous} == previous


def test_a_worker_process_that_finds_a_configuration_error_stops_them_all(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a supervisor of two worker processes, the first of which finds a
    # configuration error (its run returns exit code 2: a restart cannot fix it), while
    # the other waits for a stop
    def run_child() -> int:
        return supervisor_module.EXIT_CONFIG if supervisor.slot == 0 else _child()

    supervisor = Supervisor(run_child, 2)

    # When it runs
    with caplog.at_level(logging.INFO, logger="conveyor.supervisor"):
        code = supervisor.run()

    # Then it stops the other one and exits 2, restarting nothing (a process that only
    # ends with code 2, a task's os._exit(2), is restarted as after any crash:
    # tests/worker/test_tasks_that_break_the_process.py)
    assert code == supervisor_module.EXIT_CONFIG
    assert len(_lines(caplog, "exited with a configuration error")) == 1
    assert len(_lines(caplog, "started worker process")) == 2
