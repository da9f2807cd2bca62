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
NAME=bench-cluster DRAIN=0
source scripts/bench-prelude.sh
start_temporal
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
