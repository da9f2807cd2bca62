//! A run's byte budgets: what it may hold and hand to Temporal. Temporal refuses any payload
//! over 2 MiB, and a workflow task whose payload it refuses fails again on every retry, so a
//! run that reached that limit would never move again. Each budget sits below it and is
//! checked where the bytes are made (node outputs, the context, states, what continue-as-new
//! carries), so a run that would exceed one ends FAILED, naming the node and the budget.

use crate::dsl::{Definition, Node, Registry, ValidationError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Temporal's default limit on one payload (`limit.blobSize.error`).
pub const TEMPORAL_PAYLOAD_LIMIT: u64 = 2 * 1024 * 1024;

/// The default carry budget: what continue-as-new may hand Temporal, with room below its limit.
pub const DEFAULT_CARRY_BYTES: u64 = 1792 * 1024;

/// The budgets of one run, decided at its start (so every replay decides alike).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Budgets {
    /// The run's context (`_global`): start parameters, node outputs, answers.
    pub context_bytes: u64,
    /// One published state (a screen's view with its disposition, an end's outcome).
    pub state_bytes: u64,
    /// One node's output (an HTTP body after its transformer, a script's value) or an HTTP
    /// node's request, or a CHILD node's parameters.
    pub node_output_bytes: u64,
    /// What a run hands to Temporal whole: the input of continue-as-new (definition, children,
    /// context, Back's screens, pending commands) and of a CHILD node's start.
    pub carry_bytes: u64,
    /// How deep CHILD nodes may nest (a top-level run is depth 0).
    pub max_child_depth: u32,
}

impl Default for Budgets {
    fn default() -> Self {
        Self {
            context_bytes: 1280 * 1024,
            state_bytes: 512 * 1024,
            node_output_bytes: 1024 * 1024,
            carry_bytes: DEFAULT_CARRY_BYTES,
            max_child_depth: 8,
        }
    }
}

impl Budgets {
    /// No budget at all: runs started before budgets existed keep deciding as they did.
    pub const UNBOUNDED: Budgets = Budgets {
        context_bytes: u64::MAX,
        state_bytes: u64::MAX,
        node_output_bytes: u64::MAX,
        carry_bytes: u64::MAX,
        max_child_depth: u32::MAX,
    };

    pub fn limit(&self, b: Budget) -> u64 {
        match b {
            Budget::Context => self.context_bytes,
            Budget::State => self.state_bytes,
            Budget::NodeOutput => self.node_output_bytes,
            Budget::Carry => self.carry_bytes,
            Budget::ChildDepth => self.max_child_depth as u64,
        }
    }

    /// `Err` naming the budget when `size` is over it.
    pub fn check(&self, b: Budget, node: &str, what: Measured, size: u64) -> Result<(), OverBudget> {
        let limit = self.limit(b);
        if size <= limit {
            return Ok(());
        }
        Err(OverBudget {
            node: node.to_string(),
            budget: b,
            what,
            size,
            limit,
        })
    }
}

/// One of a run's budgets.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Budget {
    Context,
    State,
    NodeOutput,
    Carry,
    ChildDepth,
}

impl Budget {
    /// The gateway flag that sets it.
    pub fn flag(self) -> &'static str {
        match self {
            Budget::Context => "--max-context-bytes",
            Budget::State => "--max-state-bytes",
            Budget::NodeOutput => "--max-node-output-bytes",
            Budget::Carry => "--max-carry-bytes",
            Budget::ChildDepth => "--max-child-depth",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Budget::Context => "context budget",
            Budget::State => "state budget",
            Budget::NodeOutput => "node output budget",
            Budget::Carry => "carry budget",
            Budget::ChildDepth => "child depth bound",
        }
    }
}

/// What was measured against a budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measured {
    Output,
    Request,
    ChildParams,
    Context,
    View,
    Disposition,
    State,
    /// What continue-as-new would carry.
    Carry,
    /// A CHILD node's start input.
    ChildStart,
    ChildDepth,
}

impl Measured {
    fn phrase(self) -> &'static str {
        match self {
            Measured::Output => "its output is",
            Measured::Request => "its request is",
            Measured::ChildParams => "the child's parameters are",
            Measured::Context => "the run's context would be",
            Measured::View => "its screen is",
            Measured::Disposition => "its disposition is",
            Measured::State => "the state it would publish is",
            Measured::Carry => "what the run would carry into its next history (continue-as-new) is",
            Measured::ChildStart => "the child's start (definitions and parameters) is",
            Measured::ChildDepth => "the child would run at depth",
        }
    }
}

/// A run that would exceed a budget: names the node, what was measured and the budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverBudget {
    pub node: String,
    pub budget: Budget,
    pub what: Measured,
    pub size: u64,
    pub limit: u64,
}

impl fmt::Display for OverBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (node, what, budget, flag) = (&self.node, self.what.phrase(), self.budget.name(), self.budget.flag());
        if self.budget == Budget::ChildDepth {
            return write!(
                f,
                "node {node:?}: {what} {}, over the {budget} of {} ({flag}); a CHILD cycle?",
                self.size, self.limit
            );
        }
        write!(
            f,
            "node {node:?}: {what} {} bytes, over the {budget} of {} bytes ({flag})",
            grouped(self.size),
            grouped(self.limit)
        )
    }
}

impl std::error::Error for OverBudget {}

