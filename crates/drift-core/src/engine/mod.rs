//! The pure node-graph interpreter: state in, next step out. It never does I/O; the Temporal
//! workflow performs the effects it asks for (HTTP calls, screens, timers, children) and feeds
//! the results back. That keeps it deterministic for replay and unit-testable without Temporal.

pub mod back;
mod budget;
mod error;

pub use budget::{
    Budget, Budgets, DEFAULT_CARRY_BYTES, Measured, OverBudget, TEMPORAL_PAYLOAD_LIMIT, check_definition, check_in,
    grouped, json_len,
};
pub use error::{NodeError, Where};

use crate::dsl::{
    BranchNode, Definition, FailureNode, HttpNode, InstructionNode, Node, PossibleValue, RetryPolicy, StateEntry,
    SuccessNode, WaitNode, Widget,
};
use crate::expr::{jsonpath, script};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::ops::ControlFlow;

/// Pure steps (SCRIPT, BRANCH) allowed in a row before the flow must reach a stable state.
pub const MAX_PURE_STEPS: usize = 1_000;

/// Where a run is: the `_global` context and the node to run next.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cursor {
    /// Changed only through `put` and `remove`, which keep `ctx_bytes` current.
    ctx: Value,
    pub node: String,
    /// The nodes entered since the last published state, oldest first (bounded), so a
    /// state can say which path led to it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trail: Vec<String>,
    /// The run has failed with no failure node to route to; the next `next_effect` ends it
    /// with this message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
    /// The context's length as JSON once measured, kept current by every change after, so the
    /// context budget costs a full measure once per cursor, not once per node.
    #[serde(skip)]
    ctx_bytes: Option<u64>,
}

impl PartialEq for Cursor {
    fn eq(&self, other: &Self) -> bool {
        (&self.ctx, &self.node, &self.trail, &self.failed) == (&other.ctx, &other.node, &other.trail, &other.failed)
    }
}

/// Longest trail a state carries; a long loop keeps its most recent steps.
pub const MAX_TRAIL: usize = 64;

impl Cursor {
    pub fn new(ctx: Value, node: String) -> Self {
        Self {
            ctx,
            node,
            trail: Vec::new(),
            failed: None,
            ctx_bytes: None,
        }
    }

    /// The run's `_global` context.
    pub fn ctx(&self) -> &Value {
        &self.ctx
    }

    /// The context's length as JSON.
    pub fn ctx_bytes(&mut self) -> u64 {
        match self.ctx_bytes {
            Some(n) => n,
            None => *self.ctx_bytes.insert(json_len(&self.ctx)),
        }
    }

    /// Sets a top-level context field, keeping the measured length current; the old value.
    pub fn put(&mut self, key: &str, value: Value) -> Option<Value> {
        if !self.ctx.is_object() {
            self.ctx = Value::Object(Map::new());
            self.ctx_bytes = None;
        }
        let map = self.ctx.as_object_mut().expect("made an object above");
        let (entries, new_len) = (map.len(), self.ctx_bytes.map(|_| json_len(&value)));
        let old = map.insert(key.to_string(), value);
        if let (Some(total), Some(new_len)) = (self.ctx_bytes.as_mut(), new_len) {
            match &old {
                Some(o) => *total = *total + new_len - json_len(o),
                // `"key":value`, with a comma unless it is the first field.
                None => *total += json_len(key) + 1 + new_len + u64::from(entries > 0),
            }
        }
        old
    }

    /// Removes a top-level context field, keeping the measured length current.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let map = self.ctx.as_object_mut()?;
        let old = map.remove(key)?;
        let left = map.len();
        if let Some(total) = self.ctx_bytes.as_mut() {
            *total -= json_len(key) + 1 + json_len(&old) + u64::from(left > 0);
        }
        Some(old)
    }

    fn entered(&mut self, node: &str) {
        if self.trail.len() >= MAX_TRAIL {
            self.trail.remove(0);
        }
        self.trail.push(node.to_string());
    }
}

/// An HTTP call for the activity to make.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpRequest {
    pub method: String,
    pub url: String,
    pub headers: BTreeMap<String, String>,
    pub body: Option<Value>,
    pub timeout_ms: u64,
    #[serde(default)]
    pub follow_redirects: bool,
    /// The run's node output budget: a larger response fails the node, naming the budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_response_bytes: Option<u64>,
}

