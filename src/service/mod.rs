//! The service layer: the one path every transport (HTTP, SSE, WebSocket) takes. Each call
//! authorises the caller, subscribes to the workflow's channel *before* dispatching to
//! Temporal (so no answer can slip past), dispatches, and hands back a `Dispatched` that sync
//! HTTP waits on, live transports forward, and async mode drops.

mod auth;
mod catalog;
mod definitions;
mod follow;
mod identify;
mod requests;
mod token;
mod wait;

pub use crate::db::Kind;
pub use crate::dsl::is_definition_id;
pub use auth::{Authenticator, JwtVerifier, Legacy, Mode as AuthMode, hash_key, new_key};
pub use catalog::Catalog;
pub use follow::{Follow, Followed, Out};
pub use identify::{Anonymous, Identity, Presented};
pub use requests::{CommandBody, CommandRequest, Delivery, ExecuteBody, Mode, ResumeBody, StartBody, StartRequest};
pub use token::{Tokens, is_token};
pub use wait::Outcome;

use crate::bus::{Hub, HubError, RedisKeys, Store, StoreError, Subscription};
use crate::domain::{
    Callback, Caller, Command, IdError, Rejection, RequestId, Scope, ScopedWorkflowId, Scopes, TenantId, WorkflowId,
    WorkflowStart, WorkflowState, WorkflowStatus,
};
use crate::dsl::{Definition, Node};
use crate::temporal::{EndedAs, Temporal, TemporalError};
use crate::webhook::Allowlist;
use futures::StreamExt;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Why a call did not happen. Transports map each to their own answer, in one place each.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Id(#[from] IdError),
    #[error("{0}")]
    NotFound(String),
    /// No credential, or one that is unknown, revoked, expired or forged.
    #[error("{0}")]
    Unauthorized(String),
    /// A valid credential that does not allow this.
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error("{0}")]
    CallbackNotAllowed(String),
    #[error("a workflow with this id already exists")]
    AlreadyExists,
    /// A definition that does not validate; each error names its node and field.
    #[error("the definition is not valid")]
    InvalidDefinition(Vec<crate::dsl::ValidationError>),
    /// A change that conflicts with what is stored (a published version, an existing id).
    #[error("{0}")]
    Conflict(String),
    /// An Idempotency-Key first used for a different request; nothing was started.
    #[error(
        "this Idempotency-Key was first used for a different request (another workflow, version, params, mode or \
         callback); send a new key for a new request"
    )]
    IdempotencyKeyReused,
    /// A command's payload over the configured cap.
    #[error("{0}")]
    TooLarge(String),
    /// Temporal or Redis could not be reached; nothing was changed.
    #[error("{dependency} is unavailable: {cause}")]
    Unavailable { dependency: &'static str, cause: String },
    /// Too much is waiting for a dependency already; this call was refused untouched.
    #[error("{0}")]
    Busy(String),
    /// The call may or may not have been applied (a timeout after it was sent).
    #[error("outcome unknown: {0}")]
    Uncertain(String),
    #[error("{0}")]
    Internal(String),
}

impl From<TemporalError> for ServiceError {
    fn from(e: TemporalError) -> Self {
        match e {
            TemporalError::Unavailable(cause) => Self::Unavailable {
                dependency: "Temporal",
                cause,
            },
            TemporalError::NotFound => Self::NotFound("no such workflow".into()),
            TemporalError::Ended => Self::Rejected(Rejection::NotWaiting {
                status: WorkflowStatus::Terminated,
            }),
            TemporalError::AlreadyStarted => Self::AlreadyExists,
            TemporalError::Uncertain(cause) => Self::Uncertain(cause),
            TemporalError::Other(m) => Self::Internal(format!("Temporal: {m}")),
            TemporalError::Busy => Self::Busy(
                "too many workflow starts are waiting for Temporal on this gateway; nothing was started, retry \
                 shortly"
                    .into(),
            ),
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(cause) => Self::Unavailable {
                dependency: "Redis",
                cause: cause.to_string(),
            },
            StoreError::Corrupt(m) => Self::Internal(format!("corrupt state in Redis: {m}")),
        }
    }
}

