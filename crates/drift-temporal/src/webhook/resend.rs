//! A webhook sent again on an operator's request: one signed attempt, at once, with the
//! state's original `webhook-id` (receivers deduplicate on it), its outcome returned to the
//! caller rather than retried. For a receiver that lost a delivery after Drift's retries ended.

use super::{Attempted, Delivery, DeliveryConfig, attempt};
use crate::egress::Egress;
use drift_core::domain::Callback;
/// How a resend went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resent {
    /// The receiver answered 2xx.
    Delivered,
    /// The receiver answered 410: it wants no more.
    Gone,
    /// The receiver failed or could not be reached (`error` says how); nothing is retried.
    Failed { error: String },
}

/// Sends deliveries once, signed with the worker's secrets, through the egress policy.
pub struct Resender {
    client: reqwest::Client,
    egress: Egress,
    cfg: DeliveryConfig,
}

impl Resender {
    pub fn new(egress: Egress, mut cfg: DeliveryConfig) -> reqwest::Result<Self> {
        // One attempt: the caller sees its outcome and decides.
        cfg.schedule.clear();
        let client = reqwest::Client::builder()
            .dns_resolver(egress.resolver())
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self { client, egress, cfg })
    }

    /// How the one attempt went, and the receiver's HTTP status when it answered.
    pub async fn send(&self, d: &Delivery, cb: &Callback) -> (Resent, Option<u16>) {
        let attempted = attempt(&self.client, &self.egress, &self.cfg, d, cb, 1).await;
        let status = attempted.status();
        let resent = match attempted {
            Attempted::Delivered(_) => {
                metrics::counter!(drift_core::metrics::WEBHOOK_DELIVERED.name).increment(1);
                Resent::Delivered
            }
            Attempted::Gone => Resent::Gone,
            Attempted::Retry { error, .. } | Attempted::GiveUp { error, .. } => Resent::Failed { error },
        };
        (resent, status)
    }
}
