# Shared by the bench scripts, sourced from the repository's root after setting NAME (for
# messages and the work folder) and DRAIN (seconds a stopped process gets before SIGKILL).
# It runs the setup, finds drift (DRIFT_BIN, or builds it) as $DRIFT, makes $WORK, starts
# Temporal's in-memory dev server ($TEMPORAL_PORT; the SQLite one gets through fewer starts a
# second), tuned as `drift dev` tunes its own, and a redis-server ($REDIS_PORT), and stops every
# process in PIDS on exit.
bash scripts/setup.sh
export PATH="$(python3 -c 'import sysconfig;print(sysconfig.get_path("scripts"))'):$PATH"
# DRIFT_BIN: a drift already built (e.g. by the test command, target/release/drift).
if [ -z "${DRIFT_BIN:-}" ]; then
    echo "$NAME: building drift (release)"
    cargo build -q --release --bin drift
fi
DRIFT="${DRIFT_BIN:-$PWD/target/release/drift}"
WORK="$(mktemp -d "/tmp/drift-$NAME.XXXXXX")"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep "$DRAIN"
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

TEMPORAL_PORT="$(free_port)"
# The runs list's search attributes, as `drift dev` registers them (docs/api.md, Runs). Set
# DRIFT_SEARCH_ATTRIBUTES= (empty) to bench without them: runs then keep none (no upserts).
DRIFT_SEARCH_ATTRIBUTES="${DRIFT_SEARCH_ATTRIBUTES---search-attribute DriftTenant=Keyword --search-attribute DriftDefinition=Keyword --search-attribute DriftVersion=Keyword --search-attribute DriftStatus=Keyword --search-attribute DriftWaitingOn=Keyword --search-attribute DriftWaitingSince=Datetime}"
temporal server start-dev --headless --ip 127.0.0.1 --port "$TEMPORAL_PORT" --ui-port "$(free_port)" \
    --log-level warn --dynamic-config-value history.transferProcessorMaxPollRPS=1000 \
    --dynamic-config-value history.timerProcessorMaxPollRPS=1000 \
    $DRIFT_SEARCH_ATTRIBUTES >"$WORK/temporal.log" 2>&1 &
PIDS+=($!)
REDIS_PORT="$(free_port)"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
