//! What the service layer needs of its adapters, as traits: the workflow runtime (Temporal),
//! the published states (Redis) and the channels live callers wait on (the hub). The real
//! adapters implement them here; `memory` implements them in memory, so the service's
//! behaviour is unit-tested in milliseconds beside the integration tests on real servers.

use async_trait::async_trait;
use drift_bus::{
    Event, Hub, HubError, Layout, Notice, Publication, RedisKeys, Store, StoreError, Stored, Subscription,
};
use drift_core::domain::runs::{RunsPage, RunsRequest};
use drift_core::domain::timeline::{PublishedState, RequestNote};
use drift_core::domain::{
    AttemptRecord, Callback, Command, ScopedWorkflowId, TenantId, WorkflowId, WorkflowStart, WorkflowState,
};
use drift_temporal::webhook::{Delivery, Resender, Resent};
use drift_temporal::{Inspection, Temporal, TemporalError};
use std::time::Duration;

/// The workflow runtime: starts runs, sends them commands, and says what it knows of them.
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// Starts a run; `AlreadyStarted` if its id is taken. `fingerprint` is kept with the run
    /// for idempotent retries.
    async fn start(&self, start: WorkflowStart, fingerprint: Option<&str>) -> Result<(), TemporalError>;
    /// The fingerprint a running workflow was started with.
    async fn fingerprint(&self, id: &ScopedWorkflowId) -> Result<Option<String>, TemporalError>;
    /// Sends a command; `Ended` if the run is over.
    async fn signal(&self, id: &ScopedWorkflowId, cmd: Command) -> Result<(), TemporalError>;
    /// The run's own state, read back when the store has none.
    async fn query_state(&self, id: &ScopedWorkflowId) -> Result<Option<WorkflowState>, TemporalError>;
    async fn terminate(&self, id: &ScopedWorkflowId, reason: &str) -> Result<(), TemporalError>;
    /// Hands a state the workflow could not publish itself (its end) to webhook delivery.
    async fn deliver(&self, tenant: &TenantId, id: &ScopedWorkflowId, state: &WorkflowState);
    /// Whether the run ended outside Drift, or its task keeps failing.
    async fn inspect(&self, id: &ScopedWorkflowId) -> Result<Inspection, TemporalError>;
    async fn ping(&self) -> Result<(), TemporalError>;
    /// One page of `tenant`'s runs matching the request's filter, newest first.
    async fn runs(&self, tenant: &TenantId, req: &RunsRequest) -> Result<RunsPage, TemporalError>;
}

