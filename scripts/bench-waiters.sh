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
bash scripts/setup.sh
export PATH="$(python3 -c 'import sysconfig;print(sysconfig.get_path("scripts"))'):$PATH"
# DRIFT_BIN: a drift already built (e.g. by the test command, target/release/drift).
if [ -z "${DRIFT_BIN:-}" ]; then
    echo "bench-waiters: building drift (release)"
    cargo build -q --release --bin drift
fi
DRIFT="${DRIFT_BIN:-$PWD/target/release/drift}"
ulimit -n "$(ulimit -Hn)"
WORK="$(mktemp -d /tmp/drift-bench-waiters.XXXXXX)"
PIDS=()
cleanup() {
    # Drift drains for a bounded time; what is left after that is not worth waiting for.
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 15
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_http() {
    for _ in $(seq 1 240); do
        curl -fsS "$1" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    echo "bench-waiters: $1 did not answer in 120 s; logs in $WORK" >&2
    exit 1
}

# Temporal's in-memory dev server (the SQLite one gets through fewer starts a second), tuned as
# `drift dev` tunes its own.
TEMPORAL_PORT="$(free_port)"
temporal server start-dev --headless --ip 127.0.0.1 --port "$TEMPORAL_PORT" --ui-port "$(free_port)" \
    --log-level warn --dynamic-config-value history.transferProcessorMaxPollRPS=1000 \
    --dynamic-config-value history.timerProcessorMaxPollRPS=1000 >"$WORK/temporal.log" 2>&1 &
PIDS+=($!)
REDIS_PORT="$(free_port)"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
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
