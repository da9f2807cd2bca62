//! `/v3` runtime handlers: start, resume, execute-node, terminate, state.

use super::AppState;
use super::error::ApiError;
use super::ids::{Caller, RequestId, WorkflowId};
use super::wait::{Answer, wait_for};
use crate::bus::hub::Event;
use crate::model::{
    Callback, Command, Delivery, Links, MessageKind, RedisKeys, Rejection, WorkflowInput, WorkflowState, WorkflowStatus,
};
use crate::temporal::client::{StartOptions, TemporalError};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

fn parse_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// `Prefer: wait=N` (seconds), capped by configuration.
fn wait_limit(s: &AppState, h: &HeaderMap) -> Duration {
    let asked = h
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|p| p.trim().strip_prefix("wait="))
        .filter_map(|n| n.trim().parse::<f64>().ok())
        .find(|n| n.is_finite() && *n >= 0.0);
    asked
        .map(Duration::from_secs_f64)
        .unwrap_or(s.cfg.default_wait)
        .min(s.cfg.max_wait)
}

pub fn keys(s: &AppState, scoped: &str) -> RedisKeys {
    RedisKeys::new(&s.cfg.key_prefix, scoped)
}

fn json_bytes(status: StatusCode, body: Bytes) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// The 202 answer when a wait runs out: where to look next. Never an error.
fn accepted(id: &WorkflowId, request_id: &RequestId, latest: Option<&WorkflowState>) -> Response {
    let body = json!({
        "workflowId": id.as_str(),
        "workflowStatus": latest.map(|l| l.workflow_status).unwrap_or(WorkflowStatus::Running),
        "seq": latest.map(|l| l.seq).unwrap_or(0),
        "requestId": request_id.as_str(),
        "links": Links::for_workflow(id.as_str()),
    });
    let mut r = (StatusCode::ACCEPTED, Json(body)).into_response();
    r.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(&format!("/v3/workflow/{}", id.as_str())).expect("valid id"),
    );
    r
}

/// Turns what the wait produced into the HTTP answer.
async fn respond(
    s: &AppState,
    id: &WorkflowId,
    keys: &RedisKeys,
    request_id: &RequestId,
    answer: Answer,
) -> Result<Response, ApiError> {
    match answer {
        Answer::Event(e) => Ok(event_response(&e)),
        Answer::Stored(st) => Ok((StatusCode::OK, Json(st.state)).into_response()),
        Answer::TimedOut => {
            let latest = s.store.latest(keys).await.ok().flatten();
            Ok(accepted(id, request_id, latest.as_ref().map(|l| &l.state)))
        }
    }
}

fn event_response(e: &Event) -> Response {
    match e.kind {
        MessageKind::State | MessageKind::Result => json_bytes(StatusCode::OK, e.body.clone()),
        MessageKind::Rejection => match serde_json::from_slice::<Rejection>(&e.body) {
            Ok(r) => {
                let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::CONFLICT);
                let code: &'static str = match r.code.as_str() {
                    "invalid_answer" => "invalid_answer",
                    "stale_screen" => "stale_screen",
                    "not_executable" => "not_executable",
                    _ => "not_waiting",
                };
                let mut err = ApiError::new(status, code, r.message);
                if !r.details.is_empty() {
                    err = err.with_details(serde_json::to_value(r.details).unwrap_or_default());
                }
                err.into_response()
            }
            Err(err) => ApiError::internal(&err).into_response(),
        },
    }
}

