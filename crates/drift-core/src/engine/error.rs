//! Why a node failed. Its text is what the run's `_error.message` and a FAILED state show, so
//! the wording is part of the product; the variants are what code decides on.

use super::MAX_PURE_STEPS;
use std::fmt;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NodeError {
    #[error("no state named {0:?}")]
    NoState(String),
    #[error("state {0:?} has no resolved node")]
    Unresolved(String),
    #[error("state {0:?} has no nextNode")]
    NoNextNode(String),
    #[error("{0:?} is not an HTTP node")]
    NotHttp(String),
    #[error("only HTTP and SCRIPT nodes can be executed, {node:?} is {kind}")]
    NotExecutable { node: String, kind: &'static str },
    #[error("more than {MAX_PURE_STEPS} script/branch steps without reaching a stable state")]
    Endless,
    #[error("screen {0:?} was not answered in time")]
    ScreenTimedOut(String),
    /// The HTTP activity failed (its message is already safe to show).
    #[error("HTTP node {node:?} failed: {message}")]
    Http { node: String, message: String },
    /// A CHILD node's workflow did not start (the message says why).
    #[error("{0}")]
    Child(String),
    /// An expression (script, rule, template, JSONPath) or a value it produced was refused.
    #[error("{at}{message}")]
    Expression { at: Where, message: String },
    /// The node would take the run over one of its byte budgets.
    #[error("{0}")]
    OverBudget(super::OverBudget),
}

/// Which part of a node an expression belongs to.
#[derive(Debug, Clone, PartialEq)]
pub enum Where {
    Script,
    Rule(usize),
    Transformer,
    Parameter(String),
    DynamicValues(String),
    Until(Option<String>),
    Url,
    /// A template whose own message says enough.
    Template,
}

impl fmt::Display for Where {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Script => f.write_str("script failed: "),
            Self::Rule(i) => write!(f, "choice {i} rule failed: "),
            Self::Transformer => f.write_str("transformer failed: "),
            Self::Parameter(k) => write!(f, "parameter {k}: "),
            Self::DynamicValues(id) => write!(f, "possibleDynamicValues.{id}: "),
            Self::Until(None) => f.write_str("until: "),
            Self::Until(Some(text)) => write!(f, "until {text:?}: "),
            Self::Url => f.write_str("url: "),
            Self::Template => Ok(()),
        }
    }
}

impl Where {
    /// Wraps an expression layer's message.
    pub fn err(self, message: impl fmt::Display) -> NodeError {
        NodeError::Expression {
            at: self,
            message: message.to_string(),
        }
    }
}

/// Templates' own messages name what failed.
impl From<String> for NodeError {
    fn from(message: String) -> Self {
        Where::Template.err(message)
    }
}
