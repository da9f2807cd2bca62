//! The `/v3` REST API: start, resume, execute-node, terminate, state. Each handler hands its
//! parsed request to the service, then waits on the answer (sync) or answers 202 (async).

use super::AppState;
use super::error::ApiError;
use super::extract::{JsonBody, OnWorkflow};
use crate::domain::{Caller, WorkflowState, WorkflowStatus, routes};
use crate::service::{CommandBody, Dispatched, Outcome, StartBody};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::time::Instant;

/// When the call arrived and how long its caller will wait for the answer: `Prefer: wait=N`
/// (seconds), capped by configuration.
/// Holds one of the gateway's waiter places, taken before anything is dispatched.
pub struct Wait {
    t0: Instant,
    deadline: Instant,
    _place: tokio::sync::OwnedSemaphorePermit,
}

impl FromRequestParts<AppState> for Wait {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, Self::Rejection> {
        let place = s.limits.waiter()?;
        let max = s.cfg.max_wait;
        let limit = parts
            .headers
            .get_all("prefer")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|p| p.trim().strip_prefix("wait="))
            .filter_map(|n| n.trim().parse::<f64>().ok())
            .find(|n| n.is_finite() && *n >= 0.0)
            // Capped before converting: a huge number must not overflow a Duration.
            .map(|n| Duration::from_secs_f64(n.min(max.as_secs_f64())))
            .unwrap_or(s.cfg.default_wait)
            .min(max);
        let t0 = Instant::now();
        Ok(Self {
            t0,
            deadline: t0 + limit,
            _place: place,
        })
    }
}

/// `Idempotency-Key`: a retried start with the same key names the same workflow.
pub struct IdempotencyKey(Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let key = parts
            .headers
            .get("idempotency-key")
            .map(|v| v.to_str().map(str::to_string));
        match key.transpose() {
            Ok(k) => Ok(Self(k)),
            Err(_) => Err(ApiError::bad_request("Idempotency-Key must be ASCII")),
        }
    }
}

fn observe(endpoint: &'static str, mode: &'static str, started: Instant, status: StatusCode) {
    metrics::histogram!("drift_request_seconds", "endpoint" => endpoint, "mode" => mode, "status" => status.as_u16().to_string())
        .record(started.elapsed().as_secs_f64());
}

/// A start answer: the body plus the `streamToken` to follow the workflow live.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WithToken<'a, T> {
    #[serde(flatten)]
    body: T,
    stream_token: &'a str,
}

fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response {
    (status, Json(body)).into_response()
}

/// The 202 when an answer is not there yet (async mode, or the wait ran out): where to look
/// next. Never an error.
fn accepted(d: &Dispatched, latest: Option<&WorkflowState>) -> Value {
    let mut body = json!({
        "workflowId": d.id.as_str(),
        "workflowStatus": latest.map(|l| l.workflow_status).unwrap_or(WorkflowStatus::Running),
        "requestId": d.request_id.as_str(),
        "links": crate::domain::Links::for_workflow(d.id.as_str()),
    });
    if !d.is_async {
        body["seq"] = json!(latest.map(|l| l.seq).unwrap_or(0));
    }
    body
}

/// Turns what the call produced into the HTTP answer; starts also get their stream token.
fn answer(d: &Dispatched, outcome: Outcome, with_token: bool) -> Result<Response, ApiError> {
    let mut resp = match (outcome, with_token) {
        (Outcome::Rejected(r), _) => return Err(r.into()),
        (Outcome::State(body) | Outcome::NodeResult(body), false) => json_bytes(body.bytes()),
        (Outcome::State(body), true) => {
            let state: WorkflowState = serde_json::from_str(body.as_str()).map_err(|e| ApiError::internal(&e))?;
            json_response(
                StatusCode::OK,
                &WithToken {
                    body: state,
                    stream_token: &d.stream_token,
                },
            )
        }
        (Outcome::NodeResult(_), true) => return Err(ApiError::internal(&"a start answered with a node result")),
        (Outcome::Pending(latest), _) => {
            let body = accepted(d, latest.as_deref());
            // Async callers follow the workflow live with the token, whatever they called.
            let mut r = match with_token || d.is_async {
                true => json_response(
                    StatusCode::ACCEPTED,
                    &WithToken {
                        body,
                        stream_token: &d.stream_token,
                    },
                ),
                false => json_response(StatusCode::ACCEPTED, &body),
            };
            if !d.is_async {
                let location = HeaderValue::from_str(&routes::WORKFLOW.to(d.id.as_str())).expect("ids are header-safe");
                r.headers_mut().insert(header::LOCATION, location);
            }
            r
        }
    };
    if with_token {
        let token = HeaderValue::from_str(&d.stream_token).expect("tokens are ascii");
        resp.headers_mut().insert("drift-stream-token", token);
    }
    Ok(resp)
}

