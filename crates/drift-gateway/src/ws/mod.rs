//! `GET /v3/ws`: one WebSocket per client, following many workflows and driving them (start,
//! resume, execute-node) through the same service calls as HTTP. One task per socket reads,
//! drives the socket's follower streams and writes.

pub(super) mod protocol;

use super::AppState;
use super::error::{ApiError, ErrorCode};
use super::extract::{AllowedOrigin, presented};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use drift_core::domain::timeline::Via;
use drift_core::domain::{Caller, WorkflowId};
use drift_service::{
    Anonymous, CommandBody, Credentials, Follow, Followed, Identity, Out, Outcome, Presented, ServiceError,
};
use futures::{Stream, StreamExt};
use protocol::{ClientMsg, RequestIdOnly, ServerMsg, Targeted};
use serde::Deserialize;
use std::collections::HashSet;
use std::pin::Pin;
use std::time::Duration;
use tokio_stream::StreamMap;

const PING: Duration = Duration::from_secs(20);
const IDLE: Duration = Duration::from_secs(60);
const MAX_SUBSCRIPTIONS: usize = 200;

#[derive(Deserialize)]
pub struct WsQuery {
    ticket: Option<String>,
}

/// The socket acts as the caller of a bearer credential, or of a one-minute `?ticket=` from
/// `POST /v3/auth/ticket` (browsers cannot set headers on a WebSocket). Without either, it may
/// only subscribe with stream tokens.
/// A socket's first read buffer: a subscribe fits. It is read into whole (so its size is what
/// every idle socket holds), and a larger message grows it to that message's length.
const WS_READ_BUFFER: usize = 512;

/// The WebSocket
///
/// One socket for many workflows: `subscribe` with a stream token or as the caller, `start`,
/// `resume` and `execute-node` acknowledged by `requestId`, states pushed as they happen. The
/// messages are in the AsyncAPI document (`/v3/asyncapi.json`).
#[utoipa::path(
    get,
    path = drift_core::domain::routes::WS.template(),
    tag = "live",
    operation_id = "websocket",
    params(
        ("ticket" = Option<String>, Query, description = "A one-minute ticket from `POST /v3/auth/ticket` (browsers)"),
    ),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, description = "Not a WebSocket upgrade", body = crate::error::ErrorBody),
        (status = 401, description = "A ticket that is unknown, used or expired", body = crate::error::ErrorBody),
        (status = 403, description = "An `Origin` that is not allowed", body = crate::error::ErrorBody),
        (status = 503, description = "Too many streams; see Retry-After", body = crate::error::ErrorBody),
    ),
    security((), ("apiKey" = []), ("jwt" = []))
)]
pub async fn upgrade(
    State(s): State<AppState>,
    _: AllowedOrigin,
    headers: HeaderMap,
    Query(q): Query<WsQuery>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let presented = Presented {
        ticket: q.ticket.as_deref(),
        ..presented(&headers)
    };
    let caller = s
        .service
        .identify(presented, None, Anonymous::Allowed)
        .await?
        .map(Identity::into_caller);
    if let Some(c) = &caller {
        s.limits.rate(c)?;
    }
    let slot = s.limits.stream(caller.as_ref().map(|c| c.tenant.as_str()))?;
    Ok(upgrade
        .max_message_size(s.cfg.max_body_bytes)
        .max_frame_size(s.cfg.max_body_bytes)
        // Sized for an idle subscriber (the library's defaults are 128 KiB each): reads grow
        // their buffer when a large message arrives; writes go straight to the socket.
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(0)
        .on_upgrade(move |socket| session(s, caller, slot, socket)))
}

/// The request ids a socket sent and has not had answered, the newest `SENT_KEPT` of them: a
/// resume answered by a state leaves its id here, so the set must not grow with the socket's age.
#[derive(Default)]
struct Sent {
    ids: HashSet<String>,
    order: std::collections::VecDeque<String>,
}

const SENT_KEPT: usize = 1_024;

impl Sent {
    fn insert(&mut self, id: String) {
        if self.ids.insert(id.clone()) {
            self.order.push_back(id);
            while self.order.len() > SENT_KEPT {
                if let Some(old) = self.order.pop_front() {
                    self.ids.remove(&old);
                }
            }
        }
    }

    fn remove(&mut self, id: &str) -> bool {
        // Its place in `order` goes when it is the oldest.
        self.ids.remove(id)
    }
}