fn observe(endpoint: &'static str, started: Instant, status: StatusCode) {
    metrics::histogram!("drift_request_seconds", "endpoint" => endpoint, "mode" => "sync", "status" => status.as_u16().to_string())
        .record(started.elapsed().as_secs_f64());
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartBody {
    pub workflow: String,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    workflow_id: Option<String>,
    #[serde(default)]
    params: Option<Value>,
    #[serde(default)]
    callback_url: Option<String>,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    request_id: Option<String>,
}

/// Every definition a CHILD node of `def` (or of its children) may start, pinned now.
fn pin_children(
    s: &AppState,
    def: &crate::dsl::Definition,
) -> Result<BTreeMap<String, crate::dsl::Definition>, ApiError> {
    let mut out = BTreeMap::new();
    let mut todo = vec![def.clone()];
    while let Some(d) = todo.pop() {
        for entry in d.states.values() {
            if let Some(crate::dsl::Node::Child(c)) = &entry.node
                && !out.contains_key(&c.workflow)
            {
                let child = s.registry.workflow(&c.workflow, c.version.as_deref()).ok_or_else(|| {
                    ApiError::not_found(format!("child workflow definition {:?} not found", c.workflow))
                })?;
                let compiled = s.registry.compile(child).map_err(|e| ApiError::internal(&e))?;
                out.insert(c.workflow.clone(), compiled.clone());
                todo.push(compiled);
            }
        }
    }
    Ok(out)
}

/// A start checked and ready to dispatch.
pub struct PreparedStart {
    pub id: WorkflowId,
    pub scoped: String,
    pub keys: RedisKeys,
    pub request_id: RequestId,
    pub idempotent: bool,
    /// Async mode: answered with 202 at once; states go to the callback.
    pub is_async: bool,
    input: WorkflowInput,
}

/// The callback for a call: an allowed `callbackUrl`, or the client's default for
/// `mode: "async"`. None means sync.
fn resolve_callback(
    s: &AppState,
    caller: &Caller,
    url: Option<&str>,
    mode: Option<&str>,
) -> Result<Option<Callback>, ApiError> {
    let wants_async = match mode {
        None => url.is_some(),
        Some("async") => true,
        Some("sync") if url.is_none() => false,
        Some("sync") => return Err(ApiError::bad_request("a callbackUrl needs mode \"async\" (or no mode)")),
        Some(m) => {
            return Err(ApiError::bad_request(format!(
                "mode must be \"sync\" or \"async\", not {m:?}"
            )));
        }
    };
    if !wants_async {
        return Ok(None);
    }
    let url = match url {
        Some(u) => u.to_string(),
        None => s.cfg.client_callbacks.get(&caller.client).cloned().ok_or_else(|| {
            ApiError::bad_request(format!(
                "mode \"async\" needs a callbackUrl: client {:?} has no default callback configured",
                caller.client
            ))
        })?,
    };
    s.cfg
        .allowlist
        .check(&url)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "callback_not_allowed", e))?;
    Ok(Some(Callback {
        url,
        client: caller.client.clone(),
    }))
}

