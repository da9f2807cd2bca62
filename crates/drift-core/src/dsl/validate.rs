use super::{BranchNode, Definition, HttpNode, InstructionNode, Node, Registry, StateEntry, WaitNode};
use crate::expr::{jsonpath, script};
use serde::Serialize;
use std::collections::{BTreeSet, VecDeque};

/// One problem in a definition, naming the node instance and the field.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct ValidationError {
    /// The node instance (the key under `states`), when the problem is in one.
    pub node: Option<String>,
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for ValidationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.node {
            Some(n) => write!(f, "node {n:?}, field {}: {}", self.field, self.message),
            None => write!(f, "field {}: {}", self.field, self.message),
        }
    }
}

struct Errors(Vec<ValidationError>);

impl Errors {
    fn push(&mut self, node: Option<&str>, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(ValidationError {
            node: node.map(str::to_string),
            field: field.into(),
            message: message.into(),
        });
    }
}

/// Checks a definition against the registry's node resources. An empty list means valid.
pub fn validate(original: &Definition, reg: &Registry) -> Vec<ValidationError> {
    let mut e = Errors(Vec::new());
    // Checks below see referenced nodes as if they were inline, so a referenced BRANCH wires
    // the graph like an inline one.
    let mut inlined = original.clone();
    reg.inline_references(&mut inlined);
    let def = &inlined;
    let reach = reachable(def);
    if !is_definition_id(&def.id) {
        e.push(None, "id", "must be non-empty letters, digits, '_' or '-'");
    }
    let exists = |n: &str| def.states.contains_key(n);
    if !exists(&def.start_node) {
        e.push(None, "startNode", format!("names no state: {:?}", def.start_node));
    }
    if let Some(f) = &def.default_failure_node
        && !exists(f)
    {
        e.push(None, "defaultFailureNode", format!("names no state: {f:?}"));
    }
    for (name, entry) in &original.states {
        check_state(&mut e, name, entry, reg, &exists, reach.contains(name.as_str()));
    }
    if exists(&def.start_node) {
        check_unreachable(&mut e, def, &reach);
    }
    if let Some(cycle) = reg.child_cycle(original) {
        e.push(Some(&cycle.instance), "node.workflow", cycle.to_string());
    }
    e.0
}

/// One state as written: its name, its node (inline or a resource), its parameters, its
/// `nextNode` against its kind, then the node itself.
fn check_state(
    e: &mut Errors,
    name: &str,
    entry: &StateEntry,
    reg: &Registry,
    exists: &dyn Fn(&str) -> bool,
    reached: bool,
) {
    let n = Some(name);
    if name.contains(':') || name.starts_with('_') || name == "params" || name == "threadContext" {
        e.push(
            n,
            "name",
            "instance names may not contain ':', start with '_', or be 'params'/'threadContext'",
        );
    }
    let node = match (&entry.node, &entry.resource_id) {
        (Some(node), None) => Some(node.clone()),
        (None, Some(id)) => match reg.node(id, entry.resource_version.as_deref()) {
            Some(res) => Some(res.node.clone()),
            None => {
                let version = entry.resource_version.as_deref().unwrap_or("ACTIVE");
                e.push(
                    n,
                    "resourceId",
                    format!("unknown node resource {id:?} (version {version:?})"),
                );
                None
            }
        },
        (Some(_), Some(_)) => {
            e.push(n, "node", "give either an inline node or a resourceId, not both");
            None
        }
        (None, None) => {
            e.push(n, "node", "missing: give an inline node or a resourceId");
            None
        }
    };
    for (p, v) in &entry.parameters {
        if let Some(path) = v.as_str().filter(|s| s.starts_with('$'))
            && let Err(err) = jsonpath::parse(path)
        {
            e.push(n, format!("parameters.{p}"), format!("bad JSONPath {path:?}: {err}"));
        }
    }
    if let Some(next) = &entry.next_node
        && !exists(next)
    {
        e.push(n, "nextNode", format!("names no state: {next:?}"));
    }
    let Some(node) = node else { return };
    let terminal = matches!(node, Node::Success(_) | Node::Failure(_));
    let branch = matches!(node, Node::Branch(_));
    if terminal && entry.next_node.is_some() {
        e.push(
            n,
            "nextNode",
            format!("a {} node ends the workflow and takes no nextNode", node.type_name()),
        );
    }
    if !terminal && !branch && entry.next_node.is_none() && reached {
        e.push(
            n,
            "nextNode",
            format!("a {} node on the flow needs a nextNode", node.type_name()),
        );
    }
    check_node(e, name, &node, exists);
}

