//! Workflow definitions: the JSON model users write, loading from files and validation that
//! names the offending node and field.

mod validate;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

pub mod graph;
pub mod schema;
mod shared;

pub use shared::shared;
pub use validate::{ValidationError, is_definition_id, validate, validate_node};

/// A workflow definition: a graph of named node instances.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Definition {
    pub id: String,
    #[serde(default = "default_version")]
    pub version: String,
    #[serde(default)]
    pub description: Option<String>,
    pub start_node: String,
    #[serde(default)]
    pub default_failure_node: Option<String>,
    pub states: BTreeMap<String, StateEntry>,
    /// Static lookups available to scripts as `enums` and to JSONPath as `$._enum_store`.
    #[serde(default)]
    pub enum_store: BTreeMap<String, Value>,
    /// How long a run of this workflow may last in all (continue-as-new included); past it
    /// Temporal ends it and readers see FAILED. Default: the gateway's `--execution-timeout-secs`.
    #[serde(default)]
    pub execution_timeout_ms: Option<u64>,
}

fn default_version() -> String {
    "1".to_string()
}

/// One node instance: an inline node or a reference to a stored node definition.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StateEntry {
    #[serde(default)]
    pub node: Option<Node>,
    #[serde(default)]
    pub resource_id: Option<String>,
    #[serde(default)]
    pub resource_version: Option<String>,
    /// Node parameters: a string starting with `$` is a JSONPath into the context, anything
    /// else is a literal.
    #[serde(default)]
    pub parameters: BTreeMap<String, Value>,
    #[serde(default)]
    pub next_node: Option<String>,
}

/// A stored, reusable node definition (referenced by `resourceId` + `resourceVersion`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeResource {
    pub id: String,
    #[serde(default = "default_version")]
    pub version: String,
    pub node: Node,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Node {
    Http(HttpNode),
    Script(ScriptNode),
    Branch(BranchNode),
    Instruction(InstructionNode),
    Wait(WaitNode),
    Success(SuccessNode),
    Failure(FailureNode),
    Child(ChildNode),
}

impl Node {
    pub fn type_name(&self) -> &'static str {
        match self {
            Node::Http(_) => "HTTP",
            Node::Script(_) => "SCRIPT",
            Node::Branch(_) => "BRANCH",
            Node::Instruction(_) => "INSTRUCTION",
            Node::Wait(_) => "WAIT",
            Node::Success(_) => "SUCCESS",
            Node::Failure(_) => "FAILURE",
            Node::Child(_) => "CHILD",
        }
    }
}

/// An HTTP call. String fields may hold `{{ expression }}` templates (Rhai); a body string that
/// is exactly one template is replaced by the expression's value, keeping its JSON type.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpNode {
    #[serde(default = "default_method")]
    pub method: String,
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Option<Value>,
    #[serde(default = "default_http_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Script over `response` (`{status, headers, body}`) whose value becomes the node output.
    #[serde(default)]
    pub transformer: Option<String>,
    /// Follow redirects (at most 5, each checked like the first request). Off by default.
    #[serde(default)]
    pub follow_redirects: bool,
}

