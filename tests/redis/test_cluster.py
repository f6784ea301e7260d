"""conveyor on a real Redis Cluster of three primaries, started for the test.

Every key of a namespace carries the hash tag ``{<prefix>}``, so each script touches
one slot: the model's random operations, a batch bigger than one script call, the
indexes, wake-ups across instances and a real worker process all work through the
cluster client (``?cluster=true``), whichever node the URL names.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from hypothesis.stateful import run_state_machine_as_test

from conveyor import State
from conveyor.backends import create_backend
from conveyor.backends.redis import RedisBackend
from conveyor.testing import BackendFactory
from conveyor.testing.harness import make_job
from conveyor.testing.model import MODEL_SETTINGS, BackendModel
from tests.redis.indexes import check_indexes
from tests.redis.server import RedisServer
from tests.worker.conftest import WorkerEnv

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RedisServer]]:
    """Three primaries sharing the 16,384 slots."""
    with _cluster(tmp_path_factory.mktemp("cluster")) as nodes:
        yield nodes


@contextlib.contextmanager
def _cluster(folder: Path, *settings: str) -> Iterator[list[RedisServer]]:
    """Three primaries sharing the 16,384 slots, with ``settings`` each."""
    with contextlib.ExitStack() as stack:
        nodes = []
        for i in range(3):
            node = RedisServer(
                folder / f"node{i}",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                *settings,
            )
            node.port = _cluster_port()
            stack.callback(node.kill)
            node.start()
            nodes.append(node)
        cli = shutil.which("redis-cli") or "/usr/bin/redis-cli"
        subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{n.port}" for n in nodes),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        _wait_for_ok(nodes)
        yield nodes


def _wait_for_ok(nodes: list[RedisServer]) -> None:
    deadline = time.monotonic() + 30
    while any(n.client().cluster("info")["cluster_state"] != "ok" for n in nodes):
        assert time.monotonic() < deadline, "the cluster did not come up"
        time.sleep(0.1)


def _cluster_port() -> int:
    """A free port p with p + 10,000 free too (the cluster bus), p <= 55,535."""
    for _ in range(100):
        port = random.randrange(20_000, 45_000)
        with contextlib.ExitStack() as stack:
            try:
                for candidate in (port, port + 10_000):
                    sock = stack.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return port
    raise AssertionError("no free pair of ports for a cluster node")


def _url(node: RedisServer, prefix: str) -> str:
    return node.url(prefix=prefix, cluster="true")


def _cluster_client(node: RedisServer) -> redis.RedisCluster:
    return redis.RedisCluster(host="127.0.0.1", port=node.port, decode_responses=True)


def test_the_models_random_operations_follow_the_rules_on_a_cluster(
    cluster: list[RedisServer],
) -> None:
    # The URL names a node that does not hold the namespace's slot for one of the two
    # namespaces at least: the client follows the cluster's map.
    for prefix, node in (("model-a", cluster[0]), ("model-b", cluster[2])):
        url = _url(node, prefix)
        with BackendFactory(lambda url=url: create_backend(url)) as factory:

            class Model(BackendModel):
                pass

            Model.factory = factory
            run_state_machine_as_test(Model, settings=MODEL_SETTINGS)
        check_indexes(_cluster_client(node), prefix)


def test_a_big_batch_waits_and_wakes_across_instances_on_a_cluster(
    cluster: list[RedisServer],
) -> None:
    url = _url(cluster[1], "batch")
    with BackendFactory(lambda: create_backend(url)) as factory:
        backend = factory.backend
        other = factory.run(factory.open())
        assert isinstance(backend, RedisBackend) and backend.settings.cluster
        stored = factory.run(backend.enqueue([make_job("q") for _ in range(2500)]))
        assert {j.state for j in stored} == {State.QUEUED}
        assert factory.run(backend.stats()).counts["queued"] == 2500

        async def woken() -> tuple[bool, float]:
            claimed = await other.claim(["w"], "worker", 10, 30)
            assert claimed == []
            started = time.monotonic()
            waiting = asyncio.ensure_future(other.wait(["w"], 10))
            await asyncio.sleep(0.3)
            await backend.enqueue([make_job("w")])
            return await waiting, time.monotonic() - started

        was_woken, after = factory.run(woken())
        assert was_woken and after < 5
        assert check_indexes(_cluster_client(cluster[1]), "batch") == 2501


def test_a_worker_process_drains_a_queue_on_a_cluster(
    cluster: list[RedisServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = WorkerEnv(tmp_path, monkeypatch, _url(cluster[0], "worker"))
    try:
        handles = env.tasks.record.enqueue_many([[i] for i in range(300)])
        proc = env.start_worker("-c", "8")
        env.wait_until("300 runs", lambda: len(env.lines("runs")) >= 300, 60)
        assert handles[-1].wait(timeout=30) == 299
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert sorted(map(int, env.lines("runs"))) == list(range(300))
    finally:
        env.stop_all()
        env.app.close()


def test_a_worker_waits_out_a_cluster_whose_nodes_all_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _cluster(tmp_path / "cluster", "--appendonly", "yes") as nodes:
        env = WorkerEnv(tmp_path, monkeypatch, _url(nodes[0], "restarts"))
        try:
            # Given a worker on a cluster, which has run a job
            proc = env.start_worker("--lease", "6")
            assert env.tasks.record.enqueue(1).wait(timeout=30) == 1
            # When every node is killed, long enough for the client's look for another
            # node to fail too, then started again (AOF: the jobs are kept)
            for node in nodes:
                node.kill()
            env.wait_until(
                "the worker to see the cluster gone",
                lambda: "still fail" in env.logs() or proc.poll() is not None,
            )
            for node in nodes:
                node.start()
            _wait_for_ok(nodes)
            # Then the worker is still there, and runs a job enqueued after
            env.tasks.record.enqueue(2)
            env.wait_until("the job enqueued after to run", lambda: "2" in env.lines("runs"))
            assert proc.poll() is None, env.logs()
            assert "failed: stopping" not in env.logs()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
        finally:
            env.stop_all()
            env.app.close()
