#!/usr/bin/env bash
# Where a round's CPU goes, per component and thread, the floor's beside Drift's: `drift bench
# load` (one turn per side) on a fresh in-memory Temporal and Redis, as scripts/bench-load.sh runs
# it, profiled with perf (call stacks, wall-clock timestamps) over both the bench process (the
# floor's side) and `drift dev` (Drift's), each side cut to its own measured window
# (scripts/perf-components.py). perf's sampling slows both sides alike: read the table for where
# the difference sits, the load bench for the ratios.
# Usage: scripts/bench-profile.sh [CALLERS] [SECONDS] [FREQ] [more `drift bench load` options]
#   (defaults: 8 callers, 20 s, 499 Hz; `--engine` adds the engine side, Drift's worker without
#   the gateway, profiled in the bench process)
# PROFILE_OUT=DIR keeps the samples (`perf script` text), the bench's stderr and both pids there.
set -euo pipefail
cd "$(dirname "$0")/.."
CALLERS="${1:-8}"
SECONDS_EACH="${2:-20}"
FREQ="${3:-499}"
command -v perf >/dev/null || { echo "bench-profile: needs perf (apt-get install linux-perf)" >&2; exit 1; }
NAME=bench-profile DRAIN=3
source scripts/bench-lib.sh
start_dev

"${BENCH[@]}" load --concurrency "$CALLERS" --seconds "$SECONDS_EACH" --turns 1 --windows "${@:4}" 2> >(tee "$WORK/bench.err" >&2) &
BENCH_PID=$!
# perf follows the threads a process has when it attaches: wait for the floor's worker, made
# before the bench's first `load:` line, 3 s of warm-up ahead of the first measured window.
for _ in $(seq 1 600); do
    grep -q '^load: ' "$WORK/bench.err" 2>/dev/null && break
    kill -0 "$BENCH_PID" 2>/dev/null || break
    sleep 0.1
done
perf record -q -k CLOCK_REALTIME -F "$FREQ" --call-graph dwarf,16384 -p "$BENCH_PID,$DEV_PID" \
    -o "$WORK/perf.data" >"$WORK/perf.log" 2>&1 &
PERF_PID=$!
PIDS+=("$PERF_PID")   # stopped on the way out if the bench fails
wait "$BENCH_PID"
if ! kill -INT "$PERF_PID" 2>/dev/null; then
    echo "bench-profile: perf stopped before the bench ended (is perf_event_paranoid above 1 for this user?):" >&2
    cat "$WORK/perf.log" >&2
    exit 1
fi
wait "$PERF_PID" || true
echo "bench-profile: reading the profile ($(du -h "$WORK/perf.data" | cut -f1))"
perf script --no-inline -i "$WORK/perf.data" -F pid,tid,comm,time,ip,sym 2>/dev/null >"$WORK/samples.txt"
python3 scripts/perf-components.py --bench-pid "$BENCH_PID" --gateway-pid "$DEV_PID" \
    --windows "$WORK/bench.err" --freq "$FREQ" <"$WORK/samples.txt"
if [ -n "${PROFILE_OUT:-}" ]; then
    mkdir -p "$PROFILE_OUT"
    cp "$WORK/samples.txt" "$WORK/bench.err" "$PROFILE_OUT/"
    echo "--bench-pid $BENCH_PID --gateway-pid $DEV_PID --freq $FREQ" >"$PROFILE_OUT/args"
    echo "bench-profile: samples kept in $PROFILE_OUT"
fi
