//! Live mode: SSE and WebSocket streams fed by the same subscription hub as sync waiters.
//! Each follower subscribes first, then reads what it missed from the store, then forwards
//! live states, dropping duplicates by `seq`.

use super::AppState;
use super::error::ApiError;
use super::ids::{Caller, TenantId, WorkflowId};
use super::runtime::{self, ExecuteBody, ResumeBody, StartBody};
use crate::bus::hub::{HubMsg, Subscription};
use crate::bus::{Store, StoreError};
use crate::model::{MessageKind, RedisKeys};
use crate::temporal::client::TemporalError;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

/// How long a stream may stay unable to take the next state before it is closed.
const SLOW_CONSUMER_GRACE: Duration = Duration::from_secs(10);
const KEEPALIVE: Duration = Duration::from_secs(15);
const WS_PING: Duration = Duration::from_secs(20);
const WS_IDLE: Duration = Duration::from_secs(60);
const WS_QUEUE: usize = 256;
const WS_MAX_SUBSCRIPTIONS: usize = 200;

/// One thing to deliver to a follower.
#[derive(Debug, Clone)]
pub enum Out {
    State {
        seq: u64,
        terminal: bool,
        body: Bytes,
    },
    /// The history log no longer reaches back to `after`; the latest state follows.
    Gap {
        after: u64,
        latest: u64,
    },
}

/// Delivery position of one follower of one workflow.
pub struct Follower {
    keys: RedisKeys,
    last: Option<u64>,
}

impl Follower {
    pub fn new(keys: RedisKeys, since: Option<u64>) -> Self {
        Self { keys, last: since }
    }

    fn state_out(st: &crate::bus::Stored) -> Out {
        Out::State {
            seq: st.seq,
            terminal: st.state.workflow_status.is_terminal(),
            body: Bytes::from(serde_json::to_vec(&st.state).expect("state serializes")),
        }
    }

    /// What the store has that this follower has not seen.
    pub async fn catch_up(&mut self, store: &Store) -> Result<Vec<Out>, StoreError> {
        let mut out = Vec::new();
        match self.last {
            None => {
                if let Some(st) = store.latest(&self.keys).await? {
                    out.push(Self::state_out(&st));
                }
            }
            Some(after) => {
                let (items, complete) = store.history_after(&self.keys, after).await?;
                if complete {
                    out.extend(items.iter().map(Self::state_out));
                } else if let Some(st) = store.latest(&self.keys).await? {
                    out.push(Out::Gap { after, latest: st.seq });
                    out.push(Self::state_out(&st));
                }
            }
        }
        if let Some(seq) = out.iter().rev().find_map(|o| {
            if let Out::State { seq, .. } = o {
                Some(*seq)
            } else {
                None
            }
        }) {
            self.last = Some(seq);
        }
        Ok(out)
    }

    /// A live state, unless it was already delivered.
    pub fn accept(&mut self, seq: u64, terminal: bool, body: &Bytes) -> Option<Out> {
        if self.last.is_some_and(|l| seq <= l) {
            return None;
        }
        self.last = Some(seq);
        Some(Out::State {
            seq,
            terminal,
            body: body.clone(),
        })
    }
}

/// Authority to follow a workflow: a stream token for it, or the tenant's headers.
fn authorize(s: &AppState, headers: &HeaderMap, token: Option<&str>, id: &WorkflowId) -> Result<TenantId, ApiError> {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if let Some(t) = token.or(bearer) {
        // One answer for every bad token: it says nothing about whether the workflow exists.
        return s.tokens.verify(t, id).map_err(|_| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing, invalid or expired stream token",
            )
        });
    }
    match Caller::from_headers(headers) {
        Ok(c) => Ok(c.tenant),
        Err(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a stream token (?token= or Authorization: Bearer) or tenant headers are required",
        )),
    }
}