/// A workflow this socket follows: the service's follower stream, polled by the session.
type Follower = Pin<Box<dyn Stream<Item = Followed> + Send>>;

/// One socket: a single task reads client messages, drives the followers and writes, so an
/// idle socket costs its buffers, this struct and one pending poll, nothing more.
struct Session {
    s: AppState,
    caller: Option<Caller>,
    socket: WebSocket,
    subs: StreamMap<WorkflowId, Follower>,
    /// Request ids this session sent, so rejections and results reach only their sender.
    mine: Sent,
    /// False once the socket failed a write or could not take one in time.
    open: bool,
    /// This socket's place among the gateway's live connections: a socket without credentials
    /// opens in a shared count and moves to the tenant of its first stream token.
    slot: crate::limits::StreamSlot,
}

/// Why a socket without credentials was closed: it followed nothing in time.
const NOTHING_FOLLOWED: &str = "a socket without credentials must follow a workflow with a stream token";

async fn session(s: AppState, caller: Option<Caller>, slot: crate::limits::StreamSlot, socket: WebSocket) {
    let _counted = drift_service::telemetry::GaugeGuard::new(drift_core::metrics::WS_CONNECTIONS.name);
    let shutdown = s.shutdown.clone();
    // One registration with the token for the socket's life, not one per message.
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);
    let mut sess = Session {
        s,
        caller,
        socket,
        subs: StreamMap::new(),
        mine: Sent::default(),
        open: true,
        slot,
    };
    let mut ping = tokio::time::interval(PING);
    // Idle: no frame, not even a pong, for IDLE.
    let idle = tokio::time::sleep(IDLE);
    tokio::pin!(idle);
    // A socket without credentials holds a place only while it follows something: one that
    // still names no workflow by then is closed (a follow being set up finishes first: the
    // loop waits on it). Boxed, and only for such sockets: the others do not carry its timer.
    let mut unclaimed_until = sess
        .caller
        .is_none()
        .then(|| Box::pin(tokio::time::sleep(sess.s.cfg.subscribe_within)));
    while sess.open {
        tokio::select! {
            _ = &mut cancelled => break,
            _ = &mut idle => break,
            _ = async { if let Some(t) = unclaimed_until.as_mut() { t.await } },
                if unclaimed_until.is_some() && sess.slot.unclaimed() => {
                let close = axum::extract::ws::CloseFrame {
                    code: axum::extract::ws::close_code::POLICY,
                    reason: NOTHING_FOLLOWED.into(),
                };
                sess.write(Message::Close(Some(close))).await;
                sess.open = false;
                tracing::debug!(within = ?sess.s.cfg.subscribe_within, "closed a socket that followed nothing");
                metrics::counter!(drift_core::metrics::LIMITED.name, "limit" => "ws_unclaimed").increment(1);
                return;
            }
            frame = sess.socket.next() => {
                idle.as_mut().reset(tokio::time::Instant::now() + IDLE);
                match frame {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                    // Boxed: commands await large service futures an idle socket must not carry.
                    Some(Ok(Message::Text(t))) => Box::pin(sess.handle(t.as_str())).await,
                    Some(Ok(_)) => {}
                }
            }
            Some((id, d)) = sess.subs.next(), if !sess.subs.is_empty() => sess.deliver(&id, d).await,
            _ = ping.tick() => sess.write(Message::Ping(Bytes::from_static(b"drift"))).await,
        }
    }
    if sess.open {
        let _ = tokio::time::timeout(super::SLOW_CONSUMER_GRACE, sess.socket.send(Message::Close(None))).await;
    }
}

/// The message that answers request `rid` (None: a state its follower delivers anyway).
fn reply_message(id: &WorkflowId, rid: &str, seq: u64, outcome: Result<Outcome, ServiceError>) -> Option<Message> {
    Some(match outcome {
        Ok(Outcome::NodeResult(body)) => match serde_json::from_str(body.as_str()) {
            Ok(result) => ServerMsg::Result {
                result,
                request_id: rid,
            }
            .to_text(),
            Err(err) => ServerMsg::error(Some(rid), &ApiError::internal(&err)).to_text(),
        },
        Ok(Outcome::Rejected(r)) => ServerMsg::error(Some(rid), &ApiError::from(r)).to_text(),
        Ok(Outcome::State(body)) if seq > 0 => ServerMsg::State {
            workflow_id: id.as_str(),
            seq,
            state: body.raw(),
        }
        .to_text(),
        Ok(_) => return None,
        Err(err) => ServerMsg::error(Some(rid), &ApiError::from(err)).to_text(),
    })
}

