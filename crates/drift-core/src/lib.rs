//! Drift's pure core, depended on by the server crate and depending on no I/O: the expression
//! language (`expr`), the workflow DSL with its validation and graph (`dsl`), and the
//! interpreter that turns a workflow's state and an input into its next step (`engine`), and the
//! domain every adapter and transport shares (`domain`: ids, states, commands, refusals).
//!
//! Layers, each depending only on those before it: `expr` ← `dsl` ← `engine` ← `domain`;
//! `digest`, `redact`, `links` (answer-link tokens) and `metrics` (every series Drift exports, named
//! once) are leaves.
#![forbid(unsafe_code)]

pub mod digest;
pub mod domain;
pub mod dsl;
pub mod engine;
pub mod expr;
pub mod links;
pub mod metrics;
pub mod redact;
pub mod session;
pub mod simulate;
