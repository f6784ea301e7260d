"""``conveyor api``: the HTTP API alone; and what ``conveyor serve`` needs to run it."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Annotated

import typer

from conveyor.app import Conveyor
from conveyor.backends import redact_url
from conveyor.cli.common import (
    IncludeOption,
    UrlOption,
    check_store,
    console,
    load,
    verbose_option,
)
from conveyor.cli.errors import EXIT_BAD_INPUT, EXIT_FAILURE, print_error
from conveyor.exceptions import ConfigError
from conveyor.web.auth import ApiKeys, new_key
from conveyor.web.listening import ListenError, listen

logger = logging.getLogger("conveyor.cli")

HostOption = Annotated[str, typer.Option("--host", help="Address the API listens on.")]
PortOption = Annotated[
    int, typer.Option("--port", min=1, max=65535, help="Port the API listens on.")
]
#: Where ``conveyor serve`` on the default store keeps its development key.
DEV_KEY_FILE = Path(".conveyor/api-key")


def api(
    url: UrlOption = None,
    includes: IncludeOption = None,
    host: HostOption = "127.0.0.1",
    port: PortOption = 8000,
    verbose: Annotated[
        int, verbose_option("-v: INFO logs; -vv: DEBUG. $VERBOSE=1 and $VVERBOSE=1 do the same.")
    ] = 0,
) -> None:
    """Serve the HTTP API (/v1, /docs, /metrics) and the dashboard (/dashboard) on one
    store, without workers.

    Keys come from the environment: CONVEYOR_API_KEYS=tenant:key,... (or
    CONVEYOR_API_KEYS_FILE) and CONVEYOR_ADMIN_KEYS=key,...; at least one is needed.
    CONVEYOR_SECRET_KEY encrypts step credentials (set the same on the workers);
    CONVEYOR_HTTP_ALLOW lets steps reach private addresses; CONVEYOR_CACHE_PURGE_URL
    names the cache to purge (set it on the workers too); CONVEYOR_CORS_ORIGINS lets web
    pages of other origins call /v1. docs/http-api.md has them all.

    Example: CONVEYOR_API_KEYS=shop:$KEY conveyor api --url postgresql://db/jobs --port 8000
    """
    from conveyor.cli.worker import configure_logging, verbosity
    from conveyor.eventloop import run_loop
    from conveyor.web.server import serve
    from conveyor.web.settings import ApiSettings
    from conveyor.worker.watchdog import stop_watchdog

    app = load(list(includes or ()), url)
    settings = ApiSettings.from_env()
    if not len(settings.keys):
        raise ConfigError(
            "CONVEYOR_API_KEYS",
            "no API keys: set CONVEYOR_API_KEYS=tenant:key,... or CONVEYOR_ADMIN_KEYS=key "
            "(conveyor serve makes a development key by itself)",
        )
    configure_logging(verbosity(verbose))  # (check_store may warn about the store)
    check_store(app.url)
    sockets = bind(host, port)
    announce(app, settings.secrets.encrypts, host, port, dev_key=None)
    watchdog = stop_watchdog()  # a stop ends in any case (conveyor.worker.watchdog)
    run_loop(serve(app, settings, host, port, sockets=sockets, on_stop_begun=watchdog.arm))
    watchdog.disarm()


def bind(host: str, port: int) -> list[socket.socket]:
    """The API's listening sockets; an address that cannot be had stops the command
    here: exit 2 for a host that is not this machine's, 1 for a port in use."""
    try:
        return listen(host, port)
    except ListenError as exc:
        print_error(f"{exc.field}: {exc.message}")
        raise typer.Exit(EXIT_BAD_INPUT if exc.field == "host" else EXIT_FAILURE) from None


def dev_keys(default_store: bool) -> tuple[ApiKeys, str]:
    """An admin key for a development server: kept in .conveyor/api-key on the default
    store (it survives restarts), made up for this run otherwise."""
    key = None
    if default_store and DEV_KEY_FILE.exists():
        key = DEV_KEY_FILE.read_text().strip() or None
    if key is None:
        key = new_key()
        if default_store:
            DEV_KEY_FILE.parent.mkdir(parents=True, exist_ok=True)
            DEV_KEY_FILE.write_text(key + "\n")
            os.chmod(DEV_KEY_FILE, 0o600)
    return ApiKeys(admin_keys=[key]), key


def announce(app: Conveyor, encrypts: bool, host: str, port: int, dev_key: str | None) -> None:
    base = f"http://{host}:{port}"
    lines = [
        f"conveyor API at {base} (docs: {base}/docs, dashboard: {base}/dashboard) "
        f"on store {redact_url(app.url)}."
    ]
    if dev_key is not None:
        lines.append(
            f"Development admin key: {dev_key}\n"
            f"  curl -H 'Authorization: Bearer {dev_key}' {base}/v1/jobs"
        )
    console().print("\n".join(lines), markup=False, soft_wrap=True)
    if not encrypts:
        logger.warning(
            "CONVEYOR_SECRET_KEY is not set: step credentials and tokens are stored unencrypted"
        )