impl From<HubError> for ServiceError {
    fn from(e: HubError) -> Self {
        Self::Unavailable {
            dependency: "Redis",
            cause: e.to_string(),
        }
    }
}

/// Deployment settings the service applies to every call.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Continue-as-new threshold handed to each workflow.
    pub history_limit: u32,
    pub allowlist: Allowlist,
    /// Default callback per client, for `mode: "async"` without a callbackUrl.
    pub client_callbacks: BTreeMap<String, String>,
    /// Largest answer or node parameters a command may carry (its JSON), so nothing oversized
    /// reaches a workflow's history.
    pub max_command_bytes: usize,
    /// How long a workflow may last when its definition does not say.
    pub execution_timeout: std::time::Duration,
}

/// The size of a value's JSON, counted without building it.
fn json_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// A command or start on its way: subscribed (unless async) and dispatched.
pub struct Dispatched {
    pub id: WorkflowId,
    pub request_id: RequestId,
    /// Where to follow the workflow live (SSE, WebSocket) without a credential.
    pub stream_token: String,
    /// Async mode: later states go to the callback, nobody waits here.
    pub is_async: bool,
    keys: RedisKeys,
    /// Subscribed before dispatch; None in async mode.
    subscription: Option<Subscription>,
    /// The `seq` the service's check saw (0: nothing published yet).
    seen: u64,
    /// False when an idempotent start found its workflow already there.
    fresh: bool,
    /// A retried command's first answer: nothing was dispatched again.
    answered: Option<crate::bus::Event>,
}

impl Dispatched {
    /// The first answer of a retried command (its `seq` and what it was), if this was one.
    pub fn take_answer(&mut self) -> Option<(u64, Result<Outcome, ServiceError>)> {
        self.answered.take().map(|e| (e.seq, Outcome::of(&e)))
    }

    /// The subscription as a live follower, from just after what the check saw.
    pub fn into_follow(self) -> Option<Follow> {
        let since = (self.seen > 0).then_some(self.seen);
        self.subscription.map(|sub| Follow::new(sub, self.keys, since))
    }
}

/// Whatever authority a transport has for a call on one workflow.
pub enum Credentials<'a> {
    /// A stream token from a start answer (`?token=`, `Authorization: Bearer`, or a message).
    StreamToken(&'a str),
    Caller(&'a Caller),
    None,
}

#[derive(Clone)]
pub struct Service(Arc<Parts>);

/// What a service is made of: the definitions, both adapters, and its settings.
pub struct Parts {
    pub catalog: Arc<Catalog>,
    pub temporal: Temporal,
    pub store: Store,
    pub hub: Hub,
    pub tokens: Tokens,
    pub auth: Authenticator,
    pub cfg: ServiceConfig,
}

/// How long a call waits for Redis to come back (a restart, a failover) before it is refused.
const REDIS_GRACE: std::time::Duration = std::time::Duration::from_secs(4);

/// Runs a Redis step, retrying while Redis is unreachable for up to `REDIS_GRACE`: a restart
/// costs the callers of that moment a short wait, not an error. Only steps before anything is
/// dispatched go through here, so a refusal still means nothing was changed.
async fn riding_out<T, E, F, Fut>(mut step: F) -> Result<T, ServiceError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
    E: Into<ServiceError>,
{
    let deadline = tokio::time::Instant::now() + REDIS_GRACE;
    let mut pause = std::time::Duration::from_millis(50);
    loop {
        match step().await.map_err(Into::into) {
            Err(ServiceError::Unavailable { .. }) if tokio::time::Instant::now() + pause < deadline => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_millis(500));
            }
            other => return other,
        }
    }
}

/// Refuses a caller whose credential lacks `scope`.
pub(crate) fn require(caller: &Caller, scope: Scope) -> Result<(), ServiceError> {
    if caller.may(scope) {
        return Ok(());
    }
    Err(ServiceError::Forbidden(format!(
        "this credential does not have the {} scope",
        scope.as_str()
    )))
}

impl Service {
    pub fn new(parts: Parts) -> Self {
        Self(Arc::new(parts))
    }

    fn keys(&self, scoped: &ScopedWorkflowId) -> RedisKeys {
        self.0.store.layout().keys(scoped)
    }

