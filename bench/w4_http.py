"""W4 (own): HTTP steps, drained by one worker process.

``--jobs`` HTTP jobs (10,000) of three steps each, stored as ``POST /v1/jobs`` stores
them (:func:`conveyor.web.submit.build_job`), in one ``enqueue`` before the clock starts::

    a  POST   /a                                   {"n": i}      → 201 {"id": <int>}
    b  GET    /b/{{ steps.a.response.json.id }}                  → 200 {"id": ..., "ok": true}
    c  DELETE /c                                                 → 200 {"deleted": true}

then ONE ``conveyor worker`` process (a subprocess: ``--url URL -q default -c C``, with
``CONVEYOR_HTTP_ALLOW=127.0.0.0/8`` so that its SSRF guard lets it reach the target) is
timed from its spawn until the store has recorded every job; ``steps_per_s`` is
``3 * jobs / seconds``. ``steps_per_s_running`` leaves out the start-up: from the target's
first request (its clock and ours are both ``CLOCK_MONOTONIC``) to the last job recorded.
Each run then checks that every job succeeded and that the target answered every step once.

The target is an aiohttp.web application (on uvloop when installed) in a separate
process, so that it shares neither the worker's loop nor its GIL; ``--targets N`` starts N
such processes on one port (``SO_REUSEPORT``). Its ceiling is measured first with ``wrk``
(Debian's package, when installed): the same three requests, in turn, over 64 keep-alive
connections, for ``--ceiling-duration`` seconds. The CPU time the worker and the target
use per step is read from ``/proc``, and so is what every other process used meanwhile
(``others_cores``: the store's server included, and whatever else shares the machine);
``--quiet 0.3`` waits before each run (up to ``--quiet-wait`` seconds) until that other
work uses under 0.3 cores.

Stores (``--url``, repeatable; default a SQLite file in a temporary folder): a
``postgresql://`` URL gets the schema ``bench_conveyor_w4`` of that database, dropped and
migrated again before every run (then ANALYZEd); a ``redis://`` URL the namespace
``bench_conveyor_w4`` (or its ``?prefix=``), its keys deleted before every run (see
``bench/own.py``).
``--concurrency 16,64,128`` runs the worker at each ``-c``; the runs (``--runs``, 3)
interleave the concurrencies so that the machine's noise spreads over all of them.

Writes one JSON line per (store, concurrency) and one for the ceiling to ``--out``
(replacing the lines of the same peer, workload and variant and keeping the others: the
format of ``bench/own.py``), prints them and a short table. Usage::

    python bench/w4_http.py [--url URL ...] [--jobs 10000] [--concurrency 16,64,128]
                            [--runs 3] [--targets 1] [--out bench/results/own.jsonl]
    python bench/w4_http.py --url postgresql://postgres@127.0.0.1:5432/test \\
                            --url redis://127.0.0.1:6379/15 --concurrency 64
    python bench/w4_http.py --jobs 3000 --runs 1 --concurrency 64 --py-spy /tmp/w4.txt
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from own import PostgresStore, RedisStore, SQLiteStore, write  # noqa: E402
from processes import free_port, start, stop, wait_listening  # noqa: E402

from conveyor.backends import create_backend  # noqa: E402
from conveyor.job import Job  # noqa: E402

SCHEMA = "bench_conveyor_w4"
PEERS = {"sqlite": "conveyor_sqlite", "postgres": "conveyor_pg", "redis": "conveyor_redis"}
STEPS = 3

#: The job as a client would POST it; ``{base}`` and ``{i}`` are filled per job.
JOB: dict[str, Any] = {
    "steps": [
        {"name": "a", "method": "POST", "url": "{base}/a", "body": {"n": "{i}"}},
        {"name": "b", "url": "{base}/b/{{ steps.a.response.json.id }}"},
        {"name": "c", "method": "DELETE", "url": "{base}/c"},
    ]
}

#: wrk's script for the ceiling: the three requests of a job, in turn, on every connection.
WRK_LUA = r"""
local requests = {}
local i = 0
function init(args)
  -- here, not at load time: wrk knows the Host header only once a thread starts
  local json = {["Host"] = wrk.host .. ":" .. wrk.port, ["Content-Type"] = "application/json"}
  requests = {
    wrk.format("POST", "/a", json, '{"n":1}'),
    wrk.format("GET", "/b/1"),
    wrk.format("DELETE", "/c"),
  }
