//! Building and running the application: one `Application::build(settings)` that `drift
//! serve`, `drift dev` and the integration tests all use, then serving until SIGINT/SIGTERM
//! with a bounded drain.

use crate::config::{AuthArg, Common, GatewayArgs, ServeArgs, WorkerArgs, pairs};
use anyhow::Context;
use drift_bus::{Hub, Layout, RedisTarget, Retention, Store};
use drift_core::dsl::Registry;
use drift_core::links::LinkKeys;
use drift_db::Db;
use drift_gateway::{AppState, GatewayConfig, Listener, app};
use drift_service::{AuthMode, Authenticator, Catalog, JwtVerifier, Parts, Service, ServiceConfig, Tokens};
use drift_temporal::webhook::{Allowlist, DeliveryConfig, Resender, Secrets, parse_schedule};
use drift_temporal::{Temporal, TemporalConfig, WorkerConfig, connect, spawn_worker};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What a process may take beyond its drain time to end (the runtime's last tasks, `drift
/// dev`'s children) before the watchdog ends it.
pub const EXIT_GRACE: Duration = Duration::from_secs(5);

/// What an application is built from: `drift serve`'s configuration, plus what `drift dev`
/// adds around it.
#[derive(Debug, Clone)]
pub struct Settings {
    pub common: Common,
    pub gateway: GatewayArgs,
    /// Run a worker in this process too; starts then use Eager Workflow Start.
    pub embed_worker: bool,
    /// Served beside the API: what a tool adds (`drift dev`'s API stand-ins and demo receiver).
    pub routes: axum::Router,
    /// `enumStore` values set to a path on this gateway's own address, known once it is bound
    /// (`apiBase` → `/stand-ins`); applied after `--enum`.
    pub own_enums: Vec<(String, String)>,
    /// The API key the demo page uses (`drift dev`'s own key).
    pub demo_key: Option<String>,
    /// Set while a process this application depends on is down (`drift dev`'s children).
    pub outage: drift_gateway::Outage,
}

impl From<ServeArgs> for Settings {
    fn from(a: ServeArgs) -> Self {
        Self {
            common: a.common,
            gateway: a.gateway,
            embed_worker: a.embed_worker,
            routes: axum::Router::new(),
            own_enums: Vec::new(),
            demo_key: None,
            outage: Default::default(),
        }
    }
}

/// A built application: listening, connected, with its worker (if embedded) running.
pub struct Application {
    listener: tokio::net::TcpListener,
    router: axum::Router,
    connections: Arc<drift_gateway::Connections>,
    worker: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
    shutdown: CancellationToken,
    drain: Duration,
}

fn retention(c: &Common) -> Retention {
    Retention {
        history_len: c.history_len,
        ttl: Duration::from_secs(c.state_ttl_secs),
    }
}

pub fn temporal_config(c: &Common, address: &str) -> TemporalConfig {
    TemporalConfig {
        address: address.to_string(),
        namespace: c.namespace.clone(),
        task_queue: c.task_queue.clone(),
        traced: c.otlp_endpoint.is_some(),
    }
}

/// The Redis the flags name (one server or a cluster), if any.
pub fn redis_target(c: &Common) -> anyhow::Result<Option<RedisTarget>> {
    RedisTarget::from_flags(c.redis_url.as_deref(), &c.redis_cluster).map_err(|e| anyhow::anyhow!(e))
}

fn layout(c: &Common) -> anyhow::Result<Layout> {
    Layout::new(&c.key_prefix).map_err(|e| anyhow::anyhow!("--key-prefix: {e}"))
}

/// `serve` and `worker` run against existing Temporal and Redis; only `dev` starts its own.
fn addresses(c: &Common, command: &str) -> anyhow::Result<(String, RedisTarget)> {
    let address = c
        .temporal_address
        .clone()
        .with_context(|| format!("--temporal-address (DRIFT_TEMPORAL_ADDRESS) is required for {command}"))?;
    let redis = redis_target(c)?.with_context(|| {
        format!("--redis-url (DRIFT_REDIS_URL) or --redis-cluster (DRIFT_REDIS_CLUSTER) is required for {command}")
    })?;
    Ok((address, redis))
}

/// The definitions: the database's published versions, after bringing in the `--definitions`
/// folders; `--enum` overrides (then `extra`) apply to what is loaded.
async fn catalog(db: Db, common: &Common, g: &GatewayArgs, extra: &[(String, String)]) -> anyhow::Result<Arc<Catalog>> {
    let mut overrides = pairs(&g.enums, "--enum")?.into_iter().collect::<Vec<_>>();
    overrides.extend(extra.iter().cloned());
    let overrides = overrides
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    let catalog = Catalog::open(db, overrides, layout(common)?.definitions_channel())
        .await
        .context("loading definitions from the database")?;
    let folders: Vec<_> = g
        .definitions
        .iter()
        .filter(|d| !d.as_os_str().is_empty())
        .cloned()
        .collect();
    if !folders.is_empty() {
        // Checked as a whole first (workflows against the folders' nodes, and against the
        // budgets their runs will have), stored as written.
        let reg = Registry::load_dirs(&folders)
            .with_context(|| format!("loading workflow definitions from {folders:?} (--definitions)"))?;
        let budgets = g.budgets()?;
        for id in reg.workflow_ids() {
            for def in reg.workflow_versions(id) {
                // The load above validated every reference, so nothing goes unchecked here.
                if let Some(e) = drift_core::engine::check_in(def, &reg, &budgets).first() {
                    anyhow::bail!(
                        "{id} (version {}) in {folders:?} (--definitions) cannot keep to its runs' budgets: {e}",
                        def.version
                    );
                }
            }
        }
        let files = Registry::raw_files(&folders).with_context(|| format!("reading {folders:?}"))?;
        let done = catalog
            .import(files, "drift (--definitions)")
            .await
            .context("storing the --definitions folders' definitions")?;
        tracing::info!(published = ?done.published, unchanged = done.unchanged, "definitions folders imported");
    }
    Ok(catalog)
}

/// The signing secrets, each checked, and a rotation that makes sense.
fn secrets(c: &Common) -> anyhow::Result<Secrets> {
    let s = Secrets {
        default: c.webhook_secret.clone(),
        per_client: pairs(&c.client_secrets, "--client-secret")?,
        previous_default: c.webhook_previous_secret.clone(),
        previous_per_client: pairs(&c.client_previous_secrets, "--client-previous-secret")?,
        previous_until: c.webhook_rotation_ends,
    };
    for (whose, secret) in s.all() {
        standardwebhooks::Webhook::new(secret)
            .map_err(|e| anyhow::anyhow!("webhook secret for {whose} is not a whsec_ base64 secret: {e:?}"))?;
    }
    if s.previous_default.is_some() && s.default.is_none() {
        anyhow::bail!("--webhook-previous-secret needs --webhook-secret: the secret it is being replaced by");
    }
    if let Some(client) = s.previous_per_client.keys().find(|c| !s.per_client.contains_key(*c)) {
        anyhow::bail!(
            "--client-previous-secret for {client:?} needs a --client-secret for {client:?}: the secret it is being replaced by"
        );
    }
    Ok(s)
}

/// How webhooks are signed and sent: by the worker, and by a gateway asked to resend one.
fn delivery_config(c: &Common) -> anyhow::Result<DeliveryConfig> {
    Ok(DeliveryConfig {
        secrets: secrets(c)?,
        schedule: parse_schedule(&c.webhook_schedule).map_err(|e| anyhow::anyhow!("--webhook-schedule: {e}"))?,
        timeout: Duration::from_millis(c.webhook_timeout_ms),
    })
}

/// A gateway's resends: signed with the same secrets as the workers', through the same egress
/// policy.
fn resender(c: &Common) -> anyhow::Result<Resender> {
    let egress =
        drift_temporal::egress::Egress::parse(&c.egress_allow).map_err(|e| anyhow::anyhow!("--egress-allow: {e}"))?;
    Ok(Resender::new(egress, delivery_config(c)?)?)
}

/// The worker's settings from the command line's (also `drift bench load --engine`'s worker).
pub fn worker_config(c: &Common, redis: &RedisTarget, links: Option<LinkKeys>) -> anyhow::Result<WorkerConfig> {
    if c.webhook_rotation_ends
        .is_some_and(|ends| ends <= std::time::SystemTime::now())
    {
        tracing::warn!("--webhook-rotation-ends has passed: the previous webhook secrets sign nothing; remove them");
    }
    let delivery = delivery_config(c)?;
    Ok(WorkerConfig {
        task_queue: c.task_queue.clone(),
        redis: redis.clone(),
        layout: layout(c)?,
        replica_acks: c.redis_replica_acks,
        retention: retention(c),
        links,
        delivery,
        egress: drift_temporal::egress::Egress::parse(&c.egress_allow)
            .map_err(|e| anyhow::anyhow!("--egress-allow: {e}"))?,
        max_response_bytes: c.max_response_bytes,
        activity_slots: c.worker_activities,
        cached_workflows: c.worker_cached_workflows,
        drain: Duration::from_secs(c.drain_secs),
    })
}

/// How callers authenticate: refuses to build an open gateway unless `--auth none` says so.
async fn authenticator(db: &Db, g: &GatewayArgs) -> anyhow::Result<Authenticator> {
    if g.auth == AuthArg::None {
        tracing::warn!(
            "authentication is OFF (--auth none): any caller can act as any tenant; use this only on a trusted network"
        );
        return Ok(Authenticator::new(AuthMode::None));
    }
    let jwks = match &g.jwks_file {
        Some(f) => Some(std::fs::read_to_string(f).with_context(|| format!("reading --jwks-file {}", f.display()))?),
        None => None,
    };
    let jwt = match (&g.jwt_secret, &jwks) {
        (None, None) => None,
        (secret, jwks) => Some(
            JwtVerifier::new(
                secret.as_deref(),
                jwks.as_deref(),
                g.jwt_issuer.clone(),
                g.jwt_audience.clone(),
            )
            .map_err(|e| anyhow::anyhow!("JWT configuration: {e}"))?,
        ),
    };
    Ok(Authenticator::new(AuthMode::Required {
        keys: Some(db.clone()),
        jwt,
    }))
}

/// The definitions database (`--database-url`; a SQLite file in the data dir by default).
async fn database(common: &Common) -> anyhow::Result<Db> {
    let database_url = common
        .database_url
        .clone()
        .unwrap_or_else(|| crate::config::default_database_url(&common.data_dir));
    if database_url.starts_with("sqlite:") {
        std::fs::create_dir_all(&common.data_dir).ok();
    }
    Db::connect(&database_url).await.with_context(|| {
        format!(
            "opening the database {} (--database-url)",
            drift_core::redact::redact(&database_url)
        )
    })
}

/// The gateway's Temporal client (start calls limited), and the worker when one is embedded
/// (it shares the connection).
async fn temporal_for_gateway(
    common: &Common,
    g: &GatewayArgs,
    address: &str,
    redis: &RedisTarget,
    embed_worker: bool,
    links: &LinkKeys,
    shutdown: &CancellationToken,
) -> anyhow::Result<(Temporal, Option<std::thread::JoinHandle<anyhow::Result<()>>>)> {
    let tcfg = temporal_config(common, address);
    let limit = |t: Temporal| t.with_start_limit(g.max_starts_in_flight, Duration::from_millis(g.start_turn_wait_ms));
    if !embed_worker {
        return Ok((limit(Temporal::new(tcfg)), None));
    }
    let client = connect(&tcfg)
        .await
        .with_context(|| format!("connecting to Temporal at {address}"))?;
    let cfg = worker_config(common, redis, Some(links.clone()))?;
    let worker = spawn_worker(client.clone(), cfg, shutdown.clone())?;
    Ok((limit(Temporal::with_client(tcfg, client)), Some(worker)))
}

fn gateway_config(g: &GatewayArgs, demo_key: Option<String>) -> GatewayConfig {
    GatewayConfig {
        default_wait: Duration::from_millis(g.default_wait_ms),
        max_wait: Duration::from_millis(g.max_wait_ms),
        max_body_bytes: g.max_body_bytes,
        body_timeout: Duration::from_millis(g.body_timeout_ms),
        demo_key,
        allowed_origins: g
            .allowed_origins
            .iter()
            .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
            .filter(|o| !o.is_empty())
            .collect(),
        answer_frame_ancestors: g.answer_frame_ancestors.clone(),
        subscribe_within: Duration::from_millis(g.ws_subscribe_within_ms),
    }
}

impl Application {
    /// Binds the listener, connects to Redis (and to Temporal when a worker is embedded),
    /// starts the worker and the hub, and builds the router. Nothing is served yet.
    pub async fn build(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let Settings {
            common,
            gateway: g,
            embed_worker,
            routes,
            own_enums,
            demo_key,
            outage,
        } = settings;
        // The recorder first: series registered as the worker and hub start (and the ones
        // exported at zero) must land in it, not in the no-op recorder before it.
        let metrics = drift_service::telemetry::metrics();
        // Webhook flags (secrets, schedule, egress) are checked before anything is opened or
        // connected: the gateway signs resends with them, an embedded worker its deliveries.
        let webhooks = Arc::new(resender(&common)?);
        let db = database(&common).await?;
        if g.max_wait_ms < g.default_wait_ms {
            anyhow::bail!(
                "--max-wait-ms ({}) must be at least --default-wait-ms ({})",
                g.max_wait_ms,
                g.default_wait_ms
            );
        }
        let auth = authenticator(&db, &g).await?;
        let (address, redis) = addresses(&common, "serve")?;
        let listener = tokio::net::TcpListener::bind(&g.listen).await.with_context(|| {
            format!(
                "binding {} (is another drift running? pass --listen 127.0.0.1:PORT)",
                g.listen
            )
        })?;
        let base = format!("http://{}", listener.local_addr()?);
        let extra: Vec<(String, String)> = own_enums
            .into_iter()
            .map(|(k, path)| (k, format!("{base}{path}")))
            .collect();
        let key_store = db.clone();
        let catalog = catalog(db, &common, &g, &extra).await?;
        let store = Store::connect(&redis, retention(&common), layout(&common)?, common.redis_replica_acks)
            .await
            .with_context(|| format!("connecting to {}", redis.describe()))?;
        let links = link_keys(&common, &store, &base).await?;
        let (temporal, worker) =
            temporal_for_gateway(&common, &g, &address, &redis, embed_worker, &links, &shutdown).await?;
        let hub = Hub::start(&redis, g.hub_shards, shutdown.clone())?;
        catalog
            .spawn_watcher(
                hub.clone(),
                Duration::from_millis(g.definitions_check_ms),
                shutdown.clone(),
            )
            .await;
        drift_service::watch_revocations(
            auth.key_cache(),
            key_store,
            hub.clone(),
            layout(&common)?.keys_channel(),
            Duration::from_millis(g.revocation_check_ms),
            shutdown.clone(),
        )
        .await;
        let service = Service::new(Parts {
            catalog,
            runtime: Arc::new(temporal),
            states: Arc::new(store),
            channels: Arc::new(hub),
            webhooks,
            auth,
            tokens: Tokens::new(g.stream_secret.as_deref(), Duration::from_secs(g.stream_token_ttl_secs)),
            links: Some(links),
            cfg: ServiceConfig {
                history_limit: g.history_limit,
                allowlist: Allowlist::parse(&g.callback_allow).map_err(|e| anyhow::anyhow!("--callback-allow: {e}"))?,
                client_callbacks: pairs(&g.client_callbacks, "--client-callback")?,
                max_command_bytes: g.max_command_bytes,
                execution_timeout: Duration::from_secs(g.execution_timeout_secs),
                budgets: g.budgets()?,
            },
        });
        service.spawn_reconciler(Duration::from_secs(g.reconcile_secs), shutdown.clone());
        crate::memory::spawn_trimmer(shutdown.clone());
        let state = AppState {
            service,
            cfg: std::sync::Arc::new(gateway_config(&g, demo_key)),
            limits: std::sync::Arc::new(drift_gateway::Limits::new(drift_gateway::LimitsConfig {
                max_waiters: g.max_waiters,
                max_streams: g.max_streams,
                max_streams_per_tenant: g.max_streams_per_tenant,
                rate_per_sec: g.rate_limit,
                rate_burst: g.rate_burst,
            })),
            metrics,
            outage,
            shutdown: shutdown.clone(),
        };
        let router = app(state).merge(routes);
        let connections = drift_gateway::Connections::new(drift_gateway::ConnConfig {
            head_timeout: Duration::from_millis(g.head_timeout_ms),
            idle_timeout: Duration::from_millis(g.idle_timeout_ms),
            hyper_only: g.hyper_only,
            max_connections: g.max_connections,
            max_per_peer: g.max_connections_per_peer,
        });
        Ok(Self {
            listener,
            router,
            connections,
            worker,
            shutdown,
            drain: Duration::from_secs(common.drain_secs),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// The drain time this application was built with (`--drain-secs`).
    pub fn drain(&self) -> Duration {
        self.drain
    }

    /// Serves until the shutdown token is cancelled, then gives open connections and the
    /// embedded worker (both told at once) the drain time to finish, and returns.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let connections = tokio_util::task::TaskTracker::new();
        let listener = Listener::new(
            self.listener,
            self.router,
            self.connections,
            connections.clone(),
            self.shutdown.clone(),
        );
        listener.run().await;
        // Shutdown: connections finish their requests (streams and sockets end themselves)
        // while the worker finishes its tasks; one deadline for both.
        let deadline = tokio::time::Instant::now() + self.drain;
        connections.close();
        let drained = async {
            if tokio::time::timeout_at(deadline, connections.wait()).await.is_err() {
                tracing::warn!("drain time over; closing remaining connections");
            }
        };
        let worker = async {
            if let Some(t) = self.worker {
                join_worker(t, deadline).await;
            }
        };
        tokio::join!(drained, worker);
        Ok(())
    }
}

/// The process's trace export, when `--otlp-endpoint` asks for it (kept until the process
/// ends: dropping it sends the last spans).
pub fn traces(c: &Common, service: &'static str) -> anyhow::Result<Option<drift_service::telemetry::Traces>> {
    c.otlp_endpoint
        .as_deref()
        .map(|e| drift_service::telemetry::init_traces(e, service))
        .transpose()
}

/// `drift serve`.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    if settings.gateway.stream_secret.is_none() {
        tracing::warn!(
            "no --stream-secret (DRIFT_STREAM_SECRET): stream tokens will only work on this gateway process"
        );
    }
    let _traces = traces(&settings.common, "drift-gateway")?;
    let shutdown = CancellationToken::new();
    let app = Application::build(settings, shutdown.clone()).await?;
    tracing::info!(listen = %app.local_addr(), "gateway serving");
    spawn_signal(shutdown, app.drain() + EXIT_GRACE);
    app.run_until_stopped().await
}

/// `drift worker`.
pub async fn worker(a: WorkerArgs) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    secrets(&a.common)?;
    let _traces = traces(&a.common, "drift-worker")?;
    let metrics = drift_service::telemetry::metrics();
    if let Some(addr) = a.metrics_listen {
        serve_worker_metrics(addr, metrics, shutdown.clone()).await?;
    }
    let (address, redis) = addresses(&a.common, "worker")?;
    let client = connect(&temporal_config(&a.common, &address))
        .await
        .with_context(|| format!("connecting to Temporal at {address}"))?;
    let links = match a.common.public_url.as_deref() {
        Some(public) => {
            let store = Store::connect(
                &redis,
                retention(&a.common),
                layout(&a.common)?,
                a.common.redis_replica_acks,
            )
            .await
            .with_context(|| format!("connecting to {}", redis.describe()))?;
            Some(link_keys(&a.common, &store, public).await?)
        }
        None => {
            tracing::warn!(
                "no --public-url (DRIFT_PUBLIC_URL): screens whose node says answerLink will go without answerUrl"
            );
            None
        }
    };
    let t = spawn_worker(client, worker_config(&a.common, &redis, links)?, shutdown.clone())?;
    tracing::info!(task_queue = %a.common.task_queue, "worker started");
    let drain = Duration::from_secs(a.common.drain_secs);
    spawn_signal(shutdown.clone(), drain + EXIT_GRACE);
    shutdown.cancelled().await;
    join_worker(t, tokio::time::Instant::now() + drain).await;
    Ok(())
}

