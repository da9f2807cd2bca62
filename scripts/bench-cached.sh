#!/usr/bin/env bash
# `drift bench cached` as docs/performance.md reports it: Temporal's in-memory dev server and a
# redis-server, then `drift dev` on them (gateway and worker in one process, whose memory is
# measured), then RUNS runs each of bank_account and a generated 30-screen definition (37 KB),
# left waiting on their first screen: the worker's memory per cached run.
# Usage: scripts/bench-cached.sh [RUNS] [more `drift bench cached` options]. Default: 400 runs.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-400}"
NAME=bench-cached DRAIN=3
source scripts/bench-lib.sh
start_dev
"${BENCH[@]}" cached --runs "$RUNS" "${@:2}"
