//! Sync mode: wait on a subscription for the message that answers a request id, bounded by
//! the wait limit. Subscriptions are made before the command is dispatched.

use crate::bus::hub::{Event, HubMsg, Subscription};
use crate::bus::{Store, Stored};
use crate::model::{MessageKind, RedisKeys};
use std::sync::Arc;
use tokio::time::Instant;

pub enum Answer {
    /// A message for this request (state, rejection or node result), or a terminal state.
    Event(Arc<Event>),
    /// Found in the store after a resync.
    Stored(Box<Stored>),
    /// The wait ran out.
    TimedOut,
}

/// Waits for the message answering `request_id` (or a terminal state, or — with `any_state` —
/// the first state of all).
pub async fn wait_for(
    sub: &mut Subscription,
    store: &Store,
    keys: &RedisKeys,
    request_id: &str,
    any_state: bool,
    deadline: Instant,
) -> Answer {
    metrics::gauge!("drift_sync_waiters").increment(1.0);
    let out = loop {
        let msg = tokio::select! {
            m = sub.recv() => m,
            _ = tokio::time::sleep_until(deadline) => break Answer::TimedOut,
        };
        match msg {
            HubMsg::Event(e) => {
                let mine = e.request_id.as_deref() == Some(request_id);
                let ends = e.kind == MessageKind::State && (e.terminal || any_state);
                if mine || ends {
                    break Answer::Event(e);
                }
            }
            // Something may have been missed: the stored latest state may be our answer.
            HubMsg::Resync => {
                if let Ok(Some(s)) = store.latest(keys).await
                    && (s.request_id.as_deref() == Some(request_id)
                        || s.state.workflow_status.is_terminal()
                        || any_state)
                {
                    break Answer::Stored(Box::new(s));
                }
            }
        }
    };
    metrics::gauge!("drift_sync_waiters").decrement(1.0);
    out
}
