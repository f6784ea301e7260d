#!/usr/bin/env bash
# `make bench`: conveyor beside the peers in one run of the shared harness, then
# conveyor's own workloads (W2n, W6). Results go to bench/results/.
#
#   bash bench/run.sh                       # conveyor_sqlite + the peers named in PEERS
#   PEERS="huey_sqlite huey" bash bench/run.sh
#   BENCH_ARGS="--n 2000 --runs 1" OWN_ARGS="--runs 1 --n 20000 --big 100000" bash bench/run.sh
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
"$PEERS_VENV/bin/python" -m pip install --quiet -e "$ROOT"
mkdir -p "$RESULTS_DIR"

# shellcheck disable=SC2086  # PEERS is a list of words
bash "$PEERS_DIR/run.sh" conveyor_sqlite ${PEERS-huey_sqlite huey dramatiq}
# shellcheck disable=SC2086
"$PEERS_VENV/bin/python" "$HERE/own.py" --out "$RESULTS_DIR/own.jsonl" ${OWN_ARGS:-}
echo "bench: results in $RESULTS_DIR"
