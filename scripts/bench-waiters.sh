#!/usr/bin/env bash
# `drift bench waiters` at full size on one machine: W sync starts blocked at once on one
# gateway. Each waiter holds three sockets (client → gateway, worker → slow stand-in, the
# stand-in's side), more than one process may open here (`ulimit -Hn`), so the parts run as
# separate processes:
#   temporal, redis-server
#   drift dev    the slow stand-in (its own worker polls another task queue)
#   drift serve  the gateway measured (no worker, no stand-ins)
#   drift worker the worker, on the gateway's task queue
#   drift bench  the clients
# Usage: scripts/bench-waiters.sh [WAITERS] [DELAY_MS] [RAMP_PER_SEC] [REPORT_DIR]
# Defaults: 10000 waiters, each first screen 290 s behind the stand-in, 40 starts a second (the
# pace a 2-core Temporal dev server keeps), so all are blocked at once before the first answer.
set -euo pipefail
cd "$(dirname "$0")/.."
WAITERS="${1:-10000}"
DELAY_MS="${2:-290000}"
RAMP="${3:-40}"
REPORT="${4:-}"
ulimit -n "$(ulimit -Hn)"
# Drift drains for a bounded time; what is left after that is not worth waiting for.
NAME=bench-waiters DRAIN=15
source scripts/bench-lib.sh
TEMPORAL="127.0.0.1:$TEMPORAL_PORT"
REDIS="redis://127.0.0.1:$REDIS_PORT"
SHARED=(--temporal-address "$TEMPORAL" --redis-url "$REDIS" --task-queue bench-waiters --key-prefix bench-waiters)

STAND_IN_PORT="$(free_port)"
echo "bench-waiters: Temporal on $TEMPORAL_PORT, Redis on $REDIS_PORT, stand-ins (drift dev) on $STAND_IN_PORT"
DRIFT_LOG=warn "$DRIFT" dev --temporal-address "$TEMPORAL" --redis-url "$REDIS" \
    --listen "127.0.0.1:$STAND_IN_PORT" --data-dir "$WORK/dev" >"$WORK/dev.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$STAND_IN_PORT/healthz"

KEY="$("$DRIFT" keys --data-dir "$WORK/gateway" create --tenant bench --client bench \
    --scopes workflows:start,workflows:drive,workflows:read,definitions:write 2>/dev/null)"
GATEWAY_PORT="$(free_port)"
echo "bench-waiters: gateway on $GATEWAY_PORT, worker on task queue bench-waiters"
DRIFT_LOG=warn "$DRIFT" serve "${SHARED[@]}" --data-dir "$WORK/gateway" --listen "127.0.0.1:$GATEWAY_PORT" \
    --enum "apiBase=http://127.0.0.1:$STAND_IN_PORT/stand-ins" --rate-limit 0 \
    --max-wait-ms 900000 --max-waiters "$((WAITERS * 2))" >"$WORK/gateway.log" 2>&1 &
GATEWAY_PID=$!
PIDS+=($GATEWAY_PID)
DRIFT_LOG=warn "$DRIFT" worker "${SHARED[@]}" --data-dir "$WORK/worker" --egress-allow loopback \
    --worker-activities "$((WAITERS + 100))" >"$WORK/worker.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$GATEWAY_PORT/healthz"

BENCH=("$DRIFT" bench --url "http://127.0.0.1:$GATEWAY_PORT" --api-key "$KEY" --pid "$GATEWAY_PID"
    --redis-url "$REDIS" --no-floor)
[ -n "$REPORT" ] && BENCH+=(--report "$REPORT")
"${BENCH[@]}" waiters --waiters "$WAITERS" --delay-ms "$DELAY_MS" --ramp-per-sec "$RAMP"
