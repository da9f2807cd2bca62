//! The domain: what a workflow is to its callers, with no HTTP, Redis or Temporal in it. The
//! state every answer carries, the commands a caller sends, the ways a command is refused, and
//! what a start hands to the runtime.

mod ids;
mod json;
pub mod routes;
pub mod runs;
pub mod timeline;

pub use ids::{Caller, IdError, RequestId, Scope, ScopedWorkflowId, Scopes, TenantId, WorkflowId};
pub use json::JsonText;

use crate::dsl::Definition;
use crate::engine::{Budgets, FieldError, View};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
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

impl std::fmt::Display for WorkflowStatus {
    /// As on the wire: `WAITING`, `COMPLETED`, …
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = serde_json::to_value(self).ok();
        f.write_str(s.as_ref().and_then(Value::as_str).unwrap_or("UNKNOWN"))
    }
}

/// Relative links a client can follow to poll, stream or answer a workflow.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
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
            self_: routes::WORKFLOW.to(id),
            events: routes::EVENTS.to(id),
            resume: routes::RESUME.to(id),
            terminate: routes::TERMINATE.to(id),
        }
    }
}

/// The one shape of every workflow answer (sync body, published state, SSE event, webhook).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
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
    /// The node this state is at (the screen, timer or end node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The nodes run since the previous state, ending at `node` (so a live graph can draw
    /// the path taken).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub path: Vec<String>,
    /// On a screen: `POST /v3/workflow/{id}/back` may return to the previous screen.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub can_go_back: bool,
    /// On a screen that cannot go back: the HTTP or CHILD node that ran since the previous
    /// screen (it is not undone), or the screen itself when its definition forbids Back
    /// (`"back": false`). Absent on the first screen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub back_blocked_by: Option<String>,
    /// On a screen that cannot go back because older screens were let go: Back keeps at most
    /// 32, and fewer when what continue-as-new carries would go over the run's carry budget.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub back_dropped: bool,
    /// On a screen returned to with Back: the answer it had, to prefill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_answer: Option<Value>,
    /// On a screen with a `timeoutMs`: when it stops waiting for an answer and the run goes on
    /// at its `onTimeout` node (RFC 3339, the workflow's clock). Continue-as-new keeps it; a
    /// screen returned to with Back waits its full timeout again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// On a screen whose node says `answerLink`: a link (`…/answer/{token}`) a person outside
    /// any app opens to answer this screen, signed and expiring; made by the worker, so the
    /// same in webhooks, live and sync states.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_url: Option<String>,
    /// In `GET /v3/workflow/{id}` only: the run cannot move because its workflow task keeps
    /// failing in the worker (this state is the last it published).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_task_failing: Option<TaskFailing>,
    pub links: Links,
}

/// Workflow tasks that failed (or timed out) one after another, and Temporal's reason for the
/// first of them: the run cannot move until a worker can run its task (a fixed worker, more
/// room in Temporal's limits) or it is terminated.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskFailing {
    /// The attempt Temporal is on.
    pub attempts: u32,
    /// Temporal's cause, e.g. `payloads_too_large`, `workflow_worker_unhandled_failure`, or
    /// `timed_out` for tasks no worker finished in time.
    pub cause: String,
    /// Temporal's (or the worker's) message.
    pub message: String,
}

impl WorkflowState {
    /// A state with nothing but a status (no screen, no outcome).
    pub fn bare(workflow_id: &str, status: WorkflowStatus, seq: u64) -> Self {
        Self {
            workflow_id: workflow_id.to_string(),
            workflow_status: status,
            seq,
            view: None,
            disposition: None,
            error_message: None,
            request_id: None,
            node: None,
            path: Vec::new(),
            can_go_back: false,
            back_blocked_by: None,
            back_dropped: false,
            previous_answer: None,
            expires_at: None,
            answer_url: None,
            workflow_task_failing: None,
            links: Links::for_workflow(workflow_id),
        }
    }
}

/// Why a command was refused. Decided by the same checks at the gateway (fast, before anything
/// is signalled) and in the workflow (authoritative, for commands that raced a change).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, thiserror::Error)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Rejection {
    /// The answer names a screen that is no longer the current one.
    #[error("this answer is for screen seq {answered}, the workflow is at seq {current}")]
    StaleScreen { answered: u64, current: u64 },
    /// The workflow is not showing a screen (running, on a timer, or ended).
    #[error("{}", not_waiting_message(*status))]
    NotWaiting { status: WorkflowStatus },
    /// The answer does not fit the screen.
    #[error("the answer does not fit the screen")]
    InvalidAnswer { details: Vec<FieldError> },
    /// Back that cannot apply: `node` is what stands in the way (see [`BackBlock`]).
    #[error("{}", cannot_go_back_message(node, *why))]
    CannotGoBack { node: String, why: BackBlock },
    /// execute-node named something that is not a runnable node of this workflow.
    #[error("{node:?} is not an HTTP or SCRIPT node of this workflow")]
    NotExecutable { node: String },
}