/// The published states of every workflow: the latest, a short history, answers by request
/// id, webhook attempts; and the gateway's own publishes.
#[async_trait]
pub trait States: Send + Sync + 'static {
    /// Where each workflow's data lives.
    fn layout(&self) -> &Layout;
    /// Records a socket ticket's use: true the first time, false after.
    async fn take_ticket(&self, ticket: &str, valid_for: Duration) -> Result<bool, StoreError>;
    async fn latest(&self, keys: &RedisKeys) -> Result<Option<Stored>, StoreError>;
    /// The published answer to `request_id`, if any, and the latest state, in one read.
    async fn answer_and_latest(
        &self,
        keys: &RedisKeys,
        request_id: &str,
    ) -> Result<(Option<Event>, Option<Stored>), StoreError>;
    /// The highest seq ever published for the workflow id (0: none), across runs.
    async fn high_seq(&self, keys: &RedisKeys) -> Result<u64, StoreError>;
    /// States with `seq > after`, oldest first, and whether the history reaches back that far.
    async fn history_after(&self, keys: &RedisKeys, after: u64) -> Result<(Vec<Stored>, bool), StoreError>;
    async fn publish(&self, p: &Publication) -> Result<(), StoreError>;
    async fn last_attempt(&self, keys: &RedisKeys) -> Result<Option<AttemptRecord>, StoreError>;
    /// A workflow's kept states, and the requests and webhook attempts recorded for its
    /// timeline (newest first).
    async fn timeline(
        &self,
        keys: &RedisKeys,
    ) -> Result<(Vec<PublishedState>, Vec<RequestNote>, Vec<AttemptRecord>), StoreError>;
    /// Records, best effort, a request passed on to a workflow, for its timeline.
    async fn note_request(&self, workflow: &ScopedWorkflowId, note: &RequestNote);
    /// Records, best effort, an attempt sent on an operator's request, for the timeline.
    async fn record_resend(&self, workflow: &ScopedWorkflowId, rec: &AttemptRecord);
    /// A tenant's deliveries first attempted in `[from_ms, to_ms]`, oldest first, at most
    /// `limit`: the workflow, the state's seq, and when (Unix ms).
    async fn deliveries_between(
        &self,
        tenant: &TenantId,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<Vec<(WorkflowId, u64, i64)>, StoreError>;
    /// Publishes a notice (not a workflow state) on a channel.
    async fn notify(&self, channel: &str, notice: Notice) -> Result<(), StoreError>;
    /// The workflow's link generation (raised by each revocation; 0: never revoked) and the
    /// answer given to screen `seq` through a link (its JSON), if any.
    async fn link_marks(&self, keys: &RedisKeys, seq: u64) -> Result<(u64, Option<String>), StoreError>;
    /// Closes every link made so far: raises the link generation, kept for `keep`.
    async fn revoke_links(&self, keys: &RedisKeys, keep: Duration) -> Result<(), StoreError>;
    /// Records the answer given to screen `seq` through a link (its JSON), kept for `keep`.
    async fn record_link_answer(
        &self,
        keys: &RedisKeys,
        seq: u64,
        record: &str,
        keep: Duration,
    ) -> Result<(), StoreError>;
    async fn probe(&self) -> Result<(), String>;
}

/// Webhooks sent on an operator's request (a resend), outside the worker's ordered deliveries.
#[async_trait]
pub trait Webhooks: Send + Sync + 'static {
    /// One signed attempt of `d` to `cb`, at once; its outcome, never retried, and the
    /// receiver's HTTP status when it answered.
    async fn send(&self, d: &Delivery, cb: &Callback) -> (Resent, Option<u16>);
}

#[async_trait]
impl Webhooks for Resender {
    async fn send(&self, d: &Delivery, cb: &Callback) -> (Resent, Option<u16>) {
        Resender::send(self, d, cb).await
    }
}

/// The channels callers wait on: a subscription hears every message published on its channel
/// from the moment `subscribe` returns.
#[async_trait]
pub trait Channels: Send + Sync + 'static {
    async fn subscribe(&self, channel: &str) -> Result<Subscription, HubError>;
    /// The channels subscribed right now (the reconciler checks their workflows).
    fn channels(&self) -> Vec<String>;
    fn channel_count(&self) -> usize;
}

#[async_trait]
impl Runtime for Temporal {
    async fn start(&self, start: WorkflowStart, fingerprint: Option<&str>) -> Result<(), TemporalError> {
        Temporal::start(self, start, fingerprint).await
    }
    async fn fingerprint(&self, id: &ScopedWorkflowId) -> Result<Option<String>, TemporalError> {
        Temporal::fingerprint(self, id).await
    }
    async fn signal(&self, id: &ScopedWorkflowId, cmd: Command) -> Result<(), TemporalError> {
        Temporal::signal(self, id, cmd).await
    }
    async fn query_state(&self, id: &ScopedWorkflowId) -> Result<Option<WorkflowState>, TemporalError> {
        Temporal::query_state(self, id).await
    }
    async fn terminate(&self, id: &ScopedWorkflowId, reason: &str) -> Result<(), TemporalError> {
        Temporal::terminate(self, id, reason).await
    }
    async fn deliver(&self, tenant: &TenantId, id: &ScopedWorkflowId, state: &WorkflowState) {
        Temporal::deliver(self, tenant, id, state).await
    }
    async fn inspect(&self, id: &ScopedWorkflowId) -> Result<Inspection, TemporalError> {
        Temporal::inspect(self, id).await
    }
    async fn ping(&self) -> Result<(), TemporalError> {
        Temporal::ping(self).await
    }
    async fn runs(&self, tenant: &TenantId, req: &RunsRequest) -> Result<RunsPage, TemporalError> {
        Temporal::runs(self, tenant, req).await
    }
}

