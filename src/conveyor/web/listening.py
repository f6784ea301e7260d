"""The API's listening sockets, bound before it starts.

``conveyor api`` and ``conveyor serve`` bind their address themselves and hand the
sockets to uvicorn, rather than let uvicorn bind them: an address that cannot be
had (a port in use, a host that is not this machine's) is then one clear error
before anything starts, not uvicorn's exit in the middle of a start-up. A
supervisor binds once, before it forks: the API process it restarts serves on the
same sockets.

Bound as asyncio's ``create_server`` binds a host name: every address it resolves
to, IPv6 sockets IPv6-only, ``SO_REUSEADDR`` so that a restart does not wait for
the old connections' TIME_WAIT.
"""

from __future__ import annotations

import errno
import socket

#: Connections the kernel queues before the API accepts them (uvicorn's default).
BACKLOG = 2048


class ListenError(OSError):
    """The address cannot be listened on. ``field`` is the option to change: ``host``
    (it does not resolve, or is not an address of this machine) or ``port``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def listen(host: str, port: int) -> list[socket.socket]:
    """Sockets listening on every address of ``host`` at ``port``."""
    try:
        infos = socket.getaddrinfo(
            host, port, family=socket.AF_UNSPEC, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise ListenError("host", f"cannot resolve {host!r}: {exc.strerror}") from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(
            (info[0], info[1], info[2], info[3], info[4]) for info in infos
        ):
            try:
                sock = socket.socket(family, kind, proto)
            except OSError:
                # An address family this machine has not (IPv6 turned off, "localhost"
                # still naming ::1): served on the others, as create_server does.
                continue
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                field = "host" if exc.errno == errno.EADDRNOTAVAIL else "port"
                shown = f"[{address[0]}]" if family == socket.AF_INET6 else address[0]
                where = f"{shown}:{port}"
                raise ListenError(field, f"cannot listen on {where}: {exc.strerror}") from None
            sock.listen(BACKLOG)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    if not sockets:
        raise ListenError("host", f"no address of {host!r} can be listened on here")
    return sockets
