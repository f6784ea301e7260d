"""A long-running process (a worker, the API) is warned as it starts, once per URL and
process, when the Redis server would lose jobs: no persistence at all (a restart empties
every queue) or an eviction policy (full memory deletes jobs and index entries). A server
set up to keep them starts silently; a short command is not warned at all
(tests/cli/test_setup_warnings.py)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path

import pytest
import redis

from conveyor.backends.redis import RedisBackend, durability_warnings
from tests.rd import client_url
from tests.redis.server import RedisServer

LOGGER = "conveyor.backends.redis"


def warnings_at_open(url: str, caplog: pytest.LogCaptureFixture) -> list[str]:
    """The WARNING lines the Redis backend logs while opening ``url`` as a worker does."""

    async def open_and_close() -> None:
        backend = RedisBackend(url)
        await backend.open()
        await backend.warn_about_setup()
        await backend.close()

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        asyncio.run(open_and_close())
    return [
        r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING
    ]


def fresh_prefix() -> str:
    # The rule is once per URL and process: a URL no other test opened
    return f"conveyor_t_{uuid.uuid4().hex[:12]}"


# -- the rules, on settings as CONFIG GET answers them ------------------------------------
@pytest.mark.parametrize(
    ("config", "risks"),
    [
        ({"appendonly": "no", "save": "", "maxmemory-policy": "noeviction"}, ["no persistence"]),
        ({"appendonly": "no", "save": "  ", "maxmemory-policy": "noeviction"}, ["no persistence"]),
        ({"appendonly": "yes", "save": "", "maxmemory-policy": "noeviction"}, []),
        # RDB snapshots lose the last minutes, not everything: not warned about
        ({"appendonly": "no", "save": "3600 1 300 100", "maxmemory-policy": "noeviction"}, []),
        (
            {"appendonly": "yes", "save": "", "maxmemory-policy": "allkeys-lru"},
            ["maxmemory-policy is 'allkeys-lru'"],
        ),
        (
            {"appendonly": "no", "save": "", "maxmemory-policy": "volatile-ttl"},
            ["no persistence", "maxmemory-policy is 'volatile-ttl'"],
        ),
        # CONFIG refused: whether RDB snapshots run is unknown
        (
            {"appendonly": "no", "save": "unknown", "maxmemory-policy": "noeviction"},
            ["appendonly is off"],
        ),
        # what a server that answers nothing about a setting is taken to have
        ({}, ["no persistence"]),
        ({"appendonly": "yes", "maxmemory-policy": ""}, []),
    ],
)
def test_durability_warnings_name_each_risk_of_the_settings(
    config: dict[str, str], risks: list[str]
) -> None:
    found = durability_warnings(config)
    assert len(found) == len(risks), found
    for warning, risk in zip(found, risks, strict=True):
        assert risk in warning
    if risks and risks[0] == "no persistence":
        assert "appendonly yes" in found[0]  # and says what to set
    if found and "maxmemory-policy is" in found[-1]:
        assert "noeviction" in found[-1]


# -- on real servers --------------------------------------------------------------------
def test_the_test_servers_persistence_is_warned_about_as_it_is_once_per_url(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with redis.Redis.from_url(client_url(redis_url), decode_responses=True) as client:
        config = {
            **client.config_get("appendonly"),
            **client.config_get("save"),
            **client.config_get("maxmemory-policy"),
        }
    persists = config["appendonly"] == "yes" or bool(config["save"].strip())

    warned = warnings_at_open(redis_url, caplog)
    where = redis_url.split("?")[0]
    said = any(f"Redis at {where}" in w and "no persistence" in w for w in warned)
    # The server of the test run decides which: this machine's keeps nothing on disk
    assert said is not persists, (config, warned)
    # Once per URL: a worker and the API beside it (conveyor serve) both start here
    assert warnings_at_open(redis_url, caplog) == []


def test_a_server_with_append_only_persistence_opens_without_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with RedisServer(tmp_path / "redis", "--appendonly", "yes") as server:
        assert warnings_at_open(server.url(prefix=fresh_prefix()), caplog) == []


def test_an_eviction_policy_is_warned_about_by_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = ("--appendonly", "yes", "--maxmemory-policy", "allkeys-lru")
    with RedisServer(tmp_path / "redis", *settings) as server:
        warned = warnings_at_open(server.url(prefix=fresh_prefix()), caplog)
    assert len(warned) == 1, warned
    assert "maxmemory-policy is 'allkeys-lru'" in warned[0]
    assert f"127.0.0.1:{server.port}" in warned[0]


def test_the_policy_is_found_where_config_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Managed services refuse CONFIG; the backend then reads INFO
    settings = (
        *("--appendonly", "yes", "--maxmemory-policy", "allkeys-lru"),
        *("--rename-command", "CONFIG", ""),
    )
    with RedisServer(tmp_path / "redis", *settings) as server:
        with server.client() as client, pytest.raises(redis.ResponseError):
            client.config_get("appendonly")
        warned = warnings_at_open(server.url(prefix=fresh_prefix()), caplog)
    assert len(warned) == 1, warned
    assert "maxmemory-policy is 'allkeys-lru'" in warned[0]


def test_appendonly_off_is_warned_about_where_config_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # INFO says whether AOF is on, not whether RDB snapshots are configured
    settings = ("--appendonly", "no", "--rename-command", "CONFIG", "")
    with RedisServer(tmp_path / "redis", *settings) as server:
        warned = warnings_at_open(server.url(prefix=fresh_prefix()), caplog)
    assert len(warned) == 1, warned
    assert "appendonly is off" in warned[0]
    assert "CONFIG is disabled" in warned[0]
