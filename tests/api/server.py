"""A real API server for the tests: uvicorn on a free loopback port, in a thread with its
own event loop, on a real store, optionally with a worker in the same loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx

from conveyor import Conveyor
from conveyor.steps.guard import Guard
from conveyor.web.auth import ApiKeys
from conveyor.web.server import Service
from conveyor.web.settings import ApiSettings
from conveyor.worker.config import WorkerConfig

KEYS = {"acme": "acme-key-0123456789abcdef", "globex": "globex-key-0123456789abcdef"}
ADMIN_KEY = "admin-key-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def settings(**overrides: object) -> ApiSettings:
    values: dict[str, object] = {
        "keys": ApiKeys(KEYS.items(), [ADMIN_KEY]),
        "guard": Guard(["127.0.0.0/8"]),
    }
    values.update(overrides)
    return ApiSettings(**values)  # type: ignore[arg-type]


@dataclass
class RunningApi:
    base: str
    app: Conveyor
    service: Service
    loop: asyncio.AbstractEventLoop
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, key: str | None = "acme") -> httpx.Client:
        """A client with the key of a tenant ("acme", "globex"), "admin", or none."""
        headers = {}
        if key == "admin":
            headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        elif key is not None:
            headers["Authorization"] = f"Bearer {KEYS.get(key, key)}"
        client = httpx.Client(base_url=self.base, headers=headers, timeout=30)
        self.clients.append(client)
        return client

    def call(self, coro: object) -> object:
        """Run a coroutine on the server's loop (to reach its store directly)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)  # type: ignore[arg-type]


@contextmanager
def running_api(
    url: str, api_settings: ApiSettings | None = None, worker: WorkerConfig | None = None
) -> Iterator[RunningApi]:
    port = free_port()
    app = Conveyor(url)
    service = Service(app, api_settings or settings(), "127.0.0.1", port, worker)
    loop = asyncio.new_event_loop()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(service.run(stop_signals=()))
        except BaseException as exc:
            failure.append(exc)
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not service.server.started:
        if failure or not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the API did not start: {failure}")
        time.sleep(0.01)
    running = RunningApi(f"http://127.0.0.1:{port}", app, service, loop)
    try:
        yield running
    finally:
        for client in running.clients:
            client.close()
        loop.call_soon_threadsafe(service.stop)
        thread.join(30)
        assert not thread.is_alive(), "the API did not stop"
        if failure:
            raise failure[0]


@dataclass
class ApiProcess:
    """A `conveyor api` process: another API node on a store."""

    base: str
    process: subprocess.Popen[bytes]
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, key: str = "acme") -> httpx.Client:
        """A client with the key of a tenant ("acme", "globex"); closed with the node."""
        headers = {"Authorization": f"Bearer {KEYS[key]}"}
        client = httpx.Client(base_url=self.base, headers=headers, timeout=30)
        self.clients.append(client)
        return client


@contextmanager
def api_process(url: str) -> Iterator[ApiProcess]:
    """`conveyor api` on ``url`` in a process of its own, with the tests' keys; stopped
    (SIGTERM) after."""
    port = free_port()
    env = dict(
        os.environ,
        CONVEYOR_API_KEYS=",".join(f"{tenant}:{key}" for tenant, key in KEYS.items()),
        CONVEYOR_ADMIN_KEYS=ADMIN_KEY,
        CONVEYOR_HTTP_ALLOW="127.0.0.0/8",
    )
    command = [sys.executable, "-m", "conveyor", "api", "--url", url, "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)
    node = ApiProcess(f"http://127.0.0.1:{port}", process)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, f"conveyor api exited {process.returncode}"
            assert time.monotonic() < deadline, "conveyor api did not answer in 30 s"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(node.base + "/healthz", timeout=1).status_code == 200:
                    break
            time.sleep(0.05)
        yield node
    finally:
        for client in node.clients:
            client.close()
        process.send_signal(signal.SIGTERM)
        process.wait(30)