end
function request()
  i = i % 3 + 1
  return requests[i]
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'W4 {"requests":%d,"duration_us":%d,"errors":%d,"bad_status":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
"""


# ---------------------------------------------------------------------------
# The target: run as ``w4_http.py --serve-target PORT CONTROL_PORT``
# ---------------------------------------------------------------------------
def serve_target(port: int, control_port: int, reuse_port: bool) -> None:
    """Small JSON answers on ``port``; ``/stats`` and ``/reset`` on ``control_port`` (its
    own, so that with several target processes each one can be asked)."""
    from aiohttp import web

    counts = {"a": 0, "b": 0, "c": 0, "bad": 0}
    span = [0.0, 0.0]  # monotonic time of the first and the last request since /reset
    issued = 0

    def seen(route: str) -> None:
        now = time.monotonic()
        if not span[0]:
            span[0] = now
        span[1] = now
        counts[route] += 1

    async def a(request: web.Request) -> web.Response:
        nonlocal issued
        await request.read()
        issued += 1
        seen("a")
        return web.json_response({"id": issued}, status=201)

    async def b(request: web.Request) -> web.Response:
        ident = request.match_info["ident"]
        if not ident.isdigit():  # the placeholder was not filled in
            seen("bad")
            return web.json_response({"error": "unknown id"}, status=404)
        seen("b")
        return web.json_response({"id": int(ident), "ok": True})

    async def c(request: web.Request) -> web.Response:
        seen("c")
        return web.json_response({"deleted": True})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({**counts, "first": span[0], "last": span[1]})

    async def reset(request: web.Request) -> web.Response:
        for key in counts:
            counts[key] = 0
        span[0] = span[1] = 0.0
        return web.json_response({})

    async def main() -> None:
        target = web.Application()
        target.router.add_post("/a", a)
        target.router.add_get("/b/{ident}", b)
        target.router.add_delete("/c", c)
        control = web.Application()
        control.router.add_get("/stats", stats)
        control.router.add_post("/reset", reset)
        runners = [web.AppRunner(target, access_log=None), web.AppRunner(control)]
        for runner in runners:
            await runner.setup()
        await web.TCPSite(runners[0], "127.0.0.1", port, reuse_port=reuse_port).start()
        await web.TCPSite(runners[1], "127.0.0.1", control_port).start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        for runner in runners:
            await runner.cleanup()

    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())  # the target must not be what limits the worker


class Targets:
    """``count`` target processes sharing one port."""

    def __init__(self, count: int, folder: str) -> None:
        self.port = free_port()
        self.controls = [free_port() for _ in range(count)]
        self.procs: list[subprocess.Popen[bytes]] = []
        for n, control in enumerate(self.controls):
            cmd = [sys.executable, __file__, "--serve-target", str(self.port), str(control)]
            if count > 1:
                cmd.append("--reuse-port")
            log = os.path.join(folder, f"target-{n}.log")
            self.procs.append(start(cmd, dict(os.environ), log))
            wait_listening(self.procs[-1], control, "/stats", log)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        for control in self.controls:
            control_call(control, "POST", "/reset")

    def stats(self) -> dict[str, float]:
        total = {"a": 0.0, "b": 0.0, "c": 0.0, "bad": 0.0}
        firsts, lasts = [], []
        for control in self.controls:
            one = control_call(control, "GET", "/stats")
            for key in total:
                total[key] += one[key]
            if one["first"]:
                firsts.append(one["first"])
                lasts.append(one["last"])
        return {**total, "first": min(firsts, default=0.0), "last": max(lasts, default=0.0)}

    def cpu(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.procs)

    def stop(self) -> None:
        for proc in self.procs:
            stop(proc)


def control_call(port: int, method: str, path: str) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path)
        answer = conn.getresponse()
        result: dict[str, Any] = json.loads(answer.read())
        return result
    finally:
        conn.close()


# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------
def cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a process, its threads included."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_seconds(pid: int) -> float:
    return sum(cpu_times(pid))


def machine_times() -> tuple[float, float]:
    """CPU seconds the whole machine was busy, and seconds stolen by the hypervisor."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


