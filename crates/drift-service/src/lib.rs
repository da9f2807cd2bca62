//! The service layer: the one path every transport (HTTP, SSE, WebSocket) takes. Each call
//! authorises the caller, subscribes to the workflow's channel *before* dispatching to
//! Temporal (so no answer can slip past), dispatches, and hands back a `Dispatched` that sync
//! HTTP waits on, live transports forward, and async mode drops. `telemetry` is the process's
//! tracing and metrics, which this layer and the transports both count into.

mod auth;
mod catalog;
mod definitions;
mod dispatch;
mod error;
mod follow;
mod identify;
pub mod keys;
mod links;
#[cfg(test)]
mod memory;
pub mod ports;
mod reconcile;
pub mod replay;
mod requests;
mod runs;
pub mod telemetry;
#[cfg(test)]
mod tests;
mod token;
mod wait;

pub use auth::{Authenticator, JwtVerifier, Legacy, Mode as AuthMode, hash_key, new_key, watch_revocations};
pub use catalog::Catalog;
pub use definitions::{Activated, DefinitionList, DefinitionVersions, Publication, Validation};
pub use dispatch::Dispatched;
pub use drift_bus::trace;
pub use drift_core::dsl::is_definition_id;
pub use drift_db::Kind;
pub use drift_temporal::webhook::Resent;
pub use error::ServiceError;
pub use follow::{Follow, Followed, Out};
pub use identify::{Anonymous, Identity, Presented};
pub use links::{
    DEFAULT_LINK_TTL, IssuedLink, LinkBody, LinkKeys, LinkScreen, LinkStatus, MAX_LINK_TTL, fresh_link_secret,
};
pub use ports::{Channels, Runtime, States, Webhooks};
pub use requests::{
    BackBody, CommandBody, CommandRequest, Delivery, ExecuteBody, Mode, ResumeBody, StartBody, StartRequest,
};
pub use runs::RunsQuery;
pub use token::{Tokens, is_token};
pub use wait::Outcome;

use drift_bus::RedisKeys;
use drift_core::domain::Callback;
use drift_core::domain::timeline::{RequestKind, RequestNote, Timeline, Via};
use drift_core::domain::{AttemptRecord, AttemptState, Caller, RequestId, Scope, ScopedWorkflowId, Scopes, WorkflowId};
use drift_temporal::webhook::{Allowlist, webhook_id_in_run_of};
use std::collections::BTreeMap;
use std::sync::Arc;

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
    /// The byte budgets and child depth bound of every run started here; definitions that
    /// visibly cannot keep to them are refused at publish.
    pub budgets: drift_core::engine::Budgets,
}