/// A node nobody reaches is fine as a disconnected node (an HTTP or SCRIPT node run by
/// execute-node); anything else unreachable is almost certainly a wiring mistake.
fn check_unreachable(e: &mut Errors, def: &Definition, reach: &BTreeSet<&str>) {
    for (name, entry) in &def.states {
        if reach.contains(name.as_str()) {
            continue;
        }
        let kind = entry.node.as_ref().map(Node::type_name);
        let executable = matches!(kind, Some("HTTP") | Some("SCRIPT"));
        if !executable || entry.next_node.is_some() {
            e.push(
                Some(name),
                "nextNode",
                format!(
                    "unreachable from startNode {:?}; only HTTP or SCRIPT nodes without nextNode may be disconnected",
                    def.start_node
                ),
            );
        }
    }
}

fn check_node(e: &mut Errors, name: &str, node: &Node, exists: &dyn Fn(&str) -> bool) {
    let mut c = NodeCheck {
        e,
        n: Some(name),
        exists,
    };
    match node {
        Node::Http(h) => c.http(h),
        Node::Script(s) => c.script("node.script".into(), &s.script),
        Node::Branch(b) => c.branch(b),
        Node::Instruction(i) => c.screen(i),
        Node::Wait(w) => c.wait(w),
        Node::Failure(f) => {
            if let Some(m) = &f.error_message {
                c.template("node.errorMessage".into(), m);
            }
        }
        Node::Success(_) => {}
        Node::Child(ch) => {
            if ch.workflow.is_empty() {
                c.push("node.workflow", "must name a workflow definition");
            }
        }
    }
}

/// The checks of one node, reported against its name.
struct NodeCheck<'a, 'e> {
    e: &'e mut Errors,
    n: Option<&'a str>,
    exists: &'a dyn Fn(&str) -> bool,
}

