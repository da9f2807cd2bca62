//! Sync mode: wait on a dispatched call's subscription for the message that answers its
//! request id, bounded by the caller's wait limit.

use super::{Dispatched, Service, ServiceError, States};
use drift_bus::{Event, HubMsg, MessageKind, RedisKeys, StoreError, Stored};
use drift_core::domain::JsonText;
use drift_core::domain::{Rejection, WorkflowState};
use std::sync::Arc;
use tokio::time::Instant;

/// What a waiting caller gets.
#[derive(Debug)]
pub enum Outcome {
    /// The state that answers the call (or a terminal state), serialized once for everyone.
    State(JsonText),
    /// An execute-node result.
    NodeResult(JsonText),
    /// The workflow refused the command.
    Rejected(Rejection),
    /// The wait ran out before an answer: the latest state known, if any. The call was not
    /// lost; the caller polls or streams from here.
    Pending(Option<Box<WorkflowState>>),
}

impl Outcome {
    /// What a published message means to the caller that sent its command.
    pub(super) fn of(e: &Event) -> Result<Outcome, ServiceError> {
        Ok(match e.kind {
            MessageKind::State => Outcome::State(e.body.clone()),
            MessageKind::Result => Outcome::NodeResult(e.body.clone()),
            MessageKind::Rejection => Outcome::Rejected(
                serde_json::from_str(e.body.as_str())
                    .map_err(|err| ServiceError::Internal(format!("bad rejection: {err}")))?,
            ),
        })
    }

    fn stored(s: &Stored) -> Result<Outcome, ServiceError> {
        Ok(Outcome::State(JsonText::of(&s.state)))
    }
}

enum Found {
    Event(Arc<Event>),
    Stored(Box<Stored>),
    TaskFailing(drift_core::domain::TaskFailing),
    TimedOut,
    /// The gateway is stopping: the caller hears where things stand now.
    Stopping,
}

/// How long a waiter waits for its answer before it asks Temporal whether the workflow's task
/// keeps failing (then the answer will not come, and the caller hears why at once).
const PROBE_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

/// Waits between a waiter's attempts to read what it may have missed.
const RESYNC_FIRST: std::time::Duration = std::time::Duration::from_millis(50);
const RESYNC_MAX: std::time::Duration = std::time::Duration::from_millis(500);

/// The answer a waiter may have missed, if the store has it: the message for its request id,
/// or a latest state that answers it.
async fn missed(
    store: &dyn States,
    keys: &RedisKeys,
    request_id: &str,
    any_state: bool,
) -> Result<Option<Found>, StoreError> {
    let (answer, latest) = store.answer_and_latest(keys, request_id).await?;
    if let Some(e) = answer {
        return Ok(Some(Found::Event(Arc::new(e))));
    }
    Ok(latest
        .filter(|s| s.request_id.as_deref() == Some(request_id) || s.state.workflow_status.is_terminal() || any_state)
        .map(|s| Found::Stored(Box::new(s))))
}

impl Service {
    /// Waits until `deadline` for the answer to a dispatched call: the message for its request
    /// id, a terminal state, or — for a start that found its workflow already running — the
    /// latest state. A gateway stopping (`stop`) answers at once with where things stand.
    pub async fn wait(
        &self,
        d: &mut Dispatched,
        deadline: Instant,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Result<Outcome, ServiceError> {
        let store = &**self.store();
        if let Some((_, outcome)) = d.take_answer() {
            return outcome;
        }
        if !d.fresh
            && let Some(st) = Box::pin(store.latest(&d.keys)).await?
        {
            return Outcome::stored(&st);
        }
        let Some(sub) = d.subscription.as_mut() else {
            return Ok(Outcome::Pending(None));
        };
        let (request_id, any_state) = (d.request_id.as_str(), !d.fresh);
        let waiting = crate::telemetry::GaugeGuard::new(drift_core::metrics::SYNC_WAITERS.name);
        let mut probe = Some(Instant::now() + PROBE_AFTER).filter(|at| *at < deadline);
        let found = loop {
            let msg = tokio::select! {
                m = sub.recv() => m,
                _ = tokio::time::sleep_until(probe.unwrap_or(deadline)), if probe.is_some() => {
                    probe = None;
                    match Box::pin(self.task_failing(&d.scoped)).await {
                        Some(f) => break Found::TaskFailing(f),
                        None => continue,
                    }
                }
                _ = tokio::time::sleep_until(deadline) => break Found::TimedOut,
                _ = stop.cancelled() => break Found::Stopping,
            };
            match msg {
                HubMsg::Event(e) => {
                    let mine = e.request_id.as_deref() == Some(request_id);
                    let ends = e.kind == MessageKind::State && (e.terminal || any_state);
                    if mine || ends {
                        break Found::Event(e);
                    }
                }
                // Something may have been missed: our answer may be stored by request id, or
                // be the stored latest state. Read until the store answers (it may still be
                // finding a new master after a failover) or the wait runs out.
                HubMsg::Resync | HubMsg::Notice(_) => {
                    let mut pause = RESYNC_FIRST;
                    let read = loop {
                        // Boxed: a Redis read's future is large, and a waiter rarely needs it.
                        match Box::pin(missed(store, &d.keys, request_id, any_state)).await {
                            Ok(found) => break found,
                            Err(_) if Instant::now() + pause >= deadline => break Some(Found::TimedOut),
                            Err(e) => tracing::debug!(error = %e, "waiter's resync failed; trying again"),
                        }
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(RESYNC_MAX);
                    };
                    if let Some(found) = read {
                        break found;
                    }
                }
            }
        };
        drop(waiting);
        match found {
            Found::Event(e) => {
                drift_bus::trace::delivered("waiter", e.trace.as_deref(), e.seq);
                Outcome::of(&e)
            }
            Found::Stored(s) => Outcome::stored(&s),
            Found::TaskFailing(f) => Err(ServiceError::TaskFailing(f)),
            Found::TimedOut => {
                if let Some(f) = Box::pin(self.task_failing(&d.scoped)).await {
                    return Err(ServiceError::TaskFailing(f));
                }
                self.pending(d).await
            }
            Found::Stopping => self.pending(d).await,
        }
    }

    /// The latest state known, for a caller whose wait ran out.
    async fn pending(&self, d: &Dispatched) -> Result<Outcome, ServiceError> {
        let latest = Box::pin(self.store().latest(&d.keys)).await.ok().flatten();
        Ok(Outcome::Pending(latest.map(|s| Box::new(s.state))))
    }
}