def wait_quiet(cores: float, longest: float) -> float:
    """Wait until the machine's other work used under ``cores`` over 2 s (a shared machine
    runs other people's jobs), at most ``longest`` seconds; the load last seen."""
    deadline = time.monotonic() + longest
    while True:
        busy = machine_times()[0]
        time.sleep(2.0)
        load = (machine_times()[0] - busy) / 2.0
        if load < cores or time.monotonic() > deadline:
            return load


# ---------------------------------------------------------------------------
# Stores and jobs
# ---------------------------------------------------------------------------
def store_for(url: str | None, folder: str) -> Any:
    """The store of ``--url`` (``own.py``'s classes: a fresh one per run, its counter);
    ``sqlite`` or none: a file in the temporary folder."""
    if url is None or url == "sqlite":
        return SQLiteStore(folder)
    if url.startswith("sqlite:"):  # w4.db in that file's folder, emptied before each run
        return SQLiteStore(os.path.dirname(os.path.abspath(url.removeprefix("sqlite:///"))))
    if url.startswith(("postgresql:", "postgres:")):
        return PostgresStore(url, SCHEMA)
    if url.startswith(("redis:", "rediss:")):
        # A ?prefix= of the URL names the namespace (whose keys each run deletes).
        parts = urllib.parse.urlsplit(url)
        query = urllib.parse.parse_qsl(parts.query)
        prefix = next((v for k, v in query if k == "prefix"), SCHEMA)
        rest = urllib.parse.urlencode([(k, v) for k, v in query if k != "prefix"])
        return RedisStore(urllib.parse.urlunsplit(parts._replace(query=rest)), prefix)
    raise SystemExit(f"--url: a sqlite:, postgresql: or redis: URL, not {url!r}")


def make_jobs(base: str, count: int) -> list[Job]:
    """``count`` jobs as the API stores a ``POST /v1/jobs`` of :data:`JOB` (read token,
    request digest, step requests with their defaults), by an admin key."""
    from conveyor.steps.guard import Guard
    from conveyor.web.auth import ADMIN
    from conveyor.web.models import JobIn
    from conveyor.web.settings import ApiSettings
    from conveyor.web.submit import build_job, check, request_digest

    settings = ApiSettings(guard=Guard(["127.0.0.0/8"]))
    now = time.time()
    jobs = []
    for i in range(count):
        body = json.loads(json.dumps(JOB).replace("{base}", base).replace("{i}", str(i)))
        spec = JobIn.model_validate(body)
        if i == 0 and check(spec, settings):
            raise RuntimeError(f"the API would refuse the job: {check(spec, settings)}")
        job, _ = build_job(
            spec, ADMIN, settings, digest=request_digest(body), idempotency_key=None, now=now
        )
        jobs.append(job)
    return jobs


async def enqueue(url: str, jobs: list[Job]) -> None:
    backend = create_backend(url)
    await backend.open()
    try:
        await backend.enqueue(jobs)
    finally:
        await backend.close()


async def final_counts(url: str) -> dict[str, int]:
    backend = create_backend(url)
    await backend.open()
    try:
        return dict((await backend.stats()).counts)
    finally:
        await backend.close()


