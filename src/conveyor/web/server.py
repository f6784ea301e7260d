"""Serving the API with uvicorn: alone (``conveyor api``) or beside a worker in one
event loop (``conveyor serve``).

conveyor owns the signals, not uvicorn: the first SIGTERM / SIGINT stops accepting
requests and stops the worker gracefully (running jobs finish or are given
back); a second one stops both at once. A supervisor's child stops at once only on
the supervisor's ``STOP_NOW_SIGNAL`` (see :mod:`conveyor.worker.supervisor`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Callable, Generator, Sequence
from typing import Any

import uvicorn

from conveyor.app import Conveyor
from conveyor.garbage import settle_for_service
from conveyor.web.api import Api, create_api
from conveyor.web.settings import ApiSettings
from conveyor.worker.config import WorkerConfig
from conveyor.worker.runtime import Worker

logger = logging.getLogger("conveyor.api")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The caller installs conveyor's handlers on the loop instead.
        yield


#: uvicorn's settings for the API (``bench/w5_poll.py`` serves its bare-Starlette ceiling
#: with the same, so that the two compare).
UVICORN_OPTIONS: dict[str, Any] = {
    "log_level": "warning",
    "access_log": False,
    "lifespan": "on",
    # A poll answer is small and a client polls often: keep its connection.
    "timeout_keep_alive": 30,
    "server_header": False,
}


class Service:
    """The API (and a worker, when ``worker_config`` is given) in one event loop."""

    def __init__(
        self,
        app: Conveyor,
        settings: ApiSettings,
        host: str,
        port: int,
        worker_config: WorkerConfig | None = None,
        sockets: list[socket.socket] | None = None,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.sockets = sockets
        web = create_api(app, settings)
        self.api: Api = web.state.api
        self.server = _Server(uvicorn.Config(web, host=host, port=port, **UVICORN_OPTIONS))
        self.worker = Worker(app, worker_config) if worker_config is not None else None
        self.on_stop_begun: Callable[[], object] | None = None

    def _stop_begun(self) -> None:
        self.api.stop_watching()
        if self.on_stop_begun is not None:
            self.on_stop_begun()

    def stop(self) -> None:
        """First call: graceful; second call: now. Call it on the service's loop."""
        if self.server.should_exit:
            self.server.force_exit = True
        self.server.should_exit = True
        self._stop_begun()
        if self.worker is not None:
            self.worker.request_stop()

    def stop_now(self) -> None:
        """Stop serving and working at once (the supervisor's second stop)."""
        self.server.should_exit = self.server.force_exit = True
        self._stop_begun()
        if self.worker is not None:
            self.worker.stop_now()

    def _wind_down(self) -> None:
        """One half stopped on its own: stop the other gracefully (never "now")."""
        self.server.should_exit = True
        self._stop_begun()
        if self.worker is not None and not self.worker.stopping:
            self.worker.stop_gracefully()  # (a signal after it is still the first)

    async def run(
        self, stop_signals: Sequence[int] = STOP_SIGNALS, now_signals: Sequence[int] = ()
    ) -> None:
        """Serve until stopped. With ``now_signals`` (a supervisor's child),
        ``stop_signals`` only ever stop gracefully: see :func:`run_worker`."""
        loop = asyncio.get_running_loop()
        for sig in stop_signals:
            loop.add_signal_handler(sig, self._wind_down if now_signals else self.stop)
        for sig in now_signals:
            loop.add_signal_handler(sig, self.stop_now)
        try:
            if self.worker is None:
                await self.server.serve(self.sockets)
            else:
                runs = [
                    asyncio.ensure_future(self.server.serve(self.sockets)),
                    asyncio.ensure_future(self.worker.run()),
                ]
                # Either one ending (the other's failure included) stops the other.
                await asyncio.wait(runs, return_when=asyncio.FIRST_COMPLETED)
                self._wind_down()
                # Both to their end, then a failure raised: gather raised the first at
                # once, and the loop's end cut the API's shutdown short (a traceback).
                await asyncio.wait(runs)
                for run in runs:
                    run.result()
            if not self.server.started:
                raise OSError(f"the API could not listen on {self.host}:{self.port}")
        finally:
            for sig in (*stop_signals, *now_signals):
                loop.remove_signal_handler(sig)
            await self.app.aclose()


async def serve(
    app: Conveyor,
    settings: ApiSettings,
    host: str,
    port: int,
    worker_config: WorkerConfig | None = None,
    sockets: list[socket.socket] | None = None,
    now_signals: Sequence[int] = (),
    on_stop_begun: Callable[[], object] | None = None,
) -> None:
    """Run the API (and a worker) until SIGTERM / SIGINT, on ``sockets`` when given
    (bound by :func:`conveyor.web.listening.listen`), else on a socket uvicorn binds.
    ``now_signals``: see :meth:`Service.run`; ``on_stop_begun`` is called at each stop
    request."""
    service = Service(app, settings, host, port, worker_config, sockets)
    service.on_stop_begun = on_stop_begun
    settle_for_service()  # the process serves from here on; FastAPI's objects are made
    await service.run(now_signals=now_signals)