/// What the activity saw.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpResponse {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: Value,
}

/// An upstream status that fails an HTTP node's call attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamFailure {
    /// Tried again under the node's retry policy (5xx, 429); other 4xx and 3xx are final.
    pub retryable: bool,
    pub message: String,
}

/// Whether an upstream's status fails the call: the HTTP activity and the simulator both
/// decide by this, with the same message.
pub fn status_failure(status: u16) -> Option<UpstreamFailure> {
    let retryable = match status {
        429 | 500..=599 => true,
        300..=499 => false,
        _ => return None,
    };
    let shown = http::StatusCode::from_u16(status).map_or_else(|_| status.to_string(), |s| s.to_string());
    Some(UpstreamFailure {
        retryable,
        message: format!("the upstream answered {shown}"),
    })
}

/// A screen as clients see it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct View {
    pub layout_id: String,
    pub node: String,
    pub input_options: Vec<Widget>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disposition: Option<Value>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EndStatus {
    Completed,
    Failed,
}

/// The next thing the workflow must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Http {
        instance: String,
        request: HttpRequest,
        retry: RetryPolicy,
    },
    Screen {
        instance: String,
        view: View,
        /// How long to wait for an answer before `screen_timed_out`.
        timeout_ms: Option<u64>,
    },
    Wait {
        instance: String,
        duration_ms: Option<u64>,
        until_ms: Option<i64>,
    },
    Child {
        instance: String,
        workflow: String,
        version: Option<String>,
        params: Value,
    },
    End {
        status: EndStatus,
        disposition: Option<Value>,
        error_message: Option<String>,
    },
}

/// One answer problem, for a 422.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FieldError {
    pub widget_id: String,
    pub message: String,
}

/// A disconnected node made ready to run.
#[derive(Debug, Clone, PartialEq)]
pub enum Prepared {
    Done(Value),
    Http { request: HttpRequest, retry: RetryPolicy },
}

/// The `_global` context a run starts with.
pub fn initial_context(def: &Definition, params: Value, thread_context: Value) -> Value {
    json!({
        "params": params,
        "threadContext": thread_context,
        "_enum_store": def.enum_store,
    })
}

pub struct Machine<'a> {
    def: &'a Definition,
    budgets: Budgets,
}

impl<'a> Machine<'a> {
    /// A machine for `def` with the default budgets.
    pub fn new(def: &'a Definition) -> Self {
        Self {
            def,
            budgets: Budgets::default(),
        }
    }

    /// The same machine held to `budgets` (a run's, as decided at its start).
    pub fn with_budgets(self, budgets: Budgets) -> Self {
        Self { budgets, ..self }
    }

