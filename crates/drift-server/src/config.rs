//! The gateway's and the worker's command line and `DRIFT_*` environment (`drift serve`,
//! `drift worker`, and what `drift dev` shares with them); each other tool owns its own.

use clap::Args;
use drift_core::engine::{Budgets, TEMPORAL_PAYLOAD_LIMIT};
use std::path::PathBuf;

/// How a command-line tool reaches a running gateway.
#[derive(Args, Debug, Clone)]
pub struct GatewayClientArgs {
    /// The gateway (e.g. a running `drift dev`).
    #[arg(long, global = true, env = "DRIFT_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// API key (or JWT) to call with; default: `drift dev`'s key from the data folder.
    #[arg(long, global = true, env = "DRIFT_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// `drift dev`'s data folder, where its dev key is.
    #[arg(long, global = true, env = "DRIFT_DATA_DIR", default_value = ".drift")]
    pub data_dir: PathBuf,
}

/// How the gateway authenticates callers.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthArg {
    /// Every `/v3` call needs an API key or a JWT.
    Required,
    /// No authentication: the tenant headers are trusted as sent. Trusted networks only.
    None,
}

/// `drift dev`'s key store: a SQLite file in the data folder.
pub fn default_database_url(data_dir: &std::path::Path) -> String {
    format!("sqlite://{}", data_dir.join("drift.db").display())
}

