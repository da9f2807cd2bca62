//! Wire types shared by the gateway and the worker: the state every workflow answer carries,
//! the envelope published on Redis, the workflow input and the commands sent as signals.

use crate::dsl::Definition;
use crate::engine::{Cursor, FieldError, View};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WorkflowStatus {
    Running,
    Waiting,
    SchedulerWaiting,
    Completed,
    Failed,
    Terminated,
}

impl WorkflowStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Terminated)
    }
}

/// Relative links a client can follow to poll, stream or answer a workflow.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Links {
    #[serde(rename = "self")]
    pub self_: String,
    pub events: String,
    pub resume: String,
    pub terminate: String,
}

impl Links {
    pub fn for_workflow(id: &str) -> Self {
        Self {
            self_: format!("/v3/workflow/{id}"),
            events: format!("/v3/workflow/{id}/events"),
            resume: format!("/v3/workflow/resume/{id}"),
            terminate: format!("/v3/workflow/terminate/{id}"),
        }
    }
}

/// The one shape of every workflow answer (sync body, published state, SSE event, webhook).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowState {
    pub workflow_id: String,
    pub workflow_status: WorkflowStatus,
    pub seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub view: Option<View>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disposition: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub links: Links,
}

/// A refused command, published so the waiting caller gets its 409/422.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Rejection {
    pub status: u16,
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<FieldError>,
}

/// The answer of an execute-node command.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeResult {
    pub workflow_id: String,
    pub node: String,
    pub status: String,
    pub response: Value,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MessageKind {
    State,
    Rejection,
    Result,
}

/// What travels on a workflow's Redis channel. `body` is a `WorkflowState`, `Rejection` or
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

/// Where a workflow's Redis data lives. Chosen by the gateway at start and carried in the
/// workflow input, so worker and gateway always agree.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RedisKeys {
    pub channel: String,
    pub latest: String,
    pub history: String,
}

impl RedisKeys {
    /// `prefix` isolates deployments (and tests); `scoped` is `tenant/workflowId`.
    pub fn new(prefix: &str, scoped: &str) -> Self {
        Self {
            channel: format!("{prefix}:ch:{scoped}"),
            latest: format!("{prefix}:latest:{scoped}"),
            history: format!("{prefix}:hist:{scoped}"),
        }
    }
}

/// The generic workflow's input. A fresh start has no `cursor`; continue-as-new carries the
/// cursor, the `seq` and any unhandled commands.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowInput {
    pub definition: Definition,
    /// Compiled definitions CHILD nodes may start, pinned at start like the parent's own.
    #[serde(default)]
    pub children: BTreeMap<String, Definition>,
    pub workflow_id: String,
    pub tenant: String,
    pub keys: RedisKeys,
    pub params: Value,
    pub thread_context: Value,
    #[serde(default)]
    pub request_id: Option<String>,
    #[serde(default)]
    pub cursor: Option<Cursor>,
    #[serde(default)]
    pub seq: u64,
    #[serde(default)]
    pub inbox: Vec<Command>,
    /// Continue as new once the history has this many events.
    pub history_limit: u32,
    /// Prefix for Redis keys of child workflows.
    pub key_prefix: String,
    /// Async mode: where every stable state is POSTed.
    #[serde(default)]
    pub callback: Option<Callback>,
    /// Whether this workflow's delivery workflow was started (carried over continue-as-new).
    #[serde(default)]
    pub deliveries_started: bool,
}

/// A webhook target: the URL and the client whose signing secret is used.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Callback {
    pub url: String,
    pub client: String,
}

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
    /// Redis hash where attempts are recorded for operators.
    pub status_key: String,
}

impl RedisKeys {
    pub fn deliveries(&self) -> String {
        self.latest.replacen(":latest:", ":deliv:", 1)
    }
}

/// A command delivered to a running workflow as a signal.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Command {
    #[serde(rename_all = "camelCase")]
    Resume {
        request_id: String,
        /// The screen's `seq` the answer is for; another `seq` is a stale screen (409).
        seq: Option<u64>,
        view_response: Value,
        /// Switches async delivery to a new callback from the next state on.
        #[serde(default)]
        callback: Option<Callback>,
    },
    #[serde(rename_all = "camelCase")]
    Execute {
        request_id: String,
        node: String,
        parameters: Option<Value>,
    },
}

impl Command {
    pub fn request_id(&self) -> &str {
        match self {
            Command::Resume { request_id, .. } | Command::Execute { request_id, .. } => request_id,
        }
    }
}
