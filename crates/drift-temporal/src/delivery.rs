//! One delivery workflow per async workflow: it receives each state by signal and POSTs them
//! to the callback in `seq` order, retrying on the schedule, without holding the workflow back;
//! it outlives the workflow until the terminal state is delivered.

use super::activities::DriftActivities;
pub use crate::webhook::{Delivery, DeliveryOutcome};
use drift_core::domain::{Callback, ScopedWorkflowId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;
use temporalio_common::{ActivityCloseTimeouts, RetryPolicy};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, ContinueAsNewOptions, SyncWorkflowContext, WorkflowContext, WorkflowContextView, WorkflowResult,
};

/// The delivery workflow's id for a workflow.
pub fn workflow_id(scoped: &ScopedWorkflowId) -> String {
    format!("{scoped}/deliveries")
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryState {
    #[serde(default)]
    pub queue: VecDeque<Delivery>,
    /// URLs that answered 410.
    #[serde(default)]
    pub gone: BTreeSet<String>,
    #[serde(default)]
    pub last: Option<Callback>,
    #[serde(default)]
    pub delivered: u64,
    #[serde(default)]
    pub given_up: u64,
    #[serde(default)]
    pub last_seq: u64,
    /// The `webhook-id` of the last state, for states published on the workflow's behalf.
    #[serde(default)]
    pub last_id: Option<String>,
    /// Queued states let go before they were attempted, because a newer one superseded them
    /// and the queue would not fit what continue-as-new may carry.
    #[serde(default)]
    pub superseded: u64,
}

/// What a delivery workflow may carry into its next history: under Temporal's payload limit
/// (2 MiB), however many large states queue up while a receiver is down.
pub const CARRY_BYTES: u64 = drift_core::engine::DEFAULT_CARRY_BYTES;

impl DeliveryState {
    /// Lets the oldest queued states go, never the newest nor an end, until the state fits
    /// `limit` bytes; how many went. The receiver still gets every later state, in order.
    pub fn fit(&mut self, limit: u64) -> usize {
        let (mut let_go, mut size) = (0, drift_core::engine::json_len(self));
        while size > limit {
            let newest = self.queue.len().saturating_sub(1);
            let Some(i) = self.queue.iter().take(newest).position(|d| !d.terminal) else {
                break;
            };
            let gone = self.queue.remove(i).expect("found above");
            // Its JSON and the comma before the next one.
            size = size.saturating_sub(drift_core::engine::json_len(&gone) + 1);
            self.superseded += 1;
            let_go += 1;
        }
        let_go
    }
}

#[workflow]
#[derive(Default)]
pub struct DeliveryWorkflow {
    st: DeliveryState,
}

pub const HISTORY_LIMIT: u32 = 2_000;

#[workflow_methods]
impl DeliveryWorkflow {
    #[run(name = "drift-deliveries")]
    pub async fn run(ctx: &mut WorkflowContext<Self>, input: DeliveryState) -> WorkflowResult<DeliveryState> {
        ctx.state_mut(|s| {
            let mut carried = input;
            carried.queue.extend(s.st.queue.drain(..));
            s.st = carried;
        });
        loop {
            ctx.wait_condition(|s| !s.st.queue.is_empty()).await?;
            let mut d = ctx.state_mut(|s| s.st.queue.pop_front()).expect("queue has an item");
            // States the gateway publishes (TERMINATED) go to the last target.
            if d.callback.is_none() {
                d.callback = ctx.state(|s| s.st.last.clone());
            }
            if d.webhook_id.is_empty() {
                // Same run as the last state: replace its seq.
                let last = ctx.state(|s| s.st.last_id.clone()).unwrap_or_default();
                d.webhook_id = crate::webhook::webhook_id_in_run_of(&last, d.seq);
            } else {
                let id = d.webhook_id.clone();
                ctx.state_mut(|s| s.st.last_id = Some(id));
            }
            let Some(cb) = d.callback.clone() else { continue };
            let gone = ctx.state_mut(|s| {
                s.st.last = Some(cb.clone());
                s.st.gone.contains(&cb.url)
            });
            if !gone && d.seq > ctx.state(|s| s.st.last_seq) {
                let opts =
                    ActivityOptions::with_close_timeouts(ActivityCloseTimeouts::StartToClose(Duration::from_secs(60)))
                        // The activity sets each retry's delay from the schedule and stops it.
                        .retry_policy(
                            RetryPolicy::builder()
                                .initial_interval(Duration::from_secs(1))
                                .maximum_attempts(0)
                                .build(),
                        )
                        .build();
                let outcome = ctx
                    .execute_activity(DriftActivities::deliver_webhook, d.clone(), opts)
                    .await;
                ctx.state_mut(|s| {
                    s.st.last_seq = d.seq;
                    match outcome {
                        Ok(DeliveryOutcome::Delivered) => s.st.delivered += 1,
                        Ok(DeliveryOutcome::Gone) => {
                            s.st.gone.insert(cb.url.clone());
                        }
                        Ok(DeliveryOutcome::GaveUp) | Err(_) => s.st.given_up += 1,
                    }
                });
            }
            let done = d.terminal && ctx.state(|s| s.st.queue.is_empty());
            if done {
                return Ok(ctx.state(|s| s.st.clone()));
            }
            if ctx.history_length() >= HISTORY_LIMIT || ctx.continue_as_new_suggested() {
                let mut carried = ctx.state_mut(|s| std::mem::take(&mut s.st));
                let let_go = carried.fit(CARRY_BYTES);
                if let_go > 0 {
                    tracing::warn!(
                        let_go,
                        "superseded webhook states let go to fit the delivery workflow's carry"
                    );
                }
                ctx.continue_as_new(carried, ContinueAsNewOptions::default())?;
            }
        }
    }

    #[signal(name = "deliver")]
    pub fn deliver(&mut self, _ctx: &mut SyncWorkflowContext<Self>, d: Delivery) {
        self.st.queue.push_back(d);
    }

    #[query(name = "status")]
    pub fn status(&self, _ctx: &WorkflowContextView) -> DeliveryState {
        self.st.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_too_large_to_carry_lets_its_oldest_superseded_states_go_never_the_newest_or_an_end() {
        let state = |seq: u64, terminal: bool| Delivery {
            callback: None,
            webhook_id: format!("w/{seq}"),
            seq,
            terminal,
            body: "x".repeat(100_000),
            workflow: None,
            answer_link: None,
        };
        let mut st = DeliveryState {
            queue: (1..=30).map(|seq| state(seq, seq == 30)).collect(),
            ..Default::default()
        };
        let let_go = st.fit(1_000_000);
        assert!(drift_core::engine::json_len(&st) <= 1_000_000);
        assert_eq!((let_go as u64, st.superseded), (21, 21));
        let seqs: Vec<u64> = st.queue.iter().map(|d| d.seq).collect();
        assert_eq!(seqs, (22..=30).collect::<Vec<_>>(), "the newest kept, in order");
    }

    #[test]
    fn a_delivery_handed_over_before_the_layout_change_still_reads() {
        // As workers before key names left workflow inputs wrote it.
        let old = r#"{"callback":{"url":"https://h/hook","client":"c"},"webhookId":"t/r/3","seq":3,
            "terminal":false,"body":"{}","statusKey":"drift:deliv:t/wf-1"}"#;
        let d: Delivery = serde_json::from_str(old).unwrap();
        assert_eq!((d.seq, d.workflow), (3, None));
        let wire = serde_json::to_value(Delivery {
            workflow: Some(ScopedWorkflowId::try_from("t/wf-1".to_string()).unwrap()),
            ..d
        })
        .unwrap();
        assert_eq!(wire["workflow"], "t/wf-1");
        assert!(wire.get("statusKey").is_none(), "no key names on the wire: {wire}");
    }
}