#[async_trait]
impl States for Store {
    fn layout(&self) -> &Layout {
        Store::layout(self)
    }
    async fn take_ticket(&self, ticket: &str, valid_for: Duration) -> Result<bool, StoreError> {
        Store::take_ticket(self, ticket, valid_for).await
    }
    async fn latest(&self, keys: &RedisKeys) -> Result<Option<Stored>, StoreError> {
        Store::latest(self, keys).await
    }
    async fn answer_and_latest(
        &self,
        keys: &RedisKeys,
        request_id: &str,
    ) -> Result<(Option<Event>, Option<Stored>), StoreError> {
        Store::answer_and_latest(self, keys, request_id).await
    }
    async fn high_seq(&self, keys: &RedisKeys) -> Result<u64, StoreError> {
        Store::high_seq(self, keys).await
    }
    async fn history_after(&self, keys: &RedisKeys, after: u64) -> Result<(Vec<Stored>, bool), StoreError> {
        Store::history_after(self, keys, after).await
    }
    async fn publish(&self, p: &Publication) -> Result<(), StoreError> {
        Store::publish(self, p).await
    }
    async fn last_attempt(&self, keys: &RedisKeys) -> Result<Option<AttemptRecord>, StoreError> {
        Store::last_attempt(self, keys).await
    }
    async fn timeline(
        &self,
        keys: &RedisKeys,
    ) -> Result<(Vec<PublishedState>, Vec<RequestNote>, Vec<AttemptRecord>), StoreError> {
        Store::timeline(self, keys).await
    }
    async fn note_request(&self, workflow: &ScopedWorkflowId, note: &RequestNote) {
        Store::note_request(self, workflow, note).await
    }
    async fn record_resend(&self, workflow: &ScopedWorkflowId, rec: &AttemptRecord) {
        Store::record_resend(self, workflow, rec).await
    }
    async fn deliveries_between(
        &self,
        tenant: &TenantId,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<Vec<(WorkflowId, u64, i64)>, StoreError> {
        Store::deliveries_between(self, tenant, from_ms, to_ms, limit).await
    }
    async fn notify(&self, channel: &str, notice: Notice) -> Result<(), StoreError> {
        Store::notify(self, channel, notice).await
    }
    async fn link_marks(&self, keys: &RedisKeys, seq: u64) -> Result<(u64, Option<String>), StoreError> {
        Store::link_marks(self, keys, seq).await
    }
    async fn revoke_links(&self, keys: &RedisKeys, keep: Duration) -> Result<(), StoreError> {
        Store::revoke_links(self, keys, keep).await
    }
    async fn record_link_answer(
        &self,
        keys: &RedisKeys,
        seq: u64,
        record: &str,
        keep: Duration,
    ) -> Result<(), StoreError> {
        Store::record_link_answer(self, keys, seq, record, keep).await
    }
    async fn probe(&self) -> Result<(), String> {
        Store::probe(self).await
    }
}

#[async_trait]
impl Channels for Hub {
    async fn subscribe(&self, channel: &str) -> Result<Subscription, HubError> {
        Hub::subscribe(self, channel).await
    }
    fn channels(&self) -> Vec<String> {
        Hub::channels(self)
    }
    fn channel_count(&self) -> usize {
        Hub::channel_count(self)
    }
}
