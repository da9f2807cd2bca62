#!/usr/bin/env bash
# Live followers past what one process may hold: `drift bench fanout` in several processes
# against 3 gateways on one Redis (scripts/cluster.sh), every follower of every process counted.
# This machine allows 20,000 open files per process (hard limit) — a gateway as much as a bench
# process — so past about 57,000 followers over 3 gateways, followers share connections
# (--per-connection K: SSE streams on one HTTP/2 connection, workflows on one WebSocket).
# Each process starts its own workflows, opens its followers, and publishes once all are ready
# (--barrier); this script reads the gateways' memory and CPU around that, and merges the
# processes' figures (delivered, in order, latency percentiles over every sample).
# Usage: scripts/bench-followers.sh [FOLLOWERS] [PROCESSES] [PER_CONNECTION] [-- more fanout flags]
#        (default 100000 3 2: 50,000 connections, half SSE over HTTP/2, half WebSocket)
set -euo pipefail
cd "$(dirname "$0")/.."
FOLLOWERS="${1:-100000}"
PROCESSES="${2:-3}"
PER_CONNECTION="${3:-2}"
shift $(( $# < 3 ? $# : 3 ))
[ "${1:-}" = "--" ] && shift
NAME=bench-followers DRAIN=0
source scripts/bench-prelude.sh

# Every gateway may hold all its followers' streams (one tenant), and no rate limit meters the
# bench's starts.
export DRIFT_MAX_STREAMS=200000 DRIFT_MAX_STREAMS_PER_TENANT=200000 DRIFT_RATE_LIMIT=0
bash scripts/cluster.sh --dir "$WORK/topology" --redis standalone --gateways 3 --workers 1 \
    --drift-bin "$DRIFT" >"$WORK/cluster.log" 2>&1 &
PIDS+=($!)
t="$WORK/topology/topology.json"
for _ in $(seq 1 720); do [ -f "$t" ] && break; sleep 0.25; done
[ -f "$t" ] || { cat "$WORK/cluster.log" >&2; exit 1; }
field() { python3 -c "import json,sys; t=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$t" "$1"; }
gateways="$(field "','.join(g['url'] for g in t['gateways'])")"
pids="$(field "','.join(str(g['pid']) for g in t['gateways'])")"

# The gateways' RSS (KB) and CPU (µs, user + system), summed.
gauge() {
    python3 - "$pids" <<'EOF'
import os, sys
hz = os.sysconf("SC_CLK_TCK")
rss = cpu = 0
for pid in sys.argv[1].split(","):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            rss += int(line.split()[1])
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    cpu += (int(f[11]) + int(f[12])) * 1_000_000 // hz
print(rss, cpu)
EOF
}
read -r rss0 _ <<<"$(gauge)"
each=$(( (FOLLOWERS + PROCESSES - 1) / PROCESSES ))
workflows="${WORKFLOWS:-$(( each / 1000 > PER_CONNECTION ? each / 1000 : PER_CONNECTION ))}"
echo "bench-followers: $FOLLOWERS followers in $PROCESSES processes ($each each, over $workflows workflows each), $PER_CONNECTION per connection, 3 gateways"
BENCH=()
for p in $(seq 1 "$PROCESSES"); do
    "$DRIFT" bench --url "${gateways%%,*}" --api-key "$(field "t['apiKey']")" --tenant demo --key-prefix drift \
        --redis-url "$(field "t['redis']")" --no-floor \
        fanout --subscribers "$each" --workflows "$workflows" --gateways "$gateways" \
        --per-connection "$PER_CONNECTION" --sources "${SOURCES:-8}" \
        --barrier "$WORK/barrier:$PROCESSES" --json-out "$WORK/run-$p.jsonl" "$@" \
        >"$WORK/bench-$p.log" 2>&1 &
    BENCH+=($!)
done
# Every process ready: its followers open and idle, and it is about to publish.
for _ in $(seq 1 12000); do
    [ "$(ls "$WORK/barrier" 2>/dev/null | wc -l)" -ge "$PROCESSES" ] && break
    for b in "${BENCH[@]}"; do kill -0 "$b" 2>/dev/null || break 2; done
    sleep 0.1
done
read -r rss1 cpu1 <<<"$(gauge)"
echo "bench-followers: all ready; publishing"
failed=0
for b in "${BENCH[@]}"; do wait "$b" || failed=1; done
read -r _ cpu2 <<<"$(gauge)"
for p in $(seq 1 "$PROCESSES"); do echo "--- process $p"; tail -n 4 "$WORK/bench-$p.log"; done
[ "$failed" = 0 ] || { echo "bench-followers: a bench process failed (its log above)" >&2; exit 1; }
python3 - "$WORK" "$PROCESSES" "$rss0" "$rss1" "$cpu1" "$cpu2" <<'EOF'
import json, sys
work, procs, rss0, rss1, cpu1, cpu2 = sys.argv[1], int(sys.argv[2]), *map(int, sys.argv[3:])
runs = [json.loads(l) for p in range(1, procs + 1) for l in open(f"{work}/run-{p}.jsonl")]
n = sum(r["subscribers"] for r in runs)
delivered = sum(r["delivered"] for r in runs)
expected = sum(r["expected"] for r in runs)
lat = sorted(u for r in runs for u in r["latencyUs"])
pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] / 1000 if lat else float("nan")
published = max(1, delivered - n)
print()
print("| followers | connections | processes | delivered | in order | states/s | p50 | p99 | max | KB per follower | gateway CPU per state |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
print(f"| {n:,} | {sum(r['connections'] for r in runs):,} | {procs} | {delivered:,}/{expected:,} | "
      f"{'yes' if all(r['inOrder'] for r in runs) else 'NO'} | {sum(r['statesPerSec'] for r in runs):,.0f} | "
      f"{pct(0.5):.0f} ms | {pct(0.99):.0f} ms | {pct(1.0):.0f} ms | {(rss1 - rss0) / n:.1f} | "
      f"{(cpu2 - cpu1) / published:.1f} µs |")
EOF
