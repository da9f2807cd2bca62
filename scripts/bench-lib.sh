# Shared by the single-node bench scripts, sourced from the repository's root after setting NAME
# and DRAIN (scripts/bench-prelude.sh): the prelude, then Temporal's in-memory dev server
# ($TEMPORAL_PORT; the SQLite one gets through fewer starts a second), tuned as `drift dev` tunes
# its own, and a redis-server ($REDIS_PORT). `start_dev` adds `drift dev` on them ($PORT).
source scripts/bench-prelude.sh
start_temporal
REDIS_PORT="$(free_port)"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >"$WORK/redis.log" 2>&1 &
PIDS+=($!)

# `drift dev` (gateway and worker in one process, whose CPU the benches measure) on this Temporal
# and Redis, with no rate limit (the benches make thousands of calls), on $PORT ($DEV_PID);
# returns once it answers, with $BENCH the `drift bench` command aimed at it.
start_dev() {
    PORT="$(free_port)"
    echo "$NAME: Temporal (in memory) on $TEMPORAL_PORT, Redis on $REDIS_PORT, drift dev on $PORT"
    DRIFT_LOG=warn "$DRIFT" dev --temporal-address "127.0.0.1:$TEMPORAL_PORT" --redis-url "redis://127.0.0.1:$REDIS_PORT" \
        --listen "127.0.0.1:$PORT" --data-dir "$WORK/dev" --rate-limit 0 >"$WORK/dev.log" 2>&1 &
    DEV_PID=$!
    PIDS+=("$DEV_PID")
    wait_http "http://127.0.0.1:$PORT/healthz"
    BENCH=("$DRIFT" bench --url "http://127.0.0.1:$PORT" --data-dir "$WORK/dev")
}
