"""Several worker processes under one supervisor: ``conveyor worker --processes N``.

The supervisor loads the app once and forks its children from that state (the
pre-fork model of Gunicorn and Celery's prefork pool): a child starts in
milliseconds instead of importing everything again. The supervisor keeps no
threads and no open store connections, so forking is safe; each child opens
its own connections.

Each child runs in its own session, so a terminal's Ctrl-C reaches only the
supervisor, which passes each stop signal on exactly once: the first as SIGTERM, a
second as ``STOP_NOW_SIGNAL``. A child takes SIGTERM and SIGINT, however many, as
the graceful stop, and only ``STOP_NOW_SIGNAL`` as "now": one stop sent to every
process of the group (systemd's default ``KillMode=control-group``, ``pkill``)
reaches each child twice, from the sender and from the supervisor, and must not
cancel the running jobs a graceful stop would let finish. A child that dies is
started again (after a crash, with a delay that grows with repeated crashes; a
recycle after ``--max-jobs``, at once). A child that found a configuration error
that a restart cannot fix says so on a pipe and exits with code 2: the supervisor
stops them all and exits 2. Code 2 alone is a crash like any other (task code may
end its process with any code). On SIGTERM / SIGINT the supervisor stops restarting
and waits for its children; a second signal is passed on too (the children then
stop at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from types import FrameType

logger = logging.getLogger("conveyor.supervisor")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
#: What a supervisor sends its children at a second stop signal: stop now.
STOP_NOW_SIGNAL = signal.SIGUSR1
#: The signals a child handles, blocked while it is forked (see _spawn).
CHILD_SIGNALS = (*STOP_SIGNALS, STOP_NOW_SIGNAL)
EXIT_CONFIG = 2


class Supervisor:
    """Runs ``run_child()`` in ``processes`` forked children until stopped."""

    def __init__(
        self,
        run_child: Callable[[], int],
        processes: int,
        on_stop: Callable[[], None] | None = None,
    ) -> None:
        self.run_child = run_child
        self.processes = processes
        #: Called in the supervisor at the first stop signal (it restarts nothing after).
        self.on_stop = on_stop
        self.children: dict[int, int] = {}  # pid → slot
        #: In a child: its slot, 0 to processes - 1 (a restarted child keeps its slot).
        self.slot: int | None = None
        self._crashes: dict[int, int] = {}
        #: pid → the read end of the pipe on which that child says "configuration error".
        self._says: dict[int, int] = {}
        self._stop_count = 0
        self._exit_code = 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stop_count += 1
        logger.info(
            "supervisor: %s (%d): stopping %d worker process(es)%s",
            signal.Signals(signum).name,
            self._stop_count,
            len(self.children),
            " now" if self._stop_count > 1 else "",
        )
        if self._stop_count == 1 and self.on_stop is not None:
            self.on_stop()
        self._signal_children(signal.SIGTERM if self._stop_count == 1 else STOP_NOW_SIGNAL)

    def _signal_children(self, signum: int) -> None:
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):  # exited, not reaped yet
                os.kill(pid, signum)

    def _spawn(self, slot: int) -> None:
        if threading.active_count() > 1:
            logger.warning("supervisor: forking with %d threads alive", threading.active_count())
        flush_std_streams()
        # Stop signals wait until the child is known (and, in the child, until it has
        # its own session and handlers), so none is lost or handled twice.
        signal.pthread_sigmask(signal.SIG_BLOCK, CHILD_SIGNALS)
        try:
            # A stop that came before the block was passed on to the children there
            # were: a child forked now would never hear of it, and the supervisor would
            # wait for it for ever (a SIGTERM between the first fork and the second).
            stops = self._stop_count
            if stops:
                return
            # Exit code 2 alone does not say "configuration error": task code may end
            # the process with any code (os._exit(2), a C library's exit(2)).
            says, say = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child
                code = 1
                try:
                    os.close(says)
                    for fd in self._says.values():  # the other children's
                        os.close(fd)
                    os.setsid()
                    for sig in CHILD_SIGNALS:
                        signal.signal(sig, signal.SIG_DFL)
                    signal.pthread_sigmask(signal.SIG_UNBLOCK, CHILD_SIGNALS)
                    self.slot = slot
                    code = self.run_child()
                    if code == EXIT_CONFIG:
                        os.write(say, b"c")
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
                except BaseException:
                    traceback.print_exc()
                finally:
                    flush_std_streams()
                    os._exit(code)
            os.close(say)
            os.set_blocking(says, False)  # a task's own child may hold the write end
            self._says[pid] = says
            self.children[pid] = slot
            if self._stop_count != stops:
                # Python runs a signal's handler between two bytecodes, not when the
                # signal arrives: one that arrived just before the block can run during
                # the fork, before the child was known. Pass that stop on here, once (and
                # a second one as "now", as _on_signal would have).
                os.kill(pid, signal.SIGTERM)
                if self._stop_count > 1:
                    os.kill(pid, STOP_NOW_SIGNAL)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, CHILD_SIGNALS)
        logger.info("supervisor: started worker process %d (slot %d)", pid, slot)

    def run(self) -> int:
        """Start the children, keep them running, return the exit code once all stopped."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        try:
            for slot in range(self.processes):
                self._spawn(slot)
            while self.children:
                self._reap_one()
            return self._exit_code
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _reap_one(self) -> None:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            self.children.clear()
            for says in self._says.values():
                os.close(says)
            self._says.clear()
            return
        slot = self.children.pop(pid, None)
        if slot is None:
            return  # not one of ours (a task's own subprocess, say)
        code = os.waitstatus_to_exitcode(status)
        said = self._said_config_error(pid)
        if self._stop_count:
            logger.info("supervisor: worker process %d stopped (%d)", pid, code)
            return
        if code == EXIT_CONFIG and said:
            logger.error(
                "supervisor: worker process %d exited with a configuration error: stopping", pid
            )
            self._exit_code = EXIT_CONFIG
            self._stop_count = 1
            self._signal_children(signal.SIGTERM)
            return
        if code == 0:
            logger.info("supervisor: worker process %d recycled; starting another", pid)
            self._crashes[slot] = 0
        else:
            crashes = self._crashes.get(slot, 0) + 1
            self._crashes[slot] = crashes
            delay = min(0.5 * 2 ** (crashes - 1), 30.0)
            logger.error(
                "supervisor: worker process %d died (exit %d); restarting in %.1fs",
                pid,
                code,
                delay,
            )
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline and not self._stop_count:
                time.sleep(0.05)
        self._spawn(slot)  # not after a stop: _spawn checks

    def _said_config_error(self, pid: int) -> bool:
        """Whether the child ``pid``, gone now, said it found a configuration error."""
        says = self._says.pop(pid)
        try:
            return os.read(says, 1) == b"c"
        except BlockingIOError:
            return False  # nothing said, and a process of the task's holds the write end
        finally:
            os.close(says)


def flush_std_streams() -> None:
    """Flush ``sys.stdout`` and ``sys.stderr``, which task code may have closed: a
    worker process whose flush raised before its ``os._exit`` ran on into the
    supervisor's own code, and exited 1 (a crash) after a clean stop."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


async def watch_parent(
    parent_pid: int, stop: asyncio.Event, on_orphan: Callable[[], object]
) -> None:
    """Stop this child when its supervisor is gone (killed with -9, say)."""
    while not stop.is_set():
        if os.getppid() != parent_pid:
            logger.error("supervisor %d is gone: stopping", parent_pid)
            on_orphan()
            return
        await asyncio.sleep(1.0)
