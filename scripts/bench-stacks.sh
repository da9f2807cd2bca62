#!/usr/bin/env bash
# A bench on STACKS fresh stacks, one after the other (each its own in-memory Temporal, Redis and
# `drift dev`), then each ratio's median and range over them. On this 2-core machine one stack's
# Drift ÷ floor moves by ±0.05 or more from the next stack's (Temporal's cost per round differs
# between fresh servers, and for one side more than the other), more than most changes worth
# measuring: compare medians over stacks, not one run against another.
# Usage:
#   scripts/bench-stacks.sh STACKS load [CONCURRENCY,…] [SECONDS] [more `drift bench load` options]
#       scripts/bench-load.sh on each: rounds/s, and Drift ÷ floor (and ÷ peer; with --engine, the
#       engine ÷ floor and Drift ÷ engine) in throughput, own CPU and Temporal's CPU per round.
#       E.g. `scripts/bench-stacks.sh 5 load 8,32 20`.
#   scripts/bench-stacks.sh STACKS rounds [ROUNDS] [more `drift bench` options]
#       scripts/bench-rounds.sh on each: start and resume p50, each ÷ the better floor mode and
#       ÷ (that floor + a bare GET /healthz), and the bound a checked call can reach (the floor
#       plus a refused resume). E.g. `scripts/bench-stacks.sh 5 rounds 200`.
set -euo pipefail
cd "$(dirname "$0")/.."
USAGE="usage: scripts/bench-stacks.sh STACKS load [CONCURRENCY,…] [SECONDS] [options] | STACKS rounds [ROUNDS] [options]"
STACKS="${1:-}"
WHAT="${2:-}"
case "$STACKS" in
    '' | *[!0-9]* | 0) echo "bench-stacks: STACKS must be a whole number from 1 (got '$STACKS'); $USAGE" >&2; exit 2 ;;
esac
case "$WHAT" in
    load) RUN=(scripts/bench-load.sh "${3:-8,32}" "${4:-20}" "" "${@:5}") ;;
    rounds) RUN=(scripts/bench-rounds.sh "${3:-200}" "${@:4}") ;;
    *) echo "bench-stacks: which bench, load or rounds (got '$WHAT'); $USAGE" >&2; exit 2 ;;
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
    "${RUN[@]}" | tee "$OUT/stack-$i.txt"
done
echo
python3 - "$WHAT" "$OUT"/stack-*.txt <<'PY'
import re, statistics, sys

what, paths = sys.argv[1], sys.argv[2:]

def cell(vs, unit="x"):
    return f"{statistics.median(vs):.2f}{unit} ({min(vs):.2f}-{max(vs):.2f})"

def load():
    # A stack's figures: its final table (rounds/s of each side) and its ratios.
    row = re.compile(r"^\s*(\d+)\s+(floor|peer|engine|drift)\s+\d+\s+\d+\s+([\d.]+)\s")
    # With more than one turn the throughput is followed by its turn-by-turn spread.
    ratio = re.compile(
        r"^(\d+) callers, (Drift|The engine) against the (floor|peer|engine): throughput ([\d.]+)x"
        r"(?: \(turn by turn [^)]*\))?, CPU per round ([\d.]+)x \(Temporal's ([\d.]+)x\)"
    )
    rates, ratios = {}, {}
    for path in paths:
        seen = {}
        for line in open(path):
            if m := row.match(line):
                seen[(int(m[1]), m[2])] = float(m[3])  # a run's last table is its full one
            elif m := ratio.match(line):
                pair = f"{'Drift' if m[2] == 'Drift' else 'engine'} ÷ {m[3]}"
                for w, v in zip(("throughput", "own CPU", "Temporal CPU"), (m[4], m[5], m[6])):
                    ratios.setdefault((int(m[1]), pair, w), []).append(float(v))
        for k, v in seen.items():
            rates.setdefault(k, []).append(v)
    if not ratios:
        sys.exit("bench-stacks: no stack printed its ratios; see the output above")
    print(f"Over {len(paths)} fresh stacks, median (lowest-highest):")
    print(f"{'callers':>7} {'side':<6} {'rounds/s':>22}")
    for (c, side), vs in sorted(rates.items()):
        print(f"{c:>7} {side:<6} {cell(vs, ''):>22}")
    print(f"{'callers':>7} {'ratio':<16} {'throughput':>20} {'own CPU per round':>20} {'Temporal CPU per round':>24}")
    for c, pair in sorted({(c, p) for c, p, _ in ratios}):
        cells = [cell(ratios[(c, pair, w)]) for w in ("throughput", "own CPU", "Temporal CPU")]
        print(f"{c:>7} {pair:<16} {cells[0]:>20} {cells[1]:>20} {cells[2]:>24}")

def rounds():
    # The p50 column of `drift bench`'s table, by row name.
    row = re.compile(r"^(.+?)\s{2,}([\d.]+) ms\s")
    need = ["GET /healthz (baseline)", "floor start, normal", "floor start, eager", "start → first screen",
            "floor signal → screen, normal", "floor signal → screen, eager", "resume → next screen",
            "resume refused (409)"]
    out = {}
    for path in paths:
        p50 = {m[1].strip(): float(m[2]) for line in open(path) if (m := row.match(line))}
        if missing := [n for n in need if n not in p50]:
            sys.exit(f"bench-stacks: {path} has no row {missing[0]!r}; see the output above")
        health, refused = p50[need[0]], p50[need[7]]
        for name, floor, drift in (
            ("start", min(p50[need[1]], p50[need[2]]), p50[need[3]]),
            ("resume", min(p50[need[4]], p50[need[5]]), p50[need[6]]),
        ):
            for k, v in (("ms", drift), ("÷ floor", drift / floor), ("÷ floor + healthz", drift / (floor + health)),
                         ("bound ÷ floor", (floor + refused) / floor)):
                out.setdefault((name, k), []).append(v)
    print(f"Over {len(paths)} fresh stacks, p50, median (lowest-highest):")
    print(f"{'':<7} {'Drift':>24} {'÷ floor':>20} {'÷ (floor + healthz)':>22} {'bound ÷ floor':>20}")
    for name in ("start", "resume"):
        c = [cell(out[(name, "ms")], " ms")] + [cell(out[(name, k)]) for k in ("÷ floor", "÷ floor + healthz", "bound ÷ floor")]
        print(f"{name:<7} {c[0]:>24} {c[1]:>20} {c[2]:>22} {c[3]:>20}")
    print("(bound: the floor plus a refused resume, what every checked call costs before Temporal)")

load() if what == "load" else rounds()
PY
