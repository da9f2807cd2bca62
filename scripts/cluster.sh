#!/usr/bin/env bash
# The whole scale-out topology on one machine, each part its own process:
#   a Redis Cluster of 6 nodes (3 masters, each with a replica)   (or, --redis standalone, one server)
#   one Temporal dev server                                        (or --temporal-address)
#   PostgreSQL for API keys and definitions                        (or --database-url)
#   3 `drift serve` gateways, no load balancer and nothing sticky  (--gateways N)
#   2 `drift worker`s                                              (--workers N)
# It runs until Ctrl-C (or SIGTERM) and then stops everything it started. Once all parts answer
# it writes DIR/topology.json (every address and process id, the admin API key, the webhook
# secret) and prints where things are; the tests read that file.
#
# Usage: scripts/cluster.sh [--dir DIR] [--redis cluster|standalone] [--gateways N] [--workers N]
#                           [--first-port P] [--temporal-address HOST:PORT] [--database-url URL]
#                           [--drift-bin PATH]
# More `drift serve` / `drift worker` settings go in through their DRIFT_* environment variables.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR=""
REDIS_MODE=cluster
GATEWAYS=3
WORKERS=2
FIRST_PORT=""
TEMPORAL_ADDRESS=""
DATABASE_URL=""
DRIFT="${DRIFT_BIN:-}"
while [ $# -gt 0 ]; do
    case "$1" in
        --dir) DIR="$2"; shift 2 ;;
        --redis) REDIS_MODE="$2"; shift 2 ;;
        --gateways) GATEWAYS="$2"; shift 2 ;;
        --workers) WORKERS="$2"; shift 2 ;;
        --first-port) FIRST_PORT="$2"; shift 2 ;;
        --temporal-address) TEMPORAL_ADDRESS="$2"; shift 2 ;;
        --database-url) DATABASE_URL="$2"; shift 2 ;;
        --drift-bin) DRIFT="$2"; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "cluster: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$REDIS_MODE" in cluster|standalone) ;; *) echo "cluster: --redis is cluster or standalone" >&2; exit 2 ;; esac
export PATH="$(python3 -c 'import sysconfig;print(sysconfig.get_path("scripts"))'):$PATH"
for need in redis-server redis-cli temporal python3; do
    command -v "$need" >/dev/null 2>&1 || { echo "cluster: $need is missing; run scripts/setup.sh" >&2; exit 1; }
done
if [ -z "$DRIFT" ]; then
    DRIFT="$ROOT/target/release/drift"
    if [ ! -x "$DRIFT" ]; then
        echo "cluster: building drift (release; the first build takes several minutes)"
        (cd "$ROOT" && cargo build -q --release --bin drift)
    fi
fi
[ -n "$DIR" ] || DIR="$ROOT/.drift/cluster"
# Gateways hold a socket per live follower.
ulimit -n "$(ulimit -Hn)"
rm -rf "$DIR"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"

