//! A whole run of a definition without Temporal, Redis or the network: scripted answers for
//! its screens (or Back), stubbed responses for its HTTP nodes, timers that elapse at once. It
//! carries out the same session machine (`crate::session`) the workflow carries out, so what an
//! author sees here is what the workflow would do with those answers and responses.

pub mod cases;

use crate::domain::{BackBlock, Command, Rejection, RequestId, TenantId, WorkflowId, WorkflowStart, WorkflowStatus};
use crate::dsl::{Definition, Node};
use crate::engine::{
    Budgets, Effect, EndStatus, FieldError, HttpResponse, Machine, OverBudget, Passed, UpstreamFailure, View,
    status_failure,
};
use crate::session::{OnScreen, Session, WorkflowInput};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Effects (screens, HTTP calls, timers, children) one simulation may run.
pub const MAX_EFFECTS: usize = 2_000;
/// Pure nodes (SCRIPT, BRANCH) one simulation may pass, across all its effects.
pub const MAX_STEPS: usize = 20_000;
/// Attempts of one HTTP node whose retry policy has no limit.
pub const MAX_UNLIMITED_ATTEMPTS: u32 = 100;
/// How deep CHILD nodes are simulated.
pub const MAX_CHILD_DEPTH: usize = 4;

/// What a simulation is given.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scenario {
    /// The start's `params`.
    #[serde(default)]
    pub params: Value,
    /// What the caller's credential would put in `threadContext`.
    #[serde(default)]
    pub thread_context: Value,
    /// Given in turn to the screens that come up; an answer a screen rejects is followed by
    /// the next one for the same screen.
    #[serde(default)]
    pub answers: Vec<Answer>,
    /// By HTTP (or CHILD) node instance: its response, or a list used one per call attempt
    /// (the last one repeats).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub responses: BTreeMap<String, Stub>,
    /// When the run starts (RFC 3339), for WAIT nodes and `firedAt`; default: now.
    #[serde(default)]
    pub now: Option<chrono::DateTime<chrono::Utc>>,
}

/// One scripted answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Answer {
    /// The screen (INSTRUCTION node instance) it is meant for.
    pub node: String,
    /// As a resume's `viewResponse`: `{"selectedOptions": {...}}`.
    #[serde(default)]
    pub view_response: Value,
    /// Instead of answering, let the screen's `timeoutMs` pass.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timed_out: bool,
    /// Instead of answering, go Back to the previous screen (as `POST …/back` does).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub back: bool,
}

/// A stubbed response, or a list of them for repeated calls.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Stub {
    Many(Vec<StubResponse>),
    One(StubResponse),
}

impl Stub {
    fn nth(&self, n: usize) -> Option<&StubResponse> {
        match self {
            Stub::One(r) => Some(r),
            Stub::Many(v) => v.get(n).or(v.last()),
        }
    }
}

/// What one call attempt gets.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StubResponse {
    #[serde(default = "ok")]
    pub status: u16,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Value,
    /// The call got no answer (refused, timed out): a failure that is retried, with this message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn ok() -> u16 {
    200
}

/// What a simulation found.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Every node the run passed, in order.
    pub path: Vec<Step>,
    /// Every screen shown, with the `seq` its state would have.
    pub screens: Vec<Screen>,
    /// Answers a screen refused, with the error the real call would get.
    pub rejections: Vec<Rejected>,
    /// Where the run was left: ended, or waiting on a screen no answer was given for.
    pub final_state: FinalState,
    /// Why the simulation stopped before the run ended or waited for an answer, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<Stopped>,
    /// Answers left over once the run ended or stopped.
    #[serde(default)]
    pub unused_answers: usize,
    /// CHILD nodes' runs, by instance (simulated when no response was stubbed for them).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = Object)]
    pub children: BTreeMap<String, Report>,
}

