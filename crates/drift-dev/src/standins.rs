//! Small local stand-ins for the external APIs the examples call (orders, refunds, bank
//! verification, reports), served under `/stand-ins` by `drift dev` and by the tests.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
struct Counters {
    refunds: AtomicU64,
    verifications: AtomicU64,
}

pub fn router() -> Router {
    Router::new()
        .route("/stand-ins/orders/{id}", get(order))
        .route("/stand-ins/refunds", post(refund))
        .route("/stand-ins/bank/verify", post(verify))
        .route("/stand-ins/reports", post(report))
        .route("/stand-ins/slow/{ms}", get(slow))
        .route("/stand-ins/bytes/{n}", get(bytes))
        .route("/stand-ins/items/{n}", get(items))
        .route("/stand-ins/redirect", get(redirect))
        .with_state(Arc::new(Counters::default()))
}

/// `n` bytes of JSON (at most 16 MiB), for response size limits.
async fn bytes(Path(n): Path<usize>) -> impl IntoResponse {
    let n = n.clamp(2, 16 << 20);
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        format!("\"{}\"", "x".repeat(n - 2)),
    )
}

/// A catalog of `n` items (at most 200,000) as dropdown values, `{displayValue, value}`: a
/// large list an API might hand a screen.
async fn items(Path(n): Path<usize>) -> impl IntoResponse {
    let list: Vec<Value> = (0..n.min(200_000))
        .map(|i| json!({"displayValue": format!("Item {i}"), "value": format!("i{i}")}))
        .collect();
    Json(Value::Array(list))
}

/// A redirect to an order, for redirect policies.
async fn redirect() -> impl IntoResponse {
    axum::response::Redirect::to("/stand-ins/orders/o-redirected")
}

/// Orders: `missing…` → 404, `broken…` → 500, `big…` → an amount above the auto-refund limit.
async fn order(Path(id): Path<String>) -> impl IntoResponse {
    if id.starts_with("missing") {
        return (StatusCode::NOT_FOUND, Json(json!({"error": "no such order"})));
    }
    if id.starts_with("broken") {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": "order service failure"})),
        );
    }
    let amount = if id.starts_with("big") { 1250.0 } else { 42.5 };
    (
        StatusCode::OK,
        Json(
            json!({"orderId": id, "amount": amount, "currency": "EUR", "status": "DELIVERED", "items": ["Headphones"]}),
        ),
    )
}

async fn refund(State(c): State<Arc<Counters>>, Json(body): Json<Value>) -> impl IntoResponse {
    let n = c.refunds.fetch_add(1, Ordering::Relaxed) + 1;
    Json(json!({"refundId": format!("rf-{n}"), "status": "ISSUED", "request": body}))
}

/// Bank accounts: exactly 8 digits are valid.
async fn verify(State(c): State<Arc<Counters>>, Json(body): Json<Value>) -> impl IntoResponse {
    c.verifications.fetch_add(1, Ordering::Relaxed);
    let acct = body.get("accountNumber").and_then(Value::as_str).unwrap_or_default();
    let valid = acct.len() == 8 && acct.chars().all(|ch| ch.is_ascii_digit());
    Json(
        json!({"accountNumber": acct, "valid": valid, "bankName": if valid { Some("Drift Savings Bank") } else { None }}),
    )
}

async fn report(Json(body): Json<Value>) -> impl IntoResponse {
    Json(
        json!({"reportId": format!("rep-{}", uuid::Uuid::new_v4()), "status": "GENERATED", "month": body.get("month")}),
    )
}

/// The slow stand-in's longest hold: under an HTTP node's longest `timeoutMs` (300 s).
pub const SLOWEST_MS: u64 = 290_000;

/// Answers after `ms` milliseconds (at most `SLOWEST_MS`): a slow third party.
async fn slow(Path(ms): Path<u64>) -> impl IntoResponse {
    let ms = ms.min(SLOWEST_MS);
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    Json(json!({"sleptMs": ms}))
}

/// A webhook receiver for the demo page inside `drift dev`: verifies each delivery with the
/// dev signing secret and keeps the last few hundred for the page to show.
#[derive(Clone)]
pub struct DemoReceiver {
    secret: Option<String>,
    log: Arc<std::sync::Mutex<std::collections::VecDeque<Value>>>,
}

const DEMO_LOG: usize = 300;

pub fn demo_receiver(secret: Option<String>) -> Router {
    let state = DemoReceiver {
        secret,
        log: Arc::default(),
    };
    Router::new()
        .route("/demo/webhooks", post(receive).get(list))
        .with_state(state)
}

async fn receive(
    State(r): State<DemoReceiver>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> impl IntoResponse {
    let verified = r
        .secret
        .as_deref()
        .and_then(|s| standardwebhooks::Webhook::new(s).ok())
        .is_some_and(|w| w.verify(&body, &headers).is_ok());
    let state: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let entry = json!({
        "webhookId": headers.get("webhook-id").and_then(|v| v.to_str().ok()),
        "workflowId": state["workflowId"], "seq": state["seq"], "status": state["workflowStatus"],
        "verified": verified, "receivedAt": chrono::Utc::now().to_rfc3339(), "state": state,
    });
    let mut log = r.log.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if log.len() >= DEMO_LOG {
        log.pop_front();
    }
    log.push_back(entry);
    if verified {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::UNAUTHORIZED
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    workflow_id: Option<String>,
}

async fn list(
    State(r): State<DemoReceiver>,
    axum::extract::Query(q): axum::extract::Query<ListQuery>,
) -> impl IntoResponse {
    let log = r.log.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let items: Vec<Value> = log
        .iter()
        .filter(|e| q.workflow_id.as_deref().is_none_or(|w| e["workflowId"] == w))
        .cloned()
        .collect();
    Json(Value::Array(items))
}
