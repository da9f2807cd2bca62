#!/usr/bin/env python3
"""Where a round's CPU goes, per component, the floor's beside Drift's (scripts/bench-profile.sh).

Reads `perf script -F pid,tid,comm,time,ip,sym` of a profile taken with `perf record -k
CLOCK_REALTIME --call-graph dwarf` over both the bench process (the floor: its callers, client
and worker) and the gateway (`drift dev`: gateway and worker), and the bench's `load: window …`
lines (`drift bench load --windows`). Each side's samples are those of its own process inside its
own measured windows; each sample is put in the first component whose pattern one of its frames
holds, and counted as 1/FREQ s of CPU. Prints milliseconds per round per component and per
thread, the floor's and Drift's side by side. perf's own sampling inflates both sides alike.
"""
import argparse
import collections
import re
import sys

# First match wins, most specific first: a Temporal call made inside an HTTP handler counts as
# the Temporal client, not as the HTTP server.
COMPONENTS = [
    ("request journal", ("note_request", "add_to_timeline")),
    ("subscription hub", ("drift_bus::hub",)),
    ("Redis client", ("redis::",)),
    ("Temporal client (gRPC)", ("tonic::", "h2::", "temporalio_client", "hyper::proto::h2::client")),
    ("SDK worker core", ("temporalio_sdk_core",)),
    ("workflow code and its payloads", ("temporalio_workflow", "drift_temporal::workflow", "drift_bench::floor::", "drift_core::")),
    ("activities", ("temporalio_sdk::activities", "drift_temporal::activities")),
    ("SDK worker loop", ("temporalio_sdk",)),
    ("HTTP server, auth and checks", ("axum", "hyper::proto::h1", "hyper::server", "hyper_util::server", "drift_gateway", "drift_service")),
    ("runtime parking and waking", ("epoll_wait", "park", "futex", "schedule", "__wake")),
]
OTHER = "other"
THREADS = {
    "tokio-rt-worker": "main runtime",
    "drift-worker": "SDK worker thread",
    "floor-worker": "SDK worker thread",
    "workflow-proces": "workflow processing",
}
WINDOW = re.compile(r"load: window (\w+) (\d+) callers (\d+) rounds ([\d.]+) ([\d.]+)")


def component(frames):
    for name, patterns in COMPONENTS:
        if any(p in f for f in frames for p in patterns):
            return name
    return OTHER


def samples(stream):
    """(pid, comm, time, frames) per sample of `perf script -F pid,tid,comm,time,ip,sym`."""
    head, frames = None, []
    for line in stream:
        if not line.strip():
            continue
        if line[0] not in " \t":
            if head:
                yield (*head, frames)
            # "comm  pid/tid  time:" — the command name may hold spaces.
            m = re.match(r"\s*(.*?)\s+(\d+)/\d+\s+([\d.]+):", line)
            head, frames = (m and (int(m.group(2)), m.group(1), float(m.group(3)))), []
        else:
            parts = line.strip().split(None, 1)
            frames.append(parts[1] if len(parts) > 1 else "")
    if head:
        yield (*head, frames)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench-pid", type=int, required=True, help="the bench process (the floor's side)")
    ap.add_argument("--gateway-pid", type=int, required=True, help="drift dev (Drift's side)")
    ap.add_argument("--windows", required=True, help="the bench's stderr, with its `load: window` lines")
    ap.add_argument("--freq", type=int, required=True, help="perf record's -F")
    ap.add_argument("--callers", type=int, help="the concurrency to read (default: the first)")
    a = ap.parse_args()

    windows = collections.defaultdict(list)  # side -> [(from, to, rounds)]
    for line in open(a.windows):
        m = WINDOW.search(line)
        if m and (a.callers is None or int(m.group(2)) == a.callers):
            a.callers = int(m.group(2))
            windows[m.group(1)].append((float(m.group(4)), float(m.group(5)), int(m.group(3))))
    if not windows.get("floor") or not windows.get("drift"):
        sys.exit("perf-components: no `load: window` lines for both the floor and drift (run the bench with --windows)")
    own = {"floor": a.bench_pid, "drift": a.gateway_pid}
    if windows.get("engine"):
        # `--engine`: Drift's worker in the bench process, no gateway (its windows tell it apart).
        own = {"floor": a.bench_pid, "engine": a.bench_pid, "drift": a.gateway_pid}
    sides = list(own)
    label = {"floor": "floor", "engine": "engine", "drift": "Drift"}
    rounds = {side: sum(w[2] for w in windows[side]) for side in own}
    by_comp = {side: collections.Counter() for side in own}
    by_thread = {side: collections.Counter() for side in own}
    for pid, comm, t, frames in samples(sys.stdin):
        for side, side_pid in own.items():
            if pid == side_pid and any(f <= t < to for f, to, _ in windows[side]):
                by_comp[side][component(frames)] += 1
                by_thread[side][THREADS.get(comm, comm)] += 1
    per_round = lambda side, n: n * 1000.0 / a.freq / max(rounds[side], 1)

    counts = ", ".join(f"{label[s]} {rounds[s]} rounds" for s in sides)
    print(f"{a.callers} callers; {counts}; ms of CPU per round")
    head = "".join(f" {label[s]:>8s}" for s in sides) + "".join(f" {label[s] + ' - floor':>16s}" for s in sides[1:])
    for title, table, names in [
        ("component", by_comp, [n for n, _ in COMPONENTS] + [OTHER]),
        ("thread", by_thread, sorted(set().union(*(by_thread[s] for s in sides)))),
    ]:
        print(f"\n{title:32s}{head}")
        rows = [(n, [per_round(s, table[s][n]) for s in sides]) for n in names]
        rows.append(("total", [per_round(s, sum(table[s].values())) for s in sides]))
        for n, v in rows:
            if any(v):
                print(f"{n:32s}" + "".join(f" {x:8.3f}" for x in v) + "".join(f" {x - v[0]:+16.3f}" for x in v[1:]))


if __name__ == "__main__":
    main()
