//! One webhook: what a receiver gets (the state as a sync caller would, and whose it is), its
//! stable `webhook-id`, and one signed attempt (Standard Webhooks) with its outcome classified
//! against the retry schedule. The worker's activity runs an attempt and records it; the
//! delivery workflow orders the attempts.

use super::DeliveryConfig;
use crate::egress::Egress;
use drift_core::domain::{Callback, ScopedWorkflowId, TenantId, WorkflowState};
use drift_core::links::LinkDue;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One state to deliver to a callback, in `seq` order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// None: the delivery workflow's last target (used for states the gateway publishes).
    pub callback: Option<Callback>,
    /// Stable per workflow and seq, so receivers can deduplicate.
    pub webhook_id: String,
    pub seq: u64,
    pub terminal: bool,
    /// The `WorkflowState` JSON, the same body as a sync answer.
    pub body: String,
    /// Whose state it is: where the worker records attempts for operators. (None in deliveries
    /// handed over before workflows stopped carrying Redis key names.)
    #[serde(default)]
    pub workflow: Option<ScopedWorkflowId>,
    /// A screen whose node says `answerLink`: the worker signs the link into the body
    /// (`answerUrl`) before the first attempt, the same link on every attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_link: Option<LinkDue>,
}

/// What a receiver gets: the state, as a sync caller would, and whose it is.
#[derive(Serialize)]
struct Body<'a> {
    #[serde(flatten)]
    state: &'a WorkflowState,
    tenant: &'a TenantId,
}

impl Delivery {
    /// `run` None: a state published for the workflow (its TERMINATED end), which takes the id
    /// of the run the delivery workflow last saw.
    pub fn of(
        callback: Option<Callback>,
        workflow: &ScopedWorkflowId,
        tenant: &TenantId,
        run: Option<&str>,
        state: &WorkflowState,
    ) -> Self {
        let body = Body { state, tenant };
        Self {
            callback,
            webhook_id: run.map(|r| webhook_id(tenant, r, state.seq)).unwrap_or_default(),
            seq: state.seq,
            terminal: state.workflow_status.is_terminal(),
            body: serde_json::to_string(&body).expect("states serialize"),
            workflow: Some(workflow.clone()),
            answer_link: None,
        }
    }
}

impl Delivery {
    /// The state is a screen due an answer link (see `Session::answer_link`).
    pub fn with_answer_link(mut self, due: Option<LinkDue>) -> Self {
        self.answer_link = due;
        self
    }

    /// This delivery with `url` in its body as `answerUrl`.
    pub fn with_answer_url(mut self, url: &str) -> Self {
        if let Ok(mut body) = serde_json::from_str::<serde_json::Value>(&self.body) {
            body["answerUrl"] = url.into();
            self.body = body.to_string();
        }
        self.answer_link = None;
        self
    }
}

/// `webhook-id`: the same on every retry of one state (receivers deduplicate on it), unique
/// across tenants and across runs of one workflow id: `{tenant}/{run}/{seq}`. Written and read
/// here only.
fn webhook_id(tenant: &TenantId, run: &str, seq: u64) -> String {
    format!("{tenant}/{run}/{seq}")
}

/// The `webhook-id` of state `seq` of the run whose state had the id `last` (for a state
/// published outside the run, which does not know the run's id).
pub fn webhook_id_in_run_of(last: &str, seq: u64) -> String {
    let run = last.rsplit_once('/').map(|(run, _)| run).unwrap_or(last);
    format!("{run}/{seq}")
}

/// How one state's delivery ended (retryable failures are activity errors instead).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryOutcome {
    Delivered,
    /// The receiver answered 410: no more deliveries to that URL.
    Gone,
    /// The retry schedule ran out.
    GaveUp,
}

/// How one attempt went.
#[derive(Debug)]
pub enum Attempted {
    /// The receiver answered 2xx (this status).
    Delivered(u16),
    /// 410: the receiver wants no more.
    Gone,
    /// Failed; the schedule says to try again after `after`.
    Retry {
        error: String,
        after: Duration,
        /// The receiver's status, when it answered.
        status: Option<u16>,
    },
    /// Failed for good: the schedule ran out, or the attempt could never succeed (no secret, a
    /// refused address).
    GiveUp { error: String, status: Option<u16> },
}

