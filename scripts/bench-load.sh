#!/usr/bin/env bash
# `drift bench load` as the README reports it: Temporal's in-memory dev server (tuned as `drift
# dev` tunes its own) and a redis-server, then `drift dev` on them with no rate limit (gateway
# and worker in one process, whose CPU is measured), then the bench: the raw-SDK floor and
# Drift, each with N callers doing start → screen → answer → end back to back.
# Usage: scripts/bench-load.sh [CONCURRENCY,…] [SECONDS] [REPORT_DIR]
# Defaults: 8,32 callers, 20 s measured per side and count.
set -euo pipefail
cd "$(dirname "$0")/.."
CONCURRENCY="${1:-8,32}"
SECONDS_EACH="${2:-20}"
REPORT="${3:-}"
bash scripts/setup.sh
export PATH="$(python3 -c 'import sysconfig;print(sysconfig.get_path("scripts"))'):$PATH"
# DRIFT_BIN: a drift already built (e.g. by the test command, target/release/drift).
if [ -z "${DRIFT_BIN:-}" ]; then
    echo "bench-load: building drift (release)"
    cargo build -q --release --bin drift
fi
DRIFT="${DRIFT_BIN:-$PWD/target/release/drift}"
WORK="$(mktemp -d /tmp/drift-bench-load.XXXXXX)"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 3
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

TEMPORAL_PORT="$(free_port)"
temporal server start-dev --headless --ip 127.0.0.1 --port "$TEMPORAL_PORT" --ui-port "$(free_port)" \
    --log-level warn --dynamic-config-value history.transferProcessorMaxPollRPS=1000 \
    --dynamic-config-value history.timerProcessorMaxPollRPS=1000 >"$WORK/temporal.log" 2>&1 &
PIDS+=($!)
REDIS_PORT="$(free_port)"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
PORT="$(free_port)"
echo "bench-load: Temporal (in memory) on $TEMPORAL_PORT, Redis on $REDIS_PORT, drift dev on $PORT"
DRIFT_LOG=warn "$DRIFT" dev --temporal-address "127.0.0.1:$TEMPORAL_PORT" --redis-url "redis://127.0.0.1:$REDIS_PORT" \
    --listen "127.0.0.1:$PORT" --data-dir "$WORK/dev" --rate-limit 0 >"$WORK/dev.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 240); do
    curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
    sleep 0.5
done
curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null || { echo "bench-load: drift dev did not start; see $WORK/dev.log" >&2; cat "$WORK/dev.log" >&2; exit 1; }

BENCH=("$DRIFT" bench --url "http://127.0.0.1:$PORT" --data-dir "$WORK/dev")
[ -n "$REPORT" ] && BENCH+=(--report "$REPORT")
"${BENCH[@]}" load --concurrency "$CONCURRENCY" --seconds "$SECONDS_EACH"
