//! Definition tests: cases kept beside a definition (`refund.test.json`), each a scenario and
//! what must hold of its simulation. The same check runs on a local simulation and on a
//! gateway's `simulate` answer, so both say the same thing about a case.

use super::{Answer, FinalState, Report, Scenario, StopReason, Stub};
use crate::domain::WorkflowStatus;
use crate::expr::jsonpath;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// A test file: the definition it tests (default: the file's name before `.test.json`) and
/// its cases.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TestFile {
    #[serde(default)]
    pub definition: Option<String>,
    pub cases: Vec<Case>,
}

/// One case: a scenario and its expectations.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Case {
    pub name: String,
    #[serde(default)]
    pub params: Value,
    #[serde(default)]
    pub thread_context: Value,
    #[serde(default)]
    pub answers: Vec<Answer>,
    #[serde(default)]
    pub responses: BTreeMap<String, Stub>,
    #[serde(default)]
    pub now: Option<chrono::DateTime<chrono::Utc>>,
    pub expect: Expect,
}

impl Case {
    pub fn scenario(&self) -> Scenario {
        Scenario {
            params: self.params.clone(),
            thread_context: self.thread_context.clone(),
            answers: self.answers.clone(),
            responses: self.responses.clone(),
            now: self.now,
        }
    }
}

/// What must hold; each given field is checked, the others are not.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Expect {
    /// The nodes passed, exactly, in order.
    #[serde(default)]
    pub path: Option<Vec<String>>,
    /// Nodes that must be passed, in this order (others may come between).
    #[serde(default)]
    pub passes: Option<Vec<String>>,
    /// Nodes that must not be passed.
    #[serde(default)]
    pub avoids: Option<Vec<String>>,
    /// The screens shown, in order: each by `node` and/or `layoutId`.
    #[serde(default)]
    pub screens: Option<Vec<ScreenExpect>>,
    /// The final `workflowStatus`: `COMPLETED`, `FAILED` or `WAITING`.
    #[serde(default)]
    pub status: Option<WorkflowStatus>,
    /// The node the run ended or waits at.
    #[serde(default)]
    pub node: Option<String>,
    /// The end state's disposition, exactly.
    #[serde(default)]
    pub disposition: Option<Value>,
    /// Text the end state's error message contains.
    #[serde(default)]
    pub error_contains: Option<String>,
    /// Context values by JSONPath (`$.fetch_order.amount`), each exactly.
    #[serde(default)]
    pub context: BTreeMap<String, Value>,
    /// How many answers the screens refused.
    #[serde(default)]
    pub rejections: Option<usize>,
    /// The simulation stops early for this reason (`no_response`, …). Without it, a stop
    /// fails the case.
    #[serde(default)]
    pub stopped: Option<StopReason>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScreenExpect {
    #[serde(default)]
    pub node: Option<String>,
    #[serde(default)]
    pub layout_id: Option<String>,
    /// Whether its state carries an answer link (its node says `answerLink`).
    #[serde(default)]
    pub answer_link: Option<bool>,
}

/// One expectation that did not hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// The expectation: `path`, `screens[1].layoutId`, `context $.x`, …
    pub expectation: String,
    /// The step it concerns (a node in the path, a screen's seq), when there is one.
    pub step: Option<String>,
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.step {
            Some(step) => write!(f, "{} (at {step}): {}", self.expectation, self.message),
            None => write!(f, "{}: {}", self.expectation, self.message),
        }
    }
}

fn failure(expectation: impl Into<String>, step: Option<String>, message: String) -> Failure {
    Failure {
        expectation: expectation.into(),
        step,
        message,
    }
}

/// Every expectation of `e` that `r` does not meet (none: the case passes).
pub fn check(r: &Report, e: &Expect) -> Vec<Failure> {
    let nodes: Vec<&str> = r.path.iter().map(|s| s.node.as_str()).collect();
    [
        stopped(r, e),
        path(&nodes, e),
        passes(&nodes, e),
        avoids(&nodes, e),
        screens(r, e),
        final_state(&r.final_state, e),
        context(&r.final_state, e),
        rejections(r, e),
    ]
    .concat()
}

/// Whether the run stopped (at a bound) and why, against `stopped`.
fn stopped(r: &Report, e: &Expect) -> Vec<Failure> {
    let mut out = vec![];
    match (&r.stopped, &e.stopped) {
        (Some(s), None) => out.push(failure(
            "the run",
            Some(format!("node {}", s.node)),
            format!("the simulation stopped ({}): {}", s.reason, s.message),
        )),
        (None, Some(want)) => out.push(failure(
            "stopped",
            None,
            format!("expected it to stop ({want}); it did not"),
        )),
        (Some(s), Some(want)) if s.reason != *want => out.push(failure(
            "stopped",
            Some(format!("node {}", s.node)),
            format!("expected {want}, it stopped for {}: {}", s.reason, s.message),
        )),
        _ => {}
    }
    out
}

/// The nodes passed, step by step, against `path`.
fn path(nodes: &[&str], e: &Expect) -> Vec<Failure> {
    let mut out = vec![];
    if let Some(want) = &e.path {
        let at = want.iter().zip(nodes).position(|(w, g)| w != g);
        let differs = at.or((want.len() != nodes.len()).then(|| want.len().min(nodes.len())));
        if let Some(i) = differs {
            let got = nodes
                .get(i)
                .map_or("the end of the path".to_string(), |n| format!("{n:?}"));
            let expected = want
                .get(i)
                .map_or("the end of the path".to_string(), |n| format!("{n:?}"));
            out.push(failure(
                "path",
                Some(format!("step {}", i + 1)),
                format!("expected {expected}, got {got}; the path was {}", nodes.join(" → ")),
            ));
        }
    }
    out
}