    /// The caller a bearer credential (API key or JWT) names; see `auth`.
    pub async fn authenticate(&self, bearer: Option<&str>, legacy: Legacy<'_>) -> Result<Caller, ServiceError> {
        self.0.auth.authenticate(bearer, legacy).await
    }

    /// A one-minute ticket to open a WebSocket as `caller` (browsers cannot set its headers).
    pub fn issue_ticket(&self, caller: &Caller) -> (String, std::time::Duration) {
        self.0.tokens.issue_ticket(caller)
    }

    /// The caller of a socket ticket, once: its use is taken atomically in Redis, so a ticket
    /// that leaked with its URL opens no second socket, on any gateway.
    pub async fn redeem_ticket(&self, ticket: &str) -> Result<Caller, ServiceError> {
        let refused = || ServiceError::Unauthorized("invalid, expired or already used socket ticket".into());
        let (caller, valid_for) = self.0.tokens.verify_ticket(ticket).map_err(|_| refused())?;
        let first = riding_out(|| self.0.store.take_ticket(ticket, valid_for)).await?;
        if !first {
            metrics::counter!("drift_ticket_replays_total").increment(1);
            return Err(refused());
        }
        Ok(caller)
    }

    /// The caller a credential stands for, on workflow `id`. A stream token only ever reads.
    pub fn authorize(&self, credentials: Credentials<'_>, id: &WorkflowId) -> Result<Caller, ServiceError> {
        match credentials {
            // One answer for every bad token: it says nothing about whether the workflow exists.
            Credentials::StreamToken(t) => {
                let tenant = self
                    .0
                    .tokens
                    .verify(t, id)
                    .map_err(|_| ServiceError::Unauthorized("missing, invalid or expired stream token".into()))?;
                Ok(Caller {
                    tenant,
                    client: "stream-token".into(),
                    user: None,
                    scopes: Scopes::of(&[Scope::Read]),
                })
            }
            Credentials::Caller(c) => Ok(c.clone()),
            Credentials::None => Err(ServiceError::Unauthorized(
                "a stream token or a credential is required".into(),
            )),
        }
    }

    /// The callback for a call: an allowed `callbackUrl`, or the client's default for
    /// `mode: "async"`. None means the caller follows the answer itself.
    async fn resolve_callback(&self, caller: &Caller, d: &Delivery) -> Result<Option<Callback>, ServiceError> {
        let wants_async = match d.mode {
            None => d.callback_url.is_some(),
            Some(Mode::Async) => true,
            Some(Mode::Sync) if d.callback_url.is_none() => false,
            Some(Mode::Sync) => {
                return Err(ServiceError::Invalid(
                    "a callbackUrl needs mode \"async\" (or no mode)".into(),
                ));
            }
        };
        if !wants_async {
            return Ok(None);
        }
        let url = match &d.callback_url {
            Some(u) => u.clone(),
            None => self
                .0
                .cfg
                .client_callbacks
                .get(&caller.client)
                .cloned()
                .ok_or_else(|| {
                    ServiceError::Invalid(format!(
                        "mode \"async\" needs a callbackUrl: client {:?} has no default callback configured",
                        caller.client
                    ))
                })?,
        };
        let checked = self
            .0
            .cfg
            .allowlist
            .check(&url)
            .map_err(ServiceError::CallbackNotAllowed)?;
        // A name a bare `*` matched must not lead to an internal address (deliveries check
        // again, at connection time).
        if checked.resolve_check {
            crate::egress::Egress::default()
                .resolve(&checked.host, checked.port)
                .await
                .map_err(|e| ServiceError::CallbackNotAllowed(format!("callbackUrl: {e}")))?;
        }
        Ok(Some(Callback {
            url,
            client: caller.client.clone(),
        }))
    }

