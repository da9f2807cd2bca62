#!/usr/bin/env bash
# `drift bench load` as docs/performance.md reports it: Temporal's in-memory dev server (tuned as `drift
# dev` tunes its own) and a redis-server, then `drift dev` on them with no rate limit (gateway
# and worker in one process, whose CPU is measured), then the bench: the raw-SDK floor and
# Drift, each with N callers doing start → screen → answer → end back to back.
# Usage: scripts/bench-load.sh [CONCURRENCY,…] [SECONDS] [REPORT_DIR] [more `drift bench load` options]
# Defaults: 8,32 callers, 20 s measured per side and count. E.g. `scripts/bench-load.sh 32 20 ""
# --think-ms 200`: each caller answers a screen 200 ms after it shows.
set -euo pipefail
cd "$(dirname "$0")/.."
CONCURRENCY="${1:-8,32}"
SECONDS_EACH="${2:-20}"
REPORT="${3:-}"
NAME=bench-load DRAIN=3
source scripts/bench-lib.sh
start_dev
[ -n "$REPORT" ] && BENCH+=(--report "$REPORT")
"${BENCH[@]}" load --concurrency "$CONCURRENCY" --seconds "$SECONDS_EACH" "${@:4}"