fn default_method() -> String {
    "GET".to_string()
}
fn default_http_timeout_ms() -> u64 {
    10_000
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryPolicy {
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_initial_interval_ms")]
    pub initial_interval_ms: u64,
    #[serde(default = "default_backoff")]
    pub backoff_coefficient: f64,
    #[serde(default = "default_max_interval_ms")]
    pub max_interval_ms: u64,
}

fn default_attempts() -> u32 {
    3
}
fn default_initial_interval_ms() -> u64 {
    200
}
fn default_backoff() -> f64 {
    2.0
}
fn default_max_interval_ms() -> u64 {
    5_000
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: default_attempts(),
            initial_interval_ms: default_initial_interval_ms(),
            backoff_coefficient: default_backoff(),
            max_interval_ms: default_max_interval_ms(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScriptNode {
    pub script: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BranchNode {
    pub choices: Vec<Choice>,
    pub default_node: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Choice {
    pub rule: String,
    pub next_node: String,
}

/// A screen. `possibleDynamicValues` maps a widget id to a script that yields its
/// `possibleValues` (a list of `{displayValue, value}` or of plain values).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstructionNode {
    pub layout_id: String,
    #[serde(default)]
    pub input_options: Vec<Widget>,
    #[serde(default)]
    pub possible_dynamic_values: BTreeMap<String, String>,
    #[serde(default)]
    pub disposition: Option<Value>,
    /// How long the screen waits for an answer; then the flow goes on at `onTimeout` (or the
    /// default failure node), with `"<instance>:timedOut": true` in the context.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub on_timeout: Option<String>,
    /// Whether the user may go Back from this screen to the one before (default true);
    /// `false` for a screen whose earlier answers must stand once it is shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub back: Option<bool>,
    /// Each WAITING state at this screen carries `answerUrl`: an answer link for a person
    /// outside any app (webhooks, live and sync states alike), living `ttl` from when the
    /// screen is shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_link: Option<AnswerLink>,
}

/// `"answerLink": {"ttl": "72h"}` on a screen.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnswerLink {
    /// How long each link works from when its screen is shown: a number and a unit (`s`, `m`,
    /// `h`, `d`) or several (`1d12h`); 1 second to 30 days. Default 72h.
    #[serde(default = "default_link_ttl")]
    pub ttl: String,
}

fn default_link_ttl() -> String {
    "72h".into()
}

impl AnswerLink {
    /// The ttl in seconds (a definition that was validated always has one).
    pub fn ttl_secs(&self) -> Result<u64, String> {
        crate::links::parse_ttl(&self.ttl)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Widget {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub tags: Tags,
    #[serde(default)]
    pub instructions: Vec<Instruction>,
    #[serde(default)]
    pub possible_values: Vec<PossibleValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub possible_dependent_values: Option<Value>,
    /// Whether the answer must contain this widget. Defaults to true for input widgets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<bool>,
}

impl Widget {
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.values.iter().any(|t| t == tag)
    }

    /// Static text never takes an answer; every other widget does unless marked optional.
    pub fn is_input(&self) -> bool {
        !self.has_tag("ui.static_text") && !self.has_tag("ui.complete")
    }

    pub fn is_required(&self) -> bool {
        self.is_input() && self.required.unwrap_or(true)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Tags {
    #[serde(default)]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Instruction {
    pub template_id: String,
    #[serde(default)]
    pub template_variables: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PossibleValue {
    pub display_value: String,
    pub value: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta_data: Option<Value>,
}

/// A durable timer: `durationMs`, or `until` (an RFC 3339 time, or a `$` JSONPath to one).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WaitNode {
    #[serde(default)]
    pub duration_ms: Option<u64>,
    #[serde(default)]
    pub until: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SuccessNode {
    #[serde(default)]
    pub disposition: Option<Value>,
}

/// Terminal failure. `errorMessage` may use `{{ }}` templates; without one the error that
/// routed here (`ctx._error.message`) is reported.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FailureNode {
    #[serde(default)]
    pub error_message: Option<String>,
    #[serde(default)]
    pub disposition: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChildNode {
    pub workflow: String,
    #[serde(default)]
    pub version: Option<String>,
}

/// Every published workflow and node definition known to this process, by id and version,
/// and which version of each is ACTIVE.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    workflows: BTreeMap<String, BTreeMap<u64, Definition>>,
    nodes: BTreeMap<String, BTreeMap<u64, NodeResource>>,
    active_workflows: BTreeMap<String, u64>,
    active_nodes: BTreeMap<String, u64>,
}

/// How a caller names a version: a number, the newest published one, or the serving one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSel {
    Number(u64),
    Latest,
    Active,
}

impl VersionSel {
    /// `None` (not named) means ACTIVE.
    pub fn parse(v: Option<&str>) -> Option<Self> {
        match v.map(str::trim) {
            None | Some("") | Some("ACTIVE") => Some(Self::Active),
            Some("LATEST") => Some(Self::Latest),
            Some(n) => n.parse::<u64>().ok().filter(|n| *n > 0).map(Self::Number),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: not a valid definition: {source}")]
    Parse { path: String, source: serde_json::Error },
    #[error("{path}: version {version:?} must be a positive whole number")]
    Version { path: String, version: String },
    #[error("{path}: {errors:?}")]
    Invalid { path: String, errors: Vec<ValidationError> },
}

fn parse_version(path: &str, v: &str) -> Result<u64, LoadError> {
    v.parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| LoadError::Version {
            path: path.to_string(),
            version: v.to_string(),
        })
}

impl Registry {
    /// Loads each folder's `*.json` as workflow definitions and `nodes/*.json` as node
    /// resources, then validates every workflow against the loaded nodes. Every folder's nodes
    /// come first, so a workflow in one folder may use a node defined in another.
    pub fn load_dirs(dirs: &[std::path::PathBuf]) -> Result<Self, LoadError> {
        let mut reg = Registry::default();
        for dir in dirs {
            let nodes_dir = dir.join("nodes");
            if nodes_dir.is_dir() {
                for path in json_files(&nodes_dir)? {
                    let res: NodeResource = read_json(&path)?;
                    reg.add_node(&path.display().to_string(), res)?;
                }
            }
        }
        // In a folder, the newest file of each id is the one that serves; the nodes' are
        // known before the workflows are checked, so a reference to a node's ACTIVE version
        // resolves.
        reg.active_nodes = reg
            .nodes
            .iter()
            .filter_map(|(id, v)| Some((id.clone(), *v.keys().next_back()?)))
            .collect();
        for dir in dirs {
            for path in json_files(dir)? {
                let def: Definition = read_json(&path)?;
                reg.add_workflow(&path.display().to_string(), def)?;
            }
        }
        reg.active_workflows = reg
            .workflows
            .iter()
            .filter_map(|(id, v)| Some((id.clone(), *v.keys().next_back()?)))
            .collect();
        Ok(reg)
    }

    /// The folders' files as written (no defaults filled in), for storing: node definitions
    /// first, then workflows, each id's versions in order. `true` marks a node definition.
    pub fn raw_files(dirs: &[std::path::PathBuf]) -> Result<Vec<(bool, Value)>, LoadError> {
        let mut out: Vec<(bool, String, u64, Value)> = Vec::new();
        for dir in dirs {
            let nodes_dir = dir.join("nodes");
            let mut files: Vec<(bool, std::path::PathBuf)> = Vec::new();
            if nodes_dir.is_dir() {
                files.extend(json_files(&nodes_dir)?.into_iter().map(|p| (true, p)));
            }
            files.extend(json_files(dir)?.into_iter().map(|p| (false, p)));
            for (is_node, path) in files {
                let v: Value = read_json(&path)?;
                let origin = path.display().to_string();
                let version = match v.get("version") {
                    None => 1,
                    Some(Value::String(s)) => parse_version(&origin, s)?,
                    Some(other) => parse_version(&origin, &other.to_string())?,
                };
                let id = v.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
                out.push((is_node, id, version, v));
            }
        }
        out.sort_by(|a, b| (!a.0, &a.1, a.2).cmp(&(!b.0, &b.1, b.2)));
        Ok(out.into_iter().map(|(n, _, _, v)| (n, v)).collect())
    }

    /// Adds a stored, already validated version (no checks: it was checked when published).
    pub fn insert_workflow(&mut self, version: u64, mut def: Definition) {
        def.version = version.to_string();
        self.workflows.entry(def.id.clone()).or_default().insert(version, def);
    }

    pub fn insert_node(&mut self, version: u64, mut res: NodeResource) {
        res.version = version.to_string();
        self.nodes.entry(res.id.clone()).or_default().insert(version, res);
    }

    pub fn activate_workflow(&mut self, id: &str, version: u64) {
        self.active_workflows.insert(id.to_string(), version);
    }

    pub fn activate_node(&mut self, id: &str, version: u64) {
        self.active_nodes.insert(id.to_string(), version);
    }

    /// Every version of a workflow, oldest first.
    pub fn workflow_versions(&self, id: &str) -> impl Iterator<Item = &Definition> {
        self.workflows.get(id).into_iter().flat_map(|v| v.values())
    }

    pub fn node_versions(&self, id: &str) -> impl Iterator<Item = &NodeResource> {
        self.nodes.get(id).into_iter().flat_map(|v| v.values())
    }

    pub fn node_ids(&self) -> impl Iterator<Item = &str> {
        self.nodes.keys().map(String::as_str)
    }

    pub fn add_node(&mut self, origin: &str, res: NodeResource) -> Result<(), LoadError> {
        let v = parse_version(origin, &res.version)?;
        self.nodes.entry(res.id.clone()).or_default().insert(v, res);
        Ok(())
    }

    pub fn add_workflow(&mut self, origin: &str, def: Definition) -> Result<(), LoadError> {
        let v = parse_version(origin, &def.version)?;
        let errors = validate(&def, self);
        if !errors.is_empty() {
            return Err(LoadError::Invalid {
                path: origin.to_string(),
                errors,
            });
        }
        self.workflows.entry(def.id.clone()).or_default().insert(v, def);
        Ok(())
    }

    /// Sets `enumStore[key]` in every definition that declares that key (deployment values
    /// such as the base URL of an API).
    pub fn override_enum(&mut self, key: &str, value: Value) {
        for versions in self.workflows.values_mut() {
            for def in versions.values_mut() {
                if let Some(v) = def.enum_store.get_mut(key) {
                    *v = value.clone();
                }
            }
        }
    }

    pub fn workflow_ids(&self) -> impl Iterator<Item = &str> {
        self.workflows.keys().map(String::as_str)
    }

    /// `version` is a number, `LATEST`, or `ACTIVE` (also when absent).
    pub fn workflow(&self, id: &str, version: Option<&str>) -> Option<&Definition> {
        pick(self.workflows.get(id)?, self.active_workflows.get(id), version)
    }

    pub fn node(&self, id: &str, version: Option<&str>) -> Option<&NodeResource> {
        pick(self.nodes.get(id)?, self.active_nodes.get(id), version)
    }

    /// Puts the node each resolvable reference names in place (unresolvable ones stay as
    /// they are, for validation to report).
    pub fn inline_references(&self, def: &mut Definition) {
        for entry in def.states.values_mut() {
            if entry.node.is_none()
                && let Some(res) = entry
                    .resource_id
                    .as_deref()
                    .and_then(|id| self.node(id, entry.resource_version.as_deref()))
            {
                entry.node = Some(res.node.clone());
            }
        }
    }

    /// A self-contained copy of a definition: node references replaced by the nodes they name,
    /// so a running workflow never depends on what is edited later.
    pub fn compile(&self, def: &Definition) -> Result<Definition, String> {
        let mut out = def.clone();
        for (name, entry) in out.states.iter_mut() {
            if entry.node.is_none() {
                let id = entry.resource_id.as_deref().unwrap_or_default();
                let res = self
                    .node(id, entry.resource_version.as_deref())
                    .ok_or_else(|| format!("states.{name}: unknown node resource {id:?}"))?;
                entry.node = Some(res.node.clone());
                entry.resource_version = Some(res.version.clone());
            }
        }
        Ok(out)
    }
}

/// Why `Registry::children_of` found no pinned set.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChildError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Compile(String),
}

impl Registry {
    /// Every definition a CHILD node of `def` (or of its children) may start, compiled: what
    /// a start pins, so a run's children never change under it.
    pub fn children_of(&self, def: &Definition) -> Result<BTreeMap<String, Definition>, ChildError> {
        let mut out = BTreeMap::new();
        // `def` is searched where it is; only the children found are copied to be searched in
        // turn (most definitions have none, and this runs on every start).
        let mut todo: Vec<Definition> = vec![];
        let search = |d: &Definition, out: &mut BTreeMap<String, Definition>, todo: &mut Vec<Definition>| {
            for entry in d.states.values() {
                if let Some(Node::Child(c)) = &entry.node
                    && !out.contains_key(&c.workflow)
                {
                    let child = self.workflow(&c.workflow, c.version.as_deref()).ok_or_else(|| {
                        ChildError::NotFound(format!("child workflow definition {:?} not found", c.workflow))
                    })?;
                    let compiled = self.compile(child).map_err(ChildError::Compile)?;
                    out.insert(c.workflow.clone(), compiled.clone());
                    todo.push(compiled);
                }
            }
            Ok::<(), ChildError>(())
        };
        search(def, &mut out, &mut todo)?;
        while let Some(d) = todo.pop() {
            search(&d, &mut out, &mut todo)?;
        }
        Ok(out)
    }
}

/// A cycle of CHILD nodes: a run of the first workflow would start runs without end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildCycle {
    /// The CHILD node instance of the checked definition the cycle goes through.
    pub instance: String,
    /// The workflow ids along the cycle, the first repeated at the end (`a → b → a`).
    pub path: Vec<String>,
}

impl std::fmt::Display for ChildCycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "starts a cycle of CHILD workflows: {}; a run would start runs without end",
            self.path.join(" → ")
        )
    }
}

impl Registry {
    /// A CHILD cycle reachable from `root`, a definition about to be saved or published: a
    /// reference to its own id at ACTIVE or LATEST is taken to be `root` itself (what those
    /// will name once it serves), other references the published versions they name now (the
    /// newest, for a definition with none active yet).
    pub fn child_cycle(&self, root: &Definition) -> Option<ChildCycle> {
        let root_key = (root.id.clone(), "(this version)".to_string());
        let mut walk = Walk {
            reg: self,
            root,
            done: BTreeSet::new(),
            path: vec![root_key.clone()],
        };
        for (instance, child) in walk.children(root) {
            if let Some(path) = walk.visit(child) {
                return Some(ChildCycle { instance, path });
            }
        }
        None
    }
}

type WorkflowKey = (String, String);

/// A depth-first walk of CHILD references from a root definition.
struct Walk<'r> {
    reg: &'r Registry,
    root: &'r Definition,
    /// Definitions fully walked without finding a cycle.
    done: BTreeSet<WorkflowKey>,
    /// The definitions on the way here.
    path: Vec<WorkflowKey>,
}