impl Session {
    /// Writes one message; a socket that cannot take it in time is closed.
    async fn write(&mut self, m: Message) {
        if !self.open {
            return;
        }
        let sent = tokio::time::timeout(super::SLOW_CONSUMER_GRACE, self.socket.send(m)).await;
        if !matches!(sent, Ok(Ok(()))) {
            self.open = false;
        }
    }

    async fn send(&mut self, m: ServerMsg<'_>) {
        self.write(m.to_text()).await;
    }

    /// Hands one follower's delivery to the client: states and gaps always, answers to
    /// commands only to the socket that sent them.
    async fn deliver(&mut self, id: &WorkflowId, d: Followed) {
        let m = match d {
            Followed::Out(Out::State { seq, body, .. }) => ServerMsg::State {
                workflow_id: id.as_str(),
                seq,
                state: body.raw(),
            }
            .to_text(),
            Followed::Out(Out::Gap { after, latest }) => ServerMsg::Gap {
                workflow_id: id.as_str(),
                after,
                latest,
            }
            .to_text(),
            Followed::Reply(rid, outcome) => match self.mine.remove(&rid) {
                true => match reply_message(id, &rid, 0, outcome) {
                    Some(m) => m,
                    None => return,
                },
                false => return,
            },
        };
        self.write(m).await;
    }

    async fn handle(&mut self, raw: &str) {
        let head = serde_json::from_str::<RequestIdOnly>(raw).ok();
        let request_id = head.as_ref().and_then(|r| r.request_id.clone());
        let traced = head.filter(|h| h.traceparent.is_some() || h.tracestate.is_some());
        let parsed = match traced {
            Some(_) => protocol::parse_traced(raw),
            None => serde_json::from_str::<ClientMsg>(raw),
        };
        let result = match parsed {
            Ok(msg) if drift_service::trace::enabled() => {
                // A span per message, under the caller's traceparent when it sent one.
                use opentelemetry::trace::{FutureExt as _, SpanKind, Status, TraceContextExt as _};
                let parent = traced
                    .map(|h| drift_service::trace::remote(h.traceparent.as_deref(), h.tracestate.as_deref()))
                    .unwrap_or_default();
                let cx = drift_service::trace::start(format!("ws {}", msg.kind()), SpanKind::Server, &parent, vec![]);
                let result = self.dispatch(msg, request_id.as_deref()).with_context(cx.clone()).await;
                if let Err(e) = &result {
                    cx.span().set_status(Status::error(e.message.clone()));
                }
                result
            }
            Ok(msg) => self.dispatch(msg, request_id.as_deref()).await,
            Err(e) => Err(ApiError::bad_request(format!("bad message: {e}"))),
        };
        if let Err(e) = result {
            self.send(ServerMsg::error(request_id.as_deref(), &e)).await;
        }
    }

    /// The session's own tenant credentials, needed to start workflows.
    fn caller(&self) -> Result<&Caller, ApiError> {
        self.caller.as_ref().ok_or_else(|| {
            ApiError::unauthorized("connect with tenant credentials (headers or ?tenant=&client=) to do this")
        })
    }

    /// The caller allowed to act on `id`: a token for that workflow, or the session's tenant.
    fn authorize(&self, id: &WorkflowId, token: Option<&str>) -> Result<Caller, ApiError> {
        let credentials = match (token, &self.caller) {
            (Some(t), _) => Credentials::StreamToken(t),
            (None, Some(c)) => Credentials::Caller(c),
            (None, None) => Credentials::None,
        };
        Ok(self.s.service.authorize(credentials, id)?)
    }