/// What a definition shows of its size before any run: the errors that refuse it at publish
/// when a run of it could not stay within `b` whatever it did. `def` is compiled (node
/// references inlined) and `children` are the definitions its CHILD nodes would pin.
pub fn check_definition(
    def: &Definition,
    children: &BTreeMap<String, Definition>,
    b: &Budgets,
) -> Vec<ValidationError> {
    let mut errors = Vec::new();
    let mut refuse = |node: Option<&str>, field: &str, message: String| {
        errors.push(ValidationError {
            node: node.map(str::to_string),
            field: field.to_string(),
            message,
        })
    };
    let carried = json_len(def) + json_len(children);
    let room = b.carry_bytes.saturating_sub(b.context_bytes);
    if carried > room {
        refuse(
            None,
            ".",
            format!(
                "the definition and the child definitions it pins are {} bytes: beside a full context ({} bytes, \
                 --max-context-bytes) a run could not continue as new within the carry budget of {} bytes \
                 (--max-carry-bytes)",
                grouped(carried),
                grouped(b.context_bytes),
                grouped(b.carry_bytes)
            ),
        );
    }
    let enums = json_len(&def.enum_store);
    if enums > b.context_bytes {
        refuse(
            None,
            "enumStore",
            format!(
                "is {} bytes, and every run's context holds it: over the context budget of {} bytes \
                 (--max-context-bytes)",
                grouped(enums),
                grouped(b.context_bytes)
            ),
        );
    }
    for (name, entry) in &def.states {
        let (field, size, budget) = match &entry.node {
            Some(Node::Instruction(i)) => {
                let at_least = json_len(&i.layout_id) + json_len(&i.input_options) + json_len(&i.disposition);
                ("node.inputOptions", at_least, Budget::State)
            }
            Some(Node::Success(s)) => ("node.disposition", json_len(&s.disposition), Budget::State),
            Some(Node::Failure(f)) => ("node.disposition", json_len(&f.disposition), Budget::State),
            Some(Node::Http(h)) => ("node.body", json_len(&h.body), Budget::NodeOutput),
            _ => continue,
        };
        let limit = b.limit(budget);
        if size > limit {
            refuse(
                Some(name),
                field,
                format!(
                    "is {} bytes before anything is added to it: over the {} of {} bytes ({})",
                    grouped(size),
                    budget.name(),
                    grouped(limit),
                    budget.flag()
                ),
            );
        }
    }
    errors
}

/// `check_definition` for a definition as it would be published among `reg`'s: node
/// references inlined, the children it would pin alongside (a child not published yet is
/// refused at start, not here).
pub fn check_in(def: &Definition, reg: &Registry, b: &Budgets) -> Vec<ValidationError> {
    let Ok(compiled) = reg.compile(def) else {
        // An unresolved node reference: validation names it.
        return vec![];
    };
    let children = reg.children_of(&compiled).unwrap_or_default();
    check_definition(&compiled, &children, b)
}

/// `1234567` as `1,234,567`.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The length of `v` as compact JSON, without building the text.
pub fn json_len<T: Serialize + ?Sized>(v: &T) -> u64 {
    struct Count(u64);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len() as u64;
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Serializing a `Value` or a derived type cannot fail; a failure would count short.
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_len_is_the_compact_texts_length() {
        for v in [json!(null), json!({"a": [1, "é\n"], "b": {}}), json!("x".repeat(1000))] {
            assert_eq!(json_len(&v), serde_json::to_string(&v).unwrap().len() as u64, "{v}");
        }
    }

    #[test]
    fn an_over_budget_message_names_the_node_the_budget_its_flag_and_both_sizes() {
        let e = Budgets::default()
            .check(Budget::Context, "fetch3", Measured::Context, 2_700_123)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "node \"fetch3\": the run's context would be 2,700,123 bytes, over the context budget of 1,310,720 \
             bytes (--max-context-bytes)"
        );
        assert!(
            Budgets::default()
                .check(Budget::State, "s", Measured::View, 524_288)
                .is_ok()
        );
        let deep = Budgets::default()
            .check(Budget::ChildDepth, "spawn", Measured::ChildDepth, 9)
            .unwrap_err();
        assert!(
            deep.to_string()
                .contains("depth 9, over the child depth bound of 8 (--max-child-depth)"),
            "{deep}"
        );
    }

    #[test]
    fn a_definition_whose_static_screen_or_size_cannot_fit_is_refused_naming_node_and_budget() {
        let options: Vec<_> = (0..20_000)
            .map(|i| json!({"displayValue": format!("option {i}"), "value": i}))
            .collect();
        let def: Definition = serde_json::from_value(json!({
            "id": "huge", "startNode": "pick",
            "states": {
                "pick": {"node": {"type": "INSTRUCTION", "layoutId": "l", "inputOptions": [
                    {"id": "w", "tags": {"values": ["ui.dropdown"]}, "possibleValues": options}]},
                    "nextNode": "done"},
                "done": {"node": {"type": "SUCCESS"}}
            }
        }))
        .unwrap();
        let errors = check_definition(&def, &BTreeMap::new(), &Budgets::default());
        let e = errors
            .iter()
            .find(|e| e.node.as_deref() == Some("pick"))
            .expect("{errors:?}");
        assert_eq!(e.field, "node.inputOptions");
        assert!(
            e.message
                .contains("over the state budget of 524,288 bytes (--max-state-bytes)"),
            "{e}"
        );
        // Screens may be that large here, but the definition cannot sit beside a full context.
        let wide_screens = Budgets {
            state_bytes: 1_000_000,
            ..Budgets::default()
        };
        let errors = check_definition(&def, &BTreeMap::new(), &wide_screens);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].field == "." && errors[0].message.contains("(--max-carry-bytes)"),
            "{errors:?}"
        );
    }

    #[test]
    fn the_defaults_leave_room_under_temporals_payload_limit() {
        let b = Budgets::default();
        assert!(b.node_output_bytes <= b.context_bytes && b.context_bytes < b.carry_bytes);
        assert!(b.state_bytes < b.carry_bytes);
        assert!(b.carry_bytes + 128 * 1024 <= TEMPORAL_PAYLOAD_LIMIT);
    }
}
