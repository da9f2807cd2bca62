#!/usr/bin/env bash
# `drift bench` (the round trips against the floor and the Update-based peer) as
# docs/performance.md reports it in memory: Temporal's in-memory dev server (tuned as `drift dev`
# tunes its own) and a redis-server, then `drift dev` on them with no rate limit (the bench's
# CPU part makes thousands of calls), then the bench.
# Usage: scripts/bench-rounds.sh [ROUNDS] [more `drift bench` options]. Default: 200 rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:-200}"
NAME=bench-rounds DRAIN=3
source scripts/bench-lib.sh
start_dev
"${BENCH[@]}" --rounds "$ROUNDS" "${@:2}"
