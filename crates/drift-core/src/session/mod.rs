//! The session machine: what one run does with its screens, timers and commands — the command
//! inbox and its deduplication, Back's points and refusals, what a screen or timer command
//! does, the states it publishes and the continue-as-new carry — as pure decisions. No clock and
//! no I/O: the caller passes the time in and carries out what each step returns. The Temporal
//! workflow executes these steps with timers, activities and signals; the simulator executes the
//! same steps at once, so what an author simulates is what a run does (Back included).

use crate::domain::{
    BackBlock, Callback, Command, NodeOutcome, NodeResult, Rejection, RequestId, ScopedWorkflowId, WorkflowId,
    WorkflowStart, WorkflowState, WorkflowStatus,
};
use crate::dsl::{Definition, Node, RetryPolicy};
use crate::engine::back::{BackPoint, BackStack, drop_to_fit};
use crate::engine::{
    Budget, Cursor, Effect, EndStatus, HttpRequest, HttpResponse, Machine, Measured, NodeError, OverBudget, Passed,
    Prepared, View, initial_context, json_len,
};
use crate::links::LinkDue;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::ControlFlow;

#[cfg(test)]
mod tests;

/// The workflow's input: the start, plus what a continued-as-new run carries over.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowInput {
    #[serde(flatten)]
    pub start: WorkflowStart,
    #[serde(default)]
    pub carry: Option<Carry>,
}

impl WorkflowInput {
    /// Reads an input from its JSON text as `serde_json::from_slice` would, without the
    /// buffering `#[serde(flatten)]` does: the start (most of it the definition) is read
    /// straight into its types, and a second pass skips everything but `carry`. A worker
    /// decodes one of these per run; through the flattened derive it was the largest item of
    /// the workflow code's CPU per round (docs/performance.md). Its definitions are the copies
    /// other runs of them hold already, where there are any (`dsl::shared`).
    pub fn from_json(bytes: &[u8]) -> serde_json::Result<Self> {
        #[derive(Deserialize)]
        struct CarryOnly {
            #[serde(default)]
            carry: Option<Carry>,
        }
        let mut start: WorkflowStart = serde_json::from_slice(bytes)?;
        start.definition = crate::dsl::shared(start.definition);
        for def in start.children.values_mut() {
            *def = crate::dsl::shared(def.clone());
        }
        let CarryOnly { carry } = serde_json::from_slice(bytes)?;
        Ok(Self { start, carry })
    }
}

/// Where a run was when it continued as new.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Carry {
    cursor: Cursor,
    seq: u64,
    answering: Option<RequestId>,
    inbox: Vec<Command>,
    callback: Option<Callback>,
    deliveries_started: bool,
    /// Request ids taken recently, so a retried command is applied once.
    #[serde(default)]
    taken: Vec<RequestId>,
    /// A screen the run was waiting on (already published): the next run waits on it again.
    #[serde(default)]
    open_screen: Option<(String, View)>,
    /// When that screen's `timeoutMs` runs out (ms since epoch): its deadline, not restarted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    open_screen_deadline: Option<i64>,
    /// A timer the run was waiting on (already published), with when it fires (ms since epoch).
    #[serde(default)]
    open_timer: Option<(String, i64)>,
    /// The screens Back may return to, each as what changed (see `BackStack::carried`).
    #[serde(default)]
    back: Vec<BackPoint>,
    /// Older screens were let go: Back stops short of the first one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    back_dropped: bool,
    #[serde(default)]
    back_blocked_by: Option<String>,
}

/// How many recent request ids a run remembers.
pub const TAKEN_KEPT: usize = 256;

/// Commands that arrived and are not handled yet, and the request ids already taken (bounded),
/// so a retried command is applied once.
#[derive(Debug, Default)]
pub struct Inbox {
    queue: VecDeque<Command>,
    taken: VecDeque<RequestId>,
}