    pub fn definition(&self) -> &'a Definition {
        self.def
    }

    /// Stores `value` as `key` of the context, unless that would take the context over its
    /// budget: then the context stays as it was and the error names `node`.
    fn store(&self, cur: &mut Cursor, node: &str, key: &str, value: Value) -> Result<(), NodeError> {
        let old = cur.put(key, value);
        let size = cur.ctx_bytes();
        if let Err(e) = self.budgets.check(Budget::Context, node, Measured::Context, size) {
            match old {
                Some(v) => cur.put(key, v),
                None => cur.remove(key),
            };
            return Err(NodeError::OverBudget(e));
        }
        Ok(())
    }

    /// A node's output, within the node output budget.
    fn checked_output(&self, node: &str, out: &Value) -> Result<(), NodeError> {
        self.budgets
            .check(Budget::NodeOutput, node, Measured::Output, json_len(out))
            .map_err(NodeError::OverBudget)
    }

    /// An effect the workflow ran (a child's start) failed: route it as a node failure.
    pub fn effect_failed(&self, cur: &mut Cursor, instance: &str, e: NodeError) {
        self.fail_or_park(cur, instance, e);
    }

    fn entry(&self, name: &str) -> Result<(&'a StateEntry, &'a Node), NodeError> {
        let entry = self
            .def
            .states
            .get(name)
            .ok_or_else(|| NodeError::NoState(name.into()))?;
        let node = entry.node.as_ref().ok_or_else(|| NodeError::Unresolved(name.into()))?;
        Ok((entry, node))
    }

    /// Resolves a node's parameters and stores them as `nodeParameters`.
    fn enter(
        &self,
        cur: &mut Cursor,
        node: &str,
        entry: &StateEntry,
        overrides: Option<&Value>,
    ) -> Result<Value, NodeError> {
        let mut params = Map::new();
        for (k, v) in &entry.parameters {
            let value = jsonpath::resolve(v, &cur.ctx).map_err(|e| Where::Parameter(k.clone()).err(e))?;
            params.insert(k.clone(), value);
        }
        if let Some(Value::Object(o)) = overrides {
            params.extend(o.clone());
        }
        let params = Value::Object(params);
        self.store(cur, node, "nodeParameters", params.clone())?;
        Ok(params)
    }

    /// Runs pure nodes from `cur.node` until the flow needs an effect.
    pub fn advance(&self, cur: &mut Cursor) -> Effect {
        self.advance_observed(cur, &mut |_| ControlFlow::Continue(()))
    }

    /// `advance`, telling `on` about each pure node it passes (the simulator lists them); `on`
    /// may stop the run (`Break`), which then ends as failed.
    pub fn advance_observed(&self, cur: &mut Cursor, on: &mut dyn FnMut(Passed<'_>) -> ControlFlow<()>) -> Effect {
        let mut failing = false;
        for _ in 0..MAX_PURE_STEPS {
            let seen = match self.step(cur) {
                Ok(Some(effect)) => return effect,
                // `step` entered the node it ran last on the trail.
                Ok(None) => on(Passed::Ran {
                    node: cur.trail.last().map_or("", String::as_str),
                    cursor: cur,
                }),
                Err(e) => {
                    let node = cur.node.clone();
                    let message = e.to_string();
                    if on(Passed::Failed {
                        node: &node,
                        message: &message,
                    })
                    .is_break()
                    {
                        return end_failed(STOPPED.into());
                    }
                    if failing {
                        return end_failed(format!("{e} (while handling an earlier failure)"));
                    }
                    failing = true;
                    if let Some(effect) = self.fail(cur, &node, message) {
                        return effect;
                    }
                    ControlFlow::Continue(())
                }
            };
            if seen.is_break() {
                return end_failed(STOPPED.into());
            }
        }
        let node = cur.node.clone();
        self.fail(cur, &node, NodeError::Endless.to_string())
            .unwrap_or_else(|| end_failed("endless loop".into()))
    }

    /// Routes a failure to `defaultFailureNode` (returns None, the cursor moved there) or ends
    /// the run as FAILED when there is none.
    fn fail(&self, cur: &mut Cursor, node: &str, msg: String) -> Option<Effect> {
        cur.put("_error", json!({"node": node, "message": msg}));
        match &self.def.default_failure_node {
            Some(f) if f != node => {
                cur.node = f.clone();
                None
            }
            _ => Some(end_failed(msg)),
        }
    }

    /// One node. `Ok(None)` means a pure node ran and the cursor moved on.
    fn step(&self, cur: &mut Cursor) -> Result<Option<Effect>, NodeError> {
        let name = cur.node.clone();
        cur.entered(&name);
        let (entry, node) = self.entry(&name)?;
        let input = self.enter(cur, &name, entry, None)?;
        let vars = script::Vars {
            ctx: &cur.ctx,
            input: &input,
            extra: &[],
        };
        let next = || {
            entry
                .next_node
                .clone()
                .ok_or_else(|| NodeError::NoNextNode(name.clone()))
        };
        let effect = match node {
            Node::Script(s) => {
                let out = script::eval(&s.script, &vars).map_err(|e| Where::Script.err(e))?;
                self.checked_output(&name, &out)?;
                self.store(cur, &name, &name, out)?;
                cur.node = next()?;
                return Ok(None);
            }
            Node::Branch(b) => {
                cur.node = branch_target(b, &vars)?;
                return Ok(None);
            }
            Node::Http(h) => Effect::Http {
                request: build_request(h, &vars, &name, &self.budgets)?,
                retry: h.retry.clone(),
                instance: name,
            },
            Node::Instruction(i) => screen(i, name, &vars, &self.budgets)?,
            Node::Wait(w) => wait(w, name, &cur.ctx)?,
            Node::Child(c) => {
                let at = json_len(&input);
                self.budgets
                    .check(Budget::NodeOutput, &name, Measured::ChildParams, at)
                    .map_err(NodeError::OverBudget)?;
                Effect::Child {
                    instance: name,
                    workflow: c.workflow.clone(),
                    version: c.version.clone(),
                    params: input.clone(),
                }
            }
            Node::Success(s) => success(s, &vars, &name, &self.budgets)?,
            Node::Failure(f) => failure(f, &vars, &name, &self.budgets)?,
        };
        Ok(Some(effect))
    }

    /// Feeds an HTTP result back: stores the (transformed) output and moves on, or routes the
    /// error to the failure node.
    pub fn http_done(&self, cur: &mut Cursor, instance: &str, result: Result<HttpResponse, String>) {
        match self.http_output(cur, instance, result) {
            Ok(out) => self.store_and_next(cur, instance, out),
            Err(e) => self.fail_or_park(cur, instance, e),
        }
    }

    /// Routes a failure outside `advance` to the failure node, or parks it for `next_effect`.
    fn fail_or_park(&self, cur: &mut Cursor, instance: &str, e: NodeError) {
        let msg = e.to_string();
        if self.fail(cur, instance, msg.clone()).is_some() {
            self.park_failure(cur, msg);
        }
    }

    fn http_output(
        &self,
        cur: &Cursor,
        instance: &str,
        result: Result<HttpResponse, String>,
    ) -> Result<Value, NodeError> {
        let (_, node) = self.entry(instance)?;
        let resp = result.map_err(|message| NodeError::Http {
            node: instance.to_string(),
            message,
        })?;
        let Node::Http(h) = node else {
            return Err(NodeError::NotHttp(instance.into()));
        };
        match &h.transformer {
            None => Ok(resp.body),
            Some(t) => {
                let response = serde_json::to_value(&resp).map_err(|e| Where::Transformer.err(e))?;
                let input = cur.ctx.get("nodeParameters").cloned().unwrap_or(Value::Null);
                script::eval(
                    t,
                    &script::Vars {
                        ctx: &cur.ctx,
                        input: &input,
                        extra: &[("response", &response)],
                    },
                )
                .map_err(|e| Where::Transformer.err(e))
            }
        }
    }

    fn store_and_next(&self, cur: &mut Cursor, instance: &str, out: Value) {
        let stored = self
            .checked_output(instance, &out)
            .and_then(|()| self.store(cur, instance, instance, out));
        if let Err(e) = stored {
            return self.fail_or_park(cur, instance, e);
        }
        match self.def.states.get(instance).and_then(|e| e.next_node.clone()) {
            Some(n) => cur.node = n,
            None => self.fail_or_park(cur, instance, NodeError::NoNextNode(instance.into())),
        }
    }

    /// With no failure node to go to, the run ends; `next_effect` reports it.
    fn park_failure(&self, cur: &mut Cursor, msg: String) {
        let node = cur.node.clone();
        cur.put("_error", json!({"node": node, "message": msg}));
        cur.failed = Some(msg);
    }

    /// Checks an answer against the view; on success stores it and moves on. An answer the
    /// run's context has no room for is refused like one that does not fit the screen (the
    /// run stays on it).
    pub fn answer(&self, cur: &mut Cursor, instance: &str, view: &View, answer: &Value) -> Result<(), Vec<FieldError>> {
        validate_answer(view, answer)?;
        let selected = answer.get("selectedOptions").cloned().unwrap_or(Value::Null);
        self.store(cur, instance, &format!("{instance}:viewResponse"), selected)
            .map_err(|e| {
                vec![FieldError {
                    widget_id: String::new(),
                    message: e.to_string(),
                }]
            })?;
        match self.def.states.get(instance).and_then(|e| e.next_node.clone()) {
            Some(next) => cur.node = next,
            None => self.fail_or_park(cur, instance, NodeError::NoNextNode(instance.into())),
        }
        Ok(())
    }

    /// Nobody answered the screen in time: note it and go on at `onTimeout` (or the default
    /// failure node).
    pub fn screen_timed_out(&self, cur: &mut Cursor, instance: &str) {
        cur.put(&format!("{instance}:timedOut"), Value::Bool(true));
        let on_timeout = match self.def.states.get(instance).and_then(|e| e.node.as_ref()) {
            Some(Node::Instruction(i)) => i.on_timeout.clone(),
            _ => None,
        };
        match on_timeout {
            Some(next) => cur.node = next,
            None => self.fail_or_park(cur, instance, NodeError::ScreenTimedOut(instance.into())),
        }
    }

    /// A timer fired or a child started: store its output and move on.
    pub fn effect_done(&self, cur: &mut Cursor, instance: &str, output: Value) {
        self.store_and_next(cur, instance, output);
    }

    /// Prepares a disconnected node to run against the current context.
    pub fn prepare_execute(
        &self,
        cur: &mut Cursor,
        node: &str,
        parameters: Option<&Value>,
    ) -> Result<Prepared, NodeError> {
        let (entry, n) = self.entry(node)?;
        let saved = cur.ctx.get("nodeParameters").cloned();
        let input = self.enter(cur, node, entry, parameters)?;
        let vars = script::Vars {
            ctx: &cur.ctx,
            input: &input,
            extra: &[],
        };
        let result = match n {
            Node::Script(s) => script::eval(&s.script, &vars)
                .map(Prepared::Done)
                .map_err(|e| Where::Template.err(e)),
            Node::Http(h) => build_request(h, &vars, node, &self.budgets).map(|request| Prepared::Http {
                request,
                retry: h.retry.clone(),
            }),
            other => Err(NodeError::NotExecutable {
                node: node.into(),
                kind: other.type_name(),
            }),
        };
        // A disconnected run leaves the flow's own parameters as they were.
        match saved {
            Some(p) => cur.put("nodeParameters", p),
            None => cur.remove("nodeParameters"),
        };
        if let Ok(Prepared::Done(out)) = &result {
            self.checked_output(node, out)?;
            self.store(cur, node, node, out.clone())?;
        }
        result
    }

    /// Finishes a disconnected HTTP node; its output is kept in the context for later nodes.
    pub fn finish_execute(
        &self,
        cur: &mut Cursor,
        node: &str,
        result: Result<HttpResponse, String>,
    ) -> Result<Value, NodeError> {
        let out = self.http_output(cur, node, result)?;
        self.checked_output(node, &out)?;
        self.store(cur, node, node, out.clone())?;
        Ok(out)
    }

    /// Whether `node` is one that execute-node may run.
    pub fn is_executable(&self, node: &str) -> bool {
        matches!(self.entry(node), Ok((_, Node::Http(_) | Node::Script(_))))
    }
}

