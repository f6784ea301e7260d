"""W2 with no queue at all: what the machine gives the harness's W2 before any queue costs.

The harness's W2 (``../shared/bench/peers``) times a worker command from its spawn until
the Redis counter reads N = 10,000, each job one ``INCR`` (``peers.common.ajob_incr``).
Here the "worker" is a command that does only that: it imports what the job body needs
(uvloop, ``redis.asyncio``, the harness's ``peers.common``), forks 2 processes (the
harness's worker budget) and each runs its half of the N bodies, 50 at a time on one
uvloop loop (conveyor's adapters: ``--processes 2 -c 50``). Nothing is stored, claimed
or recorded. The driver is the harness's: spawn, then the counter read every 5 ms
(``bench.wait_counter``).

A queue's W2 on the same machine can only be lower; conveyor's is read against it in
``docs/benchmarks.md``. One JSON line in the harness's W2 shape (``peer``
``bodies_only``) goes to ``--out`` (default ``bench/results/own.jsonl``).

    python bench/w2_bound.py [--runs 5] [--n 10000] [--out FILE]

Runs in the harness's environment (``$PEERS_VENV``, which ``make bench`` sets up), with
the harness at ``$PEERS_DIR`` (default ``../shared/bench/peers``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS_DIR = os.environ.get("PEERS_DIR", os.path.join(HERE, "..", "..", "shared", "bench", "peers"))
PROCESSES = 2
CONCURRENCY = 50

# The worker command: the job bodies and nothing else.
CHILD = """
import asyncio, os, sys
import uvloop
import redis.asyncio  # noqa: F401  (imported before the fork, as conveyor's supervisor does)
from peers import common

N, PROCESSES, CONCURRENCY = (int(a) for a in sys.argv[1:4])


async def drain(share):
    jobs = iter(share)

    async def slot():
        for i in jobs:
            await common.ajob_incr(i)

    await asyncio.gather(*(slot() for _ in range(CONCURRENCY)))


children = []
for k in range(PROCESSES):
    pid = os.fork()
    if pid == 0:
        try:
            uvloop.run(drain(range(k, N, PROCESSES)))
        except BaseException:
            import traceback
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    children.append(pid)
failed = [pid for pid in children if os.waitpid(pid, 0)[1] != 0]
sys.exit(1 if failed else 0)
"""


class _Command:
    """The bound's command, as the harness's ``Worker`` sees one (``check_alive``)."""

    def __init__(self, n: int, processes: int, concurrency: int) -> None:
        env = dict(os.environ, PYTHONPATH=PEERS_DIR)
        argv = [sys.executable, "-c", CHILD, str(n), str(processes), str(concurrency)]
        self.proc = subprocess.Popen(argv, env=env)

    def check_alive(self) -> None:
        if self.proc.poll() not in (None, 0):
            raise RuntimeError(f"the bodies' command failed (exit {self.proc.returncode})")


def one_run(bench: Any, r: Any, n: int, processes: int, concurrency: int) -> dict[str, float]:
    """One run, as the harness runs W2: its machine probes first, then the timed drain."""
    calib = bench.calibrate(r)
    r.delete(bench.common.COUNTER_KEY)
    t_spawn = time.perf_counter()
    command = _Command(n, processes, concurrency)
    try:
        t_done, t_first, c_first = bench.wait_counter(r, n, command, 120)
    finally:
        command.proc.wait(30)
    return {
        "seconds": t_done - t_spawn,
        "jobs_per_s": n / (t_done - t_spawn),
        "startup_s": t_first - t_spawn,
        "drain_jobs_per_s": (n - c_first) / (t_done - t_first),
        "final_count": int(r.get(bench.common.COUNTER_KEY) or 0),
        **calib,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--processes", type=int, default=PROCESSES, choices=(1, 2))
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY, help="bodies at once")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "own.jsonl"))
    opts = parser.parse_args()
    if opts.runs < 1 or opts.n < opts.processes or opts.concurrency < 1:
        parser.error("--runs and --concurrency must be at least 1, --n at least --processes")
    sys.path.insert(0, PEERS_DIR)
    sys.path.insert(0, HERE)
    import bench  # the harness's driver: its counter, its poll
    import redis
    from own import write

    r = redis.Redis.from_url(bench.common.REDIS_URL)
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    runs = []
    for _ in range(opts.runs):
        runs.append(one_run(bench, r, opts.n, opts.processes, opts.concurrency))
        print(json.dumps(runs[-1]), flush=True)
    line: dict[str, Any] = {
        "peer": "bodies_only",
        "backend": "none",
        "workload": "W2",
        "date": date,
        "n": opts.n,
        "flags": f"{opts.processes} processes x {opts.concurrency} concurrent bodies, uvloop, "
        "no queue",
        "status": "ok",
        "runs": runs,
    }
    for key in ("jobs_per_s", "startup_s", "drain_jobs_per_s"):
        values = [run[key] for run in runs]
        line[key] = statistics.median(values)
        line[f"{key}_min"] = min(values)
        line[f"{key}_max"] = max(values)
    print(json.dumps({k: v for k, v in line.items() if k != "runs"}), flush=True)
    write(opts.out, [line])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
