//! The `/v3` REST API: start, resume, execute-node, terminate, state. Each handler hands its
//! parsed request to the service, then waits on the answer (sync) or answers 202 (async).

use super::AppState;
use super::error::{ApiError, CommonErrors, ErrorBody};
use super::extract::{JsonBody, OnWorkflow};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use drift_core::domain::timeline::{Timeline, Via};
use drift_core::domain::{AttemptRecord, Caller, JsonText, Links, WorkflowState, WorkflowStatus, routes};
use drift_service::{BackBody, CommandBody, Dispatched, ExecuteBody, Outcome, ResumeBody, StartBody};
use serde::Serialize;
use serde::de::DeserializeOwned;
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
    metrics::histogram!(drift_core::metrics::REQUEST_SECONDS.name, "endpoint" => endpoint, "mode" => mode, "status" => status.as_u16().to_string())
        .record(started.elapsed().as_secs_f64());
}

/// A start's answer: the state plus the token to follow the workflow live.
// What the API document shows; the answer itself is spliced from the state's text (`started`).
#[derive(Serialize, utoipa::ToSchema)]
#[cfg_attr(not(test), allow(dead_code))]
#[serde(rename_all = "camelCase")]
pub struct Started {
    #[serde(flatten)]
    pub state: WorkflowState,
    /// Follows this workflow live (`?token=` on the events stream, `subscribe` on the socket).
    pub stream_token: String,
}

/// 202: the answer is not there yet (async mode, or the wait ran out), and where to look next.
/// Never an error.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Accepted<'a> {
    pub workflow_id: String,
    pub workflow_status: WorkflowStatus,
    pub request_id: String,
    pub links: Links,
    /// The latest state's `seq`, when a sync call's wait ran out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Starts and async calls: follows the workflow live.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_token: Option<&'a str>,
}

/// `POST /v3/auth/ticket`'s answer.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Ticket {
    /// Opens one WebSocket as the caller: `/v3/ws?ticket=…`, once.
    pub ticket: String,
    /// Seconds it stays valid.
    pub expires_in: u64,
}

/// `GET /v3/workflow/{id}/deliveries`' answer.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Deliveries {
    pub workflow_id: String,
    pub last_attempt: AttemptRecord,
}

fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response {
    (status, Json(body)).into_response()
}

fn accepted<'a>(d: &'a Dispatched, latest: Option<&WorkflowState>) -> Accepted<'a> {
    Accepted {
        workflow_id: d.id.as_str().to_string(),
        workflow_status: latest.map(|l| l.workflow_status).unwrap_or(WorkflowStatus::Running),
        request_id: d.request_id.as_str().to_string(),
        links: Links::for_workflow(d.id.as_str()),
        seq: (!d.is_async).then(|| latest.map(|l| l.seq).unwrap_or(0)),
        stream_token: None,
    }
}

/// A start's answer, `Started`, made from the state's text with the token added as its last
/// member: the state is neither parsed nor written again.
fn started(state: &JsonText, token: &str) -> Result<Bytes, ApiError> {
    let text = state.as_str().trim_end();
    let head = text
        .strip_suffix('}')
        .ok_or_else(|| ApiError::internal(&"a state that is not a JSON object"))?;
    let mut out = Vec::with_capacity(text.len() + token.len() + 18);
    out.extend_from_slice(head.as_bytes());
    if !head.trim_end().ends_with('{') {
        out.push(b',');
    }
    out.extend_from_slice(b"\"streamToken\":");
    serde_json::to_writer(&mut out, token).map_err(|e| ApiError::internal(&e))?;
    out.push(b'}');
    Ok(Bytes::from(out))
}