/// The node name earlier releases parked a failure on; a cursor carried over from one (across
/// continue-as-new) is read as failed.
const LEGACY_END_FAILED: &str = "_end_failed";

impl Machine<'_> {
    /// `advance`, also honouring a parked failure.
    pub fn next_effect(&self, cur: &mut Cursor) -> Effect {
        self.next_effect_observed(cur, &mut |_| ControlFlow::Continue(()))
    }

    /// `next_effect` with `advance_observed`'s observer.
    pub fn next_effect_observed(&self, cur: &mut Cursor, on: &mut dyn FnMut(Passed<'_>) -> ControlFlow<()>) -> Effect {
        if cur.failed.is_none() && cur.node == LEGACY_END_FAILED {
            let msg = cur.ctx.pointer("/_error/message").and_then(Value::as_str);
            cur.failed = Some(msg.unwrap_or("workflow failed").to_string());
        }
        if let Some(msg) = &cur.failed {
            return end_failed(msg.clone());
        }
        self.advance_observed(cur, on)
    }
}

/// The message of a run an observer stopped.
pub const STOPPED: &str = "stopped by its observer";

/// A pure node `advance_observed` passed.
#[derive(Debug, Clone, Copy)]
pub enum Passed<'c> {
    /// A SCRIPT or BRANCH node ran; the cursor is at the node it led to.
    Ran { node: &'c str, cursor: &'c Cursor },
    /// A node failed; the failure goes to the failure node, or ends the run.
    Failed { node: &'c str, message: &'c str },
}

