#!/usr/bin/env bash
# `drift bench fanout` across three gateways, on one Redis and then on a Redis Cluster, in one
# run: what the cluster costs live delivery. Each topology is `scripts/cluster.sh` (3 `drift
# serve`, 1 `drift worker`, PostgreSQL; one Temporal dev server shared by both runs); the
# subscribers are spread over the three gateways in turn, and memory is the three gateways' RSS.
# Usage: scripts/bench-cluster.sh [SUBSCRIBERS] [REPORT_DIR]     (default 10000, no report)
# MODES="cluster standalone" runs them the other way round.
set -euo pipefail
cd "$(dirname "$0")/.."
SUBSCRIBERS="${1:-10000}"
REPORT="${2:-}"
bash scripts/setup.sh
export PATH="$(python3 -c 'import sysconfig;print(sysconfig.get_path("scripts"))'):$PATH"
echo "bench-cluster: building drift (release)"
cargo build -q --release
DRIFT="$PWD/target/release/drift"
# Every subscriber is a socket in the bench and one in a gateway.
ulimit -n "$(ulimit -Hn)"
WORK="$(mktemp -d /tmp/drift-bench-cluster.XXXXXX)"
chmod 755 "$WORK"   # PostgreSQL's own user keeps its data in here
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

TEMPORAL_PORT="$(free_port)"
# The runs list's search attributes, as `drift dev` registers them (docs/api.md, Runs).
DRIFT_SEARCH_ATTRIBUTES="--search-attribute DriftTenant=Keyword --search-attribute DriftDefinition=Keyword --search-attribute DriftVersion=Keyword --search-attribute DriftStatus=Keyword --search-attribute DriftWaitingOn=Keyword --search-attribute DriftWaitingSince=Datetime"
temporal server start-dev --headless --ip 127.0.0.1 --port "$TEMPORAL_PORT" --ui-port "$(free_port)" --log-level warn \
    --dynamic-config-value history.transferProcessorMaxPollRPS=1000 \
    --dynamic-config-value history.timerProcessorMaxPollRPS=1000 \
    $DRIFT_SEARCH_ATTRIBUTES >"$WORK/temporal.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 240); do
    temporal operator namespace describe --namespace default --address "127.0.0.1:$TEMPORAL_PORT" >/dev/null 2>&1 && break
    sleep 0.25
done

field() { python3 -c "import json,sys; t=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }
MODES="${MODES:-standalone cluster}"
for mode in $MODES; do
    echo "bench-cluster: === $mode Redis, 3 gateways ==="
    bash scripts/cluster.sh --dir "$WORK/$mode" --redis "$mode" --gateways 3 --workers 1 \
        --temporal-address "127.0.0.1:$TEMPORAL_PORT" --drift-bin "$DRIFT" >"$WORK/$mode.log" 2>&1 &
    topo_pid=$!
    for _ in $(seq 1 480); do [ -f "$WORK/$mode/topology.json" ] && break; sleep 0.25; done
    t="$WORK/$mode/topology.json"
    [ -f "$t" ] || { cat "$WORK/$mode.log" >&2; exit 1; }
    gateways="$(field "$t" "','.join(g['url'] for g in t['gateways'])")"
    pids="$(field "$t" "','.join(str(g['pid']) for g in t['gateways'])")"
    report=()
    [ -n "$REPORT" ] && report=(--report "$REPORT/$mode")
    "$DRIFT" bench --url "${gateways%%,*}" --api-key "$(field "$t" "t['apiKey']")" --tenant demo --key-prefix drift \
        --pid "$pids" "$(field "$t" "t['redisFlag']")" "$(field "$t" "t['redis']")" --no-floor "${report[@]}" \
        fanout --subscribers "$SUBSCRIBERS" --gateways "$gateways" | tee "$WORK/$mode.result"
    kill "$topo_pid"
    wait "$topo_pid" 2>/dev/null || true
done
echo
for mode in $MODES; do
    echo "$mode Redis, 3 gateways:"
    tail -n 2 "$WORK/$mode.result"
done