/// Turns what the call produced into the HTTP answer; starts also get their stream token.
fn answer(d: &Dispatched, outcome: Outcome, with_token: bool) -> Result<Response, ApiError> {
    let mut resp = match (outcome, with_token) {
        (Outcome::Rejected(r), _) => return Err(r.into()),
        (Outcome::State(body) | Outcome::NodeResult(body), false) => json_bytes(body.bytes()),
        (Outcome::State(body), true) => json_bytes(started(&body, &d.stream_token)?),
        (Outcome::NodeResult(_), true) => return Err(ApiError::internal(&"a start answered with a node result")),
        (Outcome::Pending(latest), _) => {
            let mut body = accepted(d, latest.as_deref());
            // Async callers follow the workflow live with the token, whatever they called.
            if with_token || d.is_async {
                body.stream_token = Some(&d.stream_token);
            }
            let mut r = json_response(StatusCode::ACCEPTED, &body);
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
            false => ("sync", s.service.wait(&mut d, self.deadline, &s.shutdown).await?),
        };
        let resp = answer(&d, outcome, with_token);
        let status = resp.as_ref().map(|r| r.status()).unwrap_or_else(|e| e.status());
        // With the service's "command dispatched" and Temporal's history, one resume traced
        // end to end (`DRIFT_LOG=drift::gateway=debug,drift::service=debug`).
        tracing::debug!(endpoint, request_id = %d.request_id, answered_after = ?self.t0.elapsed(), "answer ready");
        observe(endpoint, mode, self.t0, status);
        resp
    }
}

/// Start a workflow
///
/// Sync (default): answers when the run shows its first screen or ends. Async
/// (`mode: "async"`): answers 202 at once, and every state goes to `callbackUrl` as a signed
/// webhook. Either way the answer carries a `streamToken` to follow the run live.
#[utoipa::path(
    post,
    path = routes::START.template(),
    tag = "workflows",
    operation_id = "start",
    request_body = StartBody,
    params(
        ("Prefer" = Option<String>, Header, description = "`wait=N`: wait at most N seconds for the answer (capped by the gateway's `--max-wait-ms`)"),
        ("Idempotency-Key" = Option<String>, Header, description = "A retried start with the same key names the same workflow and gets the same answer"),
    ),
    responses(
        (status = 200, description = "The first screen, or the end", body = Started,
            headers(("Drift-Stream-Token" = String, description = "The same token as `streamToken`"))),
        (status = 202, description = "Async, or the wait ran out: where to look next", body = Accepted,
            headers(("Location" = String, description = "The workflow's state (sync calls)"))),
        (status = 404, description = "No such definition, or no such version", body = ErrorBody),
        (status = 409, description = "`already_exists`: a workflow with this `workflowId` is running", body = ErrorBody),
        (status = 413, description = "The body is larger than `--max-body-bytes`", body = ErrorBody),
        (status = 422, description = "`callback_not_allowed`, or `idempotency_key_reused` with another body", body = ErrorBody),
        (status = 504, description = "`outcome_unknown`: retry with the same requestId", body = ErrorBody),
        CommonErrors,
    ),
    security(("apiKey" = ["workflows:start"]), ("jwt" = ["workflows:start"]))
)]
pub async fn start(
    State(s): State<AppState>,
    caller: Caller,
    wait: Wait,
    IdempotencyKey(key): IdempotencyKey,
    JsonBody(body): JsonBody<StartBody>,
) -> Result<Response, ApiError> {
    // Boxed, and so freed before the wait: a start's future is about 9 KB (the Temporal call's
    // among it), and a sync caller's handler lives as long as it waits.
    let d = Box::pin(s.service.start(&caller, body.into_request(key)?)).await?;
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
    // Boxed, and so freed before the wait (see `start`).
    let d = Box::pin(s.service.command(&on.caller, &on.id, body.into_request()?, Via::Sync)).await?;
    wait.settle(&s, B::NAME, d, false).await
}