fn end_failed(msg: String) -> Effect {
    Effect::End {
        status: EndStatus::Failed,
        disposition: None,
        error_message: Some(msg),
    }
}

/// The first choice whose rule holds, or the default.
fn branch_target(b: &BranchNode, vars: &script::Vars) -> Result<String, NodeError> {
    for (i, c) in b.choices.iter().enumerate() {
        if script::eval_rule(&c.rule, vars).map_err(|e| Where::Rule(i).err(e))? {
            return Ok(c.next_node.clone());
        }
    }
    Ok(b.default_node.clone())
}

/// A screen's view: dynamic values evaluated, template variables resolved; within the state
/// budget, since it is published.
fn screen(i: &InstructionNode, name: String, v: &script::Vars, budgets: &Budgets) -> Result<Effect, NodeError> {
    let mut widgets = i.input_options.clone();
    for w in widgets.iter_mut() {
        if let Some(src) = i.possible_dynamic_values.get(&w.id) {
            let at = || Where::DynamicValues(w.id.clone());
            let values = script::eval(src, v).map_err(|e| at().err(e))?;
            w.possible_values = to_possible_values(values).map_err(|e| at().err(e))?;
        }
        for ins in w.instructions.iter_mut() {
            for val in ins.template_variables.values_mut() {
                *val = match &*val {
                    Value::String(s) if s.starts_with('$') => jsonpath::select(s, v.ctx)?,
                    other => script::render_value(other, v)?,
                };
            }
        }
    }
    let disposition = i.disposition.as_ref().map(|d| script::render_value(d, v)).transpose()?;
    let view = View {
        layout_id: i.layout_id.clone(),
        node: name.clone(),
        input_options: widgets,
        disposition,
    };
    budgets
        .check(Budget::State, &name, Measured::View, json_len(&view))
        .map_err(NodeError::OverBudget)?;
    Ok(Effect::Screen {
        instance: name,
        timeout_ms: i.timeout_ms,
        view,
    })
}