    /// Every definition a CHILD node of `def` (or of its children) may start, pinned now.
    fn pin_children(&self, def: &Definition) -> Result<BTreeMap<String, Definition>, ServiceError> {
        let reg = self.0.catalog.registry();
        let mut out = BTreeMap::new();
        let mut todo = vec![def.clone()];
        while let Some(d) = todo.pop() {
            for entry in d.states.values() {
                if let Some(Node::Child(c)) = &entry.node
                    && !out.contains_key(&c.workflow)
                {
                    let child = reg.workflow(&c.workflow, c.version.as_deref()).ok_or_else(|| {
                        ServiceError::NotFound(format!("child workflow definition {:?} not found", c.workflow))
                    })?;
                    let compiled = reg.compile(child).map_err(ServiceError::Internal)?;
                    out.insert(c.workflow.clone(), compiled.clone());
                    todo.push(compiled);
                }
            }
        }
        Ok(out)
    }

    /// Subscribes to `keys`' channel unless the answer goes to a callback.
    async fn subscribe_unless(&self, is_async: bool, keys: &RedisKeys) -> Result<Option<Subscription>, ServiceError> {
        Ok(match is_async {
            true => None,
            false => Some(riding_out(|| self.0.hub.subscribe(&keys.channel)).await?),
        })
    }

    /// Starts a workflow. An idempotent retry (same key, same tenant and client) finds the
    /// workflow the first call started instead of starting another.
    pub async fn start(&self, caller: &Caller, req: StartRequest) -> Result<Dispatched, ServiceError> {
        require(caller, Scope::Start)?;
        let size = json_len(&req.params);
        if size > self.0.cfg.max_command_bytes {
            // The params become the workflow's context and enter its history: capped like answers.
            return Err(ServiceError::TooLarge(format!(
                "the start's params are {size} bytes; at most {} are accepted",
                self.0.cfg.max_command_bytes
            )));
        }
        let callback = self.resolve_callback(caller, &req.delivery).await?;
        let reg = self.0.catalog.registry();
        let def = reg.workflow(&req.workflow, req.version.as_deref()).ok_or_else(|| {
            ServiceError::NotFound(match req.version.as_deref() {
                None | Some("ACTIVE") if reg.workflow(&req.workflow, Some("LATEST")).is_some() => format!(
                    "workflow definition {:?} has no ACTIVE version; activate one (POST /v3/definitions/{}/activate)",
                    req.workflow, req.workflow
                ),
                v => format!(
                    "no workflow definition {:?} version {:?}",
                    req.workflow,
                    v.unwrap_or("ACTIVE")
                ),
            })
        })?;
        let definition = reg.compile(def).map_err(ServiceError::Internal)?;
        let execution_timeout = definition
            .execution_timeout_ms
            .unwrap_or(self.0.cfg.execution_timeout.as_millis() as u64);
        let children = self.pin_children(&definition)?;
        let fingerprint = req.idempotency_key.as_ref().map(|_| req.fingerprint());
        // A generated id has never named a run: there is no earlier seq to read.
        let (id, generated) = match (req.workflow_id, &req.idempotency_key) {
            (Some(w), _) => (w, false),
            // The same key from the same tenant and client always names the same workflow.
            (None, Some(k)) => {
                use sha2::Digest;
                let digest = sha2::Sha256::digest(format!("{}\n{}\n{k}", caller.tenant, caller.client));
                let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
                (WorkflowId::parse(&format!("idem-{hex}"))?, false)
            }
            (None, None) => (WorkflowId::generate(), true),
        };
        let is_async = callback.is_some();
        let start = WorkflowStart {
            definition,
            children,
            workflow_id: id.clone(),
            tenant: caller.tenant.clone(),
            params: req.params,
            thread_context: caller.thread_context(),
            request_id: Some(req.request_id.clone()),
            callback,
            history_limit: self.0.cfg.history_limit,
            run: uuid::Uuid::now_v7().simple().to_string(),
            seq_base: 0,
            execution_timeout_ms: Some(execution_timeout),
        };
        let keys = self.keys(&start.scoped_id());
        // A reused id goes on from its earlier runs' seq, so readers see the new run. The read
        // and the subscription are independent round trips: both happen before the dispatch,
        // at the same time.
        let seq_base = async {
            // Without the read, the subscription is the Redis step that refuses the call (and
            // starts nothing) while Redis is away; an async start subscribes to nothing, so it
            // still reads.
            match generated && !is_async {
                true => Ok(0),
                false => riding_out(|| self.0.store.high_seq(&keys)).await,
            }
        };
        let (seq_base, subscription) = tokio::try_join!(seq_base, self.subscribe_unless(is_async, &keys))?;
        let start = WorkflowStart { seq_base, ..start };
        let scoped = start.scoped_id();
        let t0 = std::time::Instant::now();
        let fresh = match self.0.temporal.start(start, fingerprint.as_deref()).await {
            Ok(()) => {
                metrics::counter!("drift_workflows_started_total").increment(1);
                true
            }
            Err(TemporalError::AlreadyStarted) if fingerprint.is_some() => {
                // A retry must ask for what the key was first used for (IETF Idempotency-Key
                // draft); a workflow started without a fingerprint (an earlier release) passes.
                let first = riding_out(|| self.0.temporal.fingerprint(&scoped)).await?;
                if first.is_some_and(|f| Some(f) != fingerprint) {
                    metrics::counter!("drift_idempotency_key_reused_total").increment(1);
                    return Err(ServiceError::IdempotencyKeyReused);
                }
                false
            }
            Err(e) => return Err(e.into()),
        };
        // Like "command dispatched": with "caller authenticated" and "answer ready", one start
        // traced step by step.
        tracing::debug!(request_id = %req.request_id, started = ?t0.elapsed(), "start dispatched");
        Ok(Dispatched {
            stream_token: self.0.tokens.issue(&caller.tenant, &id),
            id,
            request_id: req.request_id,
            is_async,
            keys,
            subscription,
            seen: 0,
            fresh,
            answered: None,
        })
    }

