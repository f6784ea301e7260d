"""One redis-py connection used without redis-py's client layer, for sync enqueues.

A command through ``redis.Redis`` takes a connection from the pool, wraps the call
in its retry helper, dispatches events and records metrics for its observability
hooks, and gives the connection back: in redis-py 8 that costs about 50 µs of CPU
a command here, more than the round trip itself (a ``PING`` through the client:
84 µs of CPU; through its connection: 32 µs). A sync ``enqueue`` is one script
call, so that layer was a third of its cost.

This keeps what the connection does (connecting, ``AUTH``, ``SELECT``, TLS, the
hiredis reader, errors as redis-py's exceptions) and drops the rest. It is not
thread-safe: its owner serializes the calls. No command is sent again here: after
an error the connection is closed, and the next call connects anew.
"""

from __future__ import annotations

from typing import Any

import redis

from conveyor.backends.redis_packing import pack_command


class DirectClient:
    """``evalsha``, ``script_load`` and ``hgetall`` on one connection of its own."""

    def __init__(self, connection_class: type[Any], connection_kwargs: dict[str, Any]) -> None:
        self._connection_class = connection_class
        self._connection_kwargs = connection_kwargs
        self._connection: Any = None

    @classmethod
    def from_url(cls, url: str, **options: Any) -> DirectClient:
        """As ``redis.Redis.from_url``: the URL and redis-py's connection options."""
        # The pool only reads the URL (host, db, password, TLS, unix socket) into a
        # connection class and its arguments; it never holds the connection.
        pool = redis.ConnectionPool.from_url(url, **options)
        return cls(pool.connection_class, pool.connection_kwargs)

    def execute(self, *args: Any) -> Any:
        connection = self._connection
        if connection is None:
            connection = self._connection = self._connection_class(**self._connection_kwargs)
        try:
            # check_health=False: no PING before a command idle for a while. A dead
            # connection fails the command itself, and the caller decides whether
            # to send it again.
            connection.send_packed_command(pack_command(connection, args), check_health=False)
            return connection.read_response()
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            self.close()
            raise

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        return self.execute("EVALSHA", sha, numkeys, *keys_and_args)

    def script_load(self, script: str) -> str:
        sha: str = self.execute("SCRIPT", "LOAD", script)
        return sha

    def hgetall(self, key: str) -> dict[Any, Any]:
        flat = self.execute("HGETALL", key)
        if isinstance(flat, dict):  # RESP3 answers a map
            return flat
        pairs = iter(flat)
        return dict(zip(pairs, pairs, strict=True))

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.disconnect()
