//! Wiring: builds the gateway state and the worker from configuration and serves them until
//! SIGINT/SIGTERM, with a bounded drain.

use crate::bus::{Store, hub::Hub};
use crate::config::{Common, GatewayArgs, ServeArgs, WorkerArgs, pairs};
use crate::dsl::Registry;
use crate::gateway::{AppState, GatewayConfig, app};
use crate::temporal::activities::Retention;
use crate::temporal::client::{Temporal, TemporalConfig, connect};
use crate::temporal::worker::{self, WorkerConfig};
use crate::webhook::{Allowlist, DeliveryConfig, Secrets, parse_schedule};
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const DRAIN: Duration = Duration::from_secs(10);

pub fn retention(c: &Common) -> Retention {
    Retention {
        history_len: c.history_len.max(1),
        ttl: Duration::from_secs(c.state_ttl_secs.max(60)),
    }
}

pub fn temporal_config(c: &Common, address: &str) -> TemporalConfig {
    TemporalConfig {
        address: address.to_string(),
        namespace: c.namespace.clone(),
        task_queue: c.task_queue.clone(),
    }
}

/// Loads definitions and applies `--enum` overrides.
pub fn load_registry(g: &GatewayArgs, extra_enums: &[(String, String)]) -> anyhow::Result<Registry> {
    let mut reg = Registry::load_dir(&g.definitions).with_context(|| {
        format!(
            "loading workflow definitions from {} (set --definitions)",
            g.definitions.display()
        )
    })?;
    let mut pairs: Vec<(String, String)> = extra_enums.to_vec();
    for kv in &g.enums {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--enum {kv:?} must be KEY=VALUE"))?;
        pairs.push((k.to_string(), v.to_string()));
    }
    for (k, v) in pairs {
        reg.override_enum(&k, serde_json::Value::String(v));
    }
    Ok(reg)
}

/// Everything a gateway needs, connected.
pub async fn gateway_state(
    common: &Common,
    g: &GatewayArgs,
    registry: Registry,
    temporal: Temporal,
    redis_url: &str,
    shutdown: CancellationToken,
) -> anyhow::Result<AppState> {
    let store = Store::connect(redis_url, retention(common))
        .await
        .with_context(|| format!("connecting to Redis at {redis_url}"))?;
    let hub = Hub::start(redis::Client::open(redis_url)?, g.hub_shards, shutdown.clone());
    Ok(AppState {
        registry: Arc::new(registry),
        temporal: Arc::new(temporal),
        store,
        hub,
        cfg: Arc::new(GatewayConfig {
            key_prefix: common.key_prefix.clone(),
            default_wait: Duration::from_millis(g.default_wait_ms),
            max_wait: Duration::from_millis(g.max_wait_ms.max(g.default_wait_ms)),
            history_limit: g.history_limit.max(100),
            max_body_bytes: g.max_body_bytes,
            allowlist: Allowlist::parse(&g.callback_allow).map_err(|e| anyhow::anyhow!("--callback-allow: {e}"))?,
            client_callbacks: pairs(&g.client_callbacks, "--client-callback")?,
        }),
        metrics: crate::telemetry::metrics(),
        tokens: Arc::new(crate::gateway::token::Tokens::new(
            g.stream_secret.as_deref(),
            Duration::from_secs(g.stream_token_ttl_secs),
        )),
        shutdown,
    })
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
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

/// Serves `router` on `listener` until `shutdown`, then drains for at most `DRAIN`.
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let token = shutdown.clone();
    let server = axum::serve(listener, router).with_graceful_shutdown(async move { token.cancelled().await });
    tokio::select! {
        r = server => r.context("HTTP server failed"),
        _ = async { shutdown.cancelled().await; tokio::time::sleep(DRAIN).await } => {
            tracing::warn!("drain time over; closing remaining connections");
            Ok(())
        }
    }
}

