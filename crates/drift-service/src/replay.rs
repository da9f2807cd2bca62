//! A tenant's webhooks sent again over a time range: for a receiver that lost everything of an
//! outage, after Drift's retries ended. Each delivery goes through `resend` (its original
//! `webhook-id` and body, to its workflow's callback), bounded per call and one replay per
//! tenant at a time, so a replay cannot flood a receiver or the gateway.

use super::{Service, ServiceError, require};
use drift_core::domain::{Caller, Scope, TenantId};
use drift_temporal::webhook::Resent;
use futures::StreamExt;
use std::collections::HashSet;
use std::sync::Mutex;

/// Deliveries one replay call sends at most; a range holding more answers where to go on.
pub const MAX_DELIVERIES: usize = 200;
/// The longest range one call covers.
pub const MAX_RANGE: chrono::TimeDelta = chrono::TimeDelta::days(7);
/// Sends in flight at once.
const CONCURRENCY: usize = 4;

/// The tenants whose replay is running now.
#[derive(Default)]
pub struct Replaying(Mutex<HashSet<TenantId>>);

/// One tenant's turn, given back when dropped.
struct Turn<'a>(&'a Replaying, TenantId);

impl Replaying {
    fn take(&self, tenant: &TenantId) -> Option<Turn<'_>> {
        self.0
            .lock()
            .unwrap()
            .insert(tenant.clone())
            .then(|| Turn(self, tenant.clone()))
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.0.0.lock().unwrap().remove(&self.1);
    }
}

/// One delivery a replay could not make.
#[derive(Debug, Clone)]
pub struct NotDelivered {
    pub workflow_id: String,
    pub seq: u64,
    /// `gone` (410) or why it failed.
    pub error: String,
}

/// What a replay did.
#[derive(Debug, Clone)]
pub struct Replay {
    /// Deliveries first attempted in the range that this call sent again.
    pub sent: usize,
    pub delivered: usize,
    pub not_delivered: Vec<NotDelivered>,
    /// The range held more than `MAX_DELIVERIES`: call again from here (the first delivery
    /// not sent) to go on.
    pub resume_from: Option<chrono::DateTime<chrono::Utc>>,
}

impl Service {
    /// Sends again every delivery of the caller's tenant first attempted in `[since, until]`,
    /// oldest first, at most `MAX_DELIVERIES` per call.
    pub async fn replay(
        &self,
        caller: &Caller,
        since: chrono::DateTime<chrono::Utc>,
        until: chrono::DateTime<chrono::Utc>,
    ) -> Result<Replay, ServiceError> {
        require(caller, Scope::Drive)?;
        if until <= since {
            return Err(ServiceError::Invalid("`until` must be after `since`".into()));
        }
        if until - since > MAX_RANGE {
            return Err(ServiceError::Invalid(format!(
                "a replay covers at most {} days (this range is {} h); split it into several calls",
                MAX_RANGE.num_days(),
                (until - since).num_hours()
            )));
        }
        let Some(_turn) = self.1.take(&caller.tenant) else {
            return Err(ServiceError::Busy(
                "a replay for this tenant is already running; call again when it has answered".into(),
            ));
        };
        let mut found = self
            .0
            .states
            .deliveries_between(
                &caller.tenant,
                since.timestamp_millis(),
                until.timestamp_millis(),
                MAX_DELIVERIES + 1,
            )
            .await?;
        let resume_from = (found.len() > MAX_DELIVERIES)
            .then(|| found.pop())
            .flatten()
            .and_then(|(_, _, at)| chrono::DateTime::from_timestamp_millis(at));
        let outcomes: Vec<_> = futures::stream::iter(found)
            .map(|(id, seq, _)| async move {
                let outcome = match self.resend(caller, &id, seq).await {
                    Ok(r) => match r.outcome {
                        Resent::Delivered => Ok(()),
                        Resent::Gone => Err("gone: the receiver answered 410".to_string()),
                        Resent::Failed { error } => Err(error),
                    },
                    Err(e) => Err(e.to_string()),
                };
                (id, seq, outcome)
            })
            .buffered(CONCURRENCY)
            .collect()
            .await;
        let sent = outcomes.len();
        let not_delivered: Vec<NotDelivered> = outcomes
            .into_iter()
            .filter_map(|(id, seq, outcome)| {
                outcome.err().map(|error| NotDelivered {
                    workflow_id: id.as_str().to_string(),
                    seq,
                    error,
                })
            })
            .collect();
        tracing::info!(tenant = %caller.tenant, sent, failed = not_delivered.len(), "webhooks replayed on request");
        Ok(Replay {
            sent,
            delivered: sent - not_delivered.len(),
            not_delivered,
            resume_from,
        })
    }
}
