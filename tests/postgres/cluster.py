"""A throwaway PostgreSQL cluster, for tests that restart the server itself (the TCP
proxy of tests/postgres/proxy.py only cuts connections; a restart also empties the
unlogged tables, forgets unflushed commits and drops LISTEN registrations).

``initdb`` makes it in a folder of its own under the temporary directory (the test's
``tmp_path`` is closed to other users, and the server may run as one), ``pg_ctl``
starts it on a free local port (trust authentication, no fsync: it is thrown away) and
stops it in any mode. As root, the commands run as the ``postgres`` user (PostgreSQL
refuses to run as root). Where no ``initdb`` is found the test is skipped with a loud
reason, or fails when ``CI`` is set::

    with PgCluster() as cluster:
        url = cluster.url(schema="t")
        cluster.restart("immediate", down=2.0)
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import pytest

from tests.postgres.proxy import free_port


def _skip(reason: str) -> None:
    message = f"POSTGRESQL RESTARTS NOT TESTED: {reason}"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def server_binaries() -> Path:
    """The folder of initdb and pg_ctl (Debian's newest, else on PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    initdb = found[-1] if found else shutil.which("initdb")
    if initdb is None:
        _skip("no initdb to make a throwaway cluster")
    return Path(str(initdb)).parent


def _version(path: str) -> int:
    part = Path(path).parts[-3]
    return int(part) if part.isdigit() else 0


class PgCluster:
    def __init__(self) -> None:
        self.bin = server_binaries()
        self.folder = Path(tempfile.mkdtemp(prefix="conveyor-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self.user: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                _skip("running as root, and no postgres user to run the server as")
            self.user = "postgres"

    def __enter__(self) -> PgCluster:
        if self.user is not None:
            shutil.chown(self.folder, self.user)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, **options: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in options.items())
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres" + (
            f"?{query}" if query else ""
        )

    def admit(self, *lines: str) -> None:
        """Make ``lines`` the server's pg_hba.conf (who may connect, and how), and
        restart it to read them (a reload would take effect at a moment of its own)."""
        (self.data / "pg_hba.conf").write_text("\n".join(lines) + "\n")
        self.restart("fast")

    def start(self) -> None:
        """Start the server (again) and wait until it accepts connections."""
        settings = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder} -c fsync=off "
            "-c max_connections=50"
        )
        data, log = str(self.data), str(self.log)
        self._run("pg_ctl", "-D", data, "-o", settings, "-l", log, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` (sessions ended, a checkpoint), ``immediate`` (as
        a crash: recovery at the next start) or ``smart``."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self, mode: str, down: float = 0.0) -> None:
        self.stop(mode)
        time.sleep(down)
        self.start()

    @property
    def log(self) -> Path:
        return self.folder / "server.log"

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin / program), *args]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            server_log = self.log.read_text(errors="replace") if self.log.exists() else ""
            raise AssertionError(f"{program} failed:\n{done.stdout}{done.stderr}\n{server_log}")