# ---------------------------------------------------------------------------
# One run
# ---------------------------------------------------------------------------
def run_once(
    store: Any, targets: Targets, folder: str, concurrency: int, opts: argparse.Namespace
) -> dict[str, Any]:
    url = store.fresh("w4")
    jobs = make_jobs(targets.base, opts.jobs)
    t = time.monotonic()
    asyncio.run(enqueue(url, jobs))
    preload = time.monotonic() - t
    store.analyze(url)
    processed, close = store.processed_reader(url)
    targets.reset()
    load_before = wait_quiet(opts.quiet, opts.quiet_wait) if opts.quiet else None
    conveyor_bin = os.path.join(os.path.dirname(sys.executable), "conveyor")
    cmd = [conveyor_bin, "worker", "--url", url, "-q", "default", "-c", str(concurrency)]
    cmd += opts.worker_args.split()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env["CONVEYOR_HTTP_ALLOW"] = "127.0.0.0/8"
    log = os.path.join(folder, f"worker-{store.name}-c{concurrency}.log")
    target_cpu = targets.cpu()
    busy, steal = machine_times()
    own = time.process_time()
    t_spawn = time.monotonic()
    worker = start(cmd, env, log)
    spy = None
    if opts.py_spy and not opts.spied:
        opts.spied = True  # the first run only: py-spy takes a share of the cores
        spy = subprocess.Popen(
            [
                os.path.join(os.path.dirname(sys.executable), "py-spy"),
                "record",
                "-p",
                str(worker.pid),
                "-o",
                opts.py_spy,
                "-f",
                "raw",
                "-r",
                "100",
                "--nonblocking",  # never pause the worker to sample it
                "--threads",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    try:
        while processed() < opts.jobs:
            if worker.poll() is not None:
                with open(log) as f:
                    raise RuntimeError(f"worker exited with {worker.returncode}:\n{f.read()}")
            if time.monotonic() - t_spawn > opts.timeout:
                raise RuntimeError(f"not done after {opts.timeout} s: {processed()} jobs; {log}")
            time.sleep(0.02)
        t_done = time.monotonic()
        worker_user, worker_sys = cpu_times(worker.pid)
        target_cpu = targets.cpu() - target_cpu
        busy_end, steal_end = machine_times()
        own = time.process_time() - own
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            spy.wait(30)
        stop(worker)
        close()
    served = targets.stats()
    counts = asyncio.run(final_counts(url))
    if counts.get("succeeded") != opts.jobs:
        raise RuntimeError(f"not every job succeeded: {counts}; see {log}")
    if any(served[k] != opts.jobs for k in ("a", "b", "c")) or served["bad"]:
        raise RuntimeError(f"the target answered {served}, not {opts.jobs} of each step")
    seconds = t_done - t_spawn
    steps = STEPS * opts.jobs
    # The machine is shared: what everything else used meanwhile, in cores.
    others = busy_end - busy - worker_user - worker_sys - target_cpu - own
    return {
        "seconds": seconds,
        "steps_per_s": steps / seconds,
        "startup_s": served["first"] - t_spawn,
        "steps_per_s_running": steps / (t_done - served["first"]),
        "worker_cpu_us_per_step": 1e6 * (worker_user + worker_sys) / steps,
        "worker_sys_us_per_step": 1e6 * worker_sys / steps,
        "target_cpu_us_per_step": 1e6 * target_cpu / steps,
        "preload_s": preload,
        "others_cores": max(0.0, others) / seconds,
        "others_cores_before": load_before,
        "steal_pct": 100 * (steal_end - steal) / (seconds * (os.cpu_count() or 1)),
    }


def ceiling(targets: Targets, folder: str, opts: argparse.Namespace) -> dict[str, Any] | None:
    """What the target serves to wrk: the three requests in turn, 64 connections."""
    wrk = shutil.which("wrk")
    if wrk is None:
        print("W4: wrk is not installed: no ceiling of the target", file=sys.stderr)
        return None
    script = os.path.join(folder, "w4.lua")
    with open(script, "w") as f:
        f.write(WRK_LUA)
    cmd = [wrk, "-t1", "-c64", f"-d{opts.ceiling_duration:g}s", "-s", script, targets.base]
    cpu = targets.cpu()
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    cpu = targets.cpu() - cpu
    lines = [line for line in done.stdout.splitlines() if line.startswith("W4 ")]
    if not lines:
        raise RuntimeError(f"wrk printed no summary:\n{done.stdout}\n{done.stderr}")
    result: dict[str, Any] = json.loads(lines[-1][3:])
    if result["errors"] or result["bad_status"]:
        raise RuntimeError(f"the ceiling run saw errors: {result}")
    result["req_per_s"] = result["requests"] / (result["duration_us"] / 1e6)
    result["target_cpu_us_per_req"] = 1e6 * cpu / max(1, result["requests"])
    return result


# ---------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", action="append", help="a store (repeatable; default SQLite)")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--concurrency", default="16,64,128", help="the worker's -c values")
    parser.add_argument("--worker-args", default="", help="more flags for conveyor worker")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--targets", type=int, default=1, help="target processes")
    parser.add_argument("--ceiling-duration", type=float, default=10.0, help="0: no ceiling")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per run")
    parser.add_argument(
        "--quiet",
        type=float,
        default=0.0,
        help="before each run, wait until other work uses under this many cores (0: never)",
    )
    parser.add_argument(
        "--quiet-wait", type=float, default=300.0, help="the longest such wait, seconds"
    )
    parser.add_argument("--py-spy", help="py-spy record the first run's worker into this file")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "own.jsonl"))
    parser.add_argument("--serve-target", nargs=2, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.serve_target:
        serve_target(*opts.serve_target, opts.reuse_port)
        return 0
    opts.spied = False
    # A stopped benchmark stops its target and worker too (the finally blocks below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    concurrencies = [int(c) for c in opts.concurrency.split(",")]
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="conveyor-w4-") as folder:
        stores = [store_for(url, folder) for url in opts.url or [None]]
        targets = Targets(opts.targets, folder)
        try:
            if opts.ceiling_duration > 0:
                top = ceiling(targets, folder, opts)
                if top is not None:
                    print(
                        f"  W4 ceiling: {top['req_per_s']:8.0f} req/s"
                        f"  target {top['target_cpu_us_per_req']:5.1f} µs/req"
                        f"  p50 {top['p50_us'] / 1000:.2f} ms",
                        flush=True,
                    )
                    lines.append(
                        {
                            "peer": "aiohttp_target",
                            "backend": "none",
                            "workload": "W4",
                            "variant": f"ceiling, {opts.targets} process(es)",
                            "date": date,
                            "status": "ok",
                            "tool": "wrk -t1 -c64",
                            **top,
                        }
                    )
            for store in stores:
                runs: dict[int, list[dict[str, Any]]] = {c: [] for c in concurrencies}
                for run in range(opts.runs):
                    for c in concurrencies:
                        result = run_once(store, targets, folder, c, opts)
                        runs[c].append(result)
                        print(
                            f"  W4 {store.name:8} run {run + 1} -c {c:<4}"
                            f" {result['steps_per_s']:7.0f} steps/s"
                            f" ({result['steps_per_s_running']:7.0f} after start-up)"
                            f"  worker {result['worker_cpu_us_per_step']:5.0f} µs/step"
                            f" ({result['worker_sys_us_per_step']:3.0f} sys)"
                            f"  target {result['target_cpu_us_per_step']:5.0f} µs/step"
                            f"  others {result['others_cores']:.2f} cores"
                            f"  steal {result['steal_pct']:.0f} %",
                            flush=True,
                        )
                store.drop()
                for c in concurrencies:
                    lines.append(line_of(store, c, runs[c], date, opts))
        finally:
            targets.stop()
    for line in lines:
        print(json.dumps({k: v for k, v in line.items() if k != "runs"}), flush=True)
    os.makedirs(os.path.dirname(opts.out), exist_ok=True)
    write(opts.out, lines)
    print(table(lines))
    return 0