/// A timer: a duration, or a time (RFC 3339, possibly read from the context).
fn wait(w: &WaitNode, name: String, ctx: &Value) -> Result<Effect, NodeError> {
    let until_ms = match &w.until {
        None => None,
        Some(u) => {
            let text = if u.starts_with('$') {
                match jsonpath::select(u, ctx)? {
                    Value::String(s) => s,
                    other => return Err(Where::Until(None).err(format!("expected a time string, got {other}"))),
                }
            } else {
                u.clone()
            };
            let t = chrono::DateTime::parse_from_rfc3339(&text).map_err(|e| Where::Until(Some(text)).err(e))?;
            Some(t.timestamp_millis())
        }
    };
    Ok(Effect::Wait {
        instance: name,
        duration_ms: w.duration_ms,
        until_ms,
    })
}

/// An end's disposition is published: within the state budget.
fn end_disposition(
    d: Option<&Value>,
    v: &script::Vars,
    node: &str,
    budgets: &Budgets,
) -> Result<Option<Value>, NodeError> {
    let disposition = d.map(|d| script::render_value(d, v)).transpose()?;
    if let Some(d) = &disposition {
        budgets
            .check(Budget::State, node, Measured::Disposition, json_len(d))
            .map_err(NodeError::OverBudget)?;
    }
    Ok(disposition)
}

fn success(s: &SuccessNode, v: &script::Vars, node: &str, budgets: &Budgets) -> Result<Effect, NodeError> {
    let disposition = end_disposition(s.disposition.as_ref(), v, node, budgets)?;
    Ok(Effect::End {
        status: EndStatus::Completed,
        disposition,
        error_message: None,
    })
}

/// A FAILURE node's message: its own template, or the failure that led here.
fn failure(f: &FailureNode, v: &script::Vars, node: &str, budgets: &Budgets) -> Result<Effect, NodeError> {
    let message = match &f.error_message {
        Some(t) => script::render(t, v)?,
        None => v
            .ctx
            .pointer("/_error/message")
            .and_then(Value::as_str)
            .unwrap_or("workflow failed")
            .to_string(),
    };
    let disposition = end_disposition(f.disposition.as_ref(), v, node, budgets)?;
    Ok(Effect::End {
        status: EndStatus::Failed,
        disposition,
        error_message: Some(message),
    })
}

