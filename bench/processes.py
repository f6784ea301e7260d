"""The processes a benchmark starts (workers, API servers, targets): a free port, start
with a log file, wait until it answers, stop (gracefully, then by force)."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import time


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(
    cmd: list[str], env: dict[str, str], log_path: str, cwd: str | None = None
) -> subprocess.Popen[bytes]:
    """``cmd`` in a session of its own (so that a forced stop takes its children too),
    its output into ``log_path``."""
    with open(log_path, "w") as log:
        return subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=log, stderr=log, start_new_session=True
        )


def wait_listening(proc: subprocess.Popen[bytes], port: int, path: str, log: str) -> None:
    """Until ``GET path`` on ``port`` answers 200 (30 s at most); the log if it exits."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            with open(log) as f:
                raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}:\n{f.read()}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            try:
                conn.request("GET", path)
                if conn.getresponse().status == 200:
                    return
            finally:
                conn.close()
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"nothing answered on port {port} within 30 s; see {log}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (a graceful stop), then SIGKILL to its whole session after 30 s."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
