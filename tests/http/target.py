"""A real HTTP target for the tests of HTTP steps: aiohttp.web on 127.0.0.1, in a thread.

It runs on its own event loop in a background thread, so the worker under test talks to
it over real sockets exactly as it would to a remote API. Endpoints:

- ``/ok`` (any method, any path below it): echoes method, path, query, headers and body
  as JSON;
- ``/item``: a JSON object with an ``id``, for placeholders of later steps;
- ``/slow?seconds=``: answers after that long; notes when the client gave up first;
- ``/flaky?key=&fails=``: 503 for the first ``fails`` requests of each key, then 200;
- ``/held?key=``: the first request of each key is held (an hour), every later one is a 503;
- ``/status/{code}``: that status, with a short text body;
- ``/limited?retry_after=``: 429 with that ``Retry-After``;
- ``/redirect?to=&status=``: a redirect (302 by default) to ``to``;
- ``/big?size=``: ``size`` bytes of JSON-looking text;
- ``/cookie``: 200 with a ``Set-Cookie`` header;
- ``/huge-header?size=``: 200 with a header of ``size`` bytes (more than clients read).

Every request is recorded (:class:`Seen`) before it is answered.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class Seen:
    """One request as the target received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: str
    at: float  # time.monotonic() on arrival


SEEN = web.RequestKey("seen", Seen)


class Target:
    """The server. ``start()`` / ``stop()``; ``url(path)`` for step URLs."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.aborted: list[str] = []  # paths whose client went away before the answer
        self._fails: Counter[str] = Counter()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def requests_to(self, path: str) -> list[Seen]:
        return [seen for seen in self.seen if seen.path == path]

    # -- life ------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(10)

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _serve(self) -> None:
        app = web.Application(middlewares=[self._record])
        app.router.add_route("*", "/ok", self._ok)
        app.router.add_route("*", "/ok/{rest:.*}", self._ok)
        app.router.add_get("/item", self._item)
        app.router.add_route("*", "/slow", self._slow)
        app.router.add_route("*", "/flaky", self._flaky)
        app.router.add_route("*", "/held", self._held)
        app.router.add_route("*", "/status/{code}", self._status)
        app.router.add_route("*", "/limited", self._limited)
        app.router.add_route("*", "/redirect", self._redirect)
        app.router.add_get("/big", self._big)
        app.router.add_get("/cookie", self._cookie)
        app.router.add_get("/huge-header", self._huge_header)
        # Cancel handlers whose client disconnects, so that /slow can see the abort.
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, self._socket).start()

    # -- endpoints -------------------------------------------------------------------
    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        seen = Seen(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=await request.text(),
            at=time.monotonic(),
        )
        self.seen.append(seen)
        request[SEEN] = seen
        response: web.StreamResponse = await handler(request)
        return response

    async def _ok(self, request: web.Request) -> web.Response:
        seen = request[SEEN]
        return web.json_response(
            {
                "method": seen.method,
                "path": seen.path,
                "query": seen.query,
                "headers": seen.headers,
                "body": seen.body,
            }
        )

    async def _item(self, request: web.Request) -> web.Response:
        return web.json_response({"id": 4711, "name": "widget"}, headers={"X-Token": "t-1"})

    async def _slow(self, request: web.Request) -> web.Response:
        try:
            await asyncio.sleep(float(request.query.get("seconds", "10")))
        except asyncio.CancelledError:
            self.aborted.append(request.path)
            raise
        return web.json_response({"slept": True})

    async def _flaky(self, request: web.Request) -> web.Response:
        key = request.query.get("key", "")
        if self._fails[key] < int(request.query.get("fails", "1")):
            self._fails[key] += 1
            return web.Response(status=503, text="try again later")
        return web.json_response({"key": key, "ok": True})

    async def _held(self, request: web.Request) -> web.Response:
        key = request.query.get("key", "")
        self._fails[f"held:{key}"] += 1
        if self._fails[f"held:{key}"] == 1:
            await asyncio.sleep(3600)  # until the client goes away
        return web.Response(status=503, text="try again later")

    async def _status(self, request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        return web.Response(status=code, text=f"status {code} here")

    async def _limited(self, request: web.Request) -> web.Response:
        retry_after = request.query.get("retry_after", "1")
        return web.Response(status=429, text="slow down", headers={"Retry-After": retry_after})

    async def _redirect(self, request: web.Request) -> web.Response:
        status = int(request.query.get("status", "302"))
        return web.Response(status=status, headers={"Location": request.query["to"]})

    async def _big(self, request: web.Request) -> web.Response:
        size = int(request.query.get("size", "100000"))
        return web.Response(text='{"x": "' + "a" * size + '"}', content_type="application/json")

    async def _cookie(self, request: web.Request) -> web.Response:
        response = web.json_response({"ok": True})
        response.set_cookie("session", "s3cret-cookie")
        return response

    async def _huge_header(self, request: web.Request) -> web.Response:
        size = int(request.query.get("size", "10000"))
        return web.Response(text="ok", headers={"X-Huge": "h" * size})


class RawTarget:
    """A target that answers every request with bytes given by the test, as they are:
    what aiohttp.web would not send (a header that is not UTF-8, a broken status line).

    ``url(answer)`` registers ``answer`` (the whole response, status line included) and
    returns the URL that gets it. Each connection is closed after its answer.
    """

    def __init__(self) -> None:
        self._answers: dict[str, bytes] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self.port = 0

    def url(self, answer: bytes) -> str:
        path = f"/raw/{len(self._answers)}"
        self._answers[path] = answer
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> None:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._answer, "127.0.0.1", 0), self._loop
        ).result(10)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].decode().split("?", 1)[0]
            writer.write(self._answers.get(path, b"HTTP/1.1 404 Not Found\r\n\r\n"))
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