impl<'r> Walk<'r> {
    /// The definitions `d`'s CHILD nodes (inline or node references) start, by instance.
    fn children(&self, d: &Definition) -> Vec<(String, (WorkflowKey, &'r Definition))> {
        let mut out = Vec::new();
        for (instance, entry) in &d.states {
            let node = entry.node.as_ref().or_else(|| {
                let res = self
                    .reg
                    .node(entry.resource_id.as_deref()?, entry.resource_version.as_deref())?;
                Some(&res.node)
            });
            let Some(Node::Child(c)) = node else { continue };
            let sel = VersionSel::parse(c.version.as_deref());
            let own = c.workflow == self.root.id && matches!(sel, Some(VersionSel::Active | VersionSel::Latest));
            let target = match own {
                true => Some((self.path[0].clone(), self.root)),
                // A definition not activated yet counts as its newest version: activating it
                // would close the cycle with no publish to refuse.
                false => self
                    .reg
                    .workflow(&c.workflow, c.version.as_deref())
                    .or_else(|| match sel {
                        Some(VersionSel::Active) => self.reg.workflow(&c.workflow, Some("LATEST")),
                        _ => None,
                    })
                    .map(|t| ((t.id.clone(), t.version.clone()), t)),
            };
            out.extend(target.map(|t| (instance.clone(), t)));
        }
        out
    }

    /// The cycle through `(key, d)`, as workflow ids, if one is reachable.
    fn visit(&mut self, (key, d): (WorkflowKey, &'r Definition)) -> Option<Vec<String>> {
        if let Some(at) = self.path.iter().position(|k| *k == key) {
            let mut ids: Vec<String> = self.path[at..].iter().map(|(id, _)| id.clone()).collect();
            ids.push(key.0);
            return Some(ids);
        }
        if self.done.contains(&key) {
            return None;
        }
        self.path.push(key.clone());
        for (_, child) in self.children(d) {
            if let Some(cycle) = self.visit(child) {
                return Some(cycle);
            }
        }
        self.path.pop();
        self.done.insert(key);
        None
    }
}

fn pick<'a, T>(versions: &'a BTreeMap<u64, T>, active: Option<&u64>, version: Option<&str>) -> Option<&'a T> {
    match VersionSel::parse(version)? {
        VersionSel::Active => versions.get(active?),
        VersionSel::Latest => versions.values().next_back(),
        VersionSel::Number(n) => versions.get(&n),
    }
}

fn json_files(dir: &Path) -> Result<Vec<std::path::PathBuf>, LoadError> {
    let io = |source| LoadError::Io {
        path: dir.display().to_string(),
        source,
    };
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "json") && !is_test_file(p))
        .collect();
    files.sort();
    Ok(files)
}

/// Definition tests (`refund.test.json`) sit beside the definitions they test.
pub fn is_test_file(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".test.json"))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.display().to_string(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| LoadError::Parse {
        path: path.display().to_string(),
        source,
    })
}