/// Answer the current screen
///
/// Sync (default): answers with the next screen or the end. A wrong answer gets 422 with each
/// widget's problem in `details`; nothing is changed.
#[utoipa::path(
    put,
    path = routes::RESUME.template(),
    tag = "workflows",
    operation_id = "resume",
    request_body = ResumeBody,
    params(("id" = String, Path, description = "The workflow id"), ("Prefer" = Option<String>, Header, description = "`wait=N`: wait at most N seconds for the answer (capped by the gateway's `--max-wait-ms`)")),
    responses(
        (status = 200, description = "The next screen, or the end", body = WorkflowState),
        (status = 202, description = "Async, or the wait ran out: where to look next", body = Accepted,
            headers(("Location" = String, description = "The workflow's state (sync calls)"))),
        (status = 404, description = "No such workflow (or another tenant's)", body = ErrorBody),
        (status = 409, description = "`stale_screen` (the answer is for an older screen) or `not_waiting`", body = ErrorBody),
        (status = 413, description = "The body is larger than `--max-body-bytes`", body = ErrorBody),
        (status = 422, description = "`invalid_answer` (`details`: `[{widgetId, message}]`) or `callback_not_allowed`", body = ErrorBody),
        (status = 504, description = "`outcome_unknown`: retry with the same requestId", body = ErrorBody),
        CommonErrors,
    ),
    security(("apiKey" = ["workflows:drive"]), ("jwt" = ["workflows:drive"]))
)]
#[allow(dead_code)]
fn resume_doc() {}

/// Go back to the previous screen
///
/// Returns to the screen before the current one when no HTTP or CHILD node ran since it
/// (those are not undone): a new state with the next `seq` at that screen, its earlier answer
/// in `previousAnswer`. Answering it again runs the flow forward from there. The state says
/// whether Back is possible (`canGoBack`).
#[utoipa::path(
    post,
    path = routes::BACK.template(),
    tag = "workflows",
    operation_id = "back",
    request_body = BackBody,
    params(("id" = String, Path, description = "The workflow id"), ("Prefer" = Option<String>, Header, description = "`wait=N`: wait at most N seconds for the answer (capped by the gateway's `--max-wait-ms`)")),
    responses(
        (status = 200, description = "The previous screen, again", body = WorkflowState),
        (status = 202, description = "The wait ran out: where to look next", body = Accepted),
        (status = 404, description = "No such workflow (or another tenant's)", body = ErrorBody),
        (status = 409, description = "`cannot_go_back` (`details.node`: the HTTP or CHILD node in the way, the first screen, or the screen itself when its definition says `\"back\": false`), `stale_screen` or `not_waiting`", body = ErrorBody),
        (status = 504, description = "`outcome_unknown`: retry with the same requestId", body = ErrorBody),
        CommonErrors,
    ),
    security(("apiKey" = ["workflows:drive"]), ("jwt" = ["workflows:drive"]))
)]
#[allow(dead_code)]
fn back_doc() {}

/// Run a disconnected node
///
/// Runs an HTTP or SCRIPT node that no edge leads to (a lookup, a recalculation) while the
/// workflow waits; answers with the node's output.
#[utoipa::path(
    post,
    path = routes::EXECUTE.template(),
    tag = "workflows",
    operation_id = "executeNode",
    request_body = ExecuteBody,
    params(("id" = String, Path, description = "The workflow id"), ("Prefer" = Option<String>, Header, description = "`wait=N`: wait at most N seconds for the answer (capped by the gateway's `--max-wait-ms`)")),
    responses(
        (status = 200, description = "The node's result", body = drift_core::domain::NodeResult),
        (status = 202, description = "The wait ran out: where to look next", body = Accepted),
        (status = 404, description = "No such workflow (or another tenant's)", body = ErrorBody),
        (status = 409, description = "`not_waiting`: the workflow has ended", body = ErrorBody),
        (status = 413, description = "The body is larger than `--max-body-bytes`", body = ErrorBody),
        (status = 422, description = "`not_executable`: not an HTTP or SCRIPT node of this workflow", body = ErrorBody),
        (status = 504, description = "`outcome_unknown`: retry with the same requestId", body = ErrorBody),
        CommonErrors,
    ),
    security(("apiKey" = ["workflows:drive"]), ("jwt" = ["workflows:drive"]))
)]
#[allow(dead_code)]
fn execute_doc() {}

