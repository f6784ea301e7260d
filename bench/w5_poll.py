"""W5 (own): polling the HTTP API.

1,000 active HTTP jobs (queued, never run: there is no worker) are polled through their
capability URLs by ``--connections`` concurrent clients (64) against ONE API process
(``conveyor api``, a subprocess on a free port); the load comes from a second process,
``wrk`` (Debian's package), cycling over the 1,000 URLs with a Lua script. Four
variants, each run ``--runs`` times (3), interleaved so that the machine's noise
spreads over all of them:

``304``        ``GET /v1/jobs/{id}?token=...`` with ``If-None-Match`` the job's ETag
``200 token``  the same without ``If-None-Match``: the whole document
``200 key``    ``GET /v1/jobs/{id}`` with ``Authorization: Bearer <admin key>``
``ceiling``    a bare Starlette route answering a constant ``200`` from a second
               uvicorn process with the API's uvicorn settings and event loop
               (``conveyor.web.server``): what one process of this machine can serve

Stores (``--url``, repeatable, one API process each; default ``sqlite``: a file in a
temporary folder), each fresh: a ``postgresql://`` URL gets the schema
``bench_conveyor_w5`` of that database, dropped and migrated first; a ``redis://`` URL
the namespace ``bench_conveyor_w5`` (or its ``?prefix=``), its keys deleted first. The
jobs are submitted through ``POST /v1/jobs``, as a client would; each variant is checked
to answer what it should before anything is timed. The ceiling is measured between the
runs of every store.

Each run reports requests per second, wrk's latency percentiles (from its Lua ``done``
hook, in microseconds), the CPU time the server process and wrk used per request, and
checks the API's ``conveyor_api_polls_total`` counters: every answer counted must have
the variant's status. Writes one JSON line per (store, variant) and one for the ceiling
to ``--out`` (replacing the lines of the same peer, workload and variant, keeping the
others: the format of ``bench/own.py``), prints them and a short table per store.
Usage::

    python bench/w5_poll.py [--url sqlite|URL ...] [--runs 3] [--duration 10]
                            [--connections 64] [--threads 2] [--out bench/results/own.jsonl]
    python bench/w5_poll.py --url sqlite --url postgresql://postgres@127.0.0.1:5432/test \\
                            --url redis://127.0.0.1:6379/15
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import re
import resource
import secrets
import shutil
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

SCHEMA = "bench_conveyor_w5"
VARIANTS = ("304", "200 token", "200 key", "ceiling")
#: What each variant's answers must be, as counted by the API (the ceiling counts nothing).
STATUS = {"304": "304", "200 token": "200", "200 key": "200"}
#: The mode of the Lua script for each variant.
MODES = {"304": "304", "200 token": "token", "200 key": "key", "ceiling": "ceiling"}

#: Two HTTP steps, as a typical client job; nothing runs them here.
JOB = {
    "steps": [
        {"name": "fetch", "url": "https://example.com/orders/{i}", "timeout": 10},
        {
            "name": "notify",
            "method": "POST",
            "url": "https://example.com/hooks/order-fetched",
            "body": {"order": "{{steps.fetch.response.body}}"},
            "max_attempts": 5,
        },
    ],
    "metadata": {"order": "{i}"},
}

#: wrk's script: each thread cycles over the targets from its own offset; ``done``
#: prints one JSON line of the summary and the latency percentiles (microseconds).
WRK_LUA = r"""
local mode = os.getenv("W5_MODE")
local key = os.getenv("W5_KEY")
local targets = {}
for line in io.lines(os.getenv("W5_TARGETS")) do
  local path, etag = line:match("^(%S+) (%S+)$")
  targets[#targets + 1] = {path, etag}
end
local threads = 0
function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end
local requests = {}
local i = 0
function init(args)
  for n, t in ipairs(targets) do
    local path, headers = t[1], {}
    if mode == "304" then
      headers["If-None-Match"] = t[2]
    elseif mode == "key" then
      path = path:gsub("%?.*$", "")
      headers["Authorization"] = "Bearer " .. key
    elseif mode == "ceiling" then
      path = "/"
    end
    requests[n] = wrk.format("GET", path, headers)
  end
  i = (id or 0) * 397
end
function request()
  i = i % #requests + 1
  return requests[i]
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'W5 {"requests":%d,"duration_us":%d,"bytes":%d,"errors":%d,"bad_status":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
"""

CEILING_APP = """
import asyncio, sys
import uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
from conveyor.eventloop import run_loop
from conveyor.garbage import settle_for_service
from conveyor.web import server

async def constant(request):
    return Response(b'{"ok":true}', media_type="application/json")

app = Starlette(routes=[Route("/", constant)])
config = uvicorn.Config(app, host="127.0.0.1", port=int(sys.argv[1]), **server.UVICORN_OPTIONS)
settle_for_service()  # as conveyor.web.server.serve does
run_loop(uvicorn.Server(config).serve())
"""


# ---------------------------------------------------------------------------
# The store, the servers and the jobs
# ---------------------------------------------------------------------------
def fresh_store(url: str | None, folder: str) -> tuple[str, Any, str]:
    """A fresh store (``own.py``'s classes): its URL, a drop() for the end, and its name
    for the results. ``sqlite`` or none: a file in the temporary folder."""
    if url is None or url == "sqlite" or url.startswith("sqlite:"):
        where = folder if url in (None, "sqlite") else os.path.dirname(url[len("sqlite:///") :])
        return SQLiteStore(os.path.abspath(where)).fresh("w5"), lambda: None, "sqlite"
    if url.startswith(("postgresql:", "postgres:")):
        pg = PostgresStore(url, SCHEMA)
        return pg.fresh("w5"), pg.drop, "postgres"
    if url.startswith(("redis:", "rediss:")):
        # A ?prefix= of the URL names the namespace (whose keys are deleted first).
        parts = urllib.parse.urlsplit(url)
        query = urllib.parse.parse_qsl(parts.query)
        prefix = next((v for k, v in query if k == "prefix"), SCHEMA)
        rest = urllib.parse.urlencode([(k, v) for k, v in query if k != "prefix"])
        rd = RedisStore(urllib.parse.urlunsplit(parts._replace(query=rest)), prefix)
        return rd.fresh("w5"), rd.drop, "redis"
    raise SystemExit(f"--url: sqlite, or a sqlite:, postgresql: or redis: URL, not {url!r}")


def submit_jobs(port: int, key: str, count: int) -> list[tuple[str, str]]:
    """``count`` jobs through ``POST /v1/jobs``: their capability URLs and ETags."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    targets = []
    for i in range(count):
        body = json.dumps(JOB).replace("{i}", str(i))
        conn.request("POST", "/v1/jobs", body, headers)
        answer = conn.getresponse()
        answer.read()
        if answer.status != 202:
            raise RuntimeError(f"POST /v1/jobs answered {answer.status}")
        targets.append((answer.headers["Location"], answer.headers["ETag"]))
    conn.close()
    return targets


def check_targets(port: int, key: str, targets: list[tuple[str, str]]) -> None:
    """Each variant's request answers what it should (on a sample), before any timing."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for location, etag in targets[:: max(1, len(targets) // 10)]:
        for headers, expected in (
            ({"If-None-Match": etag}, 304),
            ({}, 200),
        ):
            conn.request("GET", location, headers=headers)
            answer = conn.getresponse()
            answer.read()
            if answer.status != expected or answer.headers["ETag"] != etag:
                raise RuntimeError(f"GET {location} {headers}: {answer.status}, not {expected}")
        conn.request("GET", location.split("?")[0], headers={"Authorization": f"Bearer {key}"})
        answer = conn.getresponse()
        document = json.loads(answer.read())
        if answer.status != 200 or document["state"] != "queued":
            raise RuntimeError(f"GET {location} by key: {answer.status} {document}")
    conn.close()


def poll_counts(port: int, key: str) -> dict[str, float]:
    """The API's ``conveyor_api_polls_total`` by status."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {key}"})
    text = conn.getresponse().read().decode()
    conn.close()
    pattern = r'^conveyor_api_polls_total\{status="(\d+)"\} (\S+)$'
    return {m[1]: float(m[2]) for m in re.finditer(pattern, text, re.M)}


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (every core, every process)."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq = map(int, f.readline().split()[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------
# One wrk run
# ---------------------------------------------------------------------------
def wrk(
    port: int, mode: str, env: dict[str, str], opts: argparse.Namespace, duration: float
) -> dict[str, Any]:
    cmd = [
        opts.wrk,
        f"-t{opts.threads}",
        f"-c{opts.connections}",
        f"-d{duration:g}s",
        "--timeout",
        "5s",
        "-s",
        env["W5_SCRIPT"],
        f"http://127.0.0.1:{port}",
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        cmd, env={**env, "W5_MODE": mode}, capture_output=True, text=True, check=True
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    lines = [line for line in done.stdout.splitlines() if line.startswith("W5 ")]
    if not lines:
        raise RuntimeError(f"wrk printed no summary:\n{done.stdout}\n{done.stderr}")
    result: dict[str, Any] = json.loads(lines[-1][3:])
    seconds = result["duration_us"] / 1e6
    result["req_per_s"] = result["requests"] / seconds
    for p in ("p50", "p90", "p99", "p999", "max"):
        result[f"{p}_ms"] = result.pop(f"{p}_us") / 1000
    result["wrk_cpu_s"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    result["wrk_cpu_us_per_req"] = 1e6 * result["wrk_cpu_s"] / max(1, result["requests"])
    return result


def measure(
    variant: str, server: tuple[int, int], key: str, env: dict[str, str], opts: argparse.Namespace
) -> dict[str, Any]:
    port, pid = server
    mode = MODES[variant]
    counted = STATUS.get(variant)
    counts = poll_counts(port, key) if counted else {}
    busy, cpu = machine_busy(), cpu_seconds(pid)
    result = wrk(port, mode, env, opts, opts.duration)
    cpu, busy = cpu_seconds(pid) - cpu, machine_busy() - busy
    result["server_cpu_us_per_req"] = 1e6 * cpu / max(1, result["requests"])
    # What the rest of the machine used meanwhile (the store's server among it), in cores:
    # on a shared machine, the noise the run had to live with (clock ticks: +-0.05).
    others = (busy - cpu - result["wrk_cpu_s"]) / (result["duration_us"] / 1e6)
    result["others_cores"] = max(0.0, others)
    if result["errors"] or result["bad_status"]:
        raise RuntimeError(f"{variant}: wrk saw errors: {result}")
    if counted:
        delta = {s: n - counts.get(s, 0) for s, n in poll_counts(port, key).items()}
        wrong = {s: n for s, n in delta.items() if s != counted and n}
        # wrk stops counting at the deadline; up to one answer per connection is
        # still on its way then.
        if wrong or not 0 <= delta.get(counted, 0) - result["requests"] <= opts.connections:
            raise RuntimeError(f"{variant}: the API counted {delta}, wrk {result['requests']}")
    return result


# ---------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", action="append", help="a store (repeatable; default SQLite)")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds per variant, once")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--wrk", default=shutil.which("wrk") or "wrk")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "own.jsonl"))
    opts = parser.parse_args()
    variants = opts.variants.split(",")
    for variant in variants:
        if variant not in VARIANTS:
            raise SystemExit(f"unknown variant {variant!r}: {', '.join(VARIANTS)}")
    if shutil.which(opts.wrk) is None:
        raise SystemExit("W5 needs wrk: apt-get install wrk (or --wrk PATH)")
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines: list[dict[str, Any]] = []
    ceiling_runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="conveyor-w5-") as folder:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
        ceiling_port, ceiling_log = free_port(), os.path.join(folder, "ceiling.log")
        ceiling = None
        if "ceiling" in variants:
            ceiling = start(
                [sys.executable, "-c", CEILING_APP, str(ceiling_port)], env, ceiling_log
            )
        try:
            if ceiling is not None:
                wait_listening(ceiling, ceiling_port, "/", ceiling_log)
            for url in opts.url or [None]:
                store, runs = one_store(url, folder, env, variants, (ceiling_port, ceiling), opts)
                here = runs.pop("ceiling", [])
                ceiling_runs += here
                store_lines = [
                    line_of(v, results, store, date, opts) for v, results in runs.items()
                ]
                lines += store_lines
                if here:  # the ceiling as measured between this store's runs
                    store_lines.append(line_of("ceiling", here, store, date, opts))
                print(summary_table(store_lines, store), flush=True)
        finally:
            if ceiling is not None:
                stop(ceiling)
    if ceiling_runs:
        lines.append(line_of("ceiling", ceiling_runs, "none", date, opts))
    for line in lines:
        print(json.dumps(line), flush=True)
    os.makedirs(os.path.dirname(opts.out), exist_ok=True)
    write(opts.out, lines)
    return 0


def one_store(
    url: str | None,
    folder: str,
    env: dict[str, str],
    variants: list[str],
    ceiling: tuple[int, subprocess.Popen[bytes] | None],
    opts: argparse.Namespace,
) -> tuple[str, dict[str, list[dict[str, Any]]]]:
    """The store's name, and the variants' runs against one API process on a fresh store
    (the ceiling's between them)."""
    store_url, drop, store = fresh_store(url, folder)
    key = secrets.token_urlsafe(32)
    api_port, api_log = free_port(), os.path.join(folder, f"api-{store}.log")
    conveyor_bin = os.path.join(os.path.dirname(sys.executable), "conveyor")
    api = start(
        [conveyor_bin, "api", "--url", store_url, "--port", str(api_port)],
        {**env, "CONVEYOR_ADMIN_KEYS": key},
        api_log,
    )
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    try:
        wait_listening(api, api_port, "/healthz", api_log)
        t = time.perf_counter()
        targets = submit_jobs(api_port, key, opts.jobs)
        took = time.perf_counter() - t
        print(f"W5 on {store}: {opts.jobs} jobs submitted in {took:.1f} s", flush=True)
        check_targets(api_port, key, targets)
        script = os.path.join(folder, "w5.lua")
        with open(script, "w") as f:
            f.write(WRK_LUA)
        target_file = os.path.join(folder, f"targets-{store}.txt")
        with open(target_file, "w") as f:
            f.writelines(f"{location} {etag}\n" for location, etag in targets)
        wrk_env = {**env, "W5_SCRIPT": script, "W5_TARGETS": target_file, "W5_KEY": key}
        servers = {v: (api_port, api.pid) for v in STATUS}
        if ceiling[1] is not None:
            servers["ceiling"] = (ceiling[0], ceiling[1].pid)
        for variant in variants:  # not timed: the first seconds of a fresh process
            wrk(servers[variant][0], MODES[variant], wrk_env, opts, opts.warmup)
        for run in range(opts.runs):
            for variant in variants:
                result = measure(variant, servers[variant], key, wrk_env, opts)
                runs[variant].append(result)
                print(
                    f"  W5 {store} run {run + 1} {variant:9} {result['req_per_s']:8.0f} req/s"
                    f"  p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:6.2f} ms"
                    f"  server {result['server_cpu_us_per_req']:5.1f} µs/req"
                    f"  wrk {result['wrk_cpu_us_per_req']:5.1f} µs/req"
                    f"  others {result['others_cores']:4.2f} cores",
                    flush=True,
                )
    finally:
        stop(api)
        drop()
    return store, runs


PEERS = {"sqlite": "conveyor_sqlite", "postgres": "conveyor_pg", "redis": "conveyor_redis"}


def server_stack() -> str:
    """What the API process serves with here: uvicorn's HTTP parser ("auto" takes httptools
    when installed) and the event loop of ``conveyor.eventloop.run_loop``."""
    import uvicorn

    try:
        import httptools

        http = f"httptools {httptools.__version__}"
    except ImportError:
        http = "h11"
    try:
        import uvloop

        loop = f"uvloop {uvloop.__version__}"
    except ImportError:
        loop = "asyncio"
    return f"uvicorn {uvicorn.__version__}, {http}, {loop}"


def line_of(
    variant: str, runs: list[dict[str, Any]], store: str, date: str, opts: argparse.Namespace
) -> dict[str, Any]:
    def median(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    rates = [r["req_per_s"] for r in runs]
    return {
        "peer": "starlette_bare" if variant == "ceiling" else PEERS[store],
        "backend": "none" if variant == "ceiling" else store,
        "server": server_stack(),
        "store": store,
        "workload": "W5",
        "variant": variant,
        "date": date,
        "status": "ok",
        "runs": runs,
        "req_per_s": statistics.median(rates),
        "req_per_s_min": min(rates),
        "req_per_s_max": max(rates),
        **{f"{p}_ms": median(f"{p}_ms") for p in ("p50", "p90", "p99", "p999")},
        "server_cpu_us_per_req": median("server_cpu_us_per_req"),
        "wrk_cpu_us_per_req": median("wrk_cpu_us_per_req"),
        "others_cores": median("others_cores"),
        "jobs": opts.jobs,
        "connections": opts.connections,
        "wrk_threads": opts.threads,
        "duration_s": opts.duration,
    }


def summary_table(lines: list[dict[str, Any]], store: str) -> str:
    rows = [
        "",
        f"W5 on {store}: {lines[0]['connections']} connections, one API process, "
        f"medians of {len(lines[0]['runs'])} runs",
        f"{'variant':10} {'req/s':>8} {'(min-max)':>15} {'p50 ms':>7} {'p99 ms':>7}"
        f" {'server µs/req':>14} {'others (cores)':>15}",
    ]
    for line in lines:
        span = f"{line['req_per_s_min']:,.0f}-{line['req_per_s_max']:,.0f}"
        rows.append(
            f"{line['variant']:10} {line['req_per_s']:8,.0f} {span:>15} {line['p50_ms']:7.2f}"
            f" {line['p99_ms']:7.2f} {line['server_cpu_us_per_req']:14.1f}"
            f" {line['others_cores']:15.2f}"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    raise SystemExit(main())
