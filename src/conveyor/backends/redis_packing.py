"""Commands packed by hiredis on redis-py's asyncio connections.

redis-py's sync connection packs commands with hiredis' C packer when hiredis is
installed, its asyncio connection always in Python: about 3 µs per argument here,
so that packing the outcomes of a batch (12 arguments per job) cost more than the
rest of recording them (37 µs per job, measured with cProfile over 20,000 jobs).
These connection classes pack as the sync one does; ``pack_command`` packs for the
sync connection that conveyor uses without redis-py's client (``redis_direct``).
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


class PackedConnection(aio.Connection):
    def pack_command(self, *args: Any) -> list[bytes]:
        return _pack(args)


class PackedSSLConnection(aio.SSLConnection):
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