impl NodeCheck<'_, '_> {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.e.push(self.n, field, message);
    }

    fn script(&mut self, field: String, src: &str) {
        if let Err(err) = script::compile(src) {
            self.push(field, format!("script does not compile: {err}"));
        }
    }

    fn template(&mut self, field: String, src: &str) {
        if let Err(err) = script::check_template(src) {
            self.push(field, err);
        }
    }

    fn names_a_state(&mut self, field: String, target: &str) {
        if !(self.exists)(target) {
            self.push(field, format!("names no state: {target:?}"));
        }
    }

    fn http(&mut self, h: &HttpNode) {
        if !matches!(h.method.as_str(), "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD") {
            self.push("node.method", format!("unsupported method {:?}", h.method));
        }
        self.template("node.url".into(), &h.url);
        for (k, v) in &h.headers {
            self.template(format!("node.headers.{k}"), v);
        }
        for (k, v) in &h.query {
            self.template(format!("node.query.{k}"), v);
        }
        if let Some(body) = &h.body {
            let mut strings = Vec::new();
            collect_strings(body, &mut strings);
            for s in strings {
                self.template("node.body".into(), s);
            }
        }
        if let Some(t) = &h.transformer {
            self.script("node.transformer".into(), t);
        }
        if h.retry.max_attempts == 0 {
            self.push("node.retry.maxAttempts", "must be at least 1");
        }
        if h.timeout_ms == 0 || h.timeout_ms > 300_000 {
            self.push("node.timeoutMs", "must be between 1 and 300000");
        }
    }

    fn branch(&mut self, b: &BranchNode) {
        for (i, c) in b.choices.iter().enumerate() {
            self.script(format!("node.choices[{i}].rule"), &c.rule);
            self.names_a_state(format!("node.choices[{i}].nextNode"), &c.next_node);
        }
        self.names_a_state("node.defaultNode".into(), &b.default_node);
    }

    fn screen(&mut self, i: &InstructionNode) {
        if let Some(t) = &i.on_timeout {
            self.names_a_state("node.onTimeout".into(), t);
        }
        if i.timeout_ms == Some(0) {
            self.push("node.timeoutMs", "must be more than 0");
        }
        if let Some(Err(e)) = i.answer_link.as_ref().map(super::AnswerLink::ttl_secs) {
            self.push("node.answerLink.ttl", e);
        }
        let mut ids = BTreeSet::new();
        for (k, w) in i.input_options.iter().enumerate() {
            if !ids.insert(w.id.as_str()) {
                self.push(
                    format!("node.inputOptions[{k}].id"),
                    format!("duplicate widget id {:?}", w.id),
                );
            }
        }
        for (k, w) in i.input_options.iter().enumerate() {
            if let Some(p) = &w.parent_id
                && !ids.contains(p.as_str())
            {
                self.push(
                    format!("node.inputOptions[{k}].parentId"),
                    format!("names no widget: {p:?}"),
                );
            }
        }
        for (wid, src) in &i.possible_dynamic_values {
            if !ids.contains(wid.as_str()) {
                self.push(format!("node.possibleDynamicValues.{wid}"), "names no widget");
            }
            self.script(format!("node.possibleDynamicValues.{wid}"), src);
        }
    }

    fn wait(&mut self, w: &WaitNode) {
        match (&w.duration_ms, &w.until) {
            (Some(_), None) => {}
            (None, Some(u)) if u.starts_with('$') => {
                if let Err(err) = jsonpath::parse(u) {
                    self.push("node.until", format!("bad JSONPath: {err}"));
                }
            }
            (None, Some(u)) => {
                if chrono::DateTime::parse_from_rfc3339(u).is_err() {
                    self.push("node.until", "must be an RFC 3339 time or a JSONPath");
                }
            }
            _ => self.push("node", "a WAIT node needs exactly one of durationMs or until"),
        }
    }
}

fn collect_strings<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
    match v {
        serde_json::Value::String(s) => out.push(s),
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_strings(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| collect_strings(x, out)),
        _ => {}
    }
}

/// Whether `id` can name a workflow or node definition: non-empty letters, digits, `_`, `-`.
pub fn is_definition_id(id: &str) -> bool {
    !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Checks a stored node definition on its own (the states its BRANCH names are checked in each
/// workflow that uses it). An empty list means valid.
pub fn validate_node(res: &super::NodeResource) -> Vec<ValidationError> {
    let mut e = Errors(Vec::new());
    if !is_definition_id(&res.id) {
        e.push(None, "id", "must be non-empty letters, digits, '_' or '-'");
    }
    check_node(&mut e, &res.id, &res.node, &|_| true);
    e.0
}

/// Instance names reachable from the start node by nextNode and branch edges.
pub(crate) fn reachable(def: &Definition) -> BTreeSet<&str> {
    let mut seen = BTreeSet::new();
    // Errors route to defaultFailureNode, so it and what follows it are on the flow too.
    let mut queue: VecDeque<&str> = [Some(def.start_node.as_str()), def.default_failure_node.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    while let Some(name) = queue.pop_front() {
        let Some(entry) = def.states.get(name) else {
            continue;
        };
        if !seen.insert(name) {
            continue;
        }
        if let Some(next) = &entry.next_node {
            queue.push_back(next);
        }
        if let Some(Node::Branch(b)) = &entry.node {
            queue.extend(b.choices.iter().map(|c| c.next_node.as_str()));
            queue.push_back(&b.default_node);
        }
        if let Some(Node::Instruction(i)) = &entry.node {
            queue.extend(i.on_timeout.as_deref());
        }
    }
    seen
}
