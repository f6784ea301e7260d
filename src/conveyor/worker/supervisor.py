"""Several worker processes under one supervisor: ``conveyor worker --processes N``.

The supervisor starts N children (each ``conveyor worker --processes 1
--supervised ...``) in their own sessions, so a terminal's Ctrl-C reaches only
the supervisor, which passes each stop signal on exactly once. A child that
dies is started again (a crash after a delay that grows with repeated crashes;
a recycle after ``--max-jobs`` at once). On SIGTERM / SIGINT the supervisor
stops restarting and waits for its children; a second signal is passed on too
(the children then stop at once).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from types import FrameType

logger = logging.getLogger("conveyor.supervisor")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Supervisor:
    def __init__(self, child_argv: Sequence[str], processes: int) -> None:
        self.child_argv = list(child_argv)
        self.processes = processes
        self.children: dict[int, subprocess.Popen[bytes]] = {}
        self._slot_of: dict[int, int] = {}
        self._crashes: dict[int, int] = {}
        self._stop_count = 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stop_count += 1
        logger.info(
            "supervisor: %s (%d): stopping %d worker process(es)%s",
            signal.Signals(signum).name,
            self._stop_count,
            len(self.children),
            " now" if self._stop_count > 1 else "",
        )
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    def _spawn(self, slot: int) -> None:
        child = subprocess.Popen(self.child_argv, start_new_session=True)
        self.children[child.pid] = child
        self._slot_of[child.pid] = slot
        logger.info("supervisor: started worker process %d (slot %d)", child.pid, slot)

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        try:
            for slot in range(self.processes):
                self._spawn(slot)
            while self.children:
                self._reap_one()
            return 0
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _reap_one(self) -> None:
        try:
            pid, status = os.wait()
        except InterruptedError:  # pragma: no cover - PEP 475 retries os.wait
            return
        except ChildProcessError:
            self.children.clear()
            return
        child = self.children.pop(pid, None)
        if child is None:
            return
        child.returncode = os.waitstatus_to_exitcode(status)
        slot = self._slot_of.pop(pid)
        if self._stop_count:
            logger.info("supervisor: worker process %d stopped (%d)", pid, child.returncode)
            return
        if child.returncode == 0:
            logger.info("supervisor: worker process %d recycled; starting another", pid)
            self._crashes[slot] = 0
        else:
            crashes = self._crashes.get(slot, 0) + 1
            self._crashes[slot] = crashes
            delay = min(0.5 * 2 ** (crashes - 1), 30.0)
            logger.error(
                "supervisor: worker process %d died (exit %d); restarting in %.1fs",
                pid,
                child.returncode,
                delay,
            )
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline and not self._stop_count:
                time.sleep(0.05)
            if self._stop_count:
                return
        self._spawn(slot)


async def watch_parent(parent_pid: int, stop: asyncio.Event, on_orphan: object) -> None:
    """Stop this child when its supervisor is gone (killed with -9, say)."""
    while not stop.is_set():
        if os.getppid() != parent_pid:
            logger.error("supervisor %d is gone: stopping", parent_pid)
            if callable(on_orphan):
                on_orphan()
            return
        await asyncio.sleep(1.0)
