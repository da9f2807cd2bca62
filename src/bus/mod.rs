//! Everything Redis: where a workflow's data lives (keys), what travels on its channel (the
//! envelope), the one atomic publish the worker and gateway share, reads of stored states, and
//! the gateway's shared subscription hub.

mod hub;
mod publish;
mod store;

pub use hub::{Event, Hub, HubError, HubMsg, Subscription};
pub use publish::{Publication, Publisher, Retention};
pub use store::{Store, StoreError, Stored, connect};

use crate::domain::ScopedWorkflowId;
use serde::{Deserialize, Serialize};

/// Where a workflow's Redis data lives.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RedisKeys {
    pub channel: String,
    pub latest: String,
    pub history: String,
    /// The last webhook attempt, for operators.
    pub deliveries: String,
    /// The highest `seq` ever published for this workflow id, across runs; kept longer than
    /// the states themselves so a reused id never goes back.
    pub seq: String,
    /// The answer to each recent command, by request id (and their order, to bound them).
    pub answers: String,
    pub answer_order: String,
}

impl RedisKeys {
    /// `prefix` isolates deployments (and tests) sharing one Redis.
    pub fn new(prefix: &str, scoped: &ScopedWorkflowId) -> Self {
        Self {
            channel: format!("{prefix}:ch:{scoped}"),
            latest: format!("{prefix}:latest:{scoped}"),
            history: format!("{prefix}:hist:{scoped}"),
            deliveries: format!("{prefix}:deliv:{scoped}"),
            seq: format!("{prefix}:seq:{scoped}"),
            answers: format!("{prefix}:ans:{scoped}"),
            answer_order: format!("{prefix}:anso:{scoped}"),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MessageKind {
    State,
    Rejection,
    Result,
}

/// What travels on a workflow's channel. `body` is a `WorkflowState`, `Rejection` or
/// `NodeResult` according to `kind`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope<B> {
    pub kind: MessageKind,
    pub seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default)]
    pub terminal: bool,
    pub body: B,
}
