//! Drift's pure core, depended on by the server crate and depending on no I/O: the expression
//! language (`expr`), the workflow DSL with its validation and graph (`dsl`), and the
//! interpreter that turns a workflow's state and an input into its next step (`engine`).
//!
//! Layers, each depending only on those before it: `expr` ← `dsl` ← `engine`.
#![forbid(unsafe_code)]

pub mod dsl;
pub mod engine;
pub mod expr;
