"""The real nginx (Debian's package) in front of a test API, configured by docs/caching.md.

``running_nginx(api_base, directory)`` starts ``nginx`` in the foreground (not a daemon, not
the system service) on a free loopback port, with a cache directory, pid file, temp files and
logs all under ``directory``, and the ``http {}`` block of docs/caching.md as its site: the
test runs the configuration the documentation gives, with only the addresses and the cache
directory replaced. ``make test`` installs nginx when it is missing (the Makefile's ``nginx``
target); without it the test is skipped with a loud reason, or fails when ``CI`` is set, so
that CI never passes without the cache tested.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.api.server import free_port

DOC = Path(__file__).resolve().parents[2] / "docs" / "caching.md"
#: The comment in docs/caching.md right above the nginx block the tests run.
MARKER = "<!-- tests/api/test_cache.py reads the next nginx block"
#: What the documented block says, and what the test puts in its place.
DOC_API = "server 127.0.0.1:8000;"
DOC_LISTEN = "listen 80;"
DOC_CACHE_DIR = "/var/cache/nginx/conveyor"


def nginx_binary() -> str | None:
    if os.access("/usr/sbin/nginx", os.X_OK):
        return "/usr/sbin/nginx"
    return shutil.which("nginx")


def require_nginx() -> str:
    """nginx's path; skip (fail under CI) without it."""
    binary = nginx_binary()
    if binary is None:
        message = (
            "NGINX NOT TESTED: no nginx binary (make test installs Debian's package: "
            "apt-get install nginx)"
        )
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return binary


def documented_site() -> str:
    """The nginx block of docs/caching.md that follows the marker."""
    text = DOC.read_text()
    start = text.index(MARKER)
    found = re.compile(r"```nginx\n(.*?)\n```", re.DOTALL).search(text, start)
    assert found, f"no nginx block after the marker in {DOC}"
    return found.group(1)


def _replace_once(text: str, old: str, new: str) -> str:
    # A documented line the test relies on must be there exactly once: an edit of the doc
    # that moves it fails here, not as a puzzling cache miss.
    assert text.count(old) == 1, f"docs/caching.md's nginx block must hold {old!r} once"
    return text.replace(old, new)


def nginx_conf(api_base: str, port: int, directory: Path) -> str:
    """A whole nginx.conf: a foreground master, everything under ``directory``, and the
    documented site pointed at ``api_base`` and listening on 127.0.0.1:``port``."""
    api = urlsplit(api_base)
    site = documented_site()
    site = _replace_once(site, DOC_API, f"server {api.hostname}:{api.port};")
    site = _replace_once(site, DOC_LISTEN, f"listen 127.0.0.1:{port};")
    site = _replace_once(site, DOC_CACHE_DIR, str(directory / "cache"))
    # As root the workers would drop to "nobody", who cannot enter pytest's tmp directories.
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""{user}daemon off;
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log info;
events {{
    worker_connections 256;
}}
http {{
    access_log {directory}/access.log;
    client_body_temp_path {directory}/client_body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
{site}
}}
"""


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited with {process.returncode}: {log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nginx did not listen on {port} within 10 s: {log.read_text()}")


@contextmanager
def running_nginx(api_base: str, directory: Path) -> Iterator[str]:
    """nginx in front of ``api_base``; yields its base URL. Stopped (and reaped) after."""
    binary = require_nginx()
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = directory / "nginx.conf"
    conf.write_text(nginx_conf(api_base, port, directory))
    log = directory / "error.log"
    # -e: the log nginx writes before it has read the configuration (the default,
    # /var/log/nginx/error.log, may not be writable).
    command = [binary, "-p", str(directory), "-c", str(conf), "-e", str(log)]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, f"nginx -t refused the configuration:\n{checked.stderr}"
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    try:
        _wait_for_port(port, process, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGQUIT)  # graceful: the master stops its workers
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