/// A worker's own `/metrics` (and `/healthz`), until `shutdown`.
async fn serve_worker_metrics(
    addr: SocketAddr,
    handle: Option<drift_service::telemetry::PrometheusHandle>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding --metrics-listen {addr} (is the port taken?)"))?;
    let router = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let text = handle.as_ref().map(|h| h.render()).unwrap_or_default();
                async move { ([("content-type", "text/plain; version=0.0.4")], text) }
            }),
        )
        .route("/healthz", axum::routing::get(|| async { "ok" }));
    tracing::info!(%addr, "worker metrics at /metrics");
    tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "the worker's metrics listener stopped");
        }
    });
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// Cancels `shutdown` on the first SIGINT or SIGTERM. From then on the process has `limit` to
/// end before a watchdog ends it (whatever a stuck task or thread is doing), and a second
/// signal ends it at once.
pub fn spawn_signal(shutdown: CancellationToken, limit: Duration) {
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!(limit_secs = limit.as_secs(), "shutdown signal received; draining");
        eprintln!(
            "drift: stopping (at most {}s; press Ctrl-C again to exit at once)",
            limit.as_secs()
        );
        shutdown.cancel();
        // A thread of its own: the runtime may be what is stuck.
        std::thread::Builder::new()
            .name("drift-exit-watchdog".into())
            .spawn(move || {
                std::thread::sleep(limit);
                eprintln!(
                    "drift: still running {}s after the shutdown signal; exiting now",
                    limit.as_secs()
                );
                std::process::exit(1);
            })
            .ok();
        shutdown_signal().await;
        eprintln!("drift: second signal; exiting at once");
        std::process::exit(130);
    });
}

