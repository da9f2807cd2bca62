//! The transports: the `/v3` REST API (sync and async), Server-Sent Events and the WebSocket,
//! plus the demo page, health, readiness and metrics. Handlers parse and check what arrives,
//! hand it to the service layer, and turn its answers into their own wire format.

mod api_doc;
mod asyncapi;
mod conn;
mod definitions;
mod demo;
mod edge;
mod error;
mod extract;
mod http;
mod limits;
mod links;
mod listener;
mod sse;
mod ws;

use axum::Router;
use axum::extract::State;
use axum::http::Method;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
pub use conn::{ConnConfig, Connections};
use drift_core::domain::routes;
use drift_service::{BackBody, ExecuteBody, Kind, ResumeBody, Service};
pub use limits::{Limits, LimitsConfig};
pub use listener::Listener;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long a stream may stay unable to take the next state before it is closed.
const SLOW_CONSUMER_GRACE: Duration = Duration::from_secs(10);

/// Settings of the HTTP edge.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub default_wait: Duration,
    pub max_wait: Duration,
    pub max_body_bytes: usize,
    /// How long a request body may take to arrive whole.
    pub body_timeout: Duration,
    /// The API key the demo page uses, served to it in `drift dev` only.
    pub demo_key: Option<String>,
    /// Other origins whose pages may use the API (lower case, no trailing slash; `*`: any).
    pub allowed_origins: Vec<String>,
    /// Who may frame the answer page: a CSP `frame-ancestors` source list (`'none'`: nobody).
    pub answer_frame_ancestors: String,
    /// How long a WebSocket opened without credentials may go without following a workflow
    /// (with a stream token) before it is closed.
    pub subscribe_within: Duration,
}

/// A reason outside Redis and Temporal for `/readyz` to fail (a child process of `drift dev`
/// that died), shared with whatever watches it.
#[derive(Debug, Clone, Default)]
pub struct Outage(Arc<std::sync::Mutex<Option<String>>>);

impl Outage {
    pub fn set(&self, why: Option<String>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = why;
    }

    pub fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[derive(Clone)]
pub struct AppState {
    pub service: Service,
    pub cfg: Arc<GatewayConfig>,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    pub limits: Arc<Limits>,
    /// Set while something this gateway's process depends on is down.
    pub outage: Outage,
    /// Cancelled on shutdown: every stream and socket closes.
    pub shutdown: CancellationToken,
}

/// The router, separate from serving so tests can drive it.
pub fn app(state: AppState) -> Router {
    let max_body = state.cfg.max_body_bytes;
    let cors = cors(&state.cfg.allowed_origins);
    // One layer of five rather than five layers: `Router::layer` boxes each layer's future
    // around every route, and a sync call holds them all while it waits.
    let stack = tower::ServiceBuilder::new()
        .layer(
            // Spans name the path only: query strings carry stream tokens and socket tickets.
            tower_http::trace::TraceLayer::new_for_http().make_span_with(|r: &axum::http::Request<_>| {
                let path = links::redacted_path(r.uri().path());
                tracing::info_span!("request", method = %r.method(), path = %path)
            }),
        )
        .layer(cors)
        .layer(edge::Checks)
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn(traced));
    mounted().router.layer(stack).with_state(state)
}

/// With traces on, a span for each call: named by its route template (never the path, which
/// may carry a token), under the caller's `traceparent` when it sent one. The handler runs in
/// it, so the Temporal call it makes (and through it the workflow) continues the trace.
async fn traced(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use opentelemetry::KeyValue;
    use opentelemetry::trace::{FutureExt as _, SpanKind, Status, TraceContextExt as _};
    if !drift_service::trace::enabled() {
        return next.run(req).await;
    }
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let parent = {
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
        drift_service::trace::remote(
            header(drift_service::trace::TRACEPARENT),
            header(drift_service::trace::TRACESTATE),
        )
    };
    let method = req.method().as_str().to_string();
    let cx = drift_service::trace::start(
        format!("{method} {route}"),
        SpanKind::Server,
        &parent,
        vec![
            KeyValue::new("http.request.method", method),
            KeyValue::new("http.route", route),
        ],
    );
    let resp = next.run(req).with_context(cx.clone()).await;
    let status = resp.status();
    cx.span()
        .set_attribute(KeyValue::new("http.response.status_code", i64::from(status.as_u16())));
    if status.is_server_error() {
        cx.span().set_status(Status::error(status.to_string()));
    }
    resp
}