/// Whatever authority a transport has for a call on one workflow.
pub enum Credentials<'a> {
    /// A stream token from a start answer (`?token=`, `Authorization: Bearer`, or a message).
    StreamToken(&'a str),
    Caller(&'a Caller),
    None,
}

#[derive(Clone)]
pub struct Service(Arc<Parts>, Arc<replay::Replaying>);

/// What a service is made of: the definitions, the adapters behind their ports, and its settings.
pub struct Parts {
    pub catalog: Arc<Catalog>,
    pub runtime: Arc<dyn Runtime>,
    pub states: Arc<dyn States>,
    pub channels: Arc<dyn Channels>,
    /// Sends webhooks again on request (the worker delivers the rest).
    pub webhooks: Arc<dyn Webhooks>,
    pub tokens: Tokens,
    /// Signs answer links; `None` on a gateway without a link secret (links are refused).
    pub links: Option<LinkKeys>,
    pub auth: Authenticator,
    pub cfg: ServiceConfig,
}

/// A resent webhook: which, where, and how the receiver answered.
#[derive(Debug)]
pub struct Resend {
    pub webhook_id: String,
    pub seq: u64,
    pub url: String,
    pub outcome: Resent,
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
        Self(Arc::new(parts), Arc::default())
    }

    fn keys(&self, scoped: &ScopedWorkflowId) -> RedisKeys {
        self.0.states.layout().keys(scoped)
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
        let first = riding_out(|| self.0.states.take_ticket(ticket, valid_for)).await?;
        if !first {
            metrics::counter!(drift_core::metrics::TICKET_REPLAYS.name).increment(1);
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

    /// Subscribes a live follower to a workflow that exists, from after `since`.
    pub async fn follow(&self, caller: &Caller, id: &WorkflowId, since: Option<u64>) -> Result<Follow, ServiceError> {
        require(caller, Scope::Read)?;
        let keys = self.keys(&caller.scoped(id));
        let sub = riding_out(|| self.0.channels.subscribe(&keys.channel)).await?;
        self.reconciled_state(caller, id).await?;
        Ok(Follow::new(sub, keys, since))
    }

    /// The last webhook attempt of a workflow (for operators).
    pub async fn deliveries(&self, caller: &Caller, id: &WorkflowId) -> Result<AttemptRecord, ServiceError> {
        require(caller, Scope::Read)?;
        let keys = self.keys(&caller.scoped(id));
        self.0
            .states
            .last_attempt(&keys)
            .await?
            .ok_or_else(|| ServiceError::NotFound("no webhook deliveries for this workflow".into()))
    }

    /// A run's timeline for operators: each kept state with its time and how the request
    /// that led to it came, and each of its webhook attempts with the receiver's answer.
    pub async fn timeline(&self, caller: &Caller, id: &WorkflowId) -> Result<Timeline, ServiceError> {
        require(caller, Scope::Read)?;
        let keys = self.keys(&caller.scoped(id));
        let (states, requests, attempts) = riding_out(|| self.0.states.timeline(&keys)).await?;
        if states.is_empty() {
            // Nothing kept: an unknown workflow (or another tenant's), or one whose states
            // were let go; the run's own state says which.
            self.reconciled_state(caller, id).await?;
        }
        Ok(Timeline::build(id.as_str(), states, requests, attempts))
    }

    /// Records, best effort and without waiting, how a request the runtime took came in.
    fn note_request(&self, scoped: &ScopedWorkflowId, request_id: &RequestId, kind: RequestKind, via: Via) {
        let note = RequestNote {
            request_id: request_id.to_string(),
            kind,
            via,
            at: chrono::Utc::now(),
        };
        let (states, scoped) = (self.0.states.clone(), scoped.clone());
        tokio::spawn(async move { states.note_request(&scoped, &note).await });
    }

    /// Sends state `seq`'s webhook again, now, to the callback of the workflow's last attempt,
    /// with its original `webhook-id` (receivers deduplicate on it) and its original body:
    /// for a receiver that lost a delivery after Drift's retries ended. One attempt; its
    /// outcome is the answer. Only states already attempted, and still in the history.
    pub async fn resend(&self, caller: &Caller, id: &WorkflowId, seq: u64) -> Result<Resend, ServiceError> {
        require(caller, Scope::Drive)?;
        let scoped = caller.scoped(id);
        let keys = self.keys(&scoped);
        let last = self
            .0
            .states
            .last_attempt(&keys)
            .await?
            .ok_or_else(|| ServiceError::NotFound("no webhook deliveries for this workflow".into()))?;
        let (Some(last_id), Some(client)) = (last.webhook_id.as_deref(), last.client.clone()) else {
            return Err(ServiceError::Conflict(
                "this workflow's last delivery was recorded by an earlier release, without its webhook-id; it \
                 cannot be resent"
                    .into(),
            ));
        };
        if seq == 0 || seq > last.seq {
            return Err(ServiceError::Conflict(format!(
                "state {seq} has not been attempted yet (the last attempt was of state {}): it is still on its way, \
                 GET …/deliveries shows where it stands",
                last.seq
            )));
        }
        let (kept, _) = self.0.states.history_after(&keys, seq - 1).await?;
        let state = kept.into_iter().find(|s| s.seq == seq).ok_or_else(|| {
            ServiceError::NotFound(format!(
                "state {seq} is no longer kept (the history holds the last --history-len states, for --state-ttl-secs)"
            ))
        })?;
        let cb = Callback { url: last.url, client };
        let mut d =
            drift_temporal::webhook::Delivery::of(Some(cb.clone()), &scoped, &caller.tenant, None, &state.state);
        d.webhook_id = webhook_id_in_run_of(last_id, seq);
        let (outcome, status) = self.0.webhooks.send(&d, &cb).await;
        let (state, error) = match &outcome {
            Resent::Delivered => (AttemptState::Delivered, None),
            Resent::Gone => (AttemptState::Gone, Some("410 Gone".to_string())),
            Resent::Failed { error } => (AttemptState::Failed, Some(error.clone())),
        };
        let record = AttemptRecord {
            url: cb.url.clone(),
            seq,
            attempt: 1,
            state,
            last_error: error,
            next_retry_at: None,
            updated_at: chrono::Utc::now(),
            webhook_id: Some(d.webhook_id.clone()),
            client: Some(cb.client.clone()),
            status,
            resend: true,
        };
        self.0.states.record_resend(&scoped, &record).await;
        tracing::info!(workflow = %scoped, seq, webhook_id = %d.webhook_id, ?outcome, "webhook resent on request");
        Ok(Resend {
            webhook_id: d.webhook_id,
            seq,
            url: cb.url,
            outcome,
        })
    }

    /// Redis and Temporal reachability, for readiness probes.
    pub async fn probe(&self) -> (Result<(), String>, Result<(), String>) {
        let redis = self.0.states.probe().await;
        let temporal = self.0.runtime.ping().await.map_err(|e| e.to_string());
        (redis, temporal)
    }

    pub fn hub_channels(&self) -> usize {
        self.0.channels.channel_count()
    }

    pub(crate) fn store(&self) -> &Arc<dyn States> {
        &self.0.states
    }
}
