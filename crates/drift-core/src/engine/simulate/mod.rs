//! A whole run of a definition without Temporal, Redis or the network: scripted answers for
//! its screens, stubbed responses for its HTTP nodes, timers that elapse at once. It drives the
//! same `Machine` the workflow drives, the way the workflow drives it, so what an author sees
//! here is what the workflow would do with those answers and responses.

pub mod cases;

use super::{
    Budgets, Cursor, Effect, EndStatus, FieldError, HttpResponse, Machine, Passed, UpstreamFailure, View,
    initial_context, status_failure,
};
use crate::dsl::{Definition, Node};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::ops::ControlFlow;
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
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Screen {
    pub seq: u64,
    pub node: String,
    pub view: View,
}

/// An answer a screen refused.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rejected {
    /// Its index in `answers`.
    pub answer: usize,
    pub node: String,
    pub details: Vec<FieldError>,
    /// The error body a real resume gets (filled in by the gateway, which owns that format).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FinalState {
    /// `WAITING`, `COMPLETED` or `FAILED` (or `RUNNING` when the simulation stopped).
    pub workflow_status: String,
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
    /// `answer_for_another_screen`, `no_response`, `not_answered_on_time`, `limit`, `time`,
    /// `no_child_definition`.
    pub reason: String,
    pub node: String,
    pub message: String,
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
    let mut sim = Sim::new(def, world, now, 0, &scenario.answers);
    let cursor = Cursor::new(
        initial_context(def, scenario.params.clone(), scenario.thread_context.clone()),
        def.start_node.clone(),
    );
    sim.run(cursor);
    sim.report.unused_answers = scenario.answers.len() - sim.next_answer;
    sim.report
}