#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Temporal frontend address (host:port). `dev` starts its own when absent.
    #[arg(long, env = "DRIFT_TEMPORAL_ADDRESS")]
    pub temporal_address: Option<String>,
    /// Key that signs answer links (`POST /v3/workflow/{id}/links`, and screens whose node says
    /// `answerLink`); every gateway and worker needs the same one, kept across restarts.
    /// Without it, one is made on first use and kept in Redis, where every process on that
    /// Redis finds it.
    #[arg(long, env = "DRIFT_LINK_SECRET", hide_env_values = true)]
    pub link_secret: Option<String>,
    /// The address people reach the gateways' answer pages at (answer links are made with it),
    /// e.g. `https://drift.example.com`. Default on a gateway: the address it listens on. A
    /// worker without it puts no `answerUrl` in screens whose node says `answerLink`.
    #[arg(long, env = "DRIFT_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Temporal namespace.
    #[arg(long, env = "DRIFT_NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// Temporal task queue shared by gateways and workers.
    #[arg(long, env = "DRIFT_TASK_QUEUE", default_value = "drift")]
    pub task_queue: String,
    /// One Redis server (redis://[user:password@]host:port). `dev` starts its own when neither
    /// this nor --redis-cluster is given.
    #[arg(long, env = "DRIFT_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// A Redis Cluster instead: some of its nodes, host:port (or redis://user:password@host:port),
    /// comma-separated; the rest are discovered. Each workflow's keys and channel live in one
    /// slot, and live delivery uses sharded pub/sub.
    #[arg(long, env = "DRIFT_REDIS_CLUSTER", value_delimiter = ',', hide_env_values = true)]
    pub redis_cluster: Vec<String>,
    /// A state counts as published once this many replicas of its Redis master hold it (WAIT),
    /// so a master that dies right after taking a state loses nothing: its publish is repeated
    /// on the replica that takes over. Masters without healthy replicas are not waited for.
    /// 0: do not wait.
    #[arg(long, env = "DRIFT_REDIS_REPLICA_ACKS", default_value_t = 1)]
    pub redis_replica_acks: usize,
    /// Prefix of every Redis key and channel (separates deployments sharing a Redis).
    #[arg(long, env = "DRIFT_KEY_PREFIX", default_value = "drift")]
    pub key_prefix: String,
    /// States kept per workflow in the Redis history log (for replay to reconnecting streams).
    #[arg(long, env = "DRIFT_HISTORY_LEN", default_value_t = 100, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub history_len: usize,
    /// How long Redis keeps a workflow's latest state and history after its last change.
    #[arg(long, env = "DRIFT_STATE_TTL_SECS", default_value_t = 7 * 24 * 3600, value_parser = clap::value_parser!(u64).range(60..))]
    pub state_ttl_secs: u64,
    /// Default Standard Webhooks signing secret (`whsec_…`) for clients without their own.
    #[arg(long, env = "DRIFT_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// Per-client signing secret, CLIENT=whsec_… (repeatable, or comma-separated in the env).
    #[arg(
        long = "client-secret",
        env = "DRIFT_CLIENT_SECRETS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub client_secrets: Vec<String>,
    /// Secret rotation: the default secret being replaced. Until --webhook-rotation-ends, each
    /// request is signed with --webhook-secret and with this one (two signatures in
    /// `webhook-signature`), so receivers switch when they are ready.
    #[arg(long, env = "DRIFT_WEBHOOK_PREVIOUS_SECRET", hide_env_values = true)]
    pub webhook_previous_secret: Option<String>,
    /// Secret rotation for one client: CLIENT=whsec_… being replaced by its --client-secret
    /// (repeatable, or comma-separated in the env).
    #[arg(
        long = "client-previous-secret",
        env = "DRIFT_CLIENT_PREVIOUS_SECRETS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub client_previous_secrets: Vec<String>,
    /// When the rotation's overlap ends (RFC 3339, e.g. 2026-12-31T00:00:00Z): from then on the
    /// previous secrets sign nothing. Without it they sign until removed from the flags.
    #[arg(long, env = "DRIFT_WEBHOOK_ROTATION_ENDS", value_parser = rfc3339)]
    pub webhook_rotation_ends: Option<std::time::SystemTime>,
    /// Waits between webhook retries (jittered ±20%); delivery gives up after the last.
    #[arg(long, env = "DRIFT_WEBHOOK_SCHEDULE", default_value = "5s,5m,30m,2h,5h,10h,10h")]
    pub webhook_schedule: String,
    /// Timeout of one webhook request, in milliseconds.
    #[arg(long, env = "DRIFT_WEBHOOK_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub webhook_timeout_ms: u64,
    /// Export traces (OpenTelemetry, OTLP/HTTP protobuf) to this collector, e.g.
    /// `http://127.0.0.1:4318`: a span for each call (continuing a caller's `traceparent`),
    /// carried through Temporal to the workflow, its nodes and activities, each publish and
    /// each delivery of it, and each webhook attempt (which sends `traceparent` on). Off when
    /// absent.
    #[arg(long, env = "DRIFT_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Local data folder (`dev` keeps Temporal's SQLite file, Redis data and its database here).
    #[arg(long, env = "DRIFT_DATA_DIR", default_value = ".drift")]
    pub data_dir: PathBuf,
    /// Internal networks outbound requests (webhooks, HTTP nodes) may reach anyway:
    /// `loopback`, `private` or CIDRs (comma-separated). Everything internal is refused
    /// otherwise; `dev` allows loopback.
    #[arg(long, env = "DRIFT_EGRESS_ALLOW", value_delimiter = ',')]
    pub egress_allow: Vec<String>,
    /// Largest response body an HTTP node may read, in bytes; larger answers fail the node.
    #[arg(long, env = "DRIFT_MAX_RESPONSE_BYTES", default_value_t = 1024 * 1024)]
    pub max_response_bytes: usize,
    /// Activities (HTTP nodes, webhook attempts) one worker runs at once. They mostly wait on
    /// the network, so this is well above the SDK's 100: a slow third party must not hold up
    /// every other workflow's calls.
    #[arg(long, env = "DRIFT_WORKER_ACTIVITIES", default_value_t = 2_000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub worker_activities: usize,
    /// Workflows one worker keeps in memory between their steps (about 80 KB each, plus twice
    /// their definition's JSON; runs of one definition share its parsed copy). A workflow
    /// that fell out of this cache is replayed from its history before its next step runs, so
    /// one that waits on a screen while more than this many others run is resumed more slowly.
    #[arg(long, env = "DRIFT_WORKER_CACHED_WORKFLOWS", default_value_t = 1_000)]
    pub worker_cached_workflows: usize,
    /// After SIGTERM or Ctrl-C, how long open requests, streams and the worker's tasks get to
    /// finish, in seconds. The process exits within this plus a few seconds whatever is still
    /// running; a second signal exits at once.
    #[arg(long, env = "DRIFT_DRAIN_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub drain_secs: u64,
    /// The database holding API keys and definitions: `sqlite://FILE` or `postgres://…`
    /// (several gateways share one). Default: the SQLite file `drift.db` in the data folder.
    #[arg(long, env = "DRIFT_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct GatewayArgs {
    /// Address the HTTP API listens on.
    #[arg(long, env = "DRIFT_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Folders of workflow definitions (`*.json`) and node resources (`nodes/*.json`) to bring
    /// into the database at start: each file that differs from its LATEST version is published
    /// and activated (for definitions kept in git). Repeatable, or comma-separated.
    #[arg(long, env = "DRIFT_DEFINITIONS", value_delimiter = ',', default_value = "examples")]
    pub definitions: Vec<PathBuf>,
    /// How often a gateway checks the database for definition changes it was not told about
    /// over Redis (a notice lost while Redis was away), in milliseconds.
    #[arg(long, env = "DRIFT_DEFINITIONS_CHECK_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub definitions_check_ms: u64,
    /// How often a gateway checks the key store for revocations it was not told about over
    /// Redis, in milliseconds: the longest a revoked API key can still be accepted from this
    /// gateway's cache when `drift keys revoke` could not reach Redis.
    #[arg(long, env = "DRIFT_REVOCATION_CHECK_MS", default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub revocation_check_ms: u64,
    /// Sync wait when the request has no `Prefer: wait=N`, in milliseconds.
    #[arg(long, env = "DRIFT_DEFAULT_WAIT_MS", default_value_t = 10_000)]
    pub default_wait_ms: u64,
    /// Upper bound for `Prefer: wait=N`, in milliseconds.
    #[arg(long, env = "DRIFT_MAX_WAIT_MS", default_value_t = 60_000)]
    pub max_wait_ms: u64,
    /// A workflow continues as new once its Temporal history has this many events.
    #[arg(long, env = "DRIFT_HISTORY_LIMIT", default_value_t = 2_000, value_parser = clap::value_parser!(u32).range(100..))]
    pub history_limit: u32,
    /// A run's context (its start parameters, node outputs and answers) may hold at most this
    /// many bytes of JSON; the node that would take it over fails the run, naming this flag.
    /// Below Temporal's 2 MiB payload limit, with room for what continue-as-new carries.
    #[arg(long, env = "DRIFT_MAX_CONTEXT_BYTES", default_value_t = Budgets::default().context_bytes, value_parser = clap::value_parser!(u64).range(64 * 1024..))]
    pub max_context_bytes: u64,
    /// One published state (a screen's view, an end's disposition) may be at most this many
    /// bytes; a larger one fails the run, naming its node and this flag.
    #[arg(long, env = "DRIFT_MAX_STATE_BYTES", default_value_t = Budgets::default().state_bytes, value_parser = clap::value_parser!(u64).range(16 * 1024..))]
    pub max_state_bytes: u64,
    /// One node's output (an HTTP response, a script's value), an HTTP node's request or a
    /// CHILD node's parameters may be at most this many bytes; more fails the node.
    #[arg(long, env = "DRIFT_MAX_NODE_OUTPUT_BYTES", default_value_t = Budgets::default().node_output_bytes, value_parser = clap::value_parser!(u64).range(16 * 1024..))]
    pub max_node_output_bytes: u64,
    /// What a run hands Temporal whole (continue-as-new's input: definition, children, context,
    /// Back's screens, pending commands; a CHILD's start) may be at most this many bytes: Back
    /// lets its oldest screens go to fit, and a run that still would not fit ends FAILED.
    #[arg(long, env = "DRIFT_MAX_CARRY_BYTES", default_value_t = Budgets::default().carry_bytes, value_parser = clap::value_parser!(u64).range(64 * 1024..))]
    pub max_carry_bytes: u64,
    /// How deep CHILD nodes may nest; the run that would start a deeper one fails (a cycle
    /// through definitions published later ends here).
    #[arg(long, env = "DRIFT_MAX_CHILD_DEPTH", default_value_t = Budgets::default().max_child_depth, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_child_depth: u32,
    /// Redis pub/sub connections the subscription hub spreads channels over.
    #[arg(long, env = "DRIFT_HUB_SHARDS", default_value_t = 2)]
    pub hub_shards: usize,
    /// A request head must arrive whole within this many milliseconds of its first byte (a new
    /// connection's first head: of the connection's accept), or the connection is closed.
    #[arg(long, env = "DRIFT_HEAD_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub head_timeout_ms: u64,
    /// A request body must arrive whole within this many milliseconds, or the call gets 408.
    #[arg(long, env = "DRIFT_BODY_TIMEOUT_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout_ms: u64,
    /// Serve every request through hyper, instead of the listener's own lighter path for plain
    /// requests (about 16 KB more per idle stream or blocked sync call; for comparison and
    /// diagnosis).
    #[arg(long, env = "DRIFT_HYPER_ONLY")]
    pub hyper_only: bool,
    /// A kept-alive connection may wait this many milliseconds for its next request.
    #[arg(long, env = "DRIFT_IDLE_TIMEOUT_MS", default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_ms: u64,
    /// Open connections this gateway holds at most (0: no cap); one more is answered 503 and
    /// closed. Keep it under the process's open-file limit (`ulimit -n`).
    #[arg(long, env = "DRIFT_MAX_CONNECTIONS", default_value_t = 32_768)]
    pub max_connections: usize,
    /// Open connections one peer address holds at most (0: no cap); one more is answered 429
    /// and closed. Behind a proxy or load balancer every peer is the proxy: raise it, or 0.
    #[arg(long, env = "DRIFT_MAX_CONNECTIONS_PER_PEER", default_value_t = 16_384)]
    pub max_connections_per_peer: usize,
    /// Largest accepted request body (and WebSocket message), in bytes.
    #[arg(long, env = "DRIFT_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Largest start `params`, answer (`viewResponse`) or node `parameters` a call may carry, in
    /// bytes of JSON; larger ones get 413 and never reach a workflow.
    #[arg(long, env = "DRIFT_MAX_COMMAND_BYTES", default_value_t = 64 * 1024)]
    pub max_command_bytes: usize,
    /// Origins (`https://app.example.com`, comma-separated, or `*`) whose pages may open
    /// WebSockets and SSE streams and call the API (CORS). Pages served by the gateway itself on
    /// `localhost` or an IP address are always allowed.
    #[arg(long, env = "DRIFT_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// Who may show the answer page in a frame: a CSP `frame-ancestors` source list, e.g.
    /// `https://intranet.example.com` (default `'none'`: nobody).
    #[arg(long, env = "DRIFT_ANSWER_FRAME_ANCESTORS", default_value = "'none'", value_parser = frame_ancestors)]
    pub answer_frame_ancestors: String,
    /// Workflow starts this gateway has in flight to Temporal at once; the rest wait their turn
    /// (then 503 `busy`, with nothing started), instead of piling onto the server until every
    /// call misses its deadline.
    #[arg(long, env = "DRIFT_MAX_STARTS_IN_FLIGHT", default_value_t = drift_temporal::STARTS_IN_FLIGHT, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_starts_in_flight: usize,
    /// How long a start may wait for its turn, in milliseconds.
    #[arg(long, env = "DRIFT_START_TURN_WAIT_MS", default_value_t = drift_temporal::START_TURN_WAIT.as_millis() as u64)]
    pub start_turn_wait_ms: u64,
    /// Sync requests that may wait at once on this gateway; more get 503 with Retry-After.
    #[arg(long, env = "DRIFT_MAX_WAITERS", default_value_t = 10_000)]
    pub max_waiters: usize,
    /// Live connections (SSE and WebSocket) this gateway holds; more get 429.
    #[arg(long, env = "DRIFT_MAX_STREAMS", default_value_t = 20_000)]
    pub max_streams: usize,
    /// Live connections one tenant may hold on this gateway. A WebSocket opened without
    /// credentials counts for the tenant of the first stream token it follows with; until then
    /// such sockets share one count of this size.
    #[arg(long, env = "DRIFT_MAX_STREAMS_PER_TENANT", default_value_t = 5_000)]
    pub max_streams_per_tenant: usize,
    /// A WebSocket opened without credentials that follows no workflow (with a stream token)
    /// within this many milliseconds is closed (1008), so idle anonymous sockets cannot hold
    /// the gateway's places.
    #[arg(long, env = "DRIFT_WS_SUBSCRIBE_WITHIN_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub ws_subscribe_within_ms: u64,
    /// Requests per second per credential (0: no limit); more get 429 with Retry-After.
    #[arg(long, env = "DRIFT_RATE_LIMIT", default_value_t = 200)]
    pub rate_limit: u32,
    /// Requests a credential may make at once above its rate.
    #[arg(long, env = "DRIFT_RATE_BURST", default_value_t = 1_000)]
    pub rate_burst: u32,
    /// Where callbacks may go: `scheme://host[:port]` patterns with `*` (comma-separated). A bare
    /// `*` host never matches loopback or private addresses; name them to allow them.
    #[arg(
        long = "callback-allow",
        env = "DRIFT_CALLBACK_ALLOW",
        value_delimiter = ',',
        default_value = "https://*"
    )]
    pub callback_allow: Vec<String>,
    /// Default callback of a client for `mode: "async"` without a callbackUrl, CLIENT=URL
    /// (repeatable, or comma-separated in the env).
    #[arg(long = "client-callback", env = "DRIFT_CLIENT_CALLBACKS", value_delimiter = ',')]
    pub client_callbacks: Vec<String>,
    /// Key that signs stream tokens; every gateway replica needs the same one. Without it a
    /// random key is used and tokens only work on this process.
    #[arg(long, env = "DRIFT_STREAM_SECRET", hide_env_values = true)]
    pub stream_secret: Option<String>,
    /// `required`: every `/v3` call needs an API key (from the database) or a JWT. `none`: no
    /// authentication at all (logged as a warning on every start).
    #[arg(long, env = "DRIFT_AUTH", value_enum, default_value = "required")]
    pub auth: AuthArg,
    /// Accept HS256 JWTs signed with this secret.
    #[arg(long, env = "DRIFT_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Accept RS256/ES256 JWTs signed by a key in this JWKS file.
    #[arg(long, env = "DRIFT_JWKS_FILE")]
    pub jwks_file: Option<PathBuf>,
    /// Required `iss` of JWTs.
    #[arg(long, env = "DRIFT_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required `aud` of JWTs.
    #[arg(long, env = "DRIFT_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// How long a workflow may last in all when its definition has no `executionTimeoutMs`;
    /// past it, it ends as FAILED. In seconds (default 30 days).
    #[arg(long, env = "DRIFT_EXECUTION_TIMEOUT_SECS", default_value_t = 30 * 24 * 3600, value_parser = clap::value_parser!(u64).range(1..))]
    pub execution_timeout_secs: u64,
    /// How often the gateway checks that the workflows its live followers hold still run, so
    /// an end outside Drift (Temporal's CLI or UI, a timeout) reaches them; in seconds.
    #[arg(long, env = "DRIFT_RECONCILE_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub reconcile_secs: u64,
    /// Lifetime of a stream token, in seconds.
    #[arg(long, env = "DRIFT_STREAM_TOKEN_TTL_SECS", default_value_t = 3600)]
    pub stream_token_ttl_secs: u64,
    /// Set an `enumStore` value in every loaded definition that has it (KEY=VALUE, repeatable),
    /// e.g. `--enum apiBase=https://api.example.com`.
    #[arg(long = "enum", env = "DRIFT_ENUMS", value_delimiter = ',')]
    pub enums: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub gateway: GatewayArgs,
    /// Also run a worker in this process; starts then use Eager Workflow Start.
    #[arg(long, env = "DRIFT_EMBED_WORKER")]
    pub embed_worker: bool,
    /// Serve the examples' API stand-ins under /stand-ins and point `apiBase` at them (as
    /// `drift dev` does).
    #[arg(long, hide = true)]
    pub stand_ins: bool,
}

