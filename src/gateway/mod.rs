//! The HTTP gateway: the `/v3` runtime API in sync mode over the shared subscription hub,
//! plus health, readiness and metrics.

mod demo;
pub mod error;
pub mod ids;
mod live;
mod runtime;
pub mod token;
mod wait;

use crate::bus::{Store, hub::Hub};
use crate::dsl::Registry;
use crate::temporal::client::Temporal;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, put};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Prefix of every Redis key and channel this deployment uses.
    pub key_prefix: String,
    pub default_wait: Duration,
    pub max_wait: Duration,
    /// Continue-as-new threshold handed to each workflow.
    pub history_limit: u32,
    pub max_body_bytes: usize,
    pub allowlist: crate::webhook::Allowlist,
    /// Default callback per client, for `mode: "async"` without a callbackUrl.
    pub client_callbacks: std::collections::BTreeMap<String, String>,
}

#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    pub temporal: Arc<Temporal>,
    pub store: Store,
    pub hub: Hub,
    pub cfg: Arc<GatewayConfig>,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    pub tokens: Arc<token::Tokens>,
    /// Cancelled on shutdown: every stream and socket closes.
    pub shutdown: tokio_util::sync::CancellationToken,
}

/// The router, separate from serving so tests can drive it.
pub fn app(state: AppState) -> Router {
    let max_body = state.cfg.max_body_bytes;
    Router::new()
        .route("/v3/workflow/start", post(runtime::start))
        .route("/v3/workflow/resume/{id}", put(runtime::resume))
        .route("/v3/workflow/{id}/disconnected-node/execute", post(runtime::execute))
        .route("/v3/workflow/terminate/{id}", delete(runtime::terminate))
        .route("/v3/workflow/{id}", get(runtime::get_state))
        .route("/v3/workflow/{id}/events", get(live::sse))
        .route("/v3/workflow/{id}/deliveries", get(runtime::deliveries))
        .route("/v3/ws", get(live::ws))
        .route("/v3/definitions", get(runtime::list_definitions))
        .route("/", get(demo::index))
        .route("/demo/app.js", get(demo::script))
        .route("/demo/style.css", get(demo::style))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    let redis = s.store.ping().await.map_err(|e| e.to_string());
    let temporal = s.temporal.ping().await.map_err(|e| e.to_string());
    let status = if redis.is_ok() && temporal.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let show = |r: Result<(), String>| r.map(|_| "ok".to_string()).unwrap_or_else(|e| e);
    (
        status,
        axum::Json(serde_json::json!({"redis": show(redis), "temporal": show(temporal)})),
    )
}

async fn metrics_text(State(s): State<AppState>) -> impl IntoResponse {
    metrics::gauge!("drift_hub_channels").set(s.hub.channel_count() as f64);
    s.metrics.as_ref().map(|h| h.render()).unwrap_or_default()
}
