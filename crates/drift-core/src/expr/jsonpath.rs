//! RFC 9535 JSONPath for node parameters (`$.params.x`, `$.fetch_order.amount`).

use serde_json::Value;
use serde_json_path::JsonPath;

pub fn parse(path: &str) -> Result<JsonPath, String> {
    JsonPath::parse(path).map_err(|e| e.to_string())
}

/// The first node the path selects, or `null` when it selects nothing.
pub fn select(path: &str, root: &Value) -> Result<Value, String> {
    let p = parse(path)?;
    Ok(p.query(root).first().cloned().unwrap_or(Value::Null))
}

/// Resolves a parameter value: strings starting with `$` are paths, the rest are literals.
pub fn resolve(param: &Value, root: &Value) -> Result<Value, String> {
    match param {
        Value::String(s) if s.starts_with('$') => select(s, root),
        other => Ok(other.clone()),
    }
}