/// One node passed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    pub node: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// What it left in the context: a script's value, an HTTP node's (transformed) body, a
    /// screen's answer, a timer's `firedAt`, a BRANCH's chosen node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// The node failed with this message (the run went on at the failure node, or ended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// HTTP call attempts (retries included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// The screen was left with Back (the run returned to the screen before it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub went_back: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Screen {
    pub seq: u64,
    pub node: String,
    pub view: View,
    /// Whether Back would apply on it (as the state's `canGoBack`).
    #[serde(default)]
    pub can_go_back: bool,
    /// Shown again with Back: the answer it had (as the state's `previousAnswer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_answer: Option<Value>,
    /// Its node says `answerLink`: a real run's state carries `answerUrl`, a link that expires
    /// then (RFC 3339, the simulation's clock). The link itself is signed by a worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_link_expires_at: Option<String>,
}

/// An answer a screen refused.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rejected {
    /// Its index in `answers`.
    pub answer: usize,
    pub node: String,
    /// What does not fit the screen (empty when it was Back that was refused).
    pub details: Vec<FieldError>,
    /// Back was refused: what stands in the way, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cannot_go_back: Option<BackRefused>,
    /// The error body a real resume gets (filled in by the gateway, which owns that format).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

/// Why Back was refused: `node` stands in the way.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackRefused {
    pub node: String,
    pub why: BackBlock,
}

impl Rejected {
    /// The refusal a real call gets for this answer.
    pub fn rejection(&self) -> Rejection {
        match &self.cannot_go_back {
            Some(b) => Rejection::CannotGoBack {
                node: b.node.clone(),
                why: b.why,
            },
            None => Rejection::InvalidAnswer {
                details: self.details.clone(),
            },
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FinalState {
    /// `WAITING`, `COMPLETED` or `FAILED` (or `RUNNING` when the simulation stopped).
    pub workflow_status: WorkflowStatus,
    pub seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view: Option<View>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disposition: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// The run's `_global` context (without the definition's `_enum_store`).
    pub context: Value,
}

/// Why a simulation stopped early.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Stopped {
    pub reason: StopReason,
    pub node: String,
    pub message: String,
}

/// Why a simulation stopped early.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The next answer names another screen than the one that came up.
    AnswerForAnotherScreen,
    /// An HTTP node was called and no response is stubbed for it.
    NoResponse,
    /// An answer lets a screen time out, and it has no `timeoutMs`.
    NotAnsweredOnTime,
    /// More effects or SCRIPT and BRANCH steps than a simulation may run.
    Limit,
    /// The simulation ran out of time.
    Time,
    /// A CHILD node starts a definition the simulation does not have.
    NoChildDefinition,
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = serde_json::to_value(self).ok();
        f.write_str(s.as_ref().and_then(Value::as_str).unwrap_or("stopped"))
    }
}

/// Bounds of one simulation.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_effects: usize,
    pub max_steps: usize,
    /// Wall-clock time the simulation (children included) may take.
    pub time: Duration,
    /// The byte budgets a real run would have (the gateway's).
    pub budgets: Budgets,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_effects: MAX_EFFECTS,
            max_steps: MAX_STEPS,
            time: Duration::from_secs(2),
            budgets: Budgets::default(),
        }
    }
}

/// Runs `def` on `scenario` until it ends, waits for an answer it was not given, or a bound
/// stops it. `children` are the definitions its CHILD nodes start (as pinned at a start).
pub fn simulate(
    def: &Definition,
    children: &BTreeMap<String, Definition>,
    scenario: &Scenario,
    limits: Limits,
) -> Report {
    let deadline = Instant::now() + limits.time;
    let now = scenario.now.unwrap_or_else(chrono::Utc::now);
    let world = World {
        children,
        responses: &scenario.responses,
        limits,
        deadline,
    };
    let start = sim_start(
        def,
        limits.budgets,
        scenario.params.clone(),
        scenario.thread_context.clone(),
        0,
    );
    let mut sim = Sim::new(def, start, world, now, &scenario.answers);
    sim.run();
    sim.report.unused_answers = scenario.answers.len() - sim.next_answer;
    sim.report
}

