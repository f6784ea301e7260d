"""Which async HTTP client should run HTTP steps: aiohttp or httpx?

A worker runs many HTTP steps at once through one pooled client, so what matters is
throughput of small requests over a keep-alive pool under concurrency. This script
starts a tiny aiohttp.web target in a separate process (so the server does not share
the clients' loop or GIL), then, for each client, runs ``--concurrency`` coroutines
that share one client with a keep-alive pool of that size and send ``--requests``
GET requests in total; it prints requests per second. ``--runs`` repeats each client
(alternating) and prints the median, because a shared 2-core machine is noisy.

Usage::

    python bench/http_client.py [--requests 20000] [--concurrency 64] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import socket
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp
import httpx
from aiohttp import web


def serve(port: int) -> None:
    """The target: a small JSON answer, as an API called by a step would give."""

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "path": request.path})

    app = web.Application()
    app.router.add_get("/ok", ok)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the target did not listen on port {port}")


async def drive(send: Callable[[], Awaitable[None]], requests: int, concurrency: int) -> float:
    """Requests per second of ``concurrency`` coroutines sharing ``requests`` calls."""
    left = requests

    async def client() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await send()

    await send()  # warm the pool's first connection and the loop
    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return requests / (time.perf_counter() - started)


async def run_aiohttp(url: str, requests: int, concurrency: int) -> float:
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def send() -> None:
            async with session.get(url) as response:
                await response.read()
                assert response.status == 200

        return await drive(send, requests, concurrency)


async def run_httpx(url: str, requests: int, concurrency: int) -> float:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits) as client:

        async def send() -> None:
            response = await client.get(url)
            assert response.status_code == 200

        return await drive(send, requests, concurrency)


CLIENTS = {"aiohttp": run_aiohttp, "httpx": run_httpx}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    port = free_port()
    server = multiprocessing.get_context("spawn").Process(target=serve, args=(port,), daemon=True)
    server.start()
    try:
        wait_for_port(port)
        url = f"http://127.0.0.1:{port}/ok"
        figures: dict[str, list[float]] = {name: [] for name in CLIENTS}
        for run in range(1, args.runs + 1):
            for name, client in CLIENTS.items():
                rate = asyncio.run(client(url, args.requests, args.concurrency))
                figures[name].append(rate)
                print(f"run {run} {name:8} {rate:9,.0f} req/s", file=sys.stderr)
        summary = {
            "requests": args.requests,
            "concurrency": args.concurrency,
            "versions": {"aiohttp": aiohttp.__version__, "httpx": httpx.__version__},
            "runs": {name: [round(r) for r in rates] for name, rates in figures.items()},
            "median_req_s": {name: round(statistics.median(r)) for name, r in figures.items()},
        }
        print(json.dumps(summary))
    finally:
        server.terminate()
        server.join(5)


if __name__ == "__main__":
    main()