/// An HTTP node's request, within the node output budget (it is the activity's input); its
/// response is held to the same budget.
fn build_request(h: &HttpNode, vars: &script::Vars, node: &str, budgets: &Budgets) -> Result<HttpRequest, NodeError> {
    let mut url = url::Url::parse(&script::render_url(&h.url, vars)?).map_err(|e| Where::Url.err(e))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Where::Url.err(format!("scheme {:?} is not http or https", url.scheme())));
    }
    if !h.query.is_empty() {
        let mut q = url.query_pairs_mut();
        for (k, v) in &h.query {
            q.append_pair(k, &script::render(v, vars)?);
        }
    }
    let headers = h
        .headers
        .iter()
        .map(|(k, v)| Ok((k.clone(), script::render(v, vars)?)))
        .collect::<Result<_, NodeError>>()?;
    let body = h.body.as_ref().map(|b| script::render_value(b, vars)).transpose()?;
    let request = HttpRequest {
        method: h.method.clone(),
        url: url.to_string(),
        headers,
        body,
        timeout_ms: h.timeout_ms,
        follow_redirects: h.follow_redirects,
        max_response_bytes: Some(budgets.node_output_bytes).filter(|&b| b != u64::MAX),
    };
    budgets
        .check(Budget::NodeOutput, node, Measured::Request, json_len(&request))
        .map_err(NodeError::OverBudget)?;
    Ok(request)
}

fn to_possible_values(v: Value) -> Result<Vec<PossibleValue>, String> {
    let Value::Array(items) = v else {
        return Err("must give a list".into());
    };
    items
        .into_iter()
        .map(|item| match item {
            Value::Object(_) => serde_json::from_value(item).map_err(|e| e.to_string()),
            Value::String(s) => Ok(PossibleValue {
                display_value: s.clone(),
                value: Value::String(s),
                meta_data: None,
            }),
            other => Ok(PossibleValue {
                display_value: other.to_string(),
                value: other,
                meta_data: None,
            }),
        })
        .collect()
}

/// Required widgets present, no unknown widgets, values among `possibleValues` (or the
/// dependent values for the chosen parent value).
pub fn validate_answer(view: &View, answer: &Value) -> Result<(), Vec<FieldError>> {
    let err = |w: &str, m: String| FieldError {
        widget_id: w.to_string(),
        message: m,
    };
    let Some(selected) = answer.get("selectedOptions").and_then(Value::as_object) else {
        return Err(vec![err(
            "",
            "viewResponse.selectedOptions must be an object of widgetId: value".into(),
        )]);
    };
    let mut errors = Vec::new();
    for id in selected.keys() {
        if !view.input_options.iter().any(|w| &w.id == id && w.is_input()) {
            // An unknown id comes from the caller: never echo more of it than a widget id needs.
            let shown: String = id.chars().take(64).collect();
            errors.push(err(&shown, format!("no input widget {shown:?} on this screen")));
        }
    }
    for w in &view.input_options {
        let value = selected.get(&w.id).filter(|v| !v.is_null() && v.as_str() != Some(""));
        let Some(value) = value else {
            if w.is_required() {
                errors.push(err(&w.id, "required".into()));
            }
            continue;
        };
        let mut allowed: Option<Vec<&Value>> =
            (!w.possible_values.is_empty()).then(|| w.possible_values.iter().map(|p| &p.value).collect());
        if let (Some(parent), Some(dep)) = (&w.parent_id, &w.possible_dependent_values)
            && let Some(parent_value) = selected.get(parent)
        {
            let key = parent_value
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| parent_value.to_string());
            if let Some(Value::Array(list)) = dep.get(&key) {
                allowed = Some(list.iter().map(|p| p.get("value").unwrap_or(p)).collect());
            }
        }
        if let Some(allowed) = allowed
            && !allowed.contains(&value)
        {
            let mut shown = value.to_string();
            if shown.len() > 100 {
                shown = format!("{}…", shown.chars().take(100).collect::<String>());
            }
            errors.push(err(&w.id, format!("{shown} is not one of the allowed values")));
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

#[cfg(test)]
mod tests;