/// 404 unless the workflow has published something or Temporal knows it.
async fn ensure_exists(s: &AppState, tenant: &TenantId, id: &WorkflowId, keys: &RedisKeys) -> Result<(), ApiError> {
    if s.store.latest(keys).await?.is_some() {
        return Ok(());
    }
    match s
        .temporal
        .query_state(&format!("{}/{}", tenant.as_str(), id.as_str()))
        .await
    {
        Ok(_) => Ok(()),
        Err(TemporalError::NotFound) => Err(ApiError::not_found(format!("no workflow {:?}", id.as_str()))),
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventsQuery {
    token: Option<String>,
    last_event_id: Option<u64>,
}

/// `GET /v3/workflow/{id}/events`: the current state, then every state live; `id:` is `seq`.
pub async fn sse(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<EventsQuery>,
) -> Result<Response, ApiError> {
    let id = WorkflowId::parse(&id)?;
    let tenant = authorize(&s, &headers, q.token.as_deref(), &id)?;
    let keys = runtime::keys(&s, &format!("{}/{}", tenant.as_str(), id.as_str()));
    let since = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .or(q.last_event_id);
    let sub = s.hub.subscribe(&keys.channel).await?;
    ensure_exists(&s, &tenant, &id, &keys).await?;
    let (tx, rx) = mpsc::channel::<Result<SseEvent, std::convert::Infallible>>(16);
    let follower = Follower::new(keys, since);
    metrics::gauge!("drift_sse_connections").increment(1.0);
    tokio::spawn(async move {
        let sink = move |o: Out| {
            let tx = tx.clone();
            async move {
                let ev = match o {
                    Out::State { seq, body, .. } => SseEvent::default().event("state").id(seq.to_string()).data(String::from_utf8_lossy(&body)),
                    Out::Gap { after, latest } => SseEvent::default()
                        .event("gap")
                        .data(json!({"after": after, "latest": latest, "message": "history no longer reaches back; the latest state follows"}).to_string()),
                };
                matches!(
                    tokio::time::timeout(SLOW_CONSUMER_GRACE, tx.send(Ok(ev))).await,
                    Ok(Ok(()))
                )
            }
        };
        follow(&s.store, sub, follower, s.shutdown.clone(), sink, |_| {}).await;
        metrics::gauge!("drift_sse_connections").decrement(1.0);
    });
    Ok(Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(KEEPALIVE))
        .into_response())
}

/// Forwards one workflow's states to `deliver` until a terminal state, shutdown, or a
/// delivery that fails (gone or too slow). `other` sees rejections and node results.
async fn follow<F, Fut>(
    store: &Store,
    mut sub: Subscription,
    mut f: Follower,
    shutdown: CancellationToken,
    deliver: F,
    mut other: impl FnMut(&crate::bus::hub::Event),
) where
    F: Fn(Out) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut pending = match f.catch_up(store).await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "stream catch-up failed");
            return;
        }
    };
    loop {
        for o in pending.drain(..) {
            let terminal = matches!(o, Out::State { terminal: true, .. });
            if !deliver(o).await {
                metrics::counter!("drift_stream_closed_slow_total").increment(1);
                return;
            }
            metrics::counter!("drift_messages_delivered_total").increment(1);
            if terminal {
                return;
            }
        }
        let msg = tokio::select! {
            _ = shutdown.cancelled() => return,
            m = sub.recv() => m,
        };
        match msg {
            HubMsg::Event(e) if e.kind == MessageKind::State => pending.extend(f.accept(e.seq, e.terminal, &e.body)),
            HubMsg::Event(e) => other(&e),
            // Missed messages (Redis reconnect, or this follower lagged): read them back.
            HubMsg::Resync => match f.catch_up(store).await {
                Ok(v) => pending = v,
                Err(e) => {
                    tracing::warn!(error = %e, "stream resync failed; will retry on the next message")
                }
            },
        }
    }
}