/// Terminate a workflow
#[utoipa::path(
    delete,
    path = routes::TERMINATE.template(),
    tag = "workflows",
    operation_id = "terminate",
    params(("id" = String, Path, description = "The workflow id")),
    responses(
        (status = 200, description = "The final state (TERMINATED, or how it had already ended)", body = WorkflowState),
        (status = 404, description = "No such workflow (or another tenant's)", body = ErrorBody),
        CommonErrors,
    ),
    security(("apiKey" = ["workflows:drive"]), ("jwt" = ["workflows:drive"]))
)]
pub async fn terminate(State(s): State<AppState>, on: OnWorkflow) -> Result<Json<WorkflowState>, ApiError> {
    Ok(Json(s.service.terminate(&on.caller, &on.id).await?))
}

/// Read a workflow's current state
#[utoipa::path(
    get,
    path = routes::WORKFLOW.template(),
    tag = "workflows",
    operation_id = "get",
    params(("id" = String, Path, description = "The workflow id")),
    responses(
        (status = 200, description = "The latest state", body = WorkflowState),
        (status = 404, description = "No such workflow (or another tenant's)", body = ErrorBody),
        CommonErrors,
    ),
    security(("apiKey" = ["workflows:read"]), ("jwt" = ["workflows:read"]))
)]
pub async fn get_state(State(s): State<AppState>, on: OnWorkflow) -> Result<Json<WorkflowState>, ApiError> {
    Ok(Json(s.service.current(&on.caller, &on.id).await?))
}

/// The last webhook attempt
///
/// For operators: the URL, the state's `seq`, the attempt number, whether it was delivered,
/// is retrying (and when), or stopped (410 Gone, or the schedule ran out).
#[utoipa::path(
    get,
    path = routes::DELIVERIES.template(),
    tag = "workflows",
    operation_id = "deliveries",
    params(("id" = String, Path, description = "The workflow id")),
    responses(
        (status = 200, description = "The last attempt", body = Deliveries),
        (status = 404, description = "No such workflow, or no webhook attempted yet", body = ErrorBody),
        CommonErrors,
    ),
    security(("apiKey" = ["workflows:read"]), ("jwt" = ["workflows:read"]))
)]
pub async fn deliveries(State(s): State<AppState>, on: OnWorkflow) -> Result<Json<Deliveries>, ApiError> {
    let last_attempt = s.service.deliveries(&on.caller, &on.id).await?;
    Ok(Json(Deliveries {
        workflow_id: on.id.as_str().to_string(),
        last_attempt,
    }))
}

/// A run's timeline
///
/// For operators: each state the run published (oldest first, as far back as Redis keeps them)
/// with its `seq`, when it was published, the request that led to it and how that request came
/// (`mode`: `sync`, `async`, `ws`, `link`; absent when the run moved by itself), and every
/// webhook attempt of that state with the receiver's answer (`status`), resends included.
#[utoipa::path(
    get,
    path = routes::TIMELINE.template(),
    tag = "workflows",
    operation_id = "timeline",
    params(("id" = String, Path, description = "The workflow id")),
    responses(
        (status = 200, description = "The run's timeline", body = Timeline),
        (status = 404, description = "No such workflow", body = ErrorBody),
        CommonErrors,
    ),
    security(("apiKey" = ["workflows:read"]), ("jwt" = ["workflows:read"]))
)]
pub async fn timeline(State(s): State<AppState>, on: OnWorkflow) -> Result<Json<Timeline>, ApiError> {
    Ok(Json(s.service.timeline(&on.caller, &on.id).await?))
}