/// The 202 of an async call: where to look, and the token to follow it live.
fn async_accepted(s: &AppState, caller: &Caller, id: &WorkflowId, request_id: &RequestId) -> Response {
    let body = json!({
        "workflowId": id.as_str(),
        "workflowStatus": WorkflowStatus::Running,
        "requestId": request_id.as_str(),
        "links": Links::for_workflow(id.as_str()),
        "streamToken": s.tokens.issue(&caller.tenant, id),
    });
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

/// Validates a start and builds the workflow input; nothing is dispatched yet.
pub fn prepare_start(
    s: &AppState,
    caller: &Caller,
    b: StartBody,
    idem: Option<String>,
) -> Result<PreparedStart, ApiError> {
    let callback = resolve_callback(s, caller, b.callback_url.as_deref(), b.mode.as_deref())?;
    let params = b.params.unwrap_or_else(|| json!({}));
    if !params.is_object() {
        return Err(ApiError::bad_request("params must be a JSON object"));
    }
    let def = s.registry.workflow(&b.workflow, b.version.as_deref()).ok_or_else(|| {
        ApiError::not_found(format!(
            "no workflow definition {:?} version {:?}",
            b.workflow,
            b.version.as_deref().unwrap_or("LATEST")
        ))
    })?;
    let definition = s.registry.compile(def).map_err(|e| ApiError::internal(&e))?;
    let children = pin_children(s, &definition)?;
    if idem.as_ref().is_some_and(|k| k.is_empty() || k.len() > 255) {
        return Err(ApiError::bad_request("Idempotency-Key must be 1-255 characters"));
    }
    let id = match (&b.workflow_id, &idem) {
        (Some(w), _) => WorkflowId::parse(w)?,
        // The same key from the same tenant and client always names the same workflow.
        (None, Some(k)) => {
            use sha2::Digest;
            let digest = sha2::Sha256::digest(format!("{}\n{}\n{k}", caller.tenant.as_str(), caller.client));
            WorkflowId::parse(&format!("idem-{}", &hex(&digest)[..32]))?
        }
        (None, None) => WorkflowId::generate(),
    };
    let request_id = RequestId::parse_or_new(b.request_id.as_deref())?;
    let scoped = caller.scoped(&id);
    let keys = keys(s, &scoped);
    let input = WorkflowInput {
        definition,
        children,
        workflow_id: id.as_str().to_string(),
        tenant: caller.tenant.as_str().to_string(),
        keys: keys.clone(),
        params,
        thread_context: caller.thread_context(),
        request_id: Some(request_id.as_str().to_string()),
        cursor: None,
        seq: 0,
        inbox: vec![],
        history_limit: s.cfg.history_limit,
        key_prefix: s.cfg.key_prefix.clone(),
        callback,
        deliveries_started: false,
    };
    let is_async = input.callback.is_some();
    Ok(PreparedStart {
        id,
        scoped,
        keys,
        request_id,
        idempotent: idem.is_some(),
        is_async,
        input,
    })
}

/// Dispatches a prepared start. `Ok(false)` means an idempotent retry: the workflow exists.
/// Callers subscribe to `p.keys.channel` before calling this.
pub async fn dispatch_start(s: &AppState, p: &PreparedStart) -> Result<bool, ApiError> {
    match s
        .temporal
        .start(
            &p.scoped,
            p.input.clone(),
            StartOptions {
                idempotent: p.idempotent,
            },
        )
        .await
    {
        Ok(()) => {
            metrics::counter!("drift_workflows_started_total").increment(1);
            Ok(true)
        }
        Err(TemporalError::AlreadyStarted) if p.idempotent => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    headers
        .get("idempotency-key")
        .map(|v| v.to_str().map(str::to_string))
        .transpose()
        .map_err(|_| ApiError::bad_request("Idempotency-Key must be ASCII"))
}

pub async fn start(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let t0 = Instant::now();
    let caller = Caller::from_headers(&headers)?;
    let p = prepare_start(&s, &caller, parse_body(&body)?, idempotency_key(&headers)?)?;
    if p.is_async {
        // Async: no waiting on Redis; every state goes to the callback.
        dispatch_start(&s, &p).await?;
        let resp = async_accepted(&s, &caller, &p.id, &p.request_id);
        metrics::histogram!("drift_request_seconds", "endpoint" => "start", "mode" => "async", "status" => "202")
            .record(t0.elapsed().as_secs_f64());
        return Ok(resp);
    }
    let deadline = Instant::now() + wait_limit(&s, &headers);
    // Subscribe before dispatching, so the first state cannot slip past.
    let mut sub = s.hub.subscribe(&p.keys.channel).await?;
    let fresh = dispatch_start(&s, &p).await?;
    let resp = match (fresh, if fresh { None } else { s.store.latest(&p.keys).await? }) {
        // A retried start: answer with the workflow the first call started.
        (false, Some(st)) => (StatusCode::OK, Json(st.state)).into_response(),
        _ => {
            let answer = wait_for(&mut sub, &s.store, &p.keys, p.request_id.as_str(), !fresh, deadline).await;
            respond(&s, &p.id, &p.keys, &p.request_id, answer).await?
        }
    };
    let resp = with_stream_token(&s, &caller, &p.id, resp).await;
    observe("start", t0, resp.status());
    Ok(resp)
}

/// Adds the `streamToken` a client needs to follow the workflow live (SSE, WebSocket).
async fn with_stream_token(s: &AppState, caller: &Caller, id: &WorkflowId, resp: Response) -> Response {
    if !resp.status().is_success() {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, s.cfg.max_body_bytes.max(1 << 20) * 4).await else {
        return ApiError::internal(&"response too large").into_response();
    };
    let token = s.tokens.issue(&caller.tenant, id);
    // The body is the shared, already-serialized state object: splice the token in rather
    // than parse and serialize it again on the hot path. (Tokens are base64url and '.'.)
    let mut out = bytes.to_vec();
    if let Some(end) = out.iter().rposition(|b| *b == b'}') {
        out.truncate(end);
        out.extend_from_slice(br#","streamToken":""#);
        out.extend_from_slice(token.as_bytes());
        out.extend_from_slice(b"\"}");
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        "drift-stream-token",
        HeaderValue::from_str(&token).expect("token is ascii"),
    );
    Response::from_parts(parts, axum::body::Body::from(out))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The latest state, from Redis or (before anything was published) from Temporal.
pub async fn current(s: &AppState, caller: &Caller, id: &WorkflowId) -> Result<WorkflowState, ApiError> {
    let scoped = caller.scoped(id);
    if let Some(st) = s.store.latest(&keys(s, &scoped)).await? {
        return Ok(st.state);
    }
    match s.temporal.query_state(&scoped).await {
        Ok(Some(st)) => Ok(st),
        Ok(None) => Ok(WorkflowState {
            workflow_id: id.as_str().to_string(),
            workflow_status: WorkflowStatus::Running,
            seq: 0,
            view: None,
            disposition: None,
            error_message: None,
            request_id: None,
            links: Links::for_workflow(id.as_str()),
        }),
        Err(TemporalError::NotFound) => Err(ApiError::not_found(format!("no workflow {:?}", id.as_str()))),
        Err(e) => Err(e.into()),
    }
}

pub async fn get_state(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = Caller::from_headers(&headers)?;
    let id = WorkflowId::parse(&id)?;
    Ok(Json(current(&s, &caller, &id).await?).into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResumeBody {
    view_response: Value,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    callback_url: Option<String>,
    #[serde(default)]
    mode: Option<String>,
}

/// Sends a command and waits for its answer; shared by resume and execute-node.
async fn command(
    s: &AppState,
    headers: &HeaderMap,
    caller: &Caller,
    id: &WorkflowId,
    request_id: RequestId,
    cmd: Command,
) -> Result<Response, ApiError> {
    let scoped = caller.scoped(id);
    let keys = keys(s, &scoped);
    let t0 = Instant::now();
    let deadline = t0 + wait_limit(s, headers);
    let mut sub = s.hub.subscribe(&keys.channel).await?;
    let subscribed = t0.elapsed();
    s.temporal.signal(&scoped, cmd).await?;
    let signalled = t0.elapsed();
    let answer = wait_for(&mut sub, &s.store, &keys, request_id.as_str(), false, deadline).await;
    tracing::debug!(?subscribed, ?signalled, answered = ?t0.elapsed(), "command round trip");
    respond(s, id, &keys, &request_id, answer).await
}

/// A command checked against the workflow's latest state, ready to signal.
pub struct PreparedCommand {
    pub request_id: RequestId,
    pub cmd: Command,
    /// The `seq` the check saw (0: nothing published yet).
    pub latest_seq: u64,
    /// Async mode: answered with 202 at once.
    pub is_async: bool,
}

/// Checks a resume against the latest state and builds its command.
pub async fn prepare_resume(
    s: &AppState,
    caller: &Caller,
    id: &WorkflowId,
    b: ResumeBody,
) -> Result<PreparedCommand, ApiError> {
    let callback = resolve_callback(s, caller, b.callback_url.as_deref(), b.mode.as_deref())?;
    if !b.view_response.is_object() {
        return Err(ApiError::bad_request(
            "viewResponse must be an object like {\"selectedOptions\": {\"widgetId\": value}}",
        ));
    }
    let request_id = RequestId::parse_or_new(b.request_id.as_deref())?;
    let latest = current(s, caller, id).await?;
    if latest.workflow_status != WorkflowStatus::Waiting {
        return Err(ApiError::conflict(
            "not_waiting",
            format!("the workflow is {:?}, not waiting for input", latest.workflow_status),
        ));
    }
    if let Some(seq) = b.seq
        && seq != latest.seq
    {
        return Err(ApiError::conflict(
            "stale_screen",
            format!(
                "this answer is for screen seq {seq}, the workflow is at seq {}",
                latest.seq
            ),
        ));
    }
    let cmd = Command::Resume {
        request_id: request_id.as_str().to_string(),
        seq: Some(b.seq.unwrap_or(latest.seq)),
        view_response: b.view_response,
        callback: callback.clone(),
    };
    Ok(PreparedCommand {
        request_id,
        cmd,
        latest_seq: latest.seq,
        is_async: callback.is_some(),
    })
}

pub async fn resume(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let t0 = Instant::now();
    let caller = Caller::from_headers(&headers)?;
    let id = WorkflowId::parse(&id)?;
    let p = prepare_resume(&s, &caller, &id, parse_body(&body)?).await?;
    if p.is_async {
        s.temporal.signal(&caller.scoped(&id), p.cmd).await?;
        return Ok(async_accepted(&s, &caller, &id, &p.request_id));
    }
    let resp = command(&s, &headers, &caller, &id, p.request_id, p.cmd).await?;
    observe("resume", t0, resp.status());
    Ok(resp)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecuteBody {
    node: String,
    #[serde(default)]
    parameters: Option<Value>,
    #[serde(default)]
    request_id: Option<String>,
}

/// Checks an execute-node call and builds its command.
pub async fn prepare_execute(
    s: &AppState,
    caller: &Caller,
    id: &WorkflowId,
    b: ExecuteBody,
) -> Result<PreparedCommand, ApiError> {
    if b.parameters.as_ref().is_some_and(|p| !p.is_object()) {
        return Err(ApiError::bad_request("parameters must be a JSON object"));
    }
    let request_id = RequestId::parse_or_new(b.request_id.as_deref())?;
    let latest = current(s, caller, id).await?;
    if latest.workflow_status.is_terminal() {
        return Err(ApiError::conflict("not_waiting", "the workflow has ended"));
    }
    let cmd = Command::Execute {
        request_id: request_id.as_str().to_string(),
        node: b.node,
        parameters: b.parameters,
    };
    Ok(PreparedCommand {
        request_id,
        cmd,
        latest_seq: latest.seq,
        is_async: false,
    })
}

pub async fn execute(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let t0 = Instant::now();
    let caller = Caller::from_headers(&headers)?;
    let id = WorkflowId::parse(&id)?;
    let p = prepare_execute(&s, &caller, &id, parse_body(&body)?).await?;
    let resp = command(&s, &headers, &caller, &id, p.request_id, p.cmd).await?;
    observe("execute", t0, resp.status());
    Ok(resp)
}

pub async fn terminate(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = Caller::from_headers(&headers)?;
    let id = WorkflowId::parse(&id)?;
    let scoped = caller.scoped(&id);
    let keys = keys(&s, &scoped);
    s.temporal
        .terminate(&scoped, &format!("terminated by {} via API", caller.client))
        .await?;
    // A terminated workflow cannot publish its own end; the gateway does it for it.
    let seq = s.store.latest(&keys).await?.map(|l| l.seq).unwrap_or(0) + 1;
    let state = WorkflowState {
        workflow_id: id.as_str().to_string(),
        workflow_status: WorkflowStatus::Terminated,
        seq,
        view: None,
        disposition: None,
        error_message: None,
        request_id: None,
        links: Links::for_workflow(id.as_str()),
    };
    s.store.publish_state(&keys, &state).await?;
    // Async workflows also get their end delivered to the callback.
    let delivery = Delivery {
        callback: None,
        webhook_id: crate::temporal::workflow::webhook_id(id.as_str(), seq),
        seq,
        terminal: true,
        body: serde_json::to_string(&state).map_err(|e| ApiError::internal(&e))?,
        status_key: keys.deliveries(),
    };
    s.temporal
        .deliver(
            &crate::temporal::workflow::deliveries_id(caller.tenant.as_str(), id.as_str()),
            delivery,
        )
        .await;
    Ok(Json(state).into_response())
}

pub async fn list_definitions(State(s): State<AppState>) -> Json<Value> {
    let items: Vec<Value> = s
        .registry
        .workflow_ids()
        .filter_map(|id| s.registry.workflow(id, None))
        .map(|d| json!({"id": d.id, "version": d.version, "description": d.description, "startNode": d.start_node}))
        .collect();
    Json(json!({"definitions": items}))
}

impl ResumeBody {
    pub fn new(view_response: Value, seq: Option<u64>, request_id: Option<String>) -> Self {
        Self {
            view_response,
            seq,
            request_id,
            callback_url: None,
            mode: None,
        }
    }
}

impl ExecuteBody {
    pub fn new(node: String, parameters: Option<Value>, request_id: Option<String>) -> Self {
        Self {
            node,
            parameters,
            request_id,
        }
    }
}

/// `GET /v3/workflow/{id}/deliveries`: the last webhook attempt (url, seq, attempt, state,
/// lastError, nextRetryAt), for operators.
pub async fn deliveries(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = Caller::from_headers(&headers)?;
    let id = WorkflowId::parse(&id)?;
    let keys = keys(&s, &caller.scoped(&id));
    match s.store.delivery_status(&keys).await? {
        Some(status) => Ok(Json(json!({"workflowId": id.as_str(), "lastAttempt": status})).into_response()),
        None => Err(ApiError::not_found("no webhook deliveries for this workflow")),
    }
}