/// Every route, recorded as it is mounted, so the API document can be held to the router.
fn mounted() -> Mounted {
    use Method as M;
    Mounted::default()
        .on(M::POST, routes::START.template(), http::start)
        .on(M::PUT, routes::RESUME.template(), http::command::<ResumeBody>)
        .on(M::POST, routes::BACK.template(), http::command::<BackBody>)
        .on(M::POST, routes::EXECUTE.template(), http::command::<ExecuteBody>)
        .on(M::DELETE, routes::TERMINATE.template(), http::terminate)
        .on(M::GET, routes::WORKFLOW.template(), http::get_state)
        .on(M::GET, routes::EVENTS.template(), sse::events)
        .on(M::GET, routes::DELIVERIES.template(), http::deliveries)
        .on(M::GET, routes::TIMELINE.template(), http::timeline)
        .on(M::POST, routes::RESEND.template(), http::resend)
        .on(M::POST, routes::REPLAY.template(), http::replay)
        .on(M::GET, routes::RUNS.template(), http::runs)
        .on(M::POST, routes::LINKS.template(), links::create)
        .on(M::DELETE, routes::LINKS.template(), links::revoke)
        .on(M::GET, routes::WS.template(), ws::upgrade)
        .merge(definitions::routes("/v3/definitions", Kind::Workflow))
        .merge(definitions::routes("/v3/nodes", Kind::Node))
        .on(M::POST, routes::TICKET.template(), http::ticket)
        .on(M::GET, "/v3/openapi.json", api_doc::openapi_json)
        .on(M::GET, "/v3/asyncapi.json", asyncapi::asyncapi_json)
        .on(M::GET, "/v3/schemas/definition.json", api_doc::definition_schema)
        .on(M::GET, "/healthz", healthz)
        .on(M::GET, "/readyz", readyz)
        .on(M::GET, "/metrics", metrics_text)
        .page("/answer/{token}/screen", get(links::screen))
        .page("/answer/{token}/events", get(links::events))
        .page("/answer/{token}", get(links::page).post(links::answer))
        .page("/", get(demo::index))
        .page("/demo/{file}", get(demo::module))
        .page("/demo/style.css", get(demo::style))
        .page("/demo/config.js", get(demo::config))
        .pages(api_doc::reference_page())
}

/// A router with the `(method, path)` of each API route it serves. Pages (the demo, `/docs`)
/// are served but are not API routes.
#[derive(Default)]
struct Mounted {
    router: Router<AppState>,
    routes: Vec<(Method, String)>,
}

impl Mounted {
    fn on<H, T>(mut self, method: Method, path: &str, handler: H) -> Self
    where
        H: axum::handler::Handler<T, AppState>,
        T: 'static,
    {
        let filter = axum::routing::MethodFilter::try_from(method.clone()).expect("a routable method");
        self.router = self.router.route(path, axum::routing::on(filter, handler));
        self.routes.push((method, path.to_string()));
        self
    }

    fn page(mut self, path: &str, route: axum::routing::MethodRouter<AppState>) -> Self {
        self.router = self.router.route(path, route);
        self
    }

    fn pages(mut self, pages: Router<AppState>) -> Self {
        self.router = self.router.merge(pages);
        self
    }

    fn merge(mut self, other: Mounted) -> Self {
        self.router = self.router.merge(other.router);
        self.routes.extend(other.routes);
        self
    }

    fn layer_extension<X: Clone + Send + Sync + 'static>(mut self, x: X) -> Self {
        self.router = self.router.layer(axum::Extension(x));
        self
    }
}

/// Alive (the process answers)
#[utoipa::path(get, path = "/healthz", tag = "operations", operation_id = "healthz",
    responses((status = 200, description = "`ok`", body = String)))]
async fn healthz() -> &'static str {
    "ok"
}

/// CORS for browser pages on the configured origins (none: same-origin pages only).
fn cors(origins: &[String]) -> tower_http::cors::CorsLayer {
    use axum::http::{HeaderName, Method, header};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| o.parse().ok()))
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("prefer"),
            HeaderName::from_static("last-event-id"),
            HeaderName::from_static("x_tenant_id"),
            HeaderName::from_static("x_client_id"),
            HeaderName::from_static("x_username_id"),
        ])
        .expose_headers([
            HeaderName::from_static("drift-stream-token"),
            header::LOCATION,
            header::RETRY_AFTER,
        ])
        .max_age(std::time::Duration::from_secs(600))
}

/// Ready (Redis and Temporal reachable)
#[utoipa::path(get, path = "/readyz", tag = "operations", operation_id = "readyz",
    responses((status = 200, description = "Ready", body = Object), (status = 503, description = "Not ready, and why", body = Object)))]
async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    let (redis, temporal) = s.service.probe().await;
    let outage = s.outage.get();
    let status = if redis.is_ok() && temporal.is_ok() && outage.is_none() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let show = |r: Result<(), String>| r.map(|_| "ok".to_string()).unwrap_or_else(|e| e);
    let mut body = serde_json::json!({"redis": show(redis), "temporal": show(temporal)});
    if let Some(why) = outage {
        body["down"] = why.into();
    }
    (status, axum::Json(body))
}

/// Prometheus metrics
#[utoipa::path(get, path = "/metrics", tag = "operations", operation_id = "metrics",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
async fn metrics_text(State(s): State<AppState>) -> impl IntoResponse {
    metrics::gauge!(drift_core::metrics::HUB_CHANNELS.name).set(s.service.hub_channels() as f64);
    s.metrics.as_ref().map(|h| h.render()).unwrap_or_default()
}
