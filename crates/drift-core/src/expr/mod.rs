//! The expression language, a leaf both `dsl` (validation) and `engine` (evaluation) use: Rhai
//! scripts, `{{ }}` templates and RFC 9535 JSONPath. It knows nothing of workflows.

pub mod jsonpath;
pub mod script;