def line_of(
    store: Any, concurrency: int, runs: list[dict[str, Any]], date: str, opts: argparse.Namespace
) -> dict[str, Any]:
    def median(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    rates = [r["steps_per_s"] for r in runs]
    flags = f"-q default -c {concurrency} {opts.worker_args}".strip()
    return {
        "peer": PEERS[store.name],
        "backend": store.backend,
        "store": store.name,
        "workload": "W4",
        "variant": f"-c {concurrency}",
        "date": date,
        "status": "ok",
        "jobs": opts.jobs,
        "steps": STEPS * opts.jobs,
        "targets": opts.targets,
        "flags": f"conveyor worker {flags}",
        "steps_per_s": median("steps_per_s"),
        "steps_per_s_min": min(rates),
        "steps_per_s_max": max(rates),
        **{
            k: median(k)
            for k in (
                "steps_per_s_running",
                "startup_s",
                "worker_cpu_us_per_step",
                "worker_sys_us_per_step",
                "target_cpu_us_per_step",
                "others_cores",
                "steal_pct",
            )
        },
        "runs": runs,
    }


def table(lines: list[dict[str, Any]]) -> str:
    rows = ["| store | -c | steps/s (min-max) | after start-up | worker µs/step | target µs/step |"]
    rows.append("|---|--:|--:|--:|--:|--:|")
    for line in lines:
        if line["peer"] == "aiohttp_target":
            continue
        rows.append(
            f"| {line['store']} | {re.sub(r'^-c ', '', line['variant'])}"
            f" | {line['steps_per_s']:,.0f} ({line['steps_per_s_min']:,.0f}-"
            f"{line['steps_per_s_max']:,.0f}) | {line['steps_per_s_running']:,.0f}"
            f" | {line['worker_cpu_us_per_step']:.0f} | {line['target_cpu_us_per_step']:.0f} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    raise SystemExit(main())
