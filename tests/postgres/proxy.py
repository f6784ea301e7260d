"""A real TCP forwarding proxy in front of PostgreSQL, which a test can cut and restore.

The proxy runs its own asyncio loop on a background thread, listens on a free local
port and forwards every connection to the server byte for byte. ``cut()`` closes
every open connection (both sides: the server sees its client go, the client sees
its server go) and stops listening, so that new connections are refused, as when
the database host goes away; ``restore()`` listens again on the same port.

    with TcpProxy("127.0.0.1", 5432) as proxy:
        url = proxy.rewrite(url)      # the same URL, through the proxy
        proxy.cut()
        ...
        proxy.restore()
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")

_CHUNK = 65536


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TcpProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.host = "127.0.0.1"
        self.port = 0
        #: connections accepted and forwarded since the start (refused ones not counted)
        self.accepted = 0
        #: connections closed by cut()
        self.cut_connections = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy")
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._pairs: set[asyncio.Task[None]] = set()
        #: Set by mute(), cleared by the next cut.
        self.muted = False

    # -- control, from the test's thread -------------------------------------------
    def __enter__(self) -> TcpProxy:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        self._thread.start()
        self.port = free_port()
        self._call(self._listen())

    def cut(self) -> int:
        """Close every forwarded connection and refuse new ones; how many were closed."""
        return self._call(self._cut())

    def restore(self) -> None:
        """Accept and forward connections again, on the same port."""
        self._call(self._listen())

    def mute(self) -> None:
        """Until the next cut, forward what clients send but drop what the server
        answers: a statement sent meanwhile runs and commits, and its client never
        hears back (as when a connection dies between a commit and its answer)."""
        self.muted = True

    @property
    def open_connections(self) -> int:
        return self._call(self._count())

    def close(self) -> None:
        if self._thread.is_alive():
            self._call(self._cut())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        self._loop.close()

    def rewrite(self, url: str) -> str:
        """``url`` with its host and port replaced by the proxy's."""
        parts = urlsplit(url)
        userinfo, _, _ = parts.netloc.rpartition("@")
        netloc = f"{userinfo}@{self.host}:{self.port}" if userinfo else f"{self.host}:{self.port}"
        return parts._replace(netloc=netloc).geturl()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    # -- on the proxy's loop -----------------------------------------------------------
    async def _count(self) -> int:
        return len(self._pairs)

    async def _listen(self) -> None:
        if self._server is None:
            # reuse_address (the default on POSIX): the port is bound again at once
            # after a cut, whatever TIME_WAIT its old connections left.
            self._server = await asyncio.start_server(
                self._accept, self.host, self.port, reuse_address=True
            )

    async def _cut(self) -> int:
        self.muted = False
        server, self._server = self._server, None
        if server is not None:
            server.close()  # no longer listening: new connections are refused
        pairs = list(self._pairs)
        # Aborting the sockets ends both pipes of each pair (never cancel the pairs'
        # tasks: asyncio's streams would log the cancellation as an error).
        for writer in list(self._open):
            writer.transport.abort()
        if pairs:
            await asyncio.wait(pairs, timeout=5)
        self.cut_connections += len(pairs)
        return len(pairs)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._server is None:  # accepted just as the cut came
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        if self._server is None:  # cut while the upstream connection was being made
            for side in (writer, up_writer):
                side.transport.abort()
            return
        self.accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self._pairs.add(task)
        self._open.update((writer, up_writer))
        try:
            pipes = [
                asyncio.create_task(_pipe(reader, up_writer, lambda: False)),
                asyncio.create_task(_pipe(up_reader, writer, lambda: self.muted)),
            ]
            try:
                # Either side closing ends the pair: PostgreSQL has no half-closed use.
                await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pipe in pipes:
                    pipe.cancel()
                await asyncio.gather(*pipes, return_exceptions=True)
        finally:
            for side in (writer, up_writer):
                side.transport.abort()
                self._open.discard(side)
            self._pairs.discard(task)


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, muted: Callable[[], bool]
) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(_CHUNK):
            if muted():
                continue  # read and dropped: the sender sees its bytes taken
            writer.write(data)
            await writer.drain()
