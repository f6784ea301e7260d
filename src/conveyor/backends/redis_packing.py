"""Commands packed by hiredis on redis-py's asyncio connections.

redis-py's sync connection packs commands with hiredis' C packer when hiredis is
installed, its asyncio connection always in Python: about 3 µs per argument here,
so that packing the outcomes of a batch (12 arguments per job) cost more than the
rest of recording them (37 µs per job, measured with cProfile over 20,000 jobs).
These connection classes pack as the sync one does, and send small commands without a
Task each (``_Sends``); ``pack_command`` packs for the sync connection that conveyor
uses without redis-py's client (``redis_direct``).
"""

from __future__ import annotations

from typing import Any, cast

import redis.asyncio.connection as aio
from redis.connection import HiredisRespSerializer
from redis.utils import HIREDIS_AVAILABLE

# Untyped in some redis-py releases (8.2), typed in others: called through Any.
_SERIALIZER = cast(Any, HiredisRespSerializer)()


def _pack(args: tuple[Any, ...]) -> list[bytes]:
    first = args[0]
    if isinstance(first, str) and " " in first:  # "CONFIG GET": two words
        args = (*first.split(), *args[1:])
    try:
        import hiredis

        return [hiredis.pack_command(args)]
    except TypeError:  # a memoryview or the like: redis-py's way (its errors too)
        packed: list[bytes] = _SERIALIZER.pack(*args)
        return packed


#: asyncio's default high-water mark of a transport's write buffer: a write of less
#: than this, on a connection whose last command was answered, returns at once.
_NEVER_WAITS = 64 * 1024


class _Sends:
    """Commands sent without ``asyncio.wait_for`` where the write cannot wait.

    With a socket timeout (redis-py 8 sets 5 s by default) redis-py's asyncio
    connection wraps each write in ``asyncio.wait_for``, which makes a Task per
    command: 100,000 of the 300,000 instructions of a ``PING`` through the client
    here. A write that fits the transport's buffer never waits, so that timeout
    cannot fire; the read of the answer keeps it. Bigger writes go as redis-py sends
    them."""

    socket_timeout: float | None
    is_connected: bool

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        send = super().send_packed_command  # type: ignore[misc]
        if (
            not self.socket_timeout
            or not self.is_connected
            or type(command) is not list
            or sum(map(len, command)) >= _NEVER_WAITS
        ):
            await send(command, check_health)
            return
        if check_health:
            await self.check_health()  # type: ignore[attr-defined]
        timeout, self.socket_timeout = self.socket_timeout, None
        try:
            await send(command, False)
        finally:
            self.socket_timeout = timeout


class PackedConnection(_Sends, aio.Connection):
    def pack_command(self, *args: Any) -> list[bytes]:
        return _pack(args)


class PackedSSLConnection(_Sends, aio.SSLConnection):
    def pack_command(self, *args: Any) -> list[bytes]:
        return _pack(args)


def connection_class(url: str) -> dict[str, Any]:
    """The ``connection_class`` keyword for ``Redis.from_url(url)`` (none where hiredis
    is missing or the URL is a unix socket: redis-py's own class then)."""
    if not HIREDIS_AVAILABLE:
        return {}
    if url.startswith("redis://"):
        return {"connection_class": PackedConnection}
    if url.startswith("rediss://"):
        return {"connection_class": PackedSSLConnection}
    return {}


def pack_command(connection: Any, args: tuple[Any, ...]) -> list[bytes]:
    """``args`` packed for a sync ``connection``: by hiredis' C packer directly where
    hiredis is installed (the connection's own packer checks each argument in Python
    first), else by the connection."""
    if HIREDIS_AVAILABLE:
        return _pack(args)
    packed: list[bytes] = connection.pack_command(*args)
    return packed
