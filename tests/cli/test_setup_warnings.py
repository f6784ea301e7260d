"""A warning about the store's set-up (a Redis that keeps nothing on disk) is for the
long-running processes, as Sidekiq's server gives it: a worker says it as it starts; a
short command (`conveyor stats`, `jobs list`, ...) does not repeat it on every call."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.redis.server import RedisServer

from .conftest import Cli, Processes

NO_PERSISTENCE = "no persistence"


def test_short_commands_on_a_redis_without_persistence_do_not_warn_and_a_worker_does(
    tmp_path: Path, processes: Processes, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a Redis that keeps nothing on disk (a private one: its URL is new to this
    # process, whose warnings are given once per URL)
    with RedisServer(tmp_path / "redis", "--appendonly", "no") as server:
        url = server.url(prefix="setup_warnings")
        cli = Cli(tmp_path, url)
        caplog.set_level(logging.WARNING, logger="conveyor")

        # When the commands that look at or steer the store run
        for command in (
            ("stats",),
            ("jobs", "list"),
            ("queues", "list"),
            ("workers",),
            ("migrate",),
            ("enqueue", "-i", str(cli.tasks_file), "add", "[1, 2]"),
        ):
            result = cli.ok(*command)
            # Then none of them warns, on stderr or in the log
            assert NO_PERSISTENCE not in result.stderr, command
        assert [r.getMessage() for r in caplog.records if NO_PERSISTENCE in r.getMessage()] == []

        # When a worker starts on it
        worker = processes.start("worker", "--url", url, "-i", str(cli.tasks_file))

        # Then the worker says it, once
        processes.wait_until(
            "the worker's warning", lambda: NO_PERSISTENCE in processes.stderr(worker)
        )
        processes.wait_until("the worker started", lambda: "started" in processes.stderr(worker))
        assert processes.stderr(worker).count(NO_PERSISTENCE) == 1