/// The nodes in `passes`, passed in that order (others between them allowed).
fn passes(nodes: &[&str], e: &Expect) -> Vec<Failure> {
    let mut out = vec![];
    if let Some(want) = &e.passes {
        let mut rest = nodes.iter();
        if let Some(missing) = want.iter().find(|w| !rest.any(|n| n == w)) {
            out.push(failure(
                "passes",
                None,
                format!(
                    "{missing:?} was not passed (in this order); the path was {}",
                    nodes.join(" → ")
                ),
            ));
        }
    }
    out
}

/// None of the nodes in `avoids` passed.
fn avoids(nodes: &[&str], e: &Expect) -> Vec<Failure> {
    let mut out = vec![];
    for avoided in e.avoids.iter().flatten() {
        if let Some(i) = nodes.iter().position(|n| n == avoided) {
            out.push(failure(
                "avoids",
                Some(format!("step {}", i + 1)),
                format!("{avoided:?} was passed; the path was {}", nodes.join(" → ")),
            ));
        }
    }
    out
}

/// The screens that came up, in turn, against `screens` (node and layout).
fn screens(r: &Report, e: &Expect) -> Vec<Failure> {
    let mut out = vec![];
    if let Some(want) = &e.screens {
        for (i, w) in want.iter().enumerate() {
            let Some(got) = r.screens.get(i) else {
                out.push(failure(
                    format!("screens[{i}]"),
                    None,
                    format!("expected a screen; only {} came up", r.screens.len()),
                ));
                break;
            };
            let step = Some(format!("screen seq {} ({})", got.seq, got.node));
            if let Some(n) = &w.node
                && n != &got.node
            {
                out.push(failure(
                    format!("screens[{i}].node"),
                    step.clone(),
                    format!("expected {n:?}, got {:?}", got.node),
                ));
            }
            if let Some(l) = &w.layout_id
                && l != &got.view.layout_id
            {
                out.push(failure(
                    format!("screens[{i}].layoutId"),
                    step.clone(),
                    format!("expected {l:?}, got {:?}", got.view.layout_id),
                ));
            }
            let linked = got.answer_link_expires_at.is_some();
            if let Some(want) = w.answer_link
                && want != linked
            {
                out.push(failure(
                    format!("screens[{i}].answerLink"),
                    step,
                    format!("expected {want}, got {linked}"),
                ));
            }
        }
        if r.screens.len() > want.len() {
            out.push(failure(
                "screens",
                None,
                format!("expected {} screens, {} came up", want.len(), r.screens.len()),
            ));
        }
    }
    out
}

/// The run's end: `status`, `node`, `disposition` and `errorContains`.
fn final_state(fin: &FinalState, e: &Expect) -> Vec<Failure> {
    let mut out = vec![];
    if let Some(s) = &e.status
        && *s != fin.workflow_status
    {
        let why = fin
            .error_message
            .as_deref()
            .map(|m| format!(" ({m})"))
            .unwrap_or_default();
        out.push(failure(
            "status",
            fin.node.clone().map(|n| format!("node {n}")),
            format!("expected {s}, got {}{why}", fin.workflow_status),
        ));
    }
    if let Some(n) = &e.node
        && Some(n) != fin.node.as_ref()
    {
        let got = fin.node.as_deref().map_or("none".to_string(), |g| format!("{g:?}"));
        out.push(failure("node", None, format!("expected {n:?}, got {got}")));
    }
    if let Some(d) = &e.disposition
        && Some(d) != fin.disposition.as_ref()
    {
        out.push(failure(
            "disposition",
            None,
            format!("expected {d}, got {}", fin.disposition.clone().unwrap_or(Value::Null)),
        ));
    }
    if let Some(text) = &e.error_contains
        && !fin.error_message.as_deref().is_some_and(|m| m.contains(text.as_str()))
    {
        out.push(failure(
            "errorContains",
            None,
            format!(
                "expected an error message containing {text:?}, got {:?}",
                fin.error_message
            ),
        ));
    }
    out
}

/// Each JSONPath in `context` selects exactly the value expected in the final context.
fn context(fin: &FinalState, e: &Expect) -> Vec<Failure> {
    let mut out = vec![];
    for (path, want) in &e.context {
        let got = jsonpath::parse(path).map(|p| p.query(&fin.context).all().into_iter().cloned().collect::<Vec<_>>());
        match got {
            Err(err) => out.push(failure(
                format!("context {path}"),
                None,
                format!("not a JSONPath: {err}"),
            )),
            Ok(v) if v.is_empty() => out.push(failure(
                format!("context {path}"),
                None,
                format!("expected {want}, found nothing"),
            )),
            Ok(v) if v.len() == 1 && &v[0] == want => {}
            Ok(v) if v.len() == 1 => out.push(failure(
                format!("context {path}"),
                None,
                format!("expected {want}, got {}", v[0]),
            )),
            Ok(v) => out.push(failure(
                format!("context {path}"),
                None,
                format!("expected one value {want}, the path selects {}", v.len()),
            )),
        }
    }
    out
}

/// How many answers the screens refused, against `rejections`.
fn rejections(r: &Report, e: &Expect) -> Vec<Failure> {
    let mut out = vec![];
    if let Some(n) = e.rejections
        && n != r.rejections.len()
    {
        out.push(failure(
            "rejections",
            r.rejections
                .first()
                .map(|x| format!("answer {} at {}", x.answer, x.node)),
            format!("expected {n}, got {}", r.rejections.len()),
        ));
    }
    out
}