/// The start a simulated run has: the workflow's, with made-up ids.
fn sim_start(def: &Definition, budgets: Budgets, params: Value, thread_context: Value, depth: u32) -> WorkflowStart {
    WorkflowStart {
        definition: Arc::new(def.clone()),
        children: BTreeMap::new(),
        workflow_id: WorkflowId::parse("sim").expect("a valid id"),
        tenant: TenantId::parse("sim").expect("a valid id"),
        params,
        thread_context,
        request_id: None,
        callback: None,
        history_limit: u32::MAX,
        run: "sim".into(),
        seq_base: 0,
        execution_timeout_ms: None,
        budgets,
        depth,
        runs_indexed: false,
        lean_index: false,
    }
}

impl Report {
    fn empty() -> Self {
        Report {
            path: vec![],
            screens: vec![],
            rejections: vec![],
            final_state: FinalState {
                workflow_status: WorkflowStatus::Running,
                seq: 0,
                node: None,
                view: None,
                disposition: None,
                error_message: None,
                context: Value::Null,
            },
            stopped: None,
            unused_answers: 0,
            children: BTreeMap::new(),
        }
    }
}

/// What a simulation and the children it runs share: their definitions, the stubs and the bounds.
#[derive(Clone, Copy)]
struct World<'a> {
    children: &'a BTreeMap<String, Definition>,
    responses: &'a BTreeMap<String, Stub>,
    limits: Limits,
    deadline: Instant,
}

struct Sim<'a> {
    machine: Machine<'a>,
    session: Session,
    world: World<'a>,
    now: chrono::DateTime<chrono::Utc>,
    answers: &'a [Answer],
    next_answer: usize,
    /// Calls made so far per HTTP node (a list of stubs is used in turn).
    calls: BTreeMap<String, usize>,
    steps: usize,
    report: Report,
}

/// What the run loop does next.
enum Next {
    Go,
    Stop(Stopped),
    Wait { node: String, view: View },
    End(EndStatus, Option<Value>, Option<String>),
}

impl Next {
    /// The run ends, as the workflow ends it, when a state would be over its budget.
    fn over(over: OverBudget) -> Self {
        Next::End(EndStatus::Failed, None, Some(over.to_string()))
    }
}

impl<'a> Sim<'a> {
    fn new(
        def: &'a Definition,
        start: WorkflowStart,
        world: World<'a>,
        now: chrono::DateTime<chrono::Utc>,
        answers: &'a [Answer],
    ) -> Self {
        let budgets = start.budgets;
        let (session, _) = Session::new(WorkflowInput { start, carry: None });
        Sim {
            machine: Machine::new(def).with_budgets(budgets),
            session,
            world,
            now,
            answers,
            next_answer: 0,
            calls: BTreeMap::new(),
            steps: 0,
            report: Report::empty(),
        }
    }

    fn node_type(&self, node: &str) -> String {
        self.machine
            .definition()
            .states
            .get(node)
            .and_then(|e| e.node.as_ref())
            .map_or("UNKNOWN", Node::type_name)
            .to_string()
    }

    fn step(&mut self, node: &str, output: Option<Value>, error: Option<String>) -> &mut Step {
        let kind = self.node_type(node);
        self.report.path.push(Step {
            node: node.to_string(),
            kind,
            output,
            error,
            attempts: None,
            went_back: false,
        });
        self.report.path.last_mut().expect("just pushed")
    }

    fn now_ms(&self) -> i64 {
        self.now.timestamp_millis()
    }

    /// Publishes the run's next state, as the workflow does: it takes the next seq. A screen is
    /// listed with it.
    fn publish(&mut self, status: WorkflowStatus, screen: Option<(&str, View)>) -> Result<(), OverBudget> {
        let view = screen.as_ref().map(|(_, v)| v.clone());
        let state = self.session.state(status, view)?;
        self.session.published(&state);
        if let Some((node, view)) = screen {
            let link = self.session.answer_link(&state, self.now_ms());
            self.report.screens.push(Screen {
                seq: state.seq,
                node: node.to_string(),
                view,
                can_go_back: state.can_go_back,
                previous_answer: state.previous_answer,
                answer_link_expires_at: link.and_then(|l| {
                    chrono::DateTime::from_timestamp_millis(l.expires_ms as i64)
                        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                }),
            });
        }
        Ok(())
    }