// ---------------------------------------------------------------------------------------------
// WebSocket

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WsQuery {
    tenant: Option<String>,
    client: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
enum ClientMsg {
    #[serde(rename_all = "camelCase")]
    Subscribe {
        request_id: Option<String>,
        workflow_id: String,
        since: Option<u64>,
        token: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    Unsubscribe {
        request_id: Option<String>,
        workflow_id: String,
    },
    #[serde(rename_all = "camelCase")]
    Start {
        request_id: Option<String>,
        #[serde(flatten)]
        body: Value,
        idempotency_key: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    Resume {
        request_id: Option<String>,
        workflow_id: String,
        view_response: Value,
        seq: Option<u64>,
        token: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    ExecuteNode {
        request_id: Option<String>,
        workflow_id: String,
        node: String,
        parameters: Option<Value>,
        token: Option<String>,
    },
    Ping {},
}

/// `GET /v3/ws`. Tenant credentials come from the headers or `?tenant=&client=` (browsers
/// cannot set headers on a WebSocket); without them only token subscriptions are allowed.
pub async fn ws(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<WsQuery>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let caller = match (Caller::from_headers(&headers), q.tenant, q.client) {
        (Ok(c), _, _) => Some(c),
        (Err(_), Some(t), Some(c)) => {
            let mut h = HeaderMap::new();
            h.insert(
                "X_TENANT_ID",
                t.parse().map_err(|_| ApiError::bad_request("bad tenant"))?,
            );
            h.insert(
                "X_CLIENT_ID",
                c.parse().map_err(|_| ApiError::bad_request("bad client"))?,
            );
            Some(Caller::from_headers(&h)?)
        }
        _ => None,
    };
    Ok(upgrade
        .max_message_size(s.cfg.max_body_bytes)
        .on_upgrade(move |socket| session(s, caller, socket)))
}

struct Session {
    s: AppState,
    caller: Option<Caller>,
    out: mpsc::Sender<Message>,
    subs: HashMap<String, tokio::task::JoinHandle<()>>,
    /// Request ids this session sent, so rejections and results reach only their sender.
    mine: Arc<Mutex<HashSet<String>>>,
    close: CancellationToken,
}

fn text(v: Value) -> Message {
    Message::Text(v.to_string().into())
}

fn error_msg(request_id: Option<&str>, e: &ApiError) -> Message {
    let mut v = json!({"type": "error", "requestId": request_id, "status": e.status.as_u16(), "code": e.code, "message": e.message});
    if let Some(d) = &e.details {
        v["details"] = d.clone();
    }
    text(v)
}

async fn session(s: AppState, caller: Option<Caller>, socket: WebSocket) {
    metrics::gauge!("drift_ws_connections").increment(1.0);
    let (mut write, mut read) = socket.split();
    let (out, mut out_rx) = mpsc::channel::<Message>(WS_QUEUE);
    let close = s.shutdown.child_token();
    let writer_close = close.clone();
    let writer = tokio::spawn(async move {
        let mut ping = tokio::time::interval(WS_PING);
        loop {
            tokio::select! {
                _ = writer_close.cancelled() => break,
                m = out_rx.recv() => match m {
                    Some(m) => if write.send(m).await.is_err() { break },
                    None => break,
                },
                _ = ping.tick() => if write.send(Message::Ping(Bytes::from_static(b"drift"))).await.is_err() { break },
            }
        }
        let _ = write.send(Message::Close(None)).await;
        writer_close.cancel();
    });
    let mut sess = Session {
        s,
        caller,
        out,
        subs: HashMap::new(),
        mine: Arc::default(),
        close: close.clone(),
    };
    loop {
        let frame = tokio::select! {
            _ = close.cancelled() => break,
            f = tokio::time::timeout(WS_IDLE, read.next()) => f,
        };
        let msg = match frame {
            Err(_) => break, // idle: no frame (not even a pong) for WS_IDLE
            Ok(None) | Ok(Some(Err(_))) => break,
            Ok(Some(Ok(m))) => m,
        };
        match msg {
            Message::Text(t) => sess.handle(t.as_str()).await,
            Message::Close(_) => break,
            _ => {}
        }
    }
    close.cancel();
    for (_, h) in sess.subs.drain() {
        h.abort();
    }
    let _ = writer.await;
    metrics::gauge!("drift_ws_connections").decrement(1.0);
}

impl Session {
    async fn send(&self, m: Message) {
        if tokio::time::timeout(SLOW_CONSUMER_GRACE, self.out.send(m))
            .await
            .is_err()
        {
            self.close.cancel();
        }
    }

    fn caller(&self) -> Result<&Caller, ApiError> {
        self.caller.as_ref().ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "connect with tenant credentials (headers or ?tenant=&client=) to do this",
            )
        })
    }

    /// The caller allowed to drive `id`: the session's tenant, or a token for that workflow.
    fn caller_for(&self, id: &WorkflowId, token: Option<&str>) -> Result<Caller, ApiError> {
        if let Some(t) = token {
            let tenant = self.s.tokens.verify(t, id).map_err(|_| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "missing, invalid or expired stream token",
                )
            })?;
            return Ok(Caller {
                tenant,
                client: "stream-token".into(),
                user: None,
            });
        }
        self.caller().cloned()
    }

    async fn handle(&mut self, raw: &str) {
        let request_id = serde_json::from_str::<Value>(raw)
            .ok()
            .and_then(|v| v.get("requestId").and_then(Value::as_str).map(str::to_string));
        let msg: ClientMsg = match serde_json::from_str(raw) {
            Ok(m) => m,
            Err(e) => {
                return self
                    .send(error_msg(
                        request_id.as_deref(),
                        &ApiError::bad_request(format!("bad message: {e}")),
                    ))
                    .await;
            }
        };
        if let Err(e) = self.dispatch(msg).await {
            self.send(error_msg(request_id.as_deref(), &e)).await;
        }
    }

    async fn dispatch(&mut self, msg: ClientMsg) -> Result<(), ApiError> {
        match msg {
            ClientMsg::Ping {} => self.send(text(json!({"type": "pong"}))).await,
            ClientMsg::Subscribe {
                request_id,
                workflow_id,
                since,
                token,
            } => {
                let id = WorkflowId::parse(&workflow_id)?;
                let caller = self.caller_for(&id, token.as_deref())?;
                let keys = runtime::keys(&self.s, &caller.scoped(&id));
                self.follow(&id, keys.clone(), since).await?;
                if let Err(e) = ensure_exists(&self.s, &caller.tenant, &id, &keys).await {
                    self.unfollow(&id);
                    return Err(e);
                }
                self.send(text(
                    json!({"type": "ack", "requestId": request_id, "workflowId": id.as_str()}),
                ))
                .await;
            }
            ClientMsg::Unsubscribe {
                request_id,
                workflow_id,
            } => {
                self.unfollow(&WorkflowId::parse(&workflow_id)?);
                self.send(text(
                    json!({"type": "ack", "requestId": request_id, "workflowId": workflow_id}),
                ))
                .await;
            }
            ClientMsg::Start {
                request_id,
                mut body,
                idempotency_key,
            } => {
                let caller = self.caller()?.clone();
                if let Some(r) = &request_id {
                    body["requestId"] = Value::String(r.clone());
                }
                let b: StartBody =
                    serde_json::from_value(body).map_err(|e| ApiError::bad_request(format!("bad start: {e}")))?;
                let p = runtime::prepare_start(&self.s, &caller, b, idempotency_key)?;
                self.mine
                    .lock()
                    .expect("mine")
                    .insert(p.request_id.as_str().to_string());
                // Follow before dispatching so the first state cannot be missed.
                self.follow(&p.id, p.keys.clone(), None).await?;
                if let Err(e) = runtime::dispatch_start(&self.s, &p).await {
                    self.unfollow(&p.id);
                    return Err(e);
                }
                let token = self.s.tokens.issue(&caller.tenant, &p.id);
                self.send(text(json!({"type": "ack", "requestId": p.request_id.as_str(), "workflowId": p.id.as_str(), "streamToken": token}))).await;
            }
            ClientMsg::Resume {
                request_id,
                workflow_id,
                view_response,
                seq,
                token,
            } => {
                let id = WorkflowId::parse(&workflow_id)?;
                let caller = self.caller_for(&id, token.as_deref())?;
                let body = ResumeBody::new(view_response, seq, request_id);
                let p = runtime::prepare_resume(&self.s, &caller, &id, body).await?;
                self.command(&caller, &id, p).await?;
            }
            ClientMsg::ExecuteNode {
                request_id,
                workflow_id,
                node,
                parameters,
                token,
            } => {
                let id = WorkflowId::parse(&workflow_id)?;
                let caller = self.caller_for(&id, token.as_deref())?;
                let body = ExecuteBody::new(node, parameters, request_id);
                let p = runtime::prepare_execute(&self.s, &caller, &id, body).await?;
                self.command(&caller, &id, p).await?;
            }
        }
        Ok(())
    }

    async fn command(&mut self, caller: &Caller, id: &WorkflowId, p: runtime::PreparedCommand) -> Result<(), ApiError> {
        let rid = p.request_id;
        self.mine.lock().expect("mine").insert(rid.as_str().to_string());
        let keys = runtime::keys(&self.s, &caller.scoped(id));
        // The check already read the latest state: follow from there without reading it again.
        let since = (p.latest_seq > 0).then_some(p.latest_seq);
        if !self.subs.contains_key(id.as_str()) {
            self.follow(id, keys, since).await?;
        }
        self.s.temporal.signal(&caller.scoped(id), p.cmd).await?;
        self.send(text(
            json!({"type": "ack", "requestId": rid.as_str(), "workflowId": id.as_str()}),
        ))
        .await;
        Ok(())
    }

    fn unfollow(&mut self, id: &WorkflowId) {
        if let Some(h) = self.subs.remove(id.as_str()) {
            h.abort();
        }
    }

    /// Starts forwarding a workflow's states to this socket (subscribed before returning).
    async fn follow(&mut self, id: &WorkflowId, keys: RedisKeys, since: Option<u64>) -> Result<(), ApiError> {
        if self.subs.get(id.as_str()).is_some_and(|h| !h.is_finished()) {
            return Ok(());
        }
        if self.subs.len() >= WS_MAX_SUBSCRIPTIONS {
            self.subs.retain(|_, h| !h.is_finished());
            if self.subs.len() >= WS_MAX_SUBSCRIPTIONS {
                return Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_subscriptions",
                    format!("at most {WS_MAX_SUBSCRIPTIONS} workflows per socket"),
                ));
            }
        }
        let sub = self.s.hub.subscribe(&keys.channel).await?;
        let follower = Follower::new(keys, since);
        let (out, mine, close, store) = (
            self.out.clone(),
            self.mine.clone(),
            self.close.clone(),
            self.s.store.clone(),
        );
        let wid = id.as_str().to_string();
        let shutdown = self.s.shutdown.clone();
        let handle = tokio::spawn(async move {
            let deliver = |o: Out| {
                let (out, close, wid) = (out.clone(), close.clone(), wid.clone());
                async move {
                    let m = match o {
                        Out::State { seq, body, .. } => Message::Text(
                            format!(
                                r#"{{"type":"state","workflowId":{},"seq":{seq},"state":{}}}"#,
                                json!(wid),
                                String::from_utf8_lossy(&body)
                            )
                            .into(),
                        ),
                        Out::Gap { after, latest } => {
                            text(json!({"type": "gap", "workflowId": wid, "after": after, "latest": latest}))
                        }
                    };
                    let ok = matches!(tokio::time::timeout(SLOW_CONSUMER_GRACE, out.send(m)).await, Ok(Ok(())));
                    if !ok {
                        close.cancel(); // too slow or gone: the whole socket closes
                    }
                    ok
                }
            };
            let out2 = out.clone();
            let other = move |e: &crate::bus::hub::Event| {
                let Some(rid) = e.request_id.as_deref() else {
                    return;
                };
                if !mine.lock().expect("mine").remove(rid) {
                    return;
                }
                let body: Value = serde_json::from_slice(&e.body).unwrap_or_default();
                let mut v = match e.kind {
                    MessageKind::Result => json!({"type": "result"}),
                    _ => json!({"type": "error"}),
                };
                if let (Some(dst), Some(src)) = (v.as_object_mut(), body.as_object()) {
                    dst.extend(src.clone());
                }
                v["requestId"] = json!(rid);
                let _ = out2.try_send(text(v));
            };
            follow(&store, sub, follower, shutdown, deliver, other).await;
        });
        self.subs.insert(id.as_str().to_string(), handle);
        Ok(())
    }
}