impl Report {
    fn empty() -> Self {
        Report {
            path: vec![],
            screens: vec![],
            rejections: vec![],
            final_state: FinalState {
                workflow_status: "RUNNING".into(),
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
    world: World<'a>,
    now: chrono::DateTime<chrono::Utc>,
    depth: usize,
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

impl<'a> Sim<'a> {
    fn new(
        def: &'a Definition,
        world: World<'a>,
        now: chrono::DateTime<chrono::Utc>,
        depth: usize,
        answers: &'a [Answer],
    ) -> Self {
        Sim {
            machine: Machine::new(def).with_budgets(world.limits.budgets),
            world,
            now,
            depth,
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
        });
        self.report.path.last_mut().expect("just pushed")
    }

    fn run(&mut self, mut cur: Cursor) {
        let mut seq = 0u64;
        let mut effects = 0usize;
        let next = loop {
            effects += 1;
            if effects > self.world.limits.max_effects {
                break Next::Stop(self.stop(
                    "limit",
                    &cur.node,
                    format!("more than {} effects", self.world.limits.max_effects),
                ));
            }
            if Instant::now() >= self.world.deadline {
                break Next::Stop(self.stop("time", &cur.node, format!("longer than {:?}", self.world.limits.time)));
            }
            let effect = self.advance(&mut cur);
            if let Some(stopped) = self.report.stopped.take() {
                break Next::Stop(stopped);
            }
            let next = match effect {
                Effect::Http { instance, retry, .. } => self.http(&mut cur, &instance, &retry),
                Effect::Screen {
                    instance,
                    view,
                    timeout_ms,
                } => {
                    seq += 1;
                    self.report.screens.push(Screen {
                        seq,
                        node: instance.clone(),
                        view: view.clone(),
                    });
                    self.screen(&mut cur, instance, view, timeout_ms)
                }
                Effect::Wait {
                    instance,
                    duration_ms,
                    until_ms,
                } => {
                    seq += 1;
                    let fires = match until_ms {
                        Some(ms) => chrono::DateTime::from_timestamp_millis(ms).unwrap_or(self.now),
                        None => self.now + chrono::Duration::milliseconds(duration_ms.unwrap_or(0) as i64),
                    };
                    // A time in the past fires at once, as the workflow's timer does.
                    self.now = self.now.max(fires);
                    let fired = json!({ "firedAt": self.now.to_rfc3339() });
                    self.step(&instance, Some(fired.clone()), None);
                    self.machine.effect_done(&mut cur, &instance, fired);
                    Next::Go
                }
                Effect::Child {
                    instance,
                    workflow,
                    params,
                    ..
                } => self.child(&mut cur, &instance, &workflow, params),
                Effect::End {
                    status,
                    disposition,
                    error_message,
                } => {
                    // A SUCCESS or FAILURE node ends the run (a failure with nowhere to go ends
                    // it at the failing node, already listed).
                    if matches!(self.node_type(&cur.node).as_str(), "SUCCESS" | "FAILURE") {
                        let node = cur.node.clone();
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
        let mut context = cur.ctx().clone();
        if let Some(o) = context.as_object_mut() {
            o.remove("_enum_store");
        }
        let mut fin = FinalState {
            workflow_status: "RUNNING".into(),
            seq,
            node: Some(cur.node.clone()),
            view: None,
            disposition: None,
            error_message: None,
            context,
        };
        match next {
            Next::Go => unreachable!("the loop breaks on anything else"),
            Next::Stop(s) => self.report.stopped = Some(s),
            Next::Wait { node, view } => {
                fin.workflow_status = "WAITING".into();
                fin.node = Some(node);
                fin.view = Some(view);
            }
            Next::End(status, disposition, error_message) => {
                fin.seq += 1;
                fin.workflow_status = match status {
                    EndStatus::Completed => "COMPLETED",
                    EndStatus::Failed => "FAILED",
                }
                .into();
                fin.node = self.report.path.last().map(|s| s.node.clone());
                fin.disposition = disposition;
                fin.error_message = error_message;
            }
        }
        self.report.final_state = fin;
    }

    fn stop(&self, reason: &str, node: &str, message: String) -> Stopped {
        Stopped {
            reason: reason.into(),
            node: node.into(),
            message,
        }
    }

    /// The machine's `next_effect`, listing the pure nodes it passes and stopping at the
    /// bounds.
    fn advance(&mut self, cur: &mut Cursor) -> Effect {
        let (max_steps, deadline) = (self.world.limits.max_steps, self.world.deadline);
        let mut passed: Vec<Step> = vec![];
        let mut steps = self.steps;
        let mut stopped = None;
        let effect = self.machine.next_effect_observed(cur, &mut |p| {
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
            });
            if steps > max_steps {
                stopped = Some((
                    "limit",
                    node.to_string(),
                    format!("more than {max_steps} SCRIPT and BRANCH steps"),
                ));
                return ControlFlow::Break(());
            }
            if Instant::now() >= deadline {
                stopped = Some(("time", node.to_string(), "the simulation ran out of time".to_string()));
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
        effect
    }

    fn http(&mut self, cur: &mut Cursor, instance: &str, retry: &crate::dsl::RetryPolicy) -> Next {
        let Some(stub) = self.world.responses.get(instance) else {
            return Next::Stop(self.stop(
                "no_response",
                instance,
                format!("HTTP node {instance:?} was called and no response is stubbed for it"),
            ));
        };
        let max = match retry.max_attempts {
            0 => MAX_UNLIMITED_ATTEMPTS,
            n => n,
        };
        let mut attempts = 0u32;
        let result = loop {
            let n = self.calls.entry(instance.to_string()).or_default();
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
        self.machine.http_done(cur, instance, result);
        let output = cur.ctx().get(instance).cloned().filter(|_| error.is_none());
        self.step(instance, output, error).attempts = Some(attempts);
        Next::Go
    }

    fn screen(&mut self, cur: &mut Cursor, instance: String, view: View, timeout_ms: Option<u64>) -> Next {
        loop {
            let Some(answer) = self.answers.get(self.next_answer) else {
                return Next::Wait { node: instance, view };
            };
            if answer.node != instance {
                return Next::Stop(self.stop(
                    "answer_for_another_screen",
                    &instance,
                    format!(
                        "answer {} is for screen {:?}, but screen {instance:?} came up",
                        self.next_answer, answer.node
                    ),
                ));
            }
            let index = self.next_answer;
            self.next_answer += 1;
            if answer.timed_out {
                if timeout_ms.is_none() {
                    return Next::Stop(self.stop(
                        "not_answered_on_time",
                        &instance,
                        format!("answer {index} lets screen {instance:?} time out, but it has no timeoutMs"),
                    ));
                }
                self.machine.screen_timed_out(cur, &instance);
                self.step(&instance, None, Some("timed out".into()));
                return Next::Go;
            }
            match self.machine.answer(cur, &instance, &view, &answer.view_response) {
                Ok(()) => {
                    let output = cur.ctx().get(format!("{instance}:viewResponse")).cloned();
                    self.step(&instance, output, None);
                    return Next::Go;
                }
                Err(details) => self.report.rejections.push(Rejected {
                    answer: index,
                    node: instance.clone(),
                    details,
                    error: None,
                    status: None,
                }),
            }
        }
    }

    fn child(&mut self, cur: &mut Cursor, instance: &str, workflow: &str, params: Value) -> Next {
        // A stubbed child: its response body is what starting it gave.
        if let Some(stub) = self.world.responses.get(instance) {
            let out = stub.nth(0).map(|r| r.body.clone()).unwrap_or(Value::Null);
            self.step(instance, Some(out.clone()), None);
            self.machine.effect_done(cur, instance, out);
            return Next::Go;
        }
        let Some(def) = self.world.children.get(workflow) else {
            return Next::Stop(self.stop(
                "no_child_definition",
                instance,
                format!("CHILD node {instance:?} starts {workflow:?}, which is not available to the simulation"),
            ));
        };
        let child_id = format!("sim-{instance}-{}", self.report.path.len());
        if self.depth < MAX_CHILD_DEPTH {
            // The child runs on its own (the parent does not wait for it), with no answers.
            let mut child = Sim::new(def, self.world, self.now, self.depth + 1, &[]);
            let ctx = initial_context(def, params, cur.ctx().get("threadContext").cloned().unwrap_or_default());
            child.run(Cursor::new(ctx, def.start_node.clone()));
            self.report.children.insert(instance.to_string(), child.report);
        }
        let out = json!({ "workflowId": child_id });
        self.step(instance, Some(out.clone()), None);
        self.machine.effect_done(cur, instance, out);
        Next::Go
    }
}

#[cfg(test)]
mod tests;