    fn run(&mut self) {
        let mut effects = 0usize;
        let next = loop {
            effects += 1;
            let node = self.session.cursor.node.clone();
            if effects > self.world.limits.max_effects {
                let max = self.world.limits.max_effects;
                break Next::Stop(self.stop(StopReason::Limit, &node, format!("more than {max} effects")));
            }
            if Instant::now() >= self.world.deadline {
                let time = self.world.limits.time;
                break Next::Stop(self.stop(StopReason::Time, &node, format!("longer than {time:?}")));
            }
            let (effect, reopened) = self.advance();
            if let Some(stopped) = self.report.stopped.take() {
                break Next::Stop(stopped);
            }
            let next = match effect {
                Effect::Http { instance, retry, .. } => self.http(instance, &retry),
                Effect::Screen {
                    instance,
                    view,
                    timeout_ms,
                } => {
                    self.session.screen_shown(reopened, timeout_ms, self.now_ms());
                    let shown = match reopened {
                        true => Ok(()),
                        false => self.publish(WorkflowStatus::Waiting, Some((&instance, view.clone()))),
                    };
                    match shown {
                        Ok(()) => self.screen(instance, view, timeout_ms),
                        Err(over) => Next::over(over),
                    }
                }
                Effect::Wait {
                    instance,
                    duration_ms,
                    until_ms,
                } => match self.publish(WorkflowStatus::SchedulerWaiting, None) {
                    Ok(()) => {
                        let fires = match until_ms {
                            Some(ms) => chrono::DateTime::from_timestamp_millis(ms).unwrap_or(self.now),
                            None => self.now + chrono::Duration::milliseconds(duration_ms.unwrap_or(0) as i64),
                        };
                        // A time in the past fires at once, as the workflow's timer does.
                        self.now = self.now.max(fires);
                        let fired_at = self.now.to_rfc3339();
                        self.step(&instance, Some(json!({ "firedAt": fired_at })), None);
                        self.session.timer_fired(&self.machine, &instance, Some(fired_at));
                        Next::Go
                    }
                    Err(over) => Next::over(over),
                },
                Effect::Child {
                    instance,
                    workflow,
                    params,
                    ..
                } => self.child(instance, &workflow, params),
                Effect::End {
                    status,
                    disposition,
                    error_message,
                } => {
                    // A SUCCESS or FAILURE node ends the run (a failure with nowhere to go ends
                    // it at the failing node, already listed).
                    if matches!(
                        self.node_type(&self.session.cursor.node).as_str(),
                        "SUCCESS" | "FAILURE"
                    ) {
                        let node = self.session.cursor.node.clone();
                        self.step(&node, None, None);
                    }
                    Next::End(status, disposition, error_message)
                }
            };
            match next {
                Next::Go => continue,
                other => break other,
            }
        };
        let mut context = self.session.cursor.ctx().clone();
        if let Some(o) = context.as_object_mut() {
            o.remove("_enum_store");
        }
        let mut fin = FinalState {
            workflow_status: WorkflowStatus::Running,
            seq: self.session.seq,
            node: Some(self.session.cursor.node.clone()),
            view: None,
            disposition: None,
            error_message: None,
            context,
        };
        match next {
            Next::Go => unreachable!("the loop breaks on anything else"),
            Next::Stop(s) => self.report.stopped = Some(s),
            Next::Wait { node, view } => {
                fin.workflow_status = WorkflowStatus::Waiting;
                fin.node = Some(node);
                fin.view = Some(view);
            }
            Next::End(status, disposition, error_message) => {
                let ending = self.session.ending(status, disposition, error_message);
                fin.seq = ending.state.seq;
                fin.workflow_status = ending.state.workflow_status;
                fin.node = self.report.path.last().map(|s| s.node.clone());
                fin.disposition = ending.state.disposition;
                fin.error_message = ending.state.error_message;
            }
        }
        self.report.final_state = fin;
    }