/// `serve` and `worker` run against existing Temporal and Redis; only `dev` starts its own.
fn external_addresses(c: &Common, command: &str) -> anyhow::Result<(String, String)> {
    let address = c
        .temporal_address
        .clone()
        .with_context(|| format!("--temporal-address (DRIFT_TEMPORAL_ADDRESS) is required for {command}"))?;
    let redis_url = c
        .redis_url
        .clone()
        .with_context(|| format!("--redis-url (DRIFT_REDIS_URL) is required for {command}"))?;
    Ok((address, redis_url))
}

pub async fn serve(a: ServeArgs) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let (address, redis_url) = external_addresses(&a.common, "serve")?;
    let registry = load_registry(&a.gateway, &[])?;
    if a.gateway.stream_secret.is_none() {
        tracing::warn!(
            "no --stream-secret (DRIFT_STREAM_SECRET): stream tokens will only work on this gateway process"
        );
    }
    let tcfg = temporal_config(&a.common, &address);
    let mut worker_thread = None;
    let temporal = if a.embed_worker {
        let client = connect(&tcfg)
            .await
            .with_context(|| format!("connecting to Temporal at {address}"))?;
        worker_thread = Some(worker::spawn(
            client.clone(),
            worker_config(&a.common, &redis_url)?,
            shutdown.clone(),
        )?);
        Temporal::with_client(tcfg, client)
    } else {
        Temporal::new(tcfg)
    };
    let state = gateway_state(&a.common, &a.gateway, registry, temporal, &redis_url, shutdown.clone()).await?;
    let listener = tokio::net::TcpListener::bind(&a.gateway.listen)
        .await
        .with_context(|| format!("binding {}", a.gateway.listen))?;
    tracing::info!(listen = %a.gateway.listen, "gateway serving");
    spawn_signal(shutdown.clone());
    serve_router(listener, app(state), shutdown).await?;
    if let Some(t) = worker_thread {
        join_worker(t).await;
    }
    Ok(())
}

pub fn worker_config(c: &Common, redis_url: &str) -> anyhow::Result<WorkerConfig> {
    let delivery = DeliveryConfig {
        secrets: Secrets {
            default: c.webhook_secret.clone(),
            per_client: pairs(&c.client_secrets, "--client-secret")?,
        },
        schedule: parse_schedule(&c.webhook_schedule).map_err(|e| anyhow::anyhow!("--webhook-schedule: {e}"))?,
        timeout: Duration::from_millis(c.webhook_timeout_ms.max(1)),
    };
    let all = delivery.secrets.default.iter().map(|s| ("(default)", s));
    for (client, secret) in all.chain(delivery.secrets.per_client.iter().map(|(c, s)| (c.as_str(), s))) {
        standardwebhooks::Webhook::new(secret)
            .map_err(|e| anyhow::anyhow!("webhook secret for {client} is not a whsec_ base64 secret: {e:?}"))?;
    }
    Ok(WorkerConfig {
        task_queue: c.task_queue.clone(),
        redis_url: redis_url.to_string(),
        retention: retention(c),
        delivery,
    })
}

pub async fn worker(a: WorkerArgs) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let (address, redis_url) = external_addresses(&a.common, "worker")?;
    let client = connect(&temporal_config(&a.common, &address))
        .await
        .with_context(|| format!("connecting to Temporal at {address}"))?;
    let t = worker::spawn(client, worker_config(&a.common, &redis_url)?, shutdown.clone())?;
    tracing::info!(task_queue = %a.common.task_queue, "worker started");
    spawn_signal(shutdown.clone());
    shutdown.cancelled().await;
    join_worker(t).await;
    Ok(())
}

pub fn spawn_signal(shutdown: CancellationToken) {
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown signal received; draining");
        shutdown.cancel();
    });
}

/// Waits (bounded) for the worker thread to finish its in-flight tasks.
pub async fn join_worker(t: std::thread::JoinHandle<anyhow::Result<()>>) {
    let waited = tokio::time::timeout(DRAIN, tokio::task::spawn_blocking(move || t.join())).await;
    match waited {
        Ok(Ok(Ok(Ok(())))) => tracing::info!("worker stopped"),
        Ok(Ok(Ok(Err(e)))) => tracing::error!(error = %e, "worker ended with an error"),
        _ => tracing::warn!("worker did not stop within the drain time"),
    }
}