    /// Sends a resume or execute-node after checking it against the current state, so a
    /// command that cannot apply never reaches the workflow.
    pub async fn command(
        &self,
        caller: &Caller,
        id: &WorkflowId,
        req: CommandRequest,
    ) -> Result<Dispatched, ServiceError> {
        require(caller, Scope::Drive)?;
        let payload = match &req {
            CommandRequest::Resume { view_response, .. } => json_len(view_response),
            CommandRequest::Execute { parameters, .. } => parameters.as_ref().map_or(0, json_len),
        };
        if payload > self.0.cfg.max_command_bytes {
            return Err(ServiceError::TooLarge(format!(
                "the command's payload is {payload} bytes; at most {} are accepted",
                self.0.cfg.max_command_bytes
            )));
        }
        let callback = match &req {
            CommandRequest::Resume { delivery, .. } => self.resolve_callback(caller, delivery).await?,
            CommandRequest::Execute { .. } => None,
        };
        // A retried command (same request id) gets its first answer and is not sent again.
        let scoped = caller.scoped(id);
        let keys = self.keys(&scoped);
        let is_async = callback.is_some();
        // The checks' reads and the subscription are independent round trips, all before the
        // dispatch: done at once. (A retried command drops its subscription unused.)
        let (first, latest, subscription) = tokio::try_join!(
            riding_out(|| self.0.store.answer(&keys, req.request_id().as_str())),
            self.state_of(caller, id),
            self.subscribe_unless(is_async, &keys)
        )?;
        if let Some(first) = first {
            metrics::counter!("drift_commands_deduplicated_total").increment(1);
            return Ok(Dispatched {
                id: id.clone(),
                request_id: req.request_id().clone(),
                stream_token: self.0.tokens.issue(&caller.tenant, id),
                is_async: callback.is_some(),
                seen: first.seq,
                keys,
                subscription: None,
                fresh: true,
                answered: Some(first),
            });
        }
        let cmd = match req {
            CommandRequest::Resume {
                request_id,
                seq,
                view_response,
                ..
            } => {
                Rejection::check_resume(latest.workflow_status, latest.seq, seq)?;
                // Checked here too, so an answer that cannot fit never enters the workflow's
                // history; the workflow checks again for answers that raced a change.
                if let Some(view) = &latest.view {
                    crate::engine::validate_answer(view, &view_response)
                        .map_err(|details| Rejection::InvalidAnswer { details })?;
                }
                Command::Resume {
                    request_id,
                    seq: Some(seq.unwrap_or(latest.seq)),
                    view_response,
                    callback: callback.clone(),
                }
            }
            CommandRequest::Execute {
                request_id,
                node,
                parameters,
            } => {
                Rejection::check_execute(latest.workflow_status)?;
                Command::Execute {
                    request_id,
                    node,
                    parameters,
                }
            }
        };
        let request_id = cmd.request_id().clone();
        let t0 = std::time::Instant::now();
        match self.0.temporal.signal(&scoped, cmd).await {
            Ok(()) => {}
            // Drift still showed it waiting, but it ended outside Drift: publish how.
            Err(TemporalError::Ended) => {
                let status = match self.reconcile(&caller.tenant, id).await {
                    Some(end) => end.workflow_status,
                    None => WorkflowStatus::Terminated,
                };
                return Err(Rejection::NotWaiting { status }.into());
            }
            Err(e) => return Err(e.into()),
        }
        tracing::debug!(%request_id, signalled = ?t0.elapsed(), "command dispatched");
        Ok(Dispatched {
            id: id.clone(),
            request_id,
            stream_token: self.0.tokens.issue(&caller.tenant, id),
            is_async,
            keys,
            subscription,
            seen: latest.seq,
            fresh: true,
            answered: None,
        })
    }