    fn stop(&self, reason: StopReason, node: &str, message: String) -> Stopped {
        Stopped {
            reason,
            node: node.into(),
            message,
        }
    }

    /// The session's next effect, listing the pure nodes it passes and stopping at the bounds.
    fn advance(&mut self) -> (Effect, bool) {
        let (max_steps, deadline) = (self.world.limits.max_steps, self.world.deadline);
        let mut passed: Vec<Step> = vec![];
        let mut steps = self.steps;
        let mut stopped = None;
        let next = self.session.next_effect_observed(&self.machine, &mut |p| {
            steps += 1;
            let (node, output, error) = match p {
                Passed::Ran { node, cursor } => {
                    let output = match cursor.ctx().get(node) {
                        Some(v) => Some(v.clone()),
                        // A BRANCH stores nothing: its output is where it went.
                        None => Some(Value::String(cursor.node.clone())),
                    };
                    (node, output, None)
                }
                Passed::Failed { node, message } => (node, None, Some(message.to_string())),
            };
            passed.push(Step {
                node: node.to_string(),
                kind: String::new(),
                output,
                error,
                attempts: None,
                went_back: false,
            });
            if steps > max_steps {
                let message = format!("more than {max_steps} SCRIPT and BRANCH steps");
                stopped = Some((StopReason::Limit, node.to_string(), message));
                return ControlFlow::Break(());
            }
            if Instant::now() >= deadline {
                let message = "the simulation ran out of time".to_string();
                stopped = Some((StopReason::Time, node.to_string(), message));
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        });
        self.steps = steps;
        for mut s in passed {
            s.kind = self.node_type(&s.node);
            self.report.path.push(s);
        }
        if let Some((reason, node, message)) = stopped {
            self.report.stopped = Some(self.stop(reason, &node, message));
        }
        // An effect node's own step (a screen, an HTTP call…) is listed when it is done.
        next
    }

    fn http(&mut self, instance: String, retry: &crate::dsl::RetryPolicy) -> Next {
        let Some(stub) = self.world.responses.get(&instance) else {
            let message = format!("HTTP node {instance:?} was called and no response is stubbed for it");
            return Next::Stop(self.stop(StopReason::NoResponse, &instance, message));
        };
        let max = match retry.max_attempts {
            0 => MAX_UNLIMITED_ATTEMPTS,
            n => n,
        };
        let mut attempts = 0u32;
        let result = loop {
            let n = self.calls.entry(instance.clone()).or_default();
            let response = stub.nth(*n).cloned().unwrap_or_else(|| StubResponse {
                status: 200,
                headers: BTreeMap::new(),
                body: Value::Null,
                error: None,
            });
            *n += 1;
            attempts += 1;
            let failure = match &response.error {
                Some(e) => Some(UpstreamFailure {
                    retryable: true,
                    message: e.clone(),
                }),
                None => status_failure(response.status),
            };
            match failure {
                None => {
                    break Ok(HttpResponse {
                        status: response.status,
                        headers: response.headers,
                        body: response.body,
                    });
                }
                Some(f) if f.retryable && attempts < max => continue,
                Some(f) => break Err(f.message),
            }
        };
        let error = result.as_ref().err().cloned();
        self.session.http_done(&self.machine, instance.clone(), result);
        let output = self
            .session
            .cursor
            .ctx()
            .get(&instance)
            .cloned()
            .filter(|_| error.is_none());
        self.step(&instance, output, error).attempts = Some(attempts);
        Next::Go
    }

    fn screen(&mut self, instance: String, view: View, timeout_ms: Option<u64>) -> Next {
        loop {
            let Some(answer) = self.answers.get(self.next_answer) else {
                return Next::Wait { node: instance, view };
            };
            if answer.node != instance {
                let message = format!(
                    "answer {} is for screen {:?}, but screen {instance:?} came up",
                    self.next_answer, answer.node
                );
                return Next::Stop(self.stop(StopReason::AnswerForAnotherScreen, &instance, message));
            }
            let index = self.next_answer;
            self.next_answer += 1;
            if answer.timed_out {
                if timeout_ms.is_none() {
                    let message = format!("answer {index} lets screen {instance:?} time out, but it has no timeoutMs");
                    return Next::Stop(self.stop(StopReason::NotAnsweredOnTime, &instance, message));
                }
                self.session.screen_timed_out(&self.machine, &instance);
                self.step(&instance, None, Some("timed out".into()));
                return Next::Go;
            }
            // The command a real call would send for this answer, on the screen as shown.
            let request_id = RequestId::parse(&format!("sim-answer-{index}")).expect("a valid id");
            let seq = Some(self.session.seq);
            let cmd = match answer.back {
                true => Command::Back { request_id, seq },
                false => Command::Resume {
                    request_id,
                    seq,
                    view_response: answer.view_response.clone(),
                    callback: None,
                },
            };
            let now_ms = self.now_ms();
            match self.session.on_screen(&self.machine, &instance, &view, cmd, now_ms) {
                OnScreen::Answered => {
                    let output = self
                        .session
                        .cursor
                        .ctx()
                        .get(format!("{instance}:viewResponse"))
                        .cloned();
                    self.step(&instance, output, None);
                    return Next::Go;
                }
                OnScreen::WentBack(previous) => {
                    self.step(&instance, None, None).went_back = true;
                    let node = self.session.cursor.trail.last().cloned().unwrap_or_default();
                    return match self.publish(WorkflowStatus::Waiting, Some((&node, previous))) {
                        Ok(()) => Next::Go,
                        Err(over) => Next::over(over),
                    };
                }
                OnScreen::Reject(_, r) => {
                    let (details, cannot_go_back) = match r {
                        Rejection::InvalidAnswer { details } => (details, None),
                        Rejection::CannotGoBack { node, why } => (vec![], Some(BackRefused { node, why })),
                        // A simulated answer is always for the screen as shown.
                        other => unreachable!("a simulated answer was refused as {other:?}"),
                    };
                    self.report.rejections.push(Rejected {
                        answer: index,
                        node: instance.clone(),
                        details,
                        cannot_go_back,
                        error: None,
                        status: None,
                    });
                }
                OnScreen::Execute { .. } => unreachable!("a simulation sends no execute-node command"),
            }
        }
    }

    fn child(&mut self, instance: String, workflow: &str, params: Value) -> Next {
        // A stubbed child: its response body is what starting it gave.
        if let Some(stub) = self.world.responses.get(&instance) {
            let out = stub.nth(0).map(|r| r.body.clone()).unwrap_or(Value::Null);
            self.step(&instance, Some(out.clone()), None);
            self.session.child_done(&self.machine, instance, Ok(out));
            return Next::Go;
        }
        let Some(def) = self.world.children.get(workflow) else {
            let message =
                format!("CHILD node {instance:?} starts {workflow:?}, which is not available to the simulation");
            return Next::Stop(self.stop(StopReason::NoChildDefinition, &instance, message));
        };
        let child_id = format!("sim-{instance}-{}", self.report.path.len());
        let depth = self.session.start.depth;
        if (depth as usize) < MAX_CHILD_DEPTH {
            // The child runs on its own (the parent does not wait for it), with no answers.
            let thread_context = self
                .session
                .cursor
                .ctx()
                .get("threadContext")
                .cloned()
                .unwrap_or_default();
            let start = sim_start(def, self.world.limits.budgets, params, thread_context, depth + 1);
            let mut child = Sim::new(def, start, self.world, self.now, &[]);
            child.run();
            self.report.children.insert(instance.clone(), child.report);
        }
        let out = json!({ "workflowId": child_id });
        self.step(&instance, Some(out.clone()), None);
        self.session.child_done(&self.machine, instance, Ok(out));
        Next::Go
    }
}

#[cfg(test)]
mod tests;
