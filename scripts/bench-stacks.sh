#!/usr/bin/env bash
# `scripts/bench-load.sh` on STACKS fresh stacks, one after the other (each its own in-memory
# Temporal, Redis and `drift dev`), then each ratio's median and range over them. On this 2-core
# machine one stack's Drift ÷ floor moves by ±0.05 from the next stack's (Temporal's cost per
# round differs between fresh servers, and for one side more than the other), more than most
# changes worth measuring: compare medians over stacks, not one run against another.
# Usage: scripts/bench-stacks.sh STACKS [CONCURRENCY,…] [SECONDS] [more `drift bench load` options]
# E.g. `scripts/bench-stacks.sh 5 8,32 20`, or `DRIFT_SEARCH_ATTRIBUTES= scripts/bench-stacks.sh 3 8`.
set -euo pipefail
cd "$(dirname "$0")/.."
STACKS="${1:?usage: scripts/bench-stacks.sh STACKS [CONCURRENCY,…] [SECONDS] [more drift bench load options]}"
CONCURRENCY="${2:-8,32}"
SECONDS_EACH="${3:-20}"
case "$STACKS" in
    '' | *[!0-9]* | 0) echo "bench-stacks: STACKS must be a whole number from 1 (got '$STACKS')" >&2; exit 2 ;;
esac
if [ -z "${DRIFT_BIN:-}" ]; then
    echo "bench-stacks: building drift (release)"
    cargo build -q --release --bin drift
    export DRIFT_BIN="$PWD/target/release/drift"
fi
OUT="$(mktemp -d /tmp/drift-bench-stacks.XXXXXX)"
trap 'rm -rf "$OUT"' EXIT
for i in $(seq 1 "$STACKS"); do
    echo "bench-stacks: stack $i of $STACKS"
    scripts/bench-load.sh "$CONCURRENCY" "$SECONDS_EACH" "" "${@:4}" | tee "$OUT/stack-$i.txt"
done
echo
python3 - "$OUT"/stack-*.txt <<'PY'
import re, statistics, sys

# A stack's figures: its final table (rounds/s and CPU per round of each side) and its ratios.
ROW = re.compile(r"^\s*(\d+)\s+(floor|peer|drift)\s+\d+\s+\d+\s+([\d.]+)\s")
RATIO = re.compile(
    r"^(\d+) callers, Drift against the (floor|peer): throughput ([\d.]+)x, "
    r"CPU per round ([\d.]+)x \(Temporal's ([\d.]+)x\)"
)
rates, ratios = {}, {}
for path in sys.argv[1:]:
    seen = {}
    for line in open(path):
        if m := ROW.match(line):
            seen[(int(m[1]), m[2])] = float(m[3])  # the last table of a run is its full one
        elif m := RATIO.match(line):
            for what, v in zip(("throughput", "own CPU", "Temporal CPU"), (m[3], m[4], m[5])):
                ratios.setdefault((int(m[1]), m[2], what), []).append(float(v))
    for k, v in seen.items():
        rates.setdefault(k, []).append(v)

def cell(vs):
    return f"{statistics.median(vs):.2f} ({min(vs):.2f}-{max(vs):.2f})"

n = len(sys.argv) - 1
if not ratios:
    sys.exit("bench-stacks: no stack printed its ratios; see the output above")
print(f"Over {n} fresh stacks, median (lowest-highest):")
print(f"{'callers':>7} {'side':<6} {'rounds/s':>22}")
for (c, side), vs in sorted(rates.items()):
    print(f"{c:>7} {side:<6} {cell(vs):>22}")
print(f"{'callers':>7} {'Drift ÷':<7} {'throughput':>20} {'own CPU per round':>20} {'Temporal CPU per round':>24}")
for c, base in sorted({(c, b) for c, b, _ in ratios}):
    cells = [cell(ratios.get((c, base, w), [0])) for w in ("throughput", "own CPU", "Temporal CPU")]
    print(f"{c:>7} {base:<7} {cells[0]:>20} {cells[1]:>20} {cells[2]:>24}")
PY