/// A ticket to open a WebSocket
///
/// One minute, one use: browsers cannot set headers on a WebSocket, so no long-lived credential
/// goes into a URL.
#[utoipa::path(
    post,
    path = routes::TICKET.template(),
    tag = "live",
    operation_id = "ticket",
    responses(
        (status = 200, description = "The ticket", body = Ticket),
        CommonErrors,
    ),
    security(("apiKey" = []), ("jwt" = []))
)]
pub async fn ticket(State(s): State<AppState>, caller: Caller) -> Json<Ticket> {
    let (ticket, ttl) = s.service.issue_ticket(&caller);
    Json(Ticket {
        ticket,
        expires_in: ttl.as_secs(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_answer_spliced_from_the_state_text_equals_started_serialized() {
        let token = "v1.abc_\"odd\"";
        let bare = WorkflowState::bare("w-1", WorkflowStatus::Waiting, 1);
        let with_disposition = WorkflowState {
            disposition: Some(serde_json::json!({"note": "}"})),
            ..WorkflowState::bare("w-2", WorkflowStatus::Completed, 3)
        };
        for state in [bare, with_disposition] {
            let spliced: serde_json::Value =
                serde_json::from_slice(&started(&JsonText::of(&state), token).unwrap()).unwrap();
            let made = serde_json::to_value(Started {
                state,
                stream_token: token.into(),
            })
            .unwrap();
            assert_eq!(spliced, made);
        }
        assert!(started(&JsonText::of(&serde_json::json!([1])), token).is_err());
    }
}

/// How a resend went, as the receiver answered.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ResendOutcome {
    /// 2xx.
    Delivered,
    /// 410: the receiver wants no more deliveries.
    Gone,
    /// Refused or unreachable (`error` says how); not retried.
    Failed,
}

/// `POST /v3/workflow/{id}/deliveries/{seq}/resend`'s answer.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResendAnswer {
    pub workflow_id: String,
    /// The state's original `webhook-id`: a receiver that had it already deduplicates.
    pub webhook_id: String,
    pub seq: u64,
    pub url: String,
    pub outcome: ResendOutcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Send one state's webhook again
///
/// For a receiver that lost a callback after Drift's retries ended: state `seq` is signed and
/// sent again, now, once, to the callback of the workflow's last attempt, with its original
/// `webhook-id` and body. The answer says how the receiver answered.
#[utoipa::path(
    post,
    path = routes::RESEND.template(),
    tag = "workflows",
    operation_id = "resendDelivery",
    params(
        ("id" = String, Path, description = "The workflow id"),
        ("seq" = u64, Path, description = "The state's seq"),
    ),
    responses(
        (status = 200, description = "Sent; `outcome` is how the receiver answered", body = ResendAnswer),
        (status = 404, description = "No such workflow (or another tenant's), no delivery yet, or a state no longer kept", body = ErrorBody),
        (status = 409, description = "`conflict`: the state has not been attempted yet", body = ErrorBody),
        CommonErrors,
    ),
    security(("apiKey" = ["workflows:drive"]), ("jwt" = ["workflows:drive"]))
)]
pub async fn resend(
    State(s): State<AppState>,
    caller: Caller,
    axum::extract::Path((id, seq)): axum::extract::Path<(String, String)>,
) -> Result<Json<ResendAnswer>, ApiError> {
    let id = drift_core::domain::WorkflowId::parse(&id)?;
    let seq: u64 = seq
        .parse()
        .map_err(|_| ApiError::bad_request(format!("seq {seq:?} is not a state's seq (a whole number from 1)")))?;
    let r = s.service.resend(&caller, &id, seq).await?;
    let (outcome, error) = match r.outcome {
        drift_service::Resent::Delivered => (ResendOutcome::Delivered, None),
        drift_service::Resent::Gone => (ResendOutcome::Gone, None),
        drift_service::Resent::Failed { error } => (ResendOutcome::Failed, Some(error)),
    };
    Ok(Json(ResendAnswer {
        workflow_id: id.as_str().to_string(),
        webhook_id: r.webhook_id,
        seq: r.seq,
        url: r.url,
        outcome,
        error,
    }))
}