impl Inbox {
    /// Takes `cmd` unless its request id was taken already (a retry: its answer is, or will
    /// be, published once). Whether it was taken.
    pub fn offer(&mut self, cmd: Command) -> bool {
        if self.taken.contains(cmd.request_id()) {
            return false;
        }
        if self.taken.len() >= TAKEN_KEPT {
            self.taken.pop_front();
        }
        self.taken.push_back(cmd.request_id().clone());
        self.queue.push_back(cmd);
        true
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The oldest command not handled yet.
    pub fn pop(&mut self) -> Option<Command> {
        self.queue.pop_front()
    }

    /// Every command not handled yet (the run is ending: each is refused).
    pub fn drain(&mut self) -> Vec<Command> {
        self.queue.drain(..).collect()
    }

    /// Adds what the previous run carried to what this run took already (signals delivered
    /// before the run began), after it.
    pub fn extend(&mut self, carried: Inbox) {
        self.queue.extend(carried.queue);
        self.taken.extend(carried.taken);
    }

    /// The commands were carried into the next run, which handles them.
    pub fn carried(&mut self) {
        self.queue.clear();
    }
}

/// Everything a run carries between nodes (and across continue-as-new).
#[derive(Debug)]
pub struct Session {
    pub start: WorkflowStart,
    /// `tenant/workflowId`: what its publications name.
    pub scoped: ScopedWorkflowId,
    pub cursor: Cursor,
    /// The seq of the last state published.
    pub seq: u64,
    /// The command whose answer the next published state is.
    answering: Option<RequestId>,
    pub callback: Option<Callback>,
    /// Whether the delivery workflow of this run's callback was started.
    pub deliveries_started: bool,
    open_screen: Option<(String, View)>,
    /// When the screen shown now stops waiting for an answer (its `timeoutMs`), ms since epoch.
    screen_deadline: Option<i64>,
    open_timer: Option<(String, i64)>,
    back: BackStack,
    /// The HTTP or CHILD node run since the last screen answered (Back cannot cross it).
    back_blocked_by: Option<String>,
    /// The answer the next published screen had before (it was returned to with Back).
    prefill: Option<Value>,
    /// The screens whose definition forbids Back from them (`"back": false`).
    no_back: BTreeSet<String>,
    /// The screens whose node says `answerLink`, and their links' ttl (s). (Read at the start:
    /// the workflow lends the definition to its machine.)
    answer_links: BTreeMap<String, u64>,
}

/// What a command on a shown screen does.
#[derive(Debug, PartialEq)]
pub enum OnScreen {
    /// The screen was answered: the run goes on from it.
    Answered,
    /// Refused: publish the rejection to its request; the screen keeps waiting.
    Reject(RequestId, Rejection),
    /// Back: publish the previous screen (as WAITING, this view), then wait on it.
    WentBack(View),
    /// Run a disconnected node; the screen keeps waiting.
    Execute {
        request_id: RequestId,
        node: String,
        parameters: Option<Value>,
    },
}

/// What a command during a timer does.
#[derive(Debug, PartialEq)]
pub enum OnTimer {
    Reject(RequestId, Rejection),
    Execute {
        request_id: RequestId,
        node: String,
        parameters: Option<Value>,
    },
}

/// A disconnected node's run, as far as it goes without I/O.
#[derive(Debug)]
pub enum Execution {
    /// Refused before it ran.
    Reject(Rejection),
    /// Ran (a SCRIPT, or a failure to prepare): publish this result to the caller.
    Done(NodeResult),
    /// Call this; hand the response to `Session::executed`.
    Http { request: HttpRequest, retry: RetryPolicy },
}

/// The input of the next run, once it fits the carry budget.
#[derive(Debug)]
pub struct CarriedOver {
    pub input: WorkflowInput,
    /// Back's oldest screens let go to fit.
    pub let_go: usize,
    /// Back's screens kept.
    pub kept: usize,
}

/// The last state of a run, and the run's result.
#[derive(Debug)]
pub struct Ending {
    pub state: WorkflowState,
    /// The end was over the state budget: `state` is FAILED, saying why.
    pub over: Option<OverBudget>,
}

impl Ending {
    /// What the run returns to Temporal.
    pub fn result(&self) -> Value {
        json!({
            "status": self.state.workflow_status,
            "disposition": self.state.disposition,
            "errorMessage": self.state.error_message,
        })
    }
}

/// A CHILD node's start, as the parent makes it.
#[derive(Debug)]
pub struct ChildStart {
    pub input: WorkflowInput,
    pub workflow_id: WorkflowId,
    /// `tenant/childId`: the Temporal workflow id.
    pub scoped: ScopedWorkflowId,
}

impl Session {
    /// A run from its input: a new start, or where the previous run continued as new (with the
    /// commands it had not handled).
    pub fn new(input: WorkflowInput) -> (Self, Inbox) {
        let WorkflowInput { start, carry } = input;
        let scoped = start.scoped_id();
        let carry = carry.unwrap_or_else(|| Carry {
            cursor: Cursor::new(
                initial_context(&start.definition, start.params.clone(), start.thread_context.clone()),
                start.definition.start_node.clone(),
            ),
            seq: start.seq_base,
            answering: start.request_id.clone(),
            inbox: vec![],
            callback: start.callback.clone(),
            deliveries_started: false,
            taken: start.request_id.iter().cloned().collect(),
            open_screen: None,
            open_screen_deadline: None,
            open_timer: None,
            back: vec![],
            back_dropped: false,
            back_blocked_by: None,
        });
        let back = BackStack::carried_in(carry.back, carry.back_dropped, &carry.cursor);
        let inbox = Inbox {
            queue: carry.inbox.into(),
            taken: carry.taken.into(),
        };
        let session = Session {
            scoped,
            back,
            cursor: carry.cursor,
            seq: carry.seq,
            answering: carry.answering,
            callback: carry.callback,
            deliveries_started: carry.deliveries_started,
            open_screen: carry.open_screen,
            screen_deadline: carry.open_screen_deadline,
            open_timer: carry.open_timer,
            back_blocked_by: carry.back_blocked_by,
            prefill: None,
            no_back: start
                .definition
                .states
                .iter()
                .filter(|(_, e)| matches!(&e.node, Some(Node::Instruction(i)) if i.back == Some(false)))
                .map(|(name, _)| name.clone())
                .collect(),
            answer_links: start
                .definition
                .states
                .iter()
                .filter_map(|(name, e)| match &e.node {
                    Some(Node::Instruction(i)) => Some((name.clone(), i.answer_link.as_ref()?.ttl_secs().ok()?)),
                    _ => None,
                })
                .collect(),
            start,
        };
        (session, inbox)
    }