#[derive(Args, Debug, Clone)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub common: Common,
    /// Where the worker serves Prometheus metrics (`GET /metrics`: webhook attempts, publishes,
    /// cache misses); off when unset. A gateway serves its own on its --listen address.
    #[arg(long, env = "DRIFT_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

impl GatewayArgs {
    /// The budgets every run this gateway starts gets. Refuses a context budget that leaves
    /// no room to continue as new; warns of a carry budget over Temporal's default payload
    /// limit (a cluster may raise its own).
    pub fn budgets(&self) -> anyhow::Result<Budgets> {
        let b = Budgets {
            context_bytes: self.max_context_bytes,
            state_bytes: self.max_state_bytes,
            node_output_bytes: self.max_node_output_bytes,
            carry_bytes: self.max_carry_bytes,
            max_child_depth: self.max_child_depth,
        };
        if b.context_bytes >= b.carry_bytes {
            anyhow::bail!(
                "--max-context-bytes ({}) must be below --max-carry-bytes ({}): a run carries its context, its \
                 definition and more when it continues as new",
                b.context_bytes,
                b.carry_bytes
            );
        }
        if b.carry_bytes > TEMPORAL_PAYLOAD_LIMIT || b.state_bytes > TEMPORAL_PAYLOAD_LIMIT {
            tracing::warn!(
                carry = b.carry_bytes,
                state = b.state_bytes,
                limit = TEMPORAL_PAYLOAD_LIMIT,
                "a budget is over Temporal's default payload limit: unless your cluster's limit.blobSize.error is \
                 above it, runs that reach it stop with workflow_task_failing"
            );
        }
        Ok(b)
    }
}

