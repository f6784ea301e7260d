"""A private `redis-server` process, for tests that need settings the shared server
must not be given (a password, append-only persistence, an eviction policy) or that
kill and restart the server.

It listens on a free local port, keeps its files (and its log) in a folder of the
test, and never snapshots unless told to (``--save ''``)::

    with RedisServer(tmp_path / "redis", "--appendonly", "yes") as server:
        url = server.url(prefix="t")
        server.kill()               # SIGKILL: what a crash or an OOM kill does
        server.start()              # the same port and folder: AOF is read back
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import pytest
import redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_server_binary() -> str:
    """The redis-server binary; skip (fail under CI) when there is none."""
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
    )
    if found is None:
        message = "REDIS NOT TESTED: no redis-server binary to start a private server"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return found


class RedisServer:
    def __init__(self, folder: Path, *settings: str, password: str | None = None) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.settings = settings
        self.password = password
        self.port = free_port()
        self.binary = redis_server_binary()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.kill()

    def url(self, prefix: str | None = None, password: str | None = None, **options: str) -> str:
        """A conveyor URL on this server (its own password unless one is given)."""
        secret = self.password if password is None else password
        auth = f":{quote(secret, safe='')}@" if secret else ""
        query = dict(options, **({"prefix": prefix} if prefix else {}))
        tail = "?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0{tail}"

    def client(self) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1", port=self.port, password=self.password, decode_responses=True
        )

    def start(self, timeout: float = 20.0) -> None:
        """Start the server (again, on the same port and folder) and wait until it
        answers, its data loaded."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.folder),
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            str(self.folder / "redis-server.log"),
            *(("--requirepass", self.password) if self.password else ()),
            *self.settings,
        ]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        self.starts += 1
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self.client() as client:
                    client.ping()  # LOADING (a BusyLoadingError) until the AOF is read
                return
            except redis.ConnectionError as exc:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.kill()
                    raise AssertionError(
                        f"redis-server on port {self.port} did not start ({exc}):\n{self.log()}"
                    ) from None
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the server (no shutdown save, connections dropped at once)."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        if proc is not None:
            proc.wait(10)

    def log(self) -> str:
        path = self.folder / "redis-server.log"
        return path.read_text(errors="replace") if path.exists() else ""
