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
PORT="$(free_port)"
echo "bench-rounds: Temporal (in memory) on $TEMPORAL_PORT, Redis on $REDIS_PORT, drift dev on $PORT"
DRIFT_LOG=warn "$DRIFT" dev --temporal-address "127.0.0.1:$TEMPORAL_PORT" --redis-url "redis://127.0.0.1:$REDIS_PORT" \
    --listen "127.0.0.1:$PORT" --data-dir "$WORK/dev" --rate-limit 0 >"$WORK/dev.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$PORT/healthz"
"$DRIFT" bench --url "http://127.0.0.1:$PORT" --data-dir "$WORK/dev" --rounds "$ROUNDS" "${@:2}"