/// Parses `KEY=VALUE` pairs.
pub fn pairs(items: &[String], what: &str) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    items
        .iter()
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("{what} {kv:?} must be KEY=VALUE"))?;
            Ok((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

/// An instant written as RFC 3339.
fn rfc3339(v: &str) -> Result<std::time::SystemTime, String> {
    chrono::DateTime::parse_from_rfc3339(v.trim())
        .map(Into::into)
        .map_err(|e| format!("{e}: write an RFC 3339 instant, like 2026-12-31T00:00:00Z"))
}

/// A CSP source list for `frame-ancestors`: sources separated by spaces, nothing that could end
/// the directive or the header.
fn frame_ancestors(v: &str) -> Result<String, String> {
    let v = v.trim();
    if v.is_empty() || v.chars().any(|c| c == ';' || c == ',' || c.is_control()) {
        return Err("a space-separated list of sources ('none', 'self', https://host), without ; or ,".into());
    }
    Ok(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn serve(flags: &[&str]) -> Result<ServeArgs, String> {
        let args = ["drift serve"].iter().chain(flags).copied();
        Ok(Serve::try_parse_from(args).map_err(|e| e.to_string())?.args)
    }

    #[test]
    fn out_of_range_settings_are_refused_naming_the_flag_not_silently_raised() {
        for (flag, at_least) in [
            ("--state-ttl-secs=10", "60"),
            ("--history-limit=5", "100"),
            ("--definitions-check-ms=1", "100"),
            ("--head-timeout-ms=0", "1"),
            ("--worker-activities=0", "1"),
            ("--history-len=0", "1"),
        ] {
            let e = serve(&[flag]).expect_err(flag);
            let name = flag.split('=').next().unwrap();
            assert!(e.contains(name) && e.contains(at_least), "{flag}: {e}");
        }
        let ok = serve(&["--state-ttl-secs=60", "--history-limit=100"]).unwrap();
        assert_eq!((ok.common.state_ttl_secs, ok.gateway.history_limit), (60, 100));
    }
}
