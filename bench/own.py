"""conveyor's own workloads, beside the peer workloads of the shared harness.

W2n  drain of 100,000 no-op jobs by one ``conveyor worker`` (2 processes):
     jobs/s from worker spawn to the last job recorded.
W6   claim cost with 1,000,000 waiting jobs against 1,000: median time of one
     claim of 10 jobs (claim + finish), and the ratio of the two medians.

Writes one JSON line per workload (the shape of the peer harness's lines) to
``--out`` and prints it. Usage::

    python bench/own.py [--workloads W2n,W6] [--out bench/results/own.jsonl]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from conveyor import Conveyor, Outcome  # noqa: E402
from conveyor.backends.sqlite import SQLiteBackend  # noqa: E402

TASKS_MODULE = """
from conveyor import Conveyor
import os
app = Conveyor(os.environ["CONVEYOR_URL"])

@app.task(name="noop")
async def noop(i):
    return None
"""

WORKER_FLAGS = [
    "-q",
    "default",
    "-c",
    "50",
    "--fetch",
    "100",
    "--prefetch",
    "100",
    "--processes",
    "2",
]


def fresh_db(folder: str, name: str) -> str:
    path = os.path.join(folder, name)
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.unlink(path + suffix)
    return f"sqlite:///{path}"


def processed(path: str) -> int:
    # The counter row is what `conveyor stats` reads, without counting by state.
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT value FROM counters WHERE name = 'processed'").fetchone()
        return int(row[0]) if row else 0


def w2n(folder: str, n: int) -> dict[str, float]:
    url = fresh_db(folder, "w2n.db")
    with open(os.path.join(folder, "w2n_tasks.py"), "w") as f:
        f.write(TASKS_MODULE)  # what the worker imports
    app = Conveyor(url)  # a fresh app (and connection) per run: the file was just replaced

    @app.task(name="noop")
    async def task(i: int) -> None:
        return None

    t0 = time.perf_counter()
    for start in range(0, n, 1000):
        task.enqueue_many([[i] for i in range(start, min(start + 1000, n))])
    preload = time.perf_counter() - t0
    app.close()
    path = url.removeprefix("sqlite:///")
    conveyor_bin = os.path.join(os.path.dirname(sys.executable), "conveyor")
    env = dict(os.environ, CONVEYOR_URL=url, PYTHONPATH=folder)
    log = open(os.path.join(folder, "w2n-worker.log"), "w")  # noqa: SIM115 - the worker's
    t_spawn = time.perf_counter()
    proc = subprocess.Popen(
        [conveyor_bin, "worker", "-i", "w2n_tasks:app", *WORKER_FLAGS],
        cwd=folder,
        env=env,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    try:
        while processed(path) < n:
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited with {proc.returncode}; see {log.name}")
            time.sleep(0.005)
        t_done = time.perf_counter()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    seconds = t_done - t_spawn
    return {"seconds": seconds, "jobs_per_s": n / seconds, "preload_s": preload}


async def claim_cost(url: str, waiting: int, samples: int) -> float:
    backend = SQLiteBackend(url)
    await backend.open()
    app = Conveyor(url)

    @app.task(name="noop")
    async def noop(i: int) -> None:
        return None

    for start in range(0, waiting + samples * 10, 5000):
        count = min(5000, waiting + samples * 10 - start)
        await backend.enqueue([noop.prepare(i) for i in range(start, start + count)])
    times = []
    for _ in range(samples):
        t = time.perf_counter()
        jobs = await backend.claim(["default"], "bench", 10, 30)
        await backend.finish([(j, Outcome.succeeded()) for j in jobs])
        times.append(time.perf_counter() - t)
    await backend.close()
    return statistics.median(times)


def w6(folder: str, big: int, small: int) -> dict[str, float]:
    small_s = asyncio.run(claim_cost(fresh_db(folder, "w6-small.db"), small, 200))
    big_s = asyncio.run(claim_cost(fresh_db(folder, "w6-big.db"), big, 200))
    return {
        "claim_ms_small": small_s * 1000,
        "claim_ms_big": big_s * 1000,
        "ratio": big_s / small_s,
        "waiting_small": small,
        "waiting_big": big,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default="W2n,W6")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--n", type=int, default=100_000, help="W2n jobs")
    parser.add_argument("--big", type=int, default=1_000_000, help="W6 waiting jobs")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "own.jsonl"))
    opts = parser.parse_args()
    os.makedirs(os.path.dirname(opts.out), exist_ok=True)
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = []
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-") as folder:
        for workload in opts.workloads.split(","):
            runs = []
            for _ in range(opts.runs):
                if workload == "W2n":
                    runs.append(w2n(folder, opts.n))
                elif workload == "W6":
                    runs.append(w6(folder, opts.big, 1000))
                else:
                    raise SystemExit(f"unknown workload {workload!r}")
            key = "jobs_per_s" if workload == "W2n" else "ratio"
            values = [r[key] for r in runs]
            line = {
                "peer": "conveyor_sqlite",
                "backend": "sqlite",
                "workload": workload,
                "date": date,
                "status": "ok",
                "runs": runs,
                key: statistics.median(values),
                f"{key}_min": min(values),
                f"{key}_max": max(values),
            }
            if workload == "W2n":
                line["n"] = opts.n
                line["flags"] = "conveyor worker " + " ".join(WORKER_FLAGS)
            print(json.dumps(line), flush=True)
            lines.append(line)
    with open(opts.out, "w") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