/// Why Back cannot apply on a screen.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BackBlock {
    /// The screen is the flow's first: nothing to return to.
    First,
    /// An HTTP or CHILD node ran since the previous screen.
    Crossed,
    /// The screen's definition says `"back": false`.
    Forbidden,
    /// The screens before it were let go to keep the run within its bounds.
    Dropped,
}

impl BackBlock {
    /// Why a screen's state says it cannot go back: `blocked_by` is its `backBlockedBy`,
    /// `dropped` its `backDropped`.
    pub fn of(screen: &str, blocked_by: Option<&str>, dropped: bool) -> (String, Self) {
        match (blocked_by, dropped) {
            (Some(b), _) if b == screen => (screen.to_string(), Self::Forbidden),
            (_, true) => (screen.to_string(), Self::Dropped),
            (None, false) => (screen.to_string(), Self::First),
            (Some(b), false) => (b.to_string(), Self::Crossed),
        }
    }
}

fn cannot_go_back_message(node: &str, why: BackBlock) -> String {
    match why {
        BackBlock::First => format!("{node:?} is the first screen: there is no earlier screen to go back to"),
        BackBlock::Crossed => format!("{node:?} ran before this screen and is not undone: cannot go back across it"),
        BackBlock::Forbidden => {
            format!("screen {node:?} does not allow going back (its definition says \"back\": false)")
        }
        BackBlock::Dropped => format!(
            "Back reaches no further than {node:?}: the screens before it were let go (Back keeps at most {} \
             screens, fewer when they would not fit the run's carry budget, --max-carry-bytes)",
            crate::engine::back::BACK_KEPT
        ),
    }
}

fn not_waiting_message(status: WorkflowStatus) -> String {
    match status {
        s if s.is_terminal() => "the workflow has ended".into(),
        WorkflowStatus::SchedulerWaiting => "the workflow is waiting on a timer, not for input".into(),
        s => format!("the workflow is {s:?}, not waiting for input"),
    }
}

impl Rejection {
    /// May an answer for screen `answered` (None: the current one) be applied now?
    pub fn check_resume(status: WorkflowStatus, current: u64, answered: Option<u64>) -> Result<(), Rejection> {
        if status != WorkflowStatus::Waiting {
            return Err(Rejection::NotWaiting { status });
        }
        match answered {
            Some(answered) if answered != current => Err(Rejection::StaleScreen { answered, current }),
            _ => Ok(()),
        }
    }

    /// May a disconnected node run now? Any time before the end.
    pub fn check_execute(status: WorkflowStatus) -> Result<(), Rejection> {
        if status.is_terminal() {
            return Err(Rejection::NotWaiting { status });
        }
        Ok(())
    }
}

/// The answer of an execute-node command.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeResult {
    pub workflow_id: String,
    /// The node instance that ran.
    pub node: String,
    pub status: NodeOutcome,
    /// The node's output, or `{"error": …}` when it failed.
    pub response: Value,
}

/// Whether an executed node succeeded (`response` is its output) or failed (`{"error": …}`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NodeOutcome {
    Success,
    Failed,
}

/// A webhook target: the URL and the client whose signing secret is used.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Callback {
    pub url: String,
    pub client: String,
}

/// Where a webhook's delivery stands, as operators read it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AttemptState {
    Delivered,
    /// Failed; the next attempt is scheduled.
    Retrying,
    /// The receiver answered 410: no more deliveries to that URL.
    Gone,
    /// Failed for good (schedule exhausted, or a failure a retry cannot mend).
    Failed,
}

/// The last webhook attempt of a workflow: recorded by the worker, read back by the gateway
/// (`GET /v3/workflow/{id}/deliveries`). Stored as one Redis hash; its fields are written and
/// read here only.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptRecord {
    pub url: String,
    pub seq: u64,
    pub attempt: u32,
    pub state: AttemptState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_retry_at: Option<chrono::DateTime<chrono::Utc>>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    /// The attempted state's `webhook-id` (a resend of any state of the run derives its own
    /// from it); absent in records of releases before resends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_id: Option<String>,
    /// The client whose secret signed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The receiver's HTTP status, when it answered at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Sent again on an operator's request (`…/deliveries/{seq}/resend`, a replay), outside
    /// the worker's schedule.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resend: bool,
}

