"""conveyor's own workloads, beside the peer workloads of the shared harness.

W2n  drain of 100,000 no-op jobs by one ``conveyor worker`` (2 processes):
     jobs/s from worker spawn to the last job recorded.
W6   claim cost with 1,000,000 waiting jobs against 1,000: median time of one
     claim of 10 jobs (claim + finish), and the ratio of the two medians.
W7   churn (PostgreSQL only): a steady enqueue stream at a fixed rate (half the
     W2n rate, or ``--rate``) into a running ``conveyor worker`` (2 processes) for
     ``--duration`` seconds; in the middle, a REPEATABLE READ transaction on another
     connection takes a snapshot and stays open, idle, for ``--hold`` seconds.
     Jobs finished per second in 5-second windows (from the store's counters),
     the peak, the lowest window of the hold against the steady rate before it,
     the mean after it and when the backlog is back to normal. Each window also
     records the jobs table's dead rows and what a scan for the first 100 ready
     jobs costs then (EXPLAIN ANALYZE: ms, buffers). ``--vacuum-every N`` runs a
     throttled VACUUM of the jobs table every N seconds, for servers that run
     with autovacuum off (``server`` in the line says how the server was set).

W2n and W6 run on every store of ``--stores`` (``sqlite``: a file in a temporary
folder; ``postgres``: the schema ``bench_conveyor_own`` of ``$PG_DSN``, dropped
and migrated again before every run, ANALYZEd after the preload like the
harness's PostgreSQL peers; ``redis``: the namespace ``bench_conveyor_own`` of
``$REDIS_URL``, its keys deleted before every run with SCAN + UNLINK, nothing else
touched). On PostgreSQL, W6 loads its waiting jobs with one
``INSERT ... SELECT generate_series`` of the rows the backend's ``insert_jobs``
writes; on SQLite and Redis through the backend's ``enqueue``; then it times claims
and outcomes through the backend API on every store.

``--flags`` gives the worker other flags than the peer adapters' (``-q default -c 50
--fetch 100 --prefetch 100 --processes 2``); such a W2n line is a variant of its own.

Writes one JSON line per (store, workload, variant) (the shape of the peer harness's
lines, with ``store`` naming the store) to ``--out``, replacing the lines of the same
peer, workload and variant there and keeping the others, and prints it. Usage::

    python bench/own.py [--stores sqlite,postgres,redis] [--workloads W2n,W6,W7]
                        [--out bench/results/own.jsonl]
    python bench/own.py --workloads W2n \
        --flags "-q default -c 50 --fetch 300 --prefetch 600 --processes 2"
    python bench/own.py --stores postgres --workloads W7 --rate 4000 --duration 60 --hold 20
    python bench/own.py --stores postgres --workloads W7 --rate 6000 --duration 180 \
                        --hold 60 --vacuum-every 60
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "peers"))

import processes  # noqa: E402
from conveyor_shared import WORKER_FLAGS, delete_namespace  # noqa: E402

from conveyor import Conveyor, Outcome  # noqa: E402
from conveyor.backends import create_backend  # noqa: E402

PG_DSN = os.environ.get("PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
PG_SCHEMA = "bench_conveyor_own"
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
REDIS_PREFIX = "bench_conveyor_own"

TASKS_MODULE = """
from conveyor import Conveyor
import os
app = Conveyor(os.environ["CONVEYOR_URL"])

@app.task(name="noop")
async def noop(i):
    return None