    async fn dispatch(&mut self, msg: ClientMsg, request_id: Option<&str>) -> Result<(), ApiError> {
        match msg {
            ClientMsg::Ping {} => self.send(ServerMsg::Pong).await,
            ClientMsg::Subscribe {
                workflow_id,
                since,
                token,
            } => {
                let id = WorkflowId::parse(&workflow_id)?;
                let caller = self.authorize(&id, token.as_deref())?;
                self.make_room(Some(&id))?;
                // A socket with credentials already counts for its tenant: nothing moves.
                self.s.limits.claim(&mut self.slot, caller.tenant.as_str())?;
                let follow = {
                    let _turn = self.s.limits.follow_setup().await;
                    self.s.service.follow(&caller, &id, since).await?.via("ws")
                };
                self.add_follower(&id, follow);
                self.ack(request_id, &id, None).await;
            }
            ClientMsg::Unsubscribe { workflow_id } => {
                let id = WorkflowId::parse(&workflow_id)?;
                self.subs.remove(&id);
                self.ack(request_id, &id, None).await;
            }
            ClientMsg::Start { body, idempotency_key } => {
                let caller = self.caller()?.clone();
                let req = drift_service::StartRequest {
                    via: Via::Ws,
                    ..body.into_request(idempotency_key)?
                };
                self.make_room(None)?;
                let d = self.s.service.start(&caller, req).await?;
                let (id, rid, token) = (d.id.clone(), d.request_id.clone(), d.stream_token.clone());
                let follow = match d.into_follow() {
                    Some(f) => f.via("ws"),
                    // Async mode: the socket follows all the same.
                    None => self.s.service.follow(&caller, &id, None).await?.via("ws"),
                };
                self.add_follower(&id, follow);
                self.ack(Some(rid.as_str()), &id, Some(&token)).await;
            }
            ClientMsg::Resume(t) => self.command(t).await?,
            ClientMsg::Back(t) => self.command(t).await?,
            ClientMsg::ExecuteNode(t) => self.command(t).await?,
        }
        Ok(())
    }

    async fn ack(&mut self, request_id: Option<&str>, id: &WorkflowId, stream_token: Option<&str>) {
        self.send(ServerMsg::Ack {
            request_id,
            workflow_id: id.as_str(),
            stream_token,
        })
        .await;
    }

    async fn command<B: CommandBody>(&mut self, t: Targeted<B>) -> Result<(), ApiError> {
        let id = WorkflowId::parse(&t.workflow_id)?;
        let caller = self.authorize(&id, t.token.as_deref())?;
        let req = t.body.into_request()?;
        self.make_room(Some(&id))?;
        let rid = req.request_id().to_string();
        // Registered before dispatch: the answer may arrive before the call returns.
        self.mine.insert(rid.clone());
        let mut d = match self.s.service.command(&caller, &id, req, Via::Ws).await {
            Ok(d) => d,
            Err(e) => {
                self.mine.remove(&rid);
                return Err(e.into());
            }
        };
        // A retried command: its first answer, again; nothing was sent to the workflow.
        if let Some((seq, outcome)) = d.take_answer() {
            self.mine.remove(&rid);
            self.ack(Some(&rid), &id, None).await;
            if let Some(m) = reply_message(&id, &rid, seq, outcome) {
                self.write(m).await;
            }
            return Ok(());
        }
        if !self.following(&id) {
            match d.into_follow() {
                Some(f) => self.add_follower(&id, f.via("ws")),
                None => {
                    let f = self.s.service.follow(&caller, &id, None).await?.via("ws");
                    self.add_follower(&id, f);
                }
            }
        }
        self.ack(Some(&rid), &id, None).await;
        Ok(())
    }

    fn following(&self, id: &WorkflowId) -> bool {
        self.subs.contains_key(id)
    }

    /// Ensures this socket may follow `id` (None: a workflow not started yet).
    fn make_room(&mut self, id: Option<&WorkflowId>) -> Result<(), ApiError> {
        if id.is_some_and(|id| self.following(id)) || self.subs.len() < MAX_SUBSCRIPTIONS {
            return Ok(());
        }
        Err(ApiError::new(
            ErrorCode::TooManySubscriptions,
            format!("at most {MAX_SUBSCRIPTIONS} workflows per socket"),
        ))
    }

    /// Follows a workflow on this socket, unless it already does.
    fn add_follower(&mut self, id: &WorkflowId, follow: Follow) {
        if self.following(id) {
            return;
        }
        let stream = self.s.service.stream(follow, self.s.shutdown.clone());
        self.subs.insert(id.clone(), Box::pin(stream));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sockets_record_of_sent_requests_stays_bounded() {
        let mut sent = Sent::default();
        for i in 0..5_000 {
            sent.insert(format!("r{i}"));
        }
        assert!(sent.ids.len() <= SENT_KEPT && sent.order.len() <= SENT_KEPT);
        assert!(sent.remove("r4999") && !sent.remove("r0"));
    }
}