impl AttemptRecord {
    /// The fields a record may go without: a new record's write clears them first.
    pub const OPTIONAL_FIELDS: &[&str] = &["lastError", "nextRetryAt", "webhookId", "client", "status", "resend"];

    /// The hash fields, each value as its JSON text (strings unquoted).
    pub fn to_fields(&self) -> Vec<(String, String)> {
        let Value::Object(map) = serde_json::to_value(self).expect("records serialize") else {
            unreachable!("a struct serializes to an object")
        };
        map.into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => (k, s),
                other => (k, other.to_string()),
            })
            .collect()
    }

    /// Reads back what `to_fields` wrote. Empty values (records of releases that wrote
    /// absent fields as "") count as absent.
    pub fn from_fields(fields: BTreeMap<String, String>) -> Result<Self, serde_json::Error> {
        let map = fields
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| {
                let v = match k.as_str() {
                    "seq" | "attempt" | "status" | "resend" => serde_json::from_str(&v)?,
                    _ => Value::String(v),
                };
                Ok((k, v))
            })
            .collect::<Result<serde_json::Map<_, _>, serde_json::Error>>()?;
        serde_json::from_value(Value::Object(map))
    }
}

/// A command for a running workflow.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Command {
    #[serde(rename_all = "camelCase")]
    Resume {
        request_id: RequestId,
        /// The screen's `seq` the answer is for; another `seq` is a stale screen.
        seq: Option<u64>,
        view_response: Value,
        /// Switches async delivery to a new callback from the next state on.
        #[serde(default)]
        callback: Option<Callback>,
    },
    #[serde(rename_all = "camelCase")]
    Execute {
        request_id: RequestId,
        node: String,
        parameters: Option<Value>,
    },
    /// Return to the previous screen.
    #[serde(rename_all = "camelCase")]
    Back { request_id: RequestId, seq: Option<u64> },
}

impl Command {
    pub fn request_id(&self) -> &RequestId {
        match self {
            Command::Resume { request_id, .. }
            | Command::Execute { request_id, .. }
            | Command::Back { request_id, .. } => request_id,
        }
    }
}

/// Everything a new workflow run needs, decided once when it is started (by a caller, or by a
/// parent's CHILD node).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowStart {
    /// Compiled: node references resolved, so later edits never reach a running workflow.
    /// Shared: a worker's runs of one definition hold one copy (`dsl::shared`), not one each.
    pub definition: Arc<Definition>,
    /// Compiled definitions CHILD nodes may start, pinned at start like the parent's own.
    #[serde(default)]
    pub children: BTreeMap<String, Arc<Definition>>,
    pub workflow_id: WorkflowId,
    pub tenant: TenantId,
    pub params: Value,
    pub thread_context: Value,
    /// The request the first state answers.
    #[serde(default)]
    pub request_id: Option<RequestId>,
    /// Async mode: where every stable state is POSTed.
    #[serde(default)]
    pub callback: Option<Callback>,
    /// Continue as new once the history has this many events.
    pub history_limit: u32,
    /// Unique per start, so what a run sends out (webhook ids) never collides with another
    /// run of the same workflow id.
    #[serde(default)]
    pub run: String,
    /// The highest `seq` earlier runs of this workflow id published: this run goes on from it.
    #[serde(default)]
    pub seq_base: u64,
    /// How long the workflow may last in all, in milliseconds.
    #[serde(default)]
    pub execution_timeout_ms: Option<u64>,
    /// The run's byte budgets and child depth bound (absent in starts from before budgets:
    /// those runs keep deciding as they did).
    #[serde(default = "unbounded")]
    pub budgets: Budgets,
    /// How many CHILD nodes deep this run is (0: started by a caller).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub depth: u32,
    /// The run keeps its status and the node it waits on in Temporal's visibility (Drift's
    /// search attributes), for `GET /v3/workflows`. Decided at start, where the attributes are
    /// known to be registered, so every replay of the run does the same (absent in runs from
    /// before the runs list: they keep not doing it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub runs_indexed: bool,
    /// The runs list's attributes cost a round fewer visibility writes (with `runs_indexed`):
    /// a run whose start node is a screen starts with that wait in its start attributes (its
    /// first wait upserts nothing), and a COMPLETED end upserts nothing (the list reads it from
    /// Temporal's own Completed). Decided at start as `runs_indexed` is (absent in runs from
    /// before: they upsert every wait and end).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lean_index: bool,
}