    /// The next run's input (this run continues as new), within the run's carry budget: the
    /// oldest of Back's screens are let go until it fits. Refused, saying why the run cannot go
    /// on, when it would not fit even without them (Temporal would refuse the input, and the
    /// run would never move again).
    pub fn carry_over(&self, inbox: &Inbox) -> Result<CarriedOver, OverBudget> {
        // Measured without Back's screens first: they are what may be let go to fit.
        let carry = Carry {
            cursor: self.cursor.clone(),
            seq: self.seq,
            answering: self.answering.clone(),
            inbox: inbox.queue.iter().cloned().collect(),
            callback: self.callback.clone(),
            deliveries_started: self.deliveries_started,
            taken: inbox.taken.iter().cloned().collect(),
            open_screen: self.open_screen.clone(),
            open_screen_deadline: self.open_screen.as_ref().and(self.screen_deadline),
            open_timer: self.open_timer.clone(),
            back: vec![],
            back_dropped: self.back.dropped(),
            back_blocked_by: self.back_blocked_by.clone(),
        };
        let mut back = self.back.carried(&self.cursor);
        let mut input = WorkflowInput {
            start: self.start.clone(),
            carry: Some(carry),
        };
        let base = json_len(&input);
        let budgets = &self.start.budgets;
        budgets.check(Budget::Carry, &self.cursor.node, Measured::Carry, base)?;
        let let_go = drop_to_fit(&mut back, |points| base + json_len(points) <= budgets.carry_bytes);
        let carry = input.carry.as_mut().expect("just set");
        let kept = back.len();
        carry.back = back;
        carry.back_dropped |= let_go > 0;
        Ok(CarriedOver { input, let_go, kept })
    }

    /// The next effect: a screen or timer carried over from the previous run or returned to
    /// with Back (still open and published, so `true`), or what the machine asks for.
    pub fn next_effect(&mut self, machine: &Machine<'_>) -> (Effect, bool) {
        self.next_effect_observed(machine, &mut |_| ControlFlow::Continue(()))
    }