    /// Terminates a workflow and publishes its end for it (it can no longer publish itself).
    pub async fn terminate(&self, caller: &Caller, id: &WorkflowId) -> Result<WorkflowState, ServiceError> {
        require(caller, Scope::Drive)?;
        let scoped = caller.scoped(id);
        self.0
            .temporal
            .terminate(&scoped, &format!("terminated by {} via API", caller.client))
            .await?;
        let state = self
            .publish_end(&caller.tenant, id, WorkflowStatus::Terminated, None)
            .await?;
        Ok(state)
    }

    /// The latest state, for a caller who may read it.
    pub async fn current(&self, caller: &Caller, id: &WorkflowId) -> Result<WorkflowState, ServiceError> {
        require(caller, Scope::Read)?;
        self.reconciled_state(caller, id).await
    }

    /// The latest state, from Redis or (before anything was published) from Temporal. A state
    /// Temporal has and Redis does not is stored and published again: Redis lost it, or it is
    /// under key names from before an upgrade of the layout. (The publish never replaces a
    /// newer state, so a race with the workflow's own publish changes nothing.)
    async fn state_of(&self, caller: &Caller, id: &WorkflowId) -> Result<WorkflowState, ServiceError> {
        let scoped = caller.scoped(id);
        let keys = self.keys(&scoped);
        if let Some(st) = riding_out(|| self.0.store.latest(&keys)).await? {
            return Ok(st.state);
        }
        let st = self.queried(caller, id).await?;
        if st.seq > 0 {
            match self
                .0
                .store
                .publish(&crate::bus::Publication::state(&scoped, &st))
                .await
            {
                Ok(()) => metrics::counter!("drift_states_restored_total").increment(1),
                Err(e) => tracing::warn!(error = %e, "could not store a state read back from Temporal"),
            }
        }
        Ok(st)
    }

    /// The latest state as readers should see it: a workflow Drift still shows running that
    /// ended outside Drift (Temporal's CLI or UI, a timeout, a server limit) gets that end
    /// published now.
    async fn reconciled_state(&self, caller: &Caller, id: &WorkflowId) -> Result<WorkflowState, ServiceError> {
        let st = self.state_of(caller, id).await?;
        if st.workflow_status.is_terminal() {
            return Ok(st);
        }
        Ok(self.reconcile(&caller.tenant, id).await.unwrap_or(st))
    }

    /// Publishes the end of a workflow that ended outside Drift, if it did.
    async fn reconcile(&self, tenant: &TenantId, id: &WorkflowId) -> Option<WorkflowState> {
        let ended = match self.0.temporal.ended(&ScopedWorkflowId::new(tenant, id)).await {
            Ok(e) => e?,
            Err(e) => {
                tracing::debug!(error = %e, "could not check whether the workflow ended");
                return None;
            }
        };
        let status = match ended.status {
            EndedAs::Terminated => WorkflowStatus::Terminated,
            EndedAs::TimedOut | EndedAs::Failed => WorkflowStatus::Failed,
        };
        metrics::counter!("drift_external_ends_total").increment(1);
        self.publish_end(tenant, id, status, Some(ended.reason)).await.ok()
    }