fn unbounded() -> Budgets {
    Budgets::UNBOUNDED
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl WorkflowStart {
    pub fn scoped_id(&self) -> ScopedWorkflowId {
        ScopedWorkflowId::new(&self.tenant, &self.workflow_id)
    }

    /// A CHILD node's run: same tenant, context and deployment settings, its own id and params.
    pub fn child(&self, workflow_id: WorkflowId, definition: Arc<Definition>, params: Value) -> Self {
        Self {
            definition,
            children: self.children.clone(),
            workflow_id,
            tenant: self.tenant.clone(),
            params,
            thread_context: self.thread_context.clone(),
            request_id: None,
            callback: None,
            history_limit: self.history_limit,
            run: format!("{}/{}", self.run, self.workflow_id),
            seq_base: 0,
            execution_timeout_ms: self.execution_timeout_ms,
            budgets: self.budgets,
            depth: self.depth + 1,
            runs_indexed: self.runs_indexed,
            lean_index: self.lean_index,
        }
    }

    /// The screen a lean-indexed run waits on first, known from its definition alone: its
    /// start node, when that is an inline screen. Its start attributes say the wait.
    pub fn first_screen(&self) -> Option<&str> {
        let entry = self.definition.states.get(&self.definition.start_node)?;
        let screen = matches!(entry.node, Some(crate::dsl::Node::Instruction(_)));
        (self.runs_indexed && self.lean_index && screen).then_some(self.definition.start_node.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempt_record_reads_back_what_it_wrote_and_what_the_previous_release_wrote() {
        let rec = AttemptRecord {
            url: "http://127.0.0.1:9/hook".into(),
            seq: 3,
            attempt: 2,
            state: AttemptState::Retrying,
            last_error: Some("request failed".into()),
            next_retry_at: Some(chrono::Utc::now()),
            updated_at: chrono::Utc::now(),
            webhook_id: Some("t/run/3".into()),
            client: Some("alice".into()),
            status: Some(500),
            resend: true,
        };
        // A record's write clears exactly the fields one may go without.
        let bare = AttemptRecord {
            last_error: None,
            next_retry_at: None,
            webhook_id: None,
            client: None,
            status: None,
            resend: false,
            ..rec.clone()
        };
        let names = |r: &AttemptRecord| r.to_fields().into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        let optional: Vec<_> = names(&rec).into_iter().filter(|k| !names(&bare).contains(k)).collect();
        let mut listed = AttemptRecord::OPTIONAL_FIELDS.to_vec();
        listed.sort();
        let mut optional: Vec<&str> = optional.iter().map(String::as_str).collect();
        optional.sort();
        assert_eq!(optional, listed);
        let fields: BTreeMap<_, _> = rec.to_fields().into_iter().collect();
        assert_eq!(fields["seq"], "3");
        assert_eq!(fields["state"], "retrying");
        assert_eq!(AttemptRecord::from_fields(fields).unwrap(), rec);
        let old: BTreeMap<String, String> = [
            ("url", "http://h/"),
            ("seq", "1"),
            ("attempt", "1"),
            ("state", "delivered"),
            ("lastError", ""),
            ("nextRetryAt", ""),
            ("updatedAt", "2026-11-30T10:00:00+00:00"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let read = AttemptRecord::from_fields(old).unwrap();
        assert_eq!(
            (read.state, read.last_error, read.next_retry_at),
            (AttemptState::Delivered, None, None)
        );
    }

    #[test]
    fn resume_checks_name_the_reason_a_command_is_refused() {
        use WorkflowStatus::*;
        assert_eq!(Rejection::check_resume(Waiting, 3, None), Ok(()));
        assert_eq!(Rejection::check_resume(Waiting, 3, Some(3)), Ok(()));
        let stale = Rejection::check_resume(Waiting, 3, Some(2)).unwrap_err();
        assert_eq!(
            stale.to_string(),
            "this answer is for screen seq 2, the workflow is at seq 3"
        );
        let timer = Rejection::check_resume(SchedulerWaiting, 3, None).unwrap_err();
        assert_eq!(timer.to_string(), "the workflow is waiting on a timer, not for input");
        assert_eq!(
            Rejection::check_execute(Completed).unwrap_err().to_string(),
            "the workflow has ended"
        );
        let wire = serde_json::to_value(&stale).unwrap();
        assert_eq!(wire["code"], "stale_screen");
        assert_eq!(serde_json::from_value::<Rejection>(wire).unwrap(), stale);
    }
}