    /// `next_effect`, with the machine's observer of the pure nodes it passes.
    pub fn next_effect_observed(
        &mut self,
        machine: &Machine<'_>,
        on: &mut dyn FnMut(Passed<'_>) -> ControlFlow<()>,
    ) -> (Effect, bool) {
        if let Some((instance, until)) = self.open_timer.take() {
            self.open_screen = None;
            let wait = Effect::Wait {
                instance,
                duration_ms: None,
                until_ms: Some(until),
            };
            return (wait, true);
        }
        if let Some((instance, view)) = self.open_screen.take() {
            let timeout_ms = screen_timeout(machine.definition(), &instance);
            let screen = Effect::Screen {
                instance,
                view,
                timeout_ms,
            };
            return (screen, true);
        }
        (machine.next_effect_observed(&mut self.cursor, on), false)
    }

    /// An HTTP node's call ended: its result goes into the run, and Back cannot cross it.
    pub fn http_done(&mut self, machine: &Machine<'_>, instance: String, result: Result<HttpResponse, String>) {
        machine.http_done(&mut self.cursor, &instance, result);
        self.past_no_return(instance);
    }

    /// A CHILD node's start ended (its output, or why it did not start); Back cannot cross it.
    pub fn child_done(&mut self, machine: &Machine<'_>, instance: String, started: Result<Value, String>) {
        match started {
            Ok(out) => machine.effect_done(&mut self.cursor, &instance, out),
            Err(msg) => machine.effect_failed(&mut self.cursor, &instance, NodeError::Child(msg)),
        }
        self.past_no_return(instance);
    }

    /// An HTTP or CHILD node ran: it is not undone, so Back cannot cross it.
    fn past_no_return(&mut self, node: String) {
        self.back.clear();
        self.back_blocked_by = Some(node);
    }

    /// A screen comes up at `now_ms`: when it stops waiting. A screen shown again after
    /// continue-as-new or Back (`reopened`) keeps the deadline it was published with (one
    /// carried from before deadlines were kept starts its timeout again, as it used to).
    pub fn screen_shown(&mut self, reopened: bool, timeout_ms: Option<u64>, now_ms: i64) {
        if !reopened || self.screen_deadline.is_none() {
            self.screen_deadline = deadline(timeout_ms, now_ms);
        }
    }

    /// How long the screen shown now still waits at `now_ms` (`None`: no timeout).
    pub fn screen_left_ms(&self, now_ms: i64) -> Option<u64> {
        self.screen_deadline.map(|at| (at - now_ms).max(1) as u64)
    }

    /// The answer link `state` carries, when it is a screen whose node says `answerLink`: it
    /// lives the node's ttl from `now_ms`, when the screen is published (a screen carried over
    /// by continue-as-new is not published again, and keeps its link).
    pub fn answer_link(&self, state: &WorkflowState, now_ms: i64) -> Option<LinkDue> {
        let view = state
            .view
            .as_ref()
            .filter(|_| state.workflow_status == WorkflowStatus::Waiting)?;
        let ttl = *self.answer_links.get(&view.node)?;
        Some(LinkDue {
            seq: state.seq,
            expires_ms: (now_ms.max(0) as u64).saturating_add(ttl * 1000),
        })
    }

    /// The run continues as new while waiting on this screen: the next run waits on it again.
    pub fn hold_screen(&mut self, instance: &str, view: &View) {
        self.open_screen = Some((instance.to_string(), view.clone()));
    }

    /// The run continues as new during this timer: the next run waits for it again.
    pub fn hold_timer(&mut self, instance: &str, fires_at_ms: i64) {
        self.open_timer = Some((instance.to_string(), fires_at_ms));
    }

    /// The state to publish next, if it keeps to the run's state budget.
    pub fn state(&self, status: WorkflowStatus, view: Option<View>) -> Result<WorkflowState, OverBudget> {
        let state = self.next_state(status, view, None, None);
        self.fits(&state)?;
        Ok(state)
    }

    /// `state` is published: it takes its seq and answers the pending command.
    pub fn published(&mut self, state: &WorkflowState) {
        self.seq = state.seq;
        self.cursor.trail.clear();
        self.answering = None;
        self.prefill = None;
    }

    /// What `cmd` does on the screen `instance` showing `view`, at `now_ms`.
    pub fn on_screen(
        &mut self,
        machine: &Machine<'_>,
        instance: &str,
        view: &View,
        cmd: Command,
        now_ms: i64,
    ) -> OnScreen {
        match cmd {
            Command::Resume {
                request_id,
                seq,
                view_response,
                callback,
            } => {
                // Where Back returns to: the run as it is on this screen, outputs of nodes run
                // from it (execute-node) included.
                let shown = self.cursor.clone();
                let checked = Rejection::check_resume(WorkflowStatus::Waiting, self.seq, seq).and_then(|()| {
                    machine
                        .answer(&mut self.cursor, instance, view, &view_response)
                        .map_err(|details| Rejection::InvalidAnswer { details })
                });
                match checked {
                    Ok(()) => {
                        self.answering = Some(request_id);
                        if callback.is_some() {
                            self.callback = callback;
                        }
                        let answer = view_response.get("selectedOptions").cloned().unwrap_or(Value::Null);
                        self.back.push(instance.to_string(), view.clone(), answer, shown);
                        OnScreen::Answered
                    }
                    Err(r) => OnScreen::Reject(request_id, r),
                }
            }
            Command::Back { request_id, seq } => {
                let checked = Rejection::check_resume(WorkflowStatus::Waiting, self.seq, seq).and_then(|()| match self
                    .back_block(instance)
                {
                    None => Ok(()),
                    Some((node, why)) => Err(Rejection::CannotGoBack { node, why }),
                });
                if let Err(r) = checked {
                    return OnScreen::Reject(request_id, r);
                }
                let p = self.back.pop().expect("checked: not empty");
                self.cursor = p.cursor;
                self.cursor.trail = vec![p.instance.clone()];
                self.answering = Some(request_id);
                self.prefill = Some(p.answer);
                self.screen_deadline = deadline(screen_timeout(machine.definition(), &p.instance), now_ms);
                // The run waits on it again, as published.
                self.open_screen = Some((p.instance, p.view.clone()));
                OnScreen::WentBack(p.view)
            }
            Command::Execute {
                request_id,
                node,
                parameters,
            } => OnScreen::Execute {
                request_id,
                node,
                parameters,
            },
        }
    }

    /// The screen `instance` was not answered in time.
    pub fn screen_timed_out(&mut self, machine: &Machine<'_>, instance: &str) {
        machine.screen_timed_out(&mut self.cursor, instance);
    }

    /// What `cmd` does while the run waits on a timer: execute-node runs; an answer is refused.
    pub fn on_timer(&self, cmd: Command) -> OnTimer {
        match cmd {
            Command::Execute {
                request_id,
                node,
                parameters,
            } => OnTimer::Execute {
                request_id,
                node,
                parameters,
            },
            Command::Resume { request_id, .. } | Command::Back { request_id, .. } => {
                let status = WorkflowStatus::SchedulerWaiting;
                OnTimer::Reject(request_id, Rejection::NotWaiting { status })
            }
        }
    }

    /// A timer fired (`fired_at`, RFC 3339): its output, and the run moves on.
    pub fn timer_fired(&mut self, machine: &Machine<'_>, instance: &str, fired_at: Option<String>) {
        machine.effect_done(&mut self.cursor, instance, json!({ "firedAt": fired_at }));
    }

    /// Starts running the disconnected node `node` against the current context.
    pub fn execute(&mut self, machine: &Machine<'_>, node: &str, parameters: Option<&Value>) -> Execution {
        if !machine.is_executable(node) {
            let node = node.to_string();
            return Execution::Reject(Rejection::NotExecutable { node });
        }
        match machine.prepare_execute(&mut self.cursor, node, parameters) {
            Ok(Prepared::Done(v)) => Execution::Done(self.node_result(node, Ok(v))),
            Ok(Prepared::Http { request, retry }) => Execution::Http { request, retry },
            Err(e) => Execution::Done(self.node_result(node, Err(e))),
        }
    }

    /// A disconnected HTTP node's call ended: the result to publish to its caller.
    pub fn executed(&mut self, machine: &Machine<'_>, node: &str, result: Result<HttpResponse, String>) -> NodeResult {
        let outcome = machine.finish_execute(&mut self.cursor, node, result);
        self.node_result(node, outcome)
    }

    fn node_result(&self, node: &str, outcome: Result<Value, NodeError>) -> NodeResult {
        let (status, response) = match outcome {
            Ok(response) => (NodeOutcome::Success, response),
            Err(e) => (NodeOutcome::Failed, json!({"error": e.to_string()})),
        };
        NodeResult {
            workflow_id: self.start.workflow_id.to_string(),
            node: node.to_string(),
            status,
            response,
        }
    }

    /// The run's last state. An end too large to publish ends the run all the same, as
    /// FAILED, saying why.
    pub fn ending(&self, status: EndStatus, disposition: Option<Value>, error_message: Option<String>) -> Ending {
        let st = match status {
            EndStatus::Completed => WorkflowStatus::Completed,
            EndStatus::Failed => WorkflowStatus::Failed,
        };
        let state = self.next_state(st, None, disposition, error_message);
        match self.fits(&state) {
            Ok(()) => Ending { state, over: None },
            Err(over) => Ending {
                state: self.next_state(WorkflowStatus::Failed, None, None, Some(over.to_string())),
                over: Some(over),
            },
        }
    }

    /// How a CHILD node `instance` starts `workflow` with `params`; `history_length` makes its
    /// id unique and the same on replay. Refused (the node fails) when the definition was not
    /// pinned or a bound would be crossed.
    pub fn child_start(
        &self,
        instance: &str,
        workflow: &str,
        params: Value,
        history_length: u64,
    ) -> Result<ChildStart, String> {
        let def = self
            .start
            .children
            .get(workflow)
            .cloned()
            .ok_or_else(|| format!("child workflow definition {workflow:?} was not pinned at start"))?;
        let budgets = &self.start.budgets;
        let depth = u64::from(self.start.depth) + 1;
        budgets
            .check(Budget::ChildDepth, instance, Measured::ChildDepth, depth)
            .map_err(|e| e.to_string())?;
        let child_id = WorkflowId::derived(&self.start.workflow_id, instance, history_length);
        let input = WorkflowInput {
            start: self.start.child(child_id.clone(), def, params),
            carry: None,
        };
        budgets
            .check(Budget::Carry, instance, Measured::ChildStart, json_len(&input))
            .map_err(|e| e.to_string())?;
        Ok(ChildStart {
            input,
            scoped: ScopedWorkflowId::new(&self.start.tenant, &child_id),
            workflow_id: child_id,
        })
    }

    /// Why Back cannot apply on `screen` (what stands in the way), or `None` when it can.
    fn back_block(&self, screen: &str) -> Option<(String, BackBlock)> {
        if self.no_back.contains(screen) {
            return Some((screen.to_string(), BackBlock::Forbidden));
        }
        match self.back.is_empty() {
            true => Some(BackBlock::of(
                screen,
                self.back_blocked_by.as_deref(),
                self.back.dropped(),
            )),
            false => None,
        }
    }

    /// Whether `state` keeps to the run's state budget (a backstop: the engine measures
    /// screens and ends before they get here).
    fn fits(&self, state: &WorkflowState) -> Result<(), OverBudget> {
        let node = state.node.as_deref().unwrap_or(&self.cursor.node);
        self.start
            .budgets
            .check(Budget::State, node, Measured::State, json_len(state))
    }

    /// The state the run would publish next (with the next seq), answering the pending command.
    fn next_state(
        &self,
        status: WorkflowStatus,
        view: Option<View>,
        disposition: Option<Value>,
        error_message: Option<String>,
    ) -> WorkflowState {
        let path = self.cursor.trail.clone();
        // On a screen: whether Back can apply, or what stands in the way.
        let block = match (status, &view) {
            (WorkflowStatus::Waiting, Some(v)) => Some(self.back_block(&v.node)),
            _ => None,
        };
        let can_go_back = block.as_ref().is_some_and(Option::is_none);
        let view_deadline = view.as_ref().and(self.screen_deadline);
        let (back_blocked_by, back_dropped) = match block {
            Some(Some((node, BackBlock::Crossed | BackBlock::Forbidden))) => (Some(node), false),
            Some(Some((_, BackBlock::Dropped))) => (None, true),
            _ => (None, false),
        };
        WorkflowState {
            view,
            disposition,
            error_message,
            node: path.last().cloned(),
            path,
            request_id: self.answering.clone().map(String::from),
            can_go_back,
            back_blocked_by,
            back_dropped,
            previous_answer: self.prefill.clone(),
            expires_at: match (status, &view_deadline) {
                (WorkflowStatus::Waiting, Some(at)) => chrono::DateTime::from_timestamp_millis(*at)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
                _ => None,
            },
            ..WorkflowState::bare(self.start.workflow_id.as_str(), status, self.seq + 1)
        }
    }
}

/// When a timer of `duration_ms` (or until `until_ms`) started at `now_ms` fires.
pub fn timer_fires_at(duration_ms: Option<u64>, until_ms: Option<i64>, now_ms: i64) -> i64 {
    until_ms.unwrap_or(now_ms + duration_ms.unwrap_or(0) as i64)
}

/// A screen's `timeoutMs`, if it has one.
pub fn screen_timeout(def: &Definition, instance: &str) -> Option<u64> {
    match def.states.get(instance).and_then(|e| e.node.as_ref()) {
        Some(Node::Instruction(i)) => i.timeout_ms,
        _ => None,
    }
}

/// When a screen published at `now_ms` with `timeout_ms` stops waiting.
fn deadline(timeout_ms: Option<u64>, now_ms: i64) -> Option<i64> {
    timeout_ms.map(|ms| now_ms + ms.max(1) as i64)
}
