"""Forked processes: what a child must not share with its parent.

Pre-forking servers (gunicorn ``--preload``, uWSGI, Celery's prefork pool,
``multiprocessing`` with fork) fork after the app may have been used. A child gets
copies of its parent's connections and locks, but none of its threads: a PostgreSQL
connection used by both mixes their messages (one reads the other's answer:
"server sent data without prior row description"), a SQLite connection or lock file
carried across a fork defeats SQLite's locking, a lock held by another thread at the
fork is held for ever, and a sync call through the portal waits for ever for a
thread that is not there.

So each object that holds such things keeps a :class:`ForkGuard` and asks it first,
before any of its locks: in a fork, it forgets what its parent opened and opens its
own. A process id check, not ``os.register_at_fork``: servers that fork from C
(uWSGI by default) do not run those hooks.
"""

from __future__ import annotations

import os

#: What children forgot of their parents: kept, never closed nor finalized here.
#: Closing a PostgreSQL connection says goodbye on the parent's socket; closing a
#: SQLite connection may checkpoint its WAL from a process holding none of its locks.
_from_parent: list[object] = []


class ForkGuard:
    """Tells its owner, once per fork, that it now runs in a forked child."""

    __slots__ = ("_pid",)

    def __init__(self) -> None:
        self._pid = os.getpid()

    def forked(self) -> bool:
        """True the first time it is asked in a process other than the last one."""
        pid = os.getpid()
        if pid == self._pid:
            return False
        self._pid = pid
        return True


def keep_from_parent(*things: object) -> None:
    """Keep what the parent opened alive in this child, unused and never closed."""
    _from_parent.extend(thing for thing in things if thing is not None)
