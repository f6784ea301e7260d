"""redis-py connections used without redis-py's client layer, for the hot commands.

A command through ``redis.Redis`` takes a connection from the pool, wraps the call
in its retry helper, dispatches events and records metrics for its observability
hooks, and gives the connection back: in redis-py 8 that costs about 50 µs of CPU
a command here, more than the round trip itself (a ``PING`` through the client:
84 µs of CPU; through its connection: 32 µs). A sync ``enqueue`` is one script
call, so that layer was a third of its cost. On asyncio the layer is dearer still:
115,000 of the 245,000 instructions of a ``PING`` through ``redis.asyncio.Redis``,
for every script call and wake-up wait of a worker.

These keep what a connection does (connecting, ``AUTH``, ``SELECT``, TLS, the socket
timeout, the health check, the hiredis reader, errors as redis-py's exceptions)
and drop the rest. No command is sent again here: after an error the connection is
closed, and the next call connects anew. The backend keeps redis-py's client for
every other command, and for a cluster.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import redis
import redis.asyncio

from conveyor.backends.redis_packing import connection_class, pack_command


class DirectClient:
    """``evalsha``, ``script_load`` and ``hgetall`` on one connection of its own. Not
    thread-safe: its owner serializes the calls."""

    def __init__(self, connection_class: type[Any], connection_kwargs: dict[str, Any]) -> None:
        self._connection_class = connection_class
        self._connection_kwargs = connection_kwargs
        self._connection: Any = None
        self._pid = os.getpid()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> DirectClient:
        """As ``redis.Redis.from_url``: the URL and redis-py's connection options."""
        # The pool only reads the URL (host, db, password, TLS, unix socket) into a
        # connection class and its arguments; it never holds the connection.
        pool = redis.ConnectionPool.from_url(url, **options)
        return cls(pool.connection_class, pool.connection_kwargs)

    def execute(self, *args: Any) -> Any:
        connection = self._connection
        if connection is None or self._pid != os.getpid():
            # A forked process (a pre-forking server) must not share its parent's socket:
            # their answers would cross. It leaves the parent's connection alone (redis-py
            # closes a socket only in the process that opened it) and makes its own.
            connection = self._connection = self._connection_class(**self._connection_kwargs)
            self._pid = os.getpid()
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


def _closed_by_server(connection: Any) -> bool:
    """Whether the server closed this idle connection (Redis restarted): its stream has
    seen the end. redis-py's pool asks the same of a connection it hands out, with a
    read attempt; this reads the stream's flag (redis-py 5 to 8 keep the stream as
    ``_reader``; without one, the first command tells)."""
    reader = getattr(connection, "_reader", None)
    return isinstance(reader, asyncio.StreamReader) and reader.at_eof()


class DirectAsyncClient:
    """``evalsha``, ``script_load`` and ``blpop`` on asyncio connections of its own, of
    one event loop. A call takes an idle connection (or makes one) and gives it back
    after the answer, so calls at the same time use connections of their own (a
    blocked ``BLPOP`` holds one). A connection whose call failed or was cancelled is
    closed (its answer may be on the way); on a connection error the idle ones are
    closed too: after a restart of Redis every one of them is dead."""

    def __init__(self, connection_class: type[Any], connection_kwargs: dict[str, Any]) -> None:
        self._connection_class = connection_class
        self._connection_kwargs = connection_kwargs
        self._idle: list[Any] = []

    @classmethod
    def from_url(cls, url: str, **options: Any) -> DirectAsyncClient:
        """As ``redis.asyncio.Redis.from_url``, with conveyor's packing connection."""
        options = {**connection_class(url), **options}
        pool = redis.asyncio.ConnectionPool.from_url(url, **options)
        return cls(pool.connection_class, pool.connection_kwargs)

    async def execute(self, *args: Any) -> Any:
        idle = self._idle
        connection = idle.pop() if idle else self._connection_class(**self._connection_kwargs)
        if _closed_by_server(connection):
            await connection.disconnect(nowait=True)  # the send connects anew
        try:
            await connection.send_packed_command(connection.pack_command(*args))
            answer = await connection.read_response()
        except redis.ResponseError:
            idle.append(connection)  # an error answer: the connection is fine
            raise
        except BaseException as exc:
            await connection.disconnect(nowait=True)
            if isinstance(exc, redis.ConnectionError | redis.TimeoutError | OSError):
                await self.close()
            raise
        idle.append(connection)
        return answer

    async def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        return await self.execute("EVALSHA", sha, numkeys, *keys_and_args)

    async def script_load(self, script: str) -> str:
        sha: str = await self.execute("SCRIPT", "LOAD", script)
        return sha

    async def blpop(self, keys: list[str], timeout: float) -> Any:
        """As redis-py's: [key, value], or None when ``timeout`` seconds pass."""
        return await self.execute("BLPOP", *keys, timeout)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.disconnect(nowait=True)