/// Waits until `deadline` for the worker thread to finish its in-flight tasks; a worker still
/// busy then is left behind (the process exits without it).
async fn join_worker(t: std::thread::JoinHandle<anyhow::Result<()>>, deadline: tokio::time::Instant) {
    let waited = tokio::time::timeout_at(deadline, tokio::task::spawn_blocking(move || t.join())).await;
    match waited {
        Ok(Ok(Ok(Ok(())))) => tracing::info!("worker stopped"),
        Ok(Ok(Ok(Err(e)))) => tracing::error!(error = %e, "worker ended with an error"),
        _ => tracing::warn!("worker did not stop within the drain time; leaving it"),
    }
}

/// The key answer links are signed with: `--link-secret`, else the one kept in Redis (made by
/// the first process that asks), so links work on every gateway and across restarts; and
/// `--public-url`, else `base`.
async fn link_keys(c: &Common, store: &Store, base: &str) -> anyhow::Result<LinkKeys> {
    let public = c.public_url.as_deref().unwrap_or(base);
    if !(public.starts_with("http://") || public.starts_with("https://")) {
        anyhow::bail!("--public-url must start with http:// or https:// (got {public:?})");
    }
    let secret = match c.link_secret.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => s.to_string(),
        None => {
            let fresh = drift_service::fresh_link_secret();
            store
                .link_secret(&fresh)
                .await
                .context("reading the answer-link secret from Redis (or pass --link-secret)")?
        }
    };
    Ok(LinkKeys::new(&secret, public))
}
