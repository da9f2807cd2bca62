# Shared by the single-node bench scripts, sourced from the repository's root after setting NAME
# and DRAIN (scripts/bench-prelude.sh): the prelude, then Temporal's in-memory dev server
# ($TEMPORAL_PORT; the SQLite one gets through fewer starts a second), tuned as `drift dev` tunes
# its own, and a redis-server ($REDIS_PORT).
source scripts/bench-prelude.sh
start_temporal
REDIS_PORT="$(free_port)"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
