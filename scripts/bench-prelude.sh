# What every bench script does first, sourced from the repository's root after setting NAME (for
# messages and the work folder) and DRAIN (seconds a stopped process gets before SIGKILL): it runs
# the setup, finds drift (DRIFT_BIN, or builds it) as $DRIFT, raises the open-file limit to the
# hard one (every subscriber is a socket), makes $WORK, and stops every process in PIDS on exit.
# scripts/bench-lib.sh adds Temporal and Redis; the cluster scripts start their own topology.
bash scripts/setup.sh
export PATH="$(python3 -c 'import sysconfig;print(sysconfig.get_path("scripts"))'):$PATH"
# DRIFT_BIN: a drift already built (e.g. by the test command, target/release/drift).
if [ -z "${DRIFT_BIN:-}" ]; then
    echo "$NAME: building drift (release)"
    cargo build -q --release --bin drift
fi
DRIFT="${DRIFT_BIN:-$PWD/target/release/drift}"
ulimit -n "$(ulimit -Hn)"
WORK="$(mktemp -d "/tmp/drift-$NAME.XXXXXX")"
chmod 755 "$WORK"   # PostgreSQL's own user keeps its data in here (scripts/cluster.sh)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep "${DRAIN:-0}"
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
    echo "$NAME: $1 did not answer in 120 s; logs in $WORK" >&2
    exit 1
}

# Temporal's in-memory dev server on $TEMPORAL_PORT, tuned as `drift dev` tunes its own, with the
# runs list's search attributes as `drift dev` registers them (docs/api.md, Runs). Set
# DRIFT_SEARCH_ATTRIBUTES= (empty) to bench without them: runs then keep none (no upserts).
start_temporal() {
    TEMPORAL_PORT="$(free_port)"
    local attrs="${DRIFT_SEARCH_ATTRIBUTES---search-attribute DriftTenant=Keyword --search-attribute DriftDefinition=Keyword --search-attribute DriftVersion=Keyword --search-attribute DriftStatus=Keyword --search-attribute DriftWaitingOn=Keyword --search-attribute DriftWaitingSince=Datetime}"
    temporal server start-dev --headless --ip 127.0.0.1 --port "$TEMPORAL_PORT" --ui-port "$(free_port)" \
        --log-level warn --dynamic-config-value history.transferProcessorMaxPollRPS=1000 \
        --dynamic-config-value history.timerProcessorMaxPollRPS=1000 \
        $attrs >"$WORK/temporal.log" 2>&1 &
    PIDS+=($!)
}