fn json_bytes(body: Bytes) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

impl Wait {
    /// Waits for a dispatched call's answer (sync), or answers 202 at once (async).
    async fn settle(
        self,
        s: &AppState,
        endpoint: &'static str,
        mut d: Dispatched,
        with_token: bool,
    ) -> Result<Response, ApiError> {
        let (mode, outcome) = match d.is_async {
            true => ("async", Outcome::Pending(None)),
            false => ("sync", s.service.wait(&mut d, self.deadline).await?),
        };
        let resp = answer(&d, outcome, with_token);
        let status = resp.as_ref().map(|r| r.status()).unwrap_or_else(|e| e.status);
        // With the service's "command dispatched" and Temporal's history, one resume traced
        // end to end (`DRIFT_LOG=drift::gateway=debug,drift::service=debug`).
        tracing::debug!(endpoint, request_id = %d.request_id, answered_after = ?self.t0.elapsed(), "answer ready");
        observe(endpoint, mode, self.t0, status);
        resp
    }
}

pub async fn start(
    State(s): State<AppState>,
    caller: Caller,
    wait: Wait,
    IdempotencyKey(key): IdempotencyKey,
    JsonBody(body): JsonBody<StartBody>,
) -> Result<Response, ApiError> {
    let d = s.service.start(&caller, body.into_request(key)?).await?;
    wait.settle(&s, "start", d, true).await
}

/// Resume (`PUT /v3/workflow/resume/{id}`) and execute-node
/// (`POST /v3/workflow/{id}/disconnected-node/execute`): a command, then its answer.
pub async fn command<B: CommandBody + DeserializeOwned>(
    State(s): State<AppState>,
    on: OnWorkflow,
    wait: Wait,
    JsonBody(body): JsonBody<B>,
) -> Result<Response, ApiError> {
    let d = s.service.command(&on.caller, &on.id, body.into_request()?).await?;
    wait.settle(&s, B::NAME, d, false).await
}

pub async fn terminate(State(s): State<AppState>, on: OnWorkflow) -> Result<Json<WorkflowState>, ApiError> {
    Ok(Json(s.service.terminate(&on.caller, &on.id).await?))
}

pub async fn get_state(State(s): State<AppState>, on: OnWorkflow) -> Result<Json<WorkflowState>, ApiError> {
    Ok(Json(s.service.current(&on.caller, &on.id).await?))
}

/// `GET /v3/workflow/{id}/deliveries`: the last webhook attempt (url, seq, attempt, state,
/// lastError, nextRetryAt), for operators.
pub async fn deliveries(State(s): State<AppState>, on: OnWorkflow) -> Result<Json<Value>, ApiError> {
    let last = s.service.deliveries(&on.caller, &on.id).await?;
    Ok(Json(json!({"workflowId": on.id.as_str(), "lastAttempt": last})))
}

/// `POST /v3/auth/ticket`: a one-minute ticket to open a WebSocket as the caller, for browsers
/// (which cannot set headers on one) — so no long-lived credential goes into a URL.
pub async fn ticket(State(s): State<AppState>, caller: Caller) -> Json<Value> {
    let (ticket, ttl) = s.service.issue_ticket(&caller);
    Json(json!({"ticket": ticket, "expiresIn": ttl.as_secs()}))
}
