#!/usr/bin/env bash
# `make bench`: conveyor (SQLite, PostgreSQL and Redis) beside the peers in one run of
# the shared harness, then W2 with no queue at all (bench/w2_bound.py: the job bodies
# alone, the most any W2 reaches on the machine; $BOUND_ARGS), conveyor's own workloads
# (W2n, W6 on every store; W7 on PostgreSQL; W2n again with larger batches, $BATCH_FLAGS;
# W4, HTTP steps, and W5, polling the HTTP API, on every store). Results go to
# bench/results/ (lines of other peers are kept).
#
#   bash bench/run.sh                       # conveyor_sqlite, conveyor_pg, conveyor_redis
#                                           # + the peers in PEERS
#   PEERS="huey_pg procrastinate" bash bench/run.sh
#   CONVEYOR="conveyor_pg" PEERS="huey_pg procrastinate" bash bench/run.sh   # PostgreSQL only
#   CONVEYOR="conveyor_redis" PEERS="huey dramatiq" OWN_ARGS="--stores redis" \
#       bash bench/run.sh                                                     # Redis only
#   BENCH_ARGS="--n 2000 --runs 1" OWN_ARGS="--runs 1 --n 20000 --big 100000 \
#       --duration 30 --hold 10" bash bench/run.sh                            # a quick look
#   W4_ARGS="--url sqlite --concurrency 64" bash bench/run.sh                # W4 on SQLite only
#   W5_ARGS="--url sqlite" bash bench/run.sh                                  # W5 on SQLite only
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
PEERS_DIR="${PEERS_DIR:-$ROOT/../shared/bench/peers}"
export PEERS_VENV="${PEERS_VENV:-/tmp/peers-venv}"
export RESULTS_DIR="${RESULTS_DIR:-$HERE/results}"
export PEERS_EXTRA_PATH="$HERE/peers"

if [ ! -d "$PEERS_DIR" ]; then
    echo "bench: the peer harness is not at $PEERS_DIR (set PEERS_DIR)" >&2
    exit 1
fi
if [ ! -x "$PEERS_VENV/bin/python" ]; then
    bash "$PEERS_DIR/setup.sh"
fi
# conveyor itself goes into the harness's environment, beside the peers.
"$PEERS_VENV/bin/python" -m pip install --quiet -e "$ROOT[postgres,redis]"
# The peers come from wheels, byte-compiled when pip installed them; an editable install
# is not, and the harness sets PYTHONDONTWRITEBYTECODE, so without this every worker
# start would compile conveyor from source (about 40 ms of W2's start-up here).
"$PEERS_VENV/bin/python" -m compileall -q "$ROOT/src/conveyor" > /dev/null
mkdir -p "$RESULTS_DIR"

# shellcheck disable=SC2086  # PEERS is a list of words
bash "$PEERS_DIR/run.sh" ${CONVEYOR-conveyor_sqlite conveyor_pg conveyor_redis} \
    ${PEERS-huey_sqlite huey dramatiq huey_pg procrastinate}
# W2 with the job bodies alone, no queue: the most any peer's W2 can reach here.
# shellcheck disable=SC2086
PEERS_DIR="$PEERS_DIR" "$PEERS_VENV/bin/python" "$HERE/w2_bound.py" \
    --out "$RESULTS_DIR/own.jsonl" ${BOUND_ARGS:-}
# shellcheck disable=SC2086
"$PEERS_VENV/bin/python" "$HERE/own.py" --out "$RESULTS_DIR/own.jsonl" ${OWN_ARGS:-}
# W2n again with larger batches than the adapters' flags (a variant line of its own);
# BATCH_FLAGS="" skips it.
BATCH_FLAGS="${BATCH_FLAGS--q default -c 50 --fetch 300 --prefetch 600 --processes 2}"
if [ -n "$BATCH_FLAGS" ]; then
    # shellcheck disable=SC2086
    "$PEERS_VENV/bin/python" "$HERE/own.py" --out "$RESULTS_DIR/own.jsonl" ${OWN_ARGS:-} \
        --workloads W2n --flags "$BATCH_FLAGS"
fi
# W4 runs in the project's environment: it needs the HTTP extras (aiohttp for the worker,
# the API's models to store the jobs as POST /v1/jobs does), which the harness's lacks.
W4_ARGS="${W4_ARGS:---url sqlite --url ${PG_DSN:-postgresql://postgres@127.0.0.1:5432/test} \
--url ${REDIS_URL:-redis://127.0.0.1:6379/0}}"
# shellcheck disable=SC2086
"${W4_PYTHON:-$ROOT/.venv/bin/python}" "$HERE/w4_http.py" --out "$RESULTS_DIR/own.jsonl" $W4_ARGS
# W5 too (the API's extras); it needs wrk (Debian's package: apt-get install wrk).
W5_ARGS="${W5_ARGS:---url sqlite --url ${PG_DSN:-postgresql://postgres@127.0.0.1:5432/test} \
--url ${REDIS_URL:-redis://127.0.0.1:6379/0}}"
# shellcheck disable=SC2086
"${W5_PYTHON:-$ROOT/.venv/bin/python}" "$HERE/w5_poll.py" --out "$RESULTS_DIR/own.jsonl" $W5_ARGS
echo "bench: results in $RESULTS_DIR"