"""


# ---------------------------------------------------------------------------
# Stores: a fresh one per run, its processed counter, and a fast load of waiting jobs
# ---------------------------------------------------------------------------
async def load_noop_jobs(url: str, count: int, per_call: int) -> None:
    """``count`` waiting no-op jobs, stored through the backend ``per_call`` at a time."""
    backend = create_backend(url)
    await backend.open()
    app = Conveyor(url)

    @app.task(name="noop")
    async def noop(i: int) -> None:
        return None

    for start in range(0, count, per_call):
        n = min(per_call, count - start)
        await backend.enqueue([noop.prepare(i) for i in range(start, start + n)])
    await backend.close()


class SQLiteStore:
    name = "sqlite"
    peer = "conveyor_sqlite"
    backend = "sqlite"

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def fresh(self, name: str) -> str:
        path = os.path.join(self.folder, f"{name}.db")
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.unlink(path + suffix)
        return f"sqlite:///{path}"

    def analyze(self, url: str) -> None:
        pass

    def processed_reader(self, url: str) -> Any:
        path = url.removeprefix("sqlite:///")

        def processed() -> int:
            # The counter row is what `conveyor stats` reads, without counting by state.
            with sqlite3.connect(path) as conn:
                row = conn.execute("SELECT value FROM counters WHERE name = 'processed'").fetchone()
                return int(row[0]) if row else 0

        return processed, lambda: None

    async def load_waiting(self, url: str, count: int) -> None:
        await load_noop_jobs(url, count, 5000)

    def drop(self) -> None:
        pass


#: The rows ``insert_jobs`` writes for ``noop.enqueue(g)`` (queue default, priority 0,
#: max_attempts 5, default retry, no timeout / unique key / metadata / tenant), made in
#: the server: ids are UUIDv7 text of the load's millisecond with ``g`` as the counter
#: (time-ordered and fixed width, so FIFO by id as for enqueued jobs).
PG_LOAD = """
WITH t AS (SELECT {s}.epoch_now() AS now),
h AS (SELECT lpad(to_hex(floor(now * 1000)::bigint), 12, '0') AS ms FROM t),
new_queue AS (
    INSERT INTO {s}.queues (name, paused, created_at)
    SELECT 'default', false, t.now FROM t
    ON CONFLICT DO NOTHING
)
INSERT INTO {s}.jobs (id, queue, task, priority, state, run_at, max_attempts, retry,
                      timeout, steps, unique_key, metadata, tenant, created_at, updated_at)
SELECT substr(h.ms, 1, 8) || '-' || substr(h.ms, 9, 4) || '-7' || substr(c.x, 1, 3)
           || '-8' || substr(c.x, 4, 3) || '-' || substr(c.x, 7, 12),
       'default', 'noop', 0, 'queued', t.now, 5, NULL, NULL,
       jsonb_build_array(jsonb_build_object('name', 'main', 'task', 'noop',
                                            'args', jsonb_build_array(g))),
       NULL, NULL, NULL, t.now, t.now
FROM t, h, generate_series(0, %(count)s - 1) AS g,
     LATERAL (SELECT lpad(to_hex(g), 18, '0') AS x) AS c