    /// Publishes an end the workflow cannot publish itself, above every seq its id ever had
    /// (even after its states expired), and hands it to its webhook deliveries.
    async fn publish_end(
        &self,
        tenant: &TenantId,
        id: &WorkflowId,
        status: WorkflowStatus,
        error_message: Option<String>,
    ) -> Result<WorkflowState, ServiceError> {
        let scoped = ScopedWorkflowId::new(tenant, id);
        let keys = self.keys(&scoped);
        let seq = self.0.store.high_seq(&keys).await? + 1;
        let state = WorkflowState {
            error_message,
            ..WorkflowState::bare(id.as_str(), status, seq)
        };
        self.0
            .store
            .publish(&crate::bus::Publication::state(&scoped, &state))
            .await?;
        self.0.temporal.deliver(tenant, &scoped, &state).await;
        Ok(state)
    }

    /// Checks, every `every`, the workflows live followers on this gateway hold, so an end
    /// outside Drift reaches them within that time; stops with `shutdown`.
    pub fn spawn_reconciler(&self, every: std::time::Duration, shutdown: tokio_util::sync::CancellationToken) {
        let service = self.clone();
        tokio::spawn(async move {
            let layout = service.0.store.layout().clone();
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
                let followed: Vec<(TenantId, WorkflowId)> = service
                    .0
                    .hub
                    .channels()
                    .iter()
                    .filter_map(|c| layout.workflow_of_channel(c))
                    .collect();
                futures::stream::iter(followed)
                    .for_each_concurrent(8, |(tenant, id)| {
                        let service = service.clone();
                        async move {
                            let keys = service.keys(&ScopedWorkflowId::new(&tenant, &id));
                            let running = matches!(
                                service.0.store.latest(&keys).await,
                                Ok(Some(st)) if !st.state.workflow_status.is_terminal()
                            );
                            if running {
                                service.reconcile(&tenant, &id).await;
                            }
                        }
                    })
                    .await;
            }
        });
    }

    /// The state Temporal's query gives, before anything was published.
    async fn queried(&self, caller: &Caller, id: &WorkflowId) -> Result<WorkflowState, ServiceError> {
        let scoped = caller.scoped(id);
        match self.0.temporal.query_state(&scoped).await {
            Ok(Some(st)) => Ok(st),
            Ok(None) => Ok(WorkflowState::bare(id.as_str(), WorkflowStatus::Running, 0)),
            Err(TemporalError::NotFound) => Err(ServiceError::NotFound(format!("no workflow {:?}", id.as_str()))),
            Err(e) => Err(e.into()),
        }
    }

    /// Subscribes a live follower to a workflow that exists, from after `since`.
    pub async fn follow(&self, caller: &Caller, id: &WorkflowId, since: Option<u64>) -> Result<Follow, ServiceError> {
        require(caller, Scope::Read)?;
        let keys = self.keys(&caller.scoped(id));
        let sub = riding_out(|| self.0.hub.subscribe(&keys.channel)).await?;
        self.reconciled_state(caller, id).await?;
        Ok(Follow::new(sub, keys, since))
    }

    /// The last webhook attempt of a workflow (for operators).
    pub async fn deliveries(&self, caller: &Caller, id: &WorkflowId) -> Result<BTreeMap<String, String>, ServiceError> {
        require(caller, Scope::Read)?;
        let keys = self.keys(&caller.scoped(id));
        self.0
            .store
            .delivery_status(&keys)
            .await?
            .ok_or_else(|| ServiceError::NotFound("no webhook deliveries for this workflow".into()))
    }

    /// Redis and Temporal reachability, for readiness probes.
    pub async fn probe(&self) -> (Result<(), String>, Result<(), String>) {
        let redis = self.0.store.probe().await;
        let temporal = self.0.temporal.ping().await.map_err(|e| e.to_string());
        (redis, temporal)
    }

    pub fn hub_channels(&self) -> usize {
        self.0.hub.channel_count()
    }

    pub(crate) fn store(&self) -> &Store {
        &self.0.store
    }
}