/// `POST /v3/webhooks/replay`'s body.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReplayBody {
    /// Deliveries first attempted from then (RFC 3339).
    pub since: chrono::DateTime<chrono::Utc>,
    /// Up to then (RFC 3339); now when absent. At most 7 days after `since`.
    #[serde(default)]
    pub until: Option<chrono::DateTime<chrono::Utc>>,
}

/// One delivery a replay could not make.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotDelivered {
    pub workflow_id: String,
    pub seq: u64,
    pub error: String,
}

/// `POST /v3/webhooks/replay`'s answer.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Replayed {
    /// Deliveries sent again by this call.
    pub sent: usize,
    /// Of those, the ones a receiver accepted (2xx).
    pub delivered: usize,
    pub not_delivered: Vec<NotDelivered>,
    /// The range held more than one call sends: call again with this as `since` to go on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resume_from: Option<chrono::DateTime<chrono::Utc>>,
}

/// Replay a tenant's webhooks over a time range
///
/// Every delivery of the caller's tenant first attempted between `since` and `until` is sent
/// again, oldest first, each as a resend does (its original `webhook-id` and body, to its
/// workflow's callback, once): for a receiver that lost an outage's callbacks after Drift's
/// retries ended. At most 200 per call (`resumeFrom` says where to go on) and 7 days per range;
/// one replay per tenant at a time.
#[utoipa::path(
    post,
    path = routes::REPLAY.template(),
    tag = "workflows",
    operation_id = "replayWebhooks",
    request_body = ReplayBody,
    responses(
        (status = 200, description = "What was sent, and what the receivers answered", body = Replayed),
        (status = 400, description = "A range that is empty, reversed or longer than 7 days", body = ErrorBody),
        (status = 503, description = "`busy`: a replay for this tenant is running", body = ErrorBody),
        CommonErrors,
    ),
    security(("apiKey" = ["workflows:drive"]), ("jwt" = ["workflows:drive"]))
)]
pub async fn replay(
    State(s): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<ReplayBody>,
) -> Result<Json<Replayed>, ApiError> {
    let until = body.until.unwrap_or_else(chrono::Utc::now);
    let r = s.service.replay(&caller, body.since, until).await?;
    Ok(Json(Replayed {
        sent: r.sent,
        delivered: r.delivered,
        not_delivered: r
            .not_delivered
            .into_iter()
            .map(|n| NotDelivered {
                workflow_id: n.workflow_id,
                seq: n.seq,
                error: n.error,
            })
            .collect(),
        resume_from: r.resume_from,
    }))
}

/// List runs
///
/// For operators: the caller's tenant's runs, newest first, from Temporal's visibility (the
/// search attributes Drift keeps on each run: its definition and version, its status, the node
/// it waits on and since when). Each filter given narrows the list, e.g. the runs of `refund`
/// waiting on `confirm` for more than an hour: `?definition=refund&waitingOn=confirm&waitingLongerThanSecs=3600`.
/// Visibility trails a run by a moment. Runs started before the search attributes were
/// registered are not listed.
#[utoipa::path(
    get,
    path = routes::RUNS.template(),
    tag = "workflows",
    operation_id = "listRuns",
    params(drift_service::RunsQuery),
    responses(
        (status = 200, description = "A page of runs", body = drift_core::domain::runs::RunsPage),
        (status = 400, description = "A filter that is not one (it is named), or a page token this list did not give", body = ErrorBody),
        (status = 503, description = "Drift's search attributes are not registered in the namespace (the message says how to register them)", body = ErrorBody),
        CommonErrors,
    ),
    security(("apiKey" = ["workflows:read"]), ("jwt" = ["workflows:read"]))
)]
pub async fn runs(
    State(s): State<AppState>,
    caller: Caller,
    q: Result<axum::extract::Query<drift_service::RunsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<drift_core::domain::runs::RunsPage>, ApiError> {
    let axum::extract::Query(q) = q.map_err(|e| ApiError::bad_request(format!("bad query: {}", e.body_text())))?;
    let req = q.parse()?;
    Ok(Json(s.service.runs(&caller, &req).await?))
}