impl Attempted {
    /// The receiver's HTTP status, when it answered at all.
    pub fn status(&self) -> Option<u16> {
        match self {
            Attempted::Delivered(s) => Some(*s),
            Attempted::Gone => Some(410),
            Attempted::Retry { status, .. } | Attempted::GiveUp { status, .. } => *status,
        }
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// Attempt number `attempt` (from 1) of delivering `d` to `cb`: signed with the client's
/// secret, posted through the egress policy's client within the configured timeout.
pub async fn attempt(
    client: &reqwest::Client,
    egress: &Egress,
    cfg: &DeliveryConfig,
    d: &Delivery,
    cb: &Callback,
    attempt: u32,
) -> Attempted {
    let secrets = cfg.secrets.for_client(&cb.client, std::time::SystemTime::now());
    if secrets.is_empty() {
        return Attempted::GiveUp {
            status: None,
            error: format!(
                "no webhook signing secret configured for client {:?} (set --webhook-secret or --client-secret)",
                cb.client
            ),
        };
    }
    // One timestamp for the signatures and their header; during a rotation one signature per
    // secret, space-separated, as Standard Webhooks allows.
    let ts = unix_now();
    let signatures: Result<Vec<String>, _> = secrets
        .iter()
        .map(|secret| standardwebhooks::Webhook::new(secret).and_then(|w| w.sign(&d.webhook_id, ts, d.body.as_bytes())))
        .collect();
    let sig = match signatures {
        Ok(s) => s.join(" "),
        Err(e) => {
            return Attempted::GiveUp {
                status: None,
                error: format!(
                    "webhook secret for client {:?} is not a valid whsec_ secret: {e:?}",
                    cb.client
                ),
            };
        }
    };
    let target = url::Url::parse(&cb.url).map_err(|e| e.to_string()).and_then(|u| {
        egress.check_url(&u).map_err(|e| e.to_string())?;
        Ok(u)
    });
    let target = match target {
        Ok(u) => u,
        Err(e) => {
            return Attempted::GiveUp {
                status: None,
                error: format!("callback refused: {e}"),
            };
        }
    };
    metrics::counter!(drift_core::metrics::WEBHOOK_ATTEMPTS.name).increment(1);
    // The receiver's own spans can join the run's trace.
    let mut request = client.post(target);
    for (k, v) in drift_bus::trace::current_headers() {
        request = request.header(k, v);
    }
    let sent = request
        .timeout(cfg.timeout)
        .header("content-type", "application/json")
        .header("webhook-id", &d.webhook_id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", sig)
        .body(d.body.clone())
        .send()
        .await;
    drift_bus::trace::annotate(|| {
        let mut attrs = vec![
            opentelemetry::KeyValue::new("drift.webhook_id", d.webhook_id.clone()),
            opentelemetry::KeyValue::new("drift.attempt", i64::from(attempt)),
        ];
        match &sent {
            Ok(r) => attrs.push(opentelemetry::KeyValue::new(
                "http.response.status_code",
                i64::from(r.status().as_u16()),
            )),
            Err(e) => attrs.push(opentelemetry::KeyValue::new("error.type", e.to_string())),
        }
        attrs
    });
    let (error, status) = match sent {
        Ok(r) if r.status().is_success() => return Attempted::Delivered(r.status().as_u16()),
        Ok(r) if r.status() == reqwest::StatusCode::GONE => return Attempted::Gone,
        Ok(r) => (format!("receiver answered {}", r.status()), Some(r.status().as_u16())),
        Err(e) => (format!("request failed: {e}"), None),
    };
    match super::next_delay(&cfg.schedule, attempt) {
        Some(after) => Attempted::Retry { error, after, status },
        None => Attempted::GiveUp { error, status },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_id_read_back_names_the_same_run_with_another_seq() {
        let tenant = TenantId::parse("acme").unwrap();
        let first = webhook_id(&tenant, "0190abc", 3);
        assert_eq!(first, "acme/0190abc/3");
        assert_eq!(webhook_id_in_run_of(&first, 7), webhook_id(&tenant, "0190abc", 7));
    }
}