PIDS=()
PG_DATA=""
stopping=0
cleanup() {
    [ "$stopping" = 1 ] && return
    stopping=1
    trap '' INT TERM
    echo "cluster: stopping everything it started"
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    # Three seconds to stop, then no more: whoever stops this script (a test harness) may not
    # wait longer, and nothing here holds data worth a longer drain.
    for _ in $(seq 1 12); do
        alive=0
        for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.25
    done
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
# A cluster node also listens on its port + 10000 (the cluster bus), so both must be free and
# the port at most 55535.
free_cluster_port() {
    python3 - <<'PY'
import random, socket
while True:
    p = random.randint(20000, 45000)
    try:
        for q in (p, p + 10000):
            s = socket.socket(); s.bind(("127.0.0.1", q)); s.close()
    except OSError:
        continue
    print(p); break
PY
}
fail() { echo "cluster: $*; logs in $DIR" >&2; exit 1; }
wait_for() { # what, command...
    local what="$1"; shift
    for _ in $(seq 1 240); do "$@" >/dev/null 2>&1 && return 0; sleep 0.25; done
    fail "$what did not come up within 60 s"
}
# PostgreSQL refuses to run as root: as root its commands run as the postgres user (setpriv
# execs in place, so a background server's pid is the server's own).
AS_PG=()
[ "$(id -u)" = 0 ] && AS_PG=(setpriv --reuid=postgres --regid=postgres --init-groups --)

# --- Redis ---------------------------------------------------------------------------------
REDIS_PORTS=()
REDIS_PIDS=()
start_redis() { # port, extra args...
    local port="$1"; shift
    mkdir -p "$DIR/redis-$port"
    redis-server --port "$port" --bind 127.0.0.1 --protected-mode no --dir "$DIR/redis-$port" \
        --save "" --appendonly no "$@" >"$DIR/redis-$port/redis.log" 2>&1 &
    PIDS+=($!); REDIS_PORTS+=("$port"); REDIS_PIDS+=($!)
}
if [ "$REDIS_MODE" = cluster ]; then
    echo "cluster: starting a 6-node Redis Cluster (3 masters, 3 replicas)"
    for _ in 1 2 3 4 5 6; do
        # A replica may take over however stale it is (validity factor 0): the failover tests
        # kill masters on an idle cluster.
        start_redis "$(free_cluster_port)" --cluster-enabled yes --cluster-config-file nodes.conf \
            --cluster-node-timeout 2000 --cluster-replica-validity-factor 0
    done
    for p in "${REDIS_PORTS[@]}"; do wait_for "redis-server on $p" redis-cli -p "$p" ping; done
    nodes=(); for p in "${REDIS_PORTS[@]}"; do nodes+=("127.0.0.1:$p"); done
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$DIR/cluster-create.log" 2>&1 \
        || fail "redis-cli --cluster create failed"
    cluster_ok() {
        for p in "${REDIS_PORTS[@]}"; do
            redis-cli -p "$p" cluster info | grep -q 'cluster_state:ok' || return 1
            if redis-cli -p "$p" info replication | grep -q 'role:slave'; then
                redis-cli -p "$p" info replication | grep -q 'master_link_status:up' || return 1
            fi
        done
    }
    wait_for "the Redis Cluster (every slot served, every replica linked)" cluster_ok
    REDIS_FLAG="--redis-cluster"
    REDIS_VALUE="$(IFS=,; echo "${nodes[*]}")"
else
    echo "cluster: starting one Redis server"
    start_redis "$(free_port)"
    wait_for "redis-server" redis-cli -p "${REDIS_PORTS[0]}" ping
    REDIS_FLAG="--redis-url"
    REDIS_VALUE="redis://127.0.0.1:${REDIS_PORTS[0]}"
fi

# --- Temporal --------------------------------------------------------------------------------
TEMPORAL_PID=0
if [ -z "$TEMPORAL_ADDRESS" ]; then
    port="$(free_port)"
    echo "cluster: starting a Temporal dev server on 127.0.0.1:$port"
    # Tuned as `drift dev` tunes its own (see docs/scale.md).
    # The runs list's search attributes, as `drift dev` registers them (docs/api.md, Runs).
    DRIFT_SEARCH_ATTRIBUTES="--search-attribute DriftTenant=Keyword --search-attribute DriftDefinition=Keyword --search-attribute DriftVersion=Keyword --search-attribute DriftStatus=Keyword --search-attribute DriftWaitingOn=Keyword --search-attribute DriftWaitingSince=Datetime"
    temporal server start-dev --headless --ip 127.0.0.1 --port "$port" --ui-port "$(free_port)" \
        --db-filename "$DIR/temporal.db" --log-level warn \
        --dynamic-config-value history.transferProcessorMaxPollRPS=1000 \
        --dynamic-config-value history.timerProcessorMaxPollRPS=1000 \
        $DRIFT_SEARCH_ATTRIBUTES >"$DIR/temporal.log" 2>&1 &
    PIDS+=($!); TEMPORAL_PID=$!
    TEMPORAL_ADDRESS="127.0.0.1:$port"
    wait_for "Temporal" temporal operator namespace describe --namespace default --address "$TEMPORAL_ADDRESS"
fi

# --- PostgreSQL ------------------------------------------------------------------------------
PG_PID=0
if [ -z "$DATABASE_URL" ]; then
    bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
    [ -n "$bin" ] || fail "PostgreSQL is missing; run scripts/setup.sh"
    port="$(free_port)"
    echo "cluster: starting PostgreSQL on 127.0.0.1:$port"
    PG_DATA="$DIR/pg"
    mkdir -p "$PG_DATA"
    [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$PG_DATA"
    "${AS_PG[@]}" test -w "$PG_DATA" \
        || fail "PostgreSQL runs as the postgres user, which cannot reach $PG_DATA; use a --dir every user may traverse"
    "${AS_PG[@]}" "$bin/initdb" -D "$PG_DATA/data" -A trust -U drift >"$DIR/initdb.log" 2>&1 || fail "initdb failed"
    "${AS_PG[@]}" "$bin/postgres" -D "$PG_DATA/data" -p "$port" -k "$PG_DATA" -h 127.0.0.1 -c fsync=off \
        >"$DIR/postgres.log" 2>&1 &
    PIDS+=($!); PG_PID=$!
    DATABASE_URL="postgres://drift@127.0.0.1:$port/postgres"
    wait_for "PostgreSQL" "$bin/pg_isready" -h 127.0.0.1 -p "$port" -U drift
fi

# --- Drift -------------------------------------------------------------------------------------
# What every gateway must share: the database, the stream-token secret (and JWT keys, if used).
STREAM_SECRET="$(python3 -c 'import secrets;print(secrets.token_hex(24))')"
WEBHOOK_SECRET="${DRIFT_WEBHOOK_SECRET:-whsec_$(python3 -c 'import base64,secrets;print(base64.b64encode(secrets.token_bytes(24)).decode())')}"
# The key is made first: that also migrates the database once, before the gateways start.
API_KEY="$("$DRIFT" keys --database-url "$DATABASE_URL" create --tenant demo --client cluster --scopes admin 2>"$DIR/keys.log")" \
    || fail "drift keys create failed"
export DRIFT_TEMPORAL_ADDRESS="$TEMPORAL_ADDRESS" DRIFT_DATABASE_URL="$DATABASE_URL" \
    DRIFT_STREAM_SECRET="$STREAM_SECRET" DRIFT_WEBHOOK_SECRET="$WEBHOOK_SECRET" \
    DRIFT_EGRESS_ALLOW="${DRIFT_EGRESS_ALLOW:-loopback}" \
    DRIFT_CALLBACK_ALLOW="${DRIFT_CALLBACK_ALLOW:-https://*,http://127.0.0.1:*,http://localhost:*}"
echo "cluster: starting $WORKERS workers and $GATEWAYS gateways on $REDIS_VALUE"
WORKER_PIDS=()
for i in $(seq 1 "$WORKERS"); do
    "$DRIFT" worker "$REDIS_FLAG" "$REDIS_VALUE" >"$DIR/worker-$i.log" 2>&1 &
    PIDS+=($!); WORKER_PIDS+=($!)
done
GATEWAY_PORTS=()
GATEWAY_PIDS=()
for i in $(seq 1 "$GATEWAYS"); do
    if [ -n "$FIRST_PORT" ]; then port=$((FIRST_PORT + i - 1)); else port="$(free_port)"; fi
    # Each serves the examples' stand-in APIs too, and brings the examples into the database.
    "$DRIFT" serve "$REDIS_FLAG" "$REDIS_VALUE" --listen "127.0.0.1:$port" --stand-ins \
        --definitions "$ROOT/examples" >"$DIR/gateway-$i.log" 2>&1 &
    PIDS+=($!); GATEWAY_PORTS+=("$port"); GATEWAY_PIDS+=($!)
done
ready() { python3 -c 'import sys,urllib.request;urllib.request.urlopen(sys.argv[1],timeout=1)' "$1"; }
for p in "${GATEWAY_PORTS[@]}"; do wait_for "the gateway on $p" ready "http://127.0.0.1:$p/readyz"; done
for w in "${WORKER_PIDS[@]}"; do kill -0 "$w" 2>/dev/null || fail "a worker stopped"; done

json_list() { local IFS=,; echo "[$*]"; }
gw=(); for i in "${!GATEWAY_PORTS[@]}"; do gw+=("{\"url\":\"http://127.0.0.1:${GATEWAY_PORTS[$i]}\",\"pid\":${GATEWAY_PIDS[$i]}}"); done
rd=(); for i in "${!REDIS_PORTS[@]}"; do rd+=("{\"port\":${REDIS_PORTS[$i]},\"pid\":${REDIS_PIDS[$i]}}"); done
cat >"$DIR/topology.json.tmp" <<EOF
{"redisMode":"$REDIS_MODE","redisFlag":"$REDIS_FLAG","redis":"$REDIS_VALUE","redisNodes":$(json_list "${rd[@]}"),
 "gateways":$(json_list "${gw[@]}"),"workers":$(json_list "${WORKER_PIDS[@]}"),
 "temporalAddress":"$TEMPORAL_ADDRESS","temporalPid":$TEMPORAL_PID,"databaseUrl":"$DATABASE_URL","postgresPid":$PG_PID,
 "apiKey":"$API_KEY","tenant":"demo","webhookSecret":"$WEBHOOK_SECRET","keyPrefix":"${DRIFT_KEY_PREFIX:-drift}","dir":"$DIR"}
EOF
mv "$DIR/topology.json.tmp" "$DIR/topology.json"
cat <<EOF

  The topology is running (logs and topology.json in $DIR).
    Gateways:  $(for p in "${GATEWAY_PORTS[@]}"; do printf 'http://127.0.0.1:%s ' "$p"; done)
    Redis:     $REDIS_FLAG $REDIS_VALUE
    Temporal:  $TEMPORAL_ADDRESS
    Database:  $DATABASE_URL
    API key:   $API_KEY   (tenant demo, admin)
  Press Ctrl-C to stop everything.

EOF
# Until a signal: a part that dies (a test kills some) is left dead.
while true; do sleep 1 & wait $! || true; done
