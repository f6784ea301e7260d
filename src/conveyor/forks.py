"""Forked processes: what a child must not share with its parent.

Pre-forking servers (gunicorn ``--preload``, uWSGI, Celery's prefork pool,
``multiprocessing`` with fork) fork after the app may have been used. A child gets
copies of its parent's connections and locks, but none of its threads: a PostgreSQL
connection used by both mixes their messages (one reads the other's answer:
"server sent data without prior row description"), a SQLite connection or lock file
carried across a fork defeats SQLite's locking, a lock held by another thread at the
fork is held for ever, and a sync call through the portal waits for ever for a
thread that is not there.

So each object that holds such things keeps a :class:`ForkGuard` and has it check
first, before any of its locks: in a fork, it forgets what its parent opened (and
opens its own when next used), once, while the other threads of the child that reach
it wait. A process id check, not ``os.register_at_fork``: servers that fork from C
(uWSGI by default) do not run those hooks.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

#: What children forgot of their parents: kept, never closed nor finalized here.
#: Closing a PostgreSQL connection says goodbye on the parent's socket; closing a
#: SQLite connection may checkpoint its WAL from a process holding none of its locks.
_from_parent: list[object] = []
#: A lock per process, made in it (one inherited from the parent may be held for ever by
#: a thread the fork did not copy): ForkGuard.check's resets take turns on it.
_locks: dict[int, threading.Lock] = {}


class ForkGuard:
    """Runs its owner's reset once in each process forked since it was made."""

    __slots__ = ("_pid",)

    def __init__(self) -> None:
        self._pid = os.getpid()

    def check(self, forget_parent: Callable[[], None]) -> None:
        """In a process forked since the last check, ``forget_parent()`` (drop what the
        parent opened, see keep_from_parent): once, and before any thread goes on: the
        process id is noted only after the reset, and other threads wait for it."""
        if self._pid == os.getpid():
            return
        pid = os.getpid()
        with _locks.setdefault(pid, threading.Lock()):
            if self._pid != pid:
                forget_parent()
                self._pid = pid


def keep_from_parent(*things: object) -> None:
    """Keep what the parent opened alive in this child, unused and never closed."""
    _from_parent.extend(thing for thing in things if thing is not None)