"""


class PostgresStore:
    name = "postgres"
    peer = "conveyor_pg"
    backend = "postgresql"

    def __init__(self, dsn: str, schema: str) -> None:
        self.dsn = dsn
        self.schema = schema
        self.url = f"{dsn}{'&' if '?' in dsn else '?'}schema={schema}"

    def _connect(self) -> Any:
        import psycopg

        return psycopg.connect(self.dsn, autocommit=True)

    def fresh(self, name: str) -> str:
        with self._connect() as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
        from conveyor.backends.postgres import PostgresBackend

        asyncio.run(PostgresBackend(self.url).migrate())
        return self.url

    def analyze(self, url: str) -> None:
        # As the harness's PostgreSQL peers do after their preload: a long-lived
        # queue table has planner statistics; a schema made seconds ago has none.
        with self._connect() as conn:
            tables = conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s", (self.schema,)
            ).fetchall()
            for (table,) in tables:
                conn.execute(f'ANALYZE "{self.schema}"."{table}"')

    def processed_reader(self, url: str) -> Any:
        conn = self._connect()
        query = (
            f"SELECT coalesce(sum(value), 0) FROM {self.schema}.counters WHERE name = 'processed'"
        )

        def processed() -> int:
            return int(conn.execute(query).fetchone()[0])

        return processed, conn.close

    async def load_waiting(self, url: str, count: int) -> None:
        with self._connect() as conn:
            conn.execute(PG_LOAD.replace("{s}", self.schema), {"count": count})
        self.analyze(url)

    def drop(self) -> None:
        with self._connect() as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")

    def settings(self) -> dict[str, str]:
        with self._connect() as conn:
            return server_settings(conn)


class RedisStore:
    name = "redis"
    peer = "conveyor_redis"
    backend = "redis"

    def __init__(self, url: str, prefix: str) -> None:
        self.plain_url = url
        self.prefix = prefix
        self.url = f"{url}{'&' if '?' in url else '?'}prefix={prefix}"

    def _connect(self) -> Any:
        import redis

        return redis.Redis.from_url(self.plain_url, decode_responses=True)

    def fresh(self, name: str) -> str:
        self.drop()
        return self.url

    def analyze(self, url: str) -> None:
        pass

    def processed_reader(self, url: str) -> Any:
        client = self._connect()
        key = f"{{{self.prefix}}}:counters"

        def processed() -> int:
            return int(client.hget(key, "processed") or 0)

        return processed, client.close

    async def load_waiting(self, url: str, count: int) -> None:
        # What enqueue writes, through the backend: calls of 10,000 jobs (ten enqueue
        # scripts in one MULTI/EXEC).
        await load_noop_jobs(url, count, 10_000)

    def drop(self) -> None:
        delete_namespace(self.plain_url, self.prefix)

    def settings(self) -> dict[str, str]:
        client = self._connect()
        try:
            info = client.info("server")
            config = {
                k: str(v)
                for name in ("appendonly", "save")
                for k, v in client.config_get(name).items()
            }
        finally:
            client.close()
        return {"server_version": str(info.get("redis_version")), **config}


# ---------------------------------------------------------------------------
# The worker
# ---------------------------------------------------------------------------
def start_worker(
    folder: str, url: str, name: str, flags: list[str]
) -> tuple[subprocess.Popen[bytes], str]:
    with open(os.path.join(folder, "bench_tasks.py"), "w") as f:
        f.write(TASKS_MODULE)  # what the worker imports
    conveyor_bin = os.path.join(os.path.dirname(sys.executable), "conveyor")
    # The folder first, then the caller's PYTHONPATH: a run against another checkout's
    # code (PYTHONPATH=/other/src) runs that code in the worker too.
    pythonpath = os.pathsep.join(p for p in (folder, os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, CONVEYOR_URL=url, PYTHONPATH=pythonpath)
    log_path = os.path.join(folder, f"{name}-worker.log")
    cmd = [conveyor_bin, "worker", "-i", "bench_tasks:app", *flags]
    proc = processes.start(cmd, env, log_path, cwd=folder)
    return proc, log_path


# ---------------------------------------------------------------------------
# W2n
# ---------------------------------------------------------------------------
def w2n(store: Any, folder: str, n: int, flags: list[str]) -> dict[str, float]:
    url = store.fresh("w2n")
    app = Conveyor(url)  # a fresh app (and connection) per run: the store was just replaced

    @app.task(name="noop")
    async def task(i: int) -> None:
        return None

    t0 = time.perf_counter()
    for start in range(0, n, 1000):
        task.enqueue_many([[i] for i in range(start, min(start + 1000, n))])
    preload = time.perf_counter() - t0
    app.close()
    store.analyze(url)
    processed, close = store.processed_reader(url)
    t_spawn = time.perf_counter()
    proc, log = start_worker(folder, url, "w2n", flags)
    try:
        while processed() < n:
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited with {proc.returncode}; see {log}")
            time.sleep(0.005)
        t_done = time.perf_counter()
    finally:
        processes.stop(proc)
        close()
    seconds = t_done - t_spawn
    return {"seconds": seconds, "jobs_per_s": n / seconds, "preload_s": preload}


# ---------------------------------------------------------------------------
# W6
# ---------------------------------------------------------------------------
async def claim_cost(store: Any, url: str, waiting: int, samples: int) -> tuple[float, float]:
    t = time.perf_counter()
    await store.load_waiting(url, waiting + samples * 10)
    load_s = time.perf_counter() - t
    backend = create_backend(url)
    await backend.open()
    times = []
    for _ in range(samples):
        t = time.perf_counter()
        jobs = await backend.claim(["default"], "bench", 10, 30)
        await backend.finish([(j, Outcome.succeeded()) for j in jobs])
        times.append(time.perf_counter() - t)
        if len(jobs) != 10:
            raise RuntimeError(f"a claim took {len(jobs)} jobs, not 10")
    await backend.close()
    return statistics.median(times), load_s


def w6(store: Any, big: int, small: int) -> dict[str, float]:
    small_s, _ = asyncio.run(claim_cost(store, store.fresh("w6-small"), small, 200))
    big_s, big_load = asyncio.run(claim_cost(store, store.fresh("w6-big"), big, 200))
    return {
        "claim_ms_small": small_s * 1000,
        "claim_ms_big": big_s * 1000,
        "ratio": big_s / small_s,
        "waiting_small": small,
        "waiting_big": big,
        "load_s_big": big_load,
    }


# ---------------------------------------------------------------------------
# W7
# ---------------------------------------------------------------------------
class HeldSnapshot(threading.Thread):
    """BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) ...; idle until released;
    COMMIT, on its own connection."""

    def __init__(self, store: PostgresStore) -> None:
        super().__init__(daemon=True)
        self.store = store
        self.release = threading.Event()
        self.info: dict[str, Any] = {}
        self.t0 = 0.0

    def run(self) -> None:
        with self.store._connect() as conn:
            self.info["begin_s"] = time.perf_counter() - self.t0
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            row = conn.execute(f"SELECT count(*) FROM {self.store.schema}.jobs").fetchone()
            self.info["rows_seen"] = int(row[0]) if row else 0
            self.info["snapshot_s"] = time.perf_counter() - self.t0
            self.release.wait()
            conn.execute("COMMIT")
            self.info["commit_s"] = time.perf_counter() - self.t0


class Vacuumer(threading.Thread):
    """``VACUUM`` of the jobs table every ``every`` seconds (from the end of the last
    one), throttled like autovacuum (cost delay 2 ms, limit 200): stands in for
    autovacuum on a server that has it off."""

    def __init__(self, store: PostgresStore, every: float) -> None:
        super().__init__(daemon=True)
        self.store = store
        self.every = every
        self.stop = threading.Event()
        self.runs: list[dict[str, float]] = []
        self.t0 = 0.0
        self.conn = store._connect()

    def run(self) -> None:
        import psycopg

        self.conn.execute("SET vacuum_cost_delay = '2ms'")
        self.conn.execute("SET vacuum_cost_limit = 200")
        while not self.stop.wait(self.every):
            t = time.perf_counter()
            try:
                self.conn.execute(f"VACUUM {self.store.schema}.jobs")
            except psycopg.errors.QueryCanceled:
                return
            self.runs.append({"start_s": t - self.t0, "seconds": time.perf_counter() - t})

    def finish(self) -> None:
        self.stop.set()
        self.conn.cancel()
        self.join(30)
        self.conn.close()


def table_stats(conn: Any, schema: str) -> tuple[int, int]:
    """Dead row versions in the jobs table, and how many times autovacuum has run on it."""
    row = conn.execute(
        "SELECT n_dead_tup, autovacuum_count FROM pg_stat_user_tables"
        " WHERE schemaname = %s AND relname = 'jobs'",
        (schema,),
    ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def ready_probe(conn: Any, schema: str) -> tuple[float, int]:
    """What finding the first 100 ready jobs costs now (the claim's scan of the ready
    index, without the locks): milliseconds and buffers touched."""
    row = conn.execute(
        "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT id FROM "
        f"{schema}.jobs WHERE queue = 'default' AND state = 'queued'"
        " ORDER BY priority, run_at, id LIMIT 100"
    ).fetchone()
    plan = row[0][0]
    top = plan["Plan"]
    return plan["Execution Time"], top.get("Shared Hit Blocks", 0) + top.get(
        "Shared Read Blocks", 0
    )


def server_settings(conn: Any) -> dict[str, str]:
    names = ["autovacuum", "synchronous_commit", "fsync", "shared_buffers", "server_version"]
    return {n: conn.execute(f"SHOW {n}").fetchone()[0] for n in names}


def w7(
    store: PostgresStore,
    folder: str,
    rate: float,
    duration: float,
    hold: float,
    vacuum_every: float = 0.0,
    window: float = 5.0,
    warmup: float = 10.0,
    flags: list[str] = WORKER_FLAGS,
) -> dict[str, Any]:
    url = store.fresh("w7")
    store.analyze(url)
    # The hold sits in the middle of the stream, on window boundaries.
    hold_start = round((duration - hold) / 2 / window) * window
    hold_end = hold_start + hold
    app = Conveyor(url)

    @app.task(name="noop")
    async def task(i: int) -> None:
        return None

    processed, close = store.processed_reader(url)
    stat_conn = store._connect()
    settings = server_settings(stat_conn)
    holder = HeldSnapshot(store)
    vacuumer = Vacuumer(store, vacuum_every) if vacuum_every > 0 else None
    proc, log = start_worker(folder, url, "w7", flags)
    tick = 0.01
    sent = 0

    def sample(now: float) -> tuple[float, int, int, tuple[int, int], tuple[float, int]]:
        stats = table_stats(stat_conn, store.schema)
        return (now, processed(), sent, stats, ready_probe(stat_conn, store.schema))

    samples = [sample(0.0)]
    t0 = holder.t0 = time.perf_counter()
    if vacuumer is not None:
        vacuumer.t0 = t0
        vacuumer.start()
    next_sample = window
    k = 0
    try:
        while True:
            now = time.perf_counter() - t0
            if now >= duration:
                break
            due = int(rate * now) - sent
            while due > 0:  # a producer that fell behind catches up in calls of <= 5000
                batch = min(due, 5000)
                task.enqueue_many([[i] for i in range(sent, sent + batch)])
                sent += batch
                due -= batch
            if now >= hold_start and holder.ident is None:
                holder.start()
            if now >= hold_end and not holder.release.is_set():
                holder.release.set()
            if now >= next_sample:
                samples.append(sample(now))
                next_sample += window
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited with {proc.returncode}; see {log}")
            k += 1
            time.sleep(max(0.0, t0 + k * tick - time.perf_counter()))
        samples.append(sample(time.perf_counter() - t0))
    finally:
        holder.release.set()
        if vacuumer is not None:
            vacuumer.finish()
        processes.stop(proc)
        app.close()
        close()
        holder.join(30)
        size = stat_conn.execute(
            f"SELECT pg_total_relation_size('{store.schema}.jobs')"
        ).fetchone()[0]
        stat_conn.close()

    windows = []
    for i in range(1, len(samples)):
        (ta, pa, sa, _, _), (tb, pb, sb, (dead, vacuums), probe) = samples[i - 1], samples[i]
        start, end = (i - 1) * window, i * window  # nominal bounds, for the phases
        phase = (
            "warmup"
            if start < warmup
            else "before"
            if end <= hold_start
            else "hold"
            if start >= hold_start and end <= hold_end
            else "after"
            if start >= hold_end
            else "edge"
        )
        windows.append(
            {
                "t": round(tb, 3),
                "phase": phase,
                "jobs_per_s": (pb - pa) / (tb - ta),
                "enqueued_per_s": (sb - sa) / (tb - ta),
                "backlog": sb - pb,
                "dead_tuples": dead,
                "autovacuums": vacuums,
                "ready_probe_ms": probe[0],
                "ready_probe_buffers": probe[1],
            }
        )

    def rates(phase: str) -> list[float]:
        return [w["jobs_per_s"] for w in windows if w["phase"] == phase]

    before, during, after = rates("before"), rates("hold"), rates("after")
    steady = statistics.mean(before) if before else float("nan")
    hold_min = min(during) if during else float("nan")
    after_mean = statistics.mean(after) if after else float("nan")
    peak = max(w["jobs_per_s"] for w in windows)
    # After the commit: when the backlog is back under twice its worst before the hold.
    normal = 2 * max((w["backlog"] for w in windows if w["phase"] == "before"), default=0)
    cleared = [w["t"] for w in windows if w["phase"] == "after" and w["backlog"] <= normal]
    return {
        "rate": rate,
        "duration_s": duration,
        "hold_s": hold,
        "hold_start_s": hold_start,
        "window_s": window,
        "sent": sent,
        "processed": samples[-1][1],
        "backlog_end": samples[-1][2] - samples[-1][1],
        "peak_jobs_per_s": peak,
        "steady_jobs_per_s": steady,
        "hold_min_jobs_per_s": hold_min,
        "hold_mean_jobs_per_s": statistics.mean(during) if during else float("nan"),
        "hold_min_pct_of_steady": 100 * hold_min / steady,
        "after_mean_jobs_per_s": after_mean,
        "after_mean_pct_of_steady": 100 * after_mean / steady,
        "backlog_at_commit": max(
            (w["backlog"] for w in windows if w["phase"] == "hold"), default=0
        ),
        "backlog_cleared_after_commit_s": cleared[0] - hold_end if cleared else None,
        "jobs_table_bytes_end": size,
        "held": holder.info,
        "vacuum_every_s": vacuum_every,
        "vacuums": vacuumer.runs if vacuumer is not None else [],
        "server": settings,
        "windows": windows,
    }


# ---------------------------------------------------------------------------
def summary(
    store: Any, workload: str, runs: list[dict[str, Any]], date: str, key: str
) -> dict[str, Any]:
    values = [r[key] for r in runs]
    return {
        "peer": store.peer,
        "backend": store.backend,
        "store": store.name,
        "workload": workload,
        "date": date,
        "status": "ok",
        "runs": runs,
        key: statistics.median(values),
        f"{key}_min": min(values),
        f"{key}_max": max(values),
    }


def write(out: str, lines: list[dict[str, Any]]) -> None:
    """Replace the lines of the same (peer, workload, variant), keep the others."""

    def key(line: dict[str, Any]) -> tuple[Any, ...]:
        return (line.get("peer"), line.get("workload"), line.get("variant", ""))

    new = {key(line) for line in lines}
    kept = []
    if os.path.exists(out):
        with open(out) as f:
            for text in f:
                if text.strip():
                    old = json.loads(text)
                    if key(old) not in new:
                        kept.append(old)
    with open(out, "w") as f:
        for line in kept + lines:
            f.write(json.dumps(line) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default="W2n,W6,W7")
    parser.add_argument("--stores", default="sqlite,postgres,redis", help="sqlite, postgres, redis")
    parser.add_argument("--runs", type=int, default=3, help="runs of W2n and W6 (W7: one)")
    parser.add_argument("--n", type=int, default=100_000, help="W2n jobs")
    parser.add_argument("--big", type=int, default=1_000_000, help="W6 waiting jobs")
    parser.add_argument(
        "--rate", type=float, default=0.0, help="W7 jobs/s (default: half the W2n rate)"
    )
    parser.add_argument("--duration", type=float, default=600.0, help="W7 seconds")
    parser.add_argument("--hold", type=float, default=60.0, help="W7 seconds of the snapshot")
    parser.add_argument(
        "--vacuum-every",
        type=float,
        default=0.0,
        help="W7: VACUUM the jobs table every N seconds, throttled like autovacuum "
        "(for a server with autovacuum off; 0: never)",
    )
    parser.add_argument("--pg-dsn", default=PG_DSN, help="PostgreSQL (default: $PG_DSN)")
    parser.add_argument("--redis-url", default=REDIS_URL, help="Redis (default: $REDIS_URL)")
    parser.add_argument(
        "--flags",
        default=" ".join(WORKER_FLAGS),
        help="the worker's flags (default: the peer adapters'); W2n lines of other flags "
        "are kept apart, as a variant",
    )
    parser.add_argument("--out", default=os.path.join(HERE, "results", "own.jsonl"))
    opts = parser.parse_args()
    flags = opts.flags.split()
    os.makedirs(os.path.dirname(opts.out), exist_ok=True)
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    workloads = opts.workloads.split(",")
    for workload in workloads:
        if workload not in ("W2n", "W6", "W7"):
            raise SystemExit(f"unknown workload {workload!r}")
    lines = []
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-") as folder:
        stores: list[Any] = []
        for name in opts.stores.split(","):
            if name == "sqlite":
                stores.append(SQLiteStore(folder))
            elif name == "postgres":
                stores.append(PostgresStore(opts.pg_dsn, PG_SCHEMA))
            elif name == "redis":
                stores.append(RedisStore(opts.redis_url, REDIS_PREFIX))
            else:
                raise SystemExit(f"unknown store {name!r} (sqlite, postgres, redis)")
        for store in stores:
            drain_rate = 0.0
            for workload in workloads:
                if workload == "W7":
                    if store.name != "postgres":
                        continue
                    if not opts.rate and not drain_rate:
                        drain_rate = w2n(store, folder, opts.n, flags)["jobs_per_s"]
                    rate = opts.rate or drain_rate / 2
                    run = w7(
                        store,
                        folder,
                        rate,
                        opts.duration,
                        opts.hold,
                        opts.vacuum_every,
                        flags=flags,
                    )
                    line = {
                        "peer": store.peer,
                        "backend": store.backend,
                        "store": store.name,
                        "workload": "W7",
                        "variant": f"vacuum every {opts.vacuum_every:g} s"
                        if opts.vacuum_every
                        else "",
                        "date": date,
                        "status": "ok",
                        # the W2n rate of this invocation (None when --rate set the pace)
                        "peak_drain_jobs_per_s": drain_rate or None,
                        "flags": "conveyor worker " + " ".join(flags),
                        **run,
                    }
                    if drain_rate:
                        line["hold_min_pct_of_peak_drain"] = (
                            100 * run["hold_min_jobs_per_s"] / drain_rate
                        )
                    brief = {k: v for k, v in line.items() if k != "windows"}
                    for w in run["windows"]:
                        print(
                            f"  W7 t={w['t']:7.1f}s {w['phase']:6} {w['jobs_per_s']:9.0f} jobs/s"
                            f"  backlog {w['backlog']:7d}  dead rows {w['dead_tuples']:8d}"
                            f"  ready probe {w['ready_probe_ms']:7.2f} ms"
                            f" {w['ready_probe_buffers']:6d} buffers",
                            flush=True,
                        )
                    print(json.dumps(brief), flush=True)
                    lines.append(line)
                    continue
                runs = []
                for _ in range(opts.runs):
                    if workload == "W2n":
                        runs.append(w2n(store, folder, opts.n, flags))
                    else:
                        runs.append(w6(store, opts.big, 1000))
                key = "jobs_per_s" if workload == "W2n" else "ratio"
                line = summary(store, workload, runs, date, key)
                if store.name in ("postgres", "redis"):
                    line["server"] = store.settings()
                if workload == "W2n":
                    line["n"] = opts.n
                    line["flags"] = "conveyor worker " + " ".join(flags)
                    if flags != WORKER_FLAGS:
                        line["variant"] = "flags " + " ".join(flags)
                    drain_rate = line["jobs_per_s"]
                else:
                    for k in ("claim_ms_small", "claim_ms_big"):
                        line[k] = statistics.median(r[k] for r in runs)
                print(json.dumps(line), flush=True)
                lines.append(line)
            store.drop()
    write(opts.out, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
