//! Rhai scripts for SCRIPT nodes, branch rules, transformers, dynamic values and `{{ }}`
//! templates. The engine is sandboxed (no modules, no eval, no printing, no clock, no
//! randomness) and bounded, so the same script gives the same answer on every replay and can
//! run inside workflow code.

use rhai::{AST, Dynamic, Engine, Scope};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

const MAX_OPERATIONS: u64 = 200_000;
const MAX_SIZE: usize = 64 * 1024;
const AST_CACHE_LIMIT: usize = 2048;

static ENGINE: LazyLock<Engine> = LazyLock::new(|| {
    let mut e = Engine::new();
    e.set_max_operations(MAX_OPERATIONS)
        .set_max_call_levels(32)
        .set_max_expr_depths(64, 32)
        .set_max_string_size(MAX_SIZE)
        .set_max_array_size(10_000)
        .set_max_map_size(10_000)
        .set_max_variables(256)
        .set_max_functions(64)
        .set_max_modules(0)
        .set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new())
        .disable_symbol("eval")
        .on_print(|_| {})
        .on_debug(|_, _, _| {});
    e
});

static AST_CACHE: LazyLock<Mutex<HashMap<String, Arc<AST>>>> = LazyLock::new(Default::default);

/// Compiles (or fetches from the cache) a script.
pub fn compile(src: &str) -> Result<Arc<AST>, String> {
    if let Some(ast) = AST_CACHE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(src)
    {
        return Ok(ast.clone());
    }
    let ast = Arc::new(ENGINE.compile(src).map_err(|e| e.to_string())?);
    let mut cache = AST_CACHE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if cache.len() >= AST_CACHE_LIMIT {
        cache.clear();
    }
    cache.insert(src.to_string(), ast.clone());
    Ok(ast)
}

/// Variables a script can see.
pub struct Vars<'a> {
    /// The whole `_global` context.
    pub ctx: &'a Value,
    /// The current node's resolved parameters.
    pub input: &'a Value,
    /// Extra variables (e.g. `response` for transformers).
    pub extra: &'a [(&'a str, &'a Value)],
}

fn to_dynamic(v: &Value) -> Result<Dynamic, String> {
    rhai::serde::to_dynamic(v).map_err(|e| e.to_string())
}

/// Runs a script and returns its value as JSON.
pub fn eval(src: &str, vars: &Vars) -> Result<Value, String> {
    let ast = compile(src)?;
    let mut scope = Scope::new();
    scope.push_constant("ctx", to_dynamic(vars.ctx)?);
    scope.push_constant("params", to_dynamic(vars.ctx.get("params").unwrap_or(&Value::Null))?);
    scope.push_constant(
        "enums",
        to_dynamic(vars.ctx.get("_enum_store").unwrap_or(&Value::Null))?,
    );
    scope.push_constant("input", to_dynamic(vars.input)?);
    for (name, value) in vars.extra {
        scope.push_constant(*name, to_dynamic(value)?);
    }
    let out: Dynamic = ENGINE
        .eval_ast_with_scope(&mut scope, &ast)
        .map_err(|e| e.to_string())?;
    rhai::serde::from_dynamic::<Value>(&out).map_err(|e| e.to_string())
}

/// A branch rule: true only for a boolean `true`.
pub fn eval_rule(src: &str, vars: &Vars) -> Result<bool, String> {
    match eval(src, vars)? {
        Value::Bool(b) => Ok(b),
        other => Err(format!("rule must give true or false, gave {other}")),
    }
}

/// Splits a template into literal text and `{{ expr }}` parts.
fn parts(src: &str) -> Result<Vec<(bool, &str)>, String> {
    let mut out = Vec::new();
    let mut rest = src;
    while let Some(start) = rest.find("{{") {
        out.push((false, &rest[..start]));
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("unclosed '{{{{' in template {src:?}"))?;
        out.push((true, after[..end].trim()));
        rest = &after[end + 2..];
    }
    out.push((false, rest));
    Ok(out)
}

/// Checks that every `{{ }}` expression in a template compiles.
pub fn check_template(src: &str) -> Result<(), String> {
    for (is_expr, text) in parts(src)? {
        if is_expr {
            compile(text).map_err(|e| format!("template expression {text:?} does not compile: {e}"))?;
        }
    }
    Ok(())
}

/// Renders a template to a string.
pub fn render(src: &str, vars: &Vars) -> Result<String, String> {
    let mut out = String::new();
    for (is_expr, text) in parts(src)? {
        if !is_expr {
            out.push_str(text);
            continue;
        }
        match eval(text, vars)? {
            Value::String(s) => out.push_str(&s),
            Value::Null => {}
            v => out.push_str(&v.to_string()),
        }
    }
    Ok(out)
}

/// What a value inserted into a URL's path must not carry raw: anything that would end its
/// segment, start a query or fragment, or escape (`/`, `\\`, `?`, `#`, `%`).
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'/')
    .add(b'\\')
    .add(b'%');

/// Renders a URL template. A value that lands in the path (after the scheme and host) is one
/// path segment, percent-encoded, so `../../admin` stays a segment and cannot walk the path;
/// `.` and `..` are refused. A value at the very start (a base URL such as `apiBase`) is taken
/// as it is.
pub fn render_url(src: &str, vars: &Vars) -> Result<String, String> {
    let mut out = String::new();
    for (is_expr, text) in parts(src)? {
        if !is_expr {
            out.push_str(text);
            continue;
        }
        let value = match eval(text, vars)? {
            Value::String(s) => s,
            Value::Null => String::new(),
            v => v.to_string(),
        };
        let in_path = out
            .split_once("://")
            .is_some_and(|(_, rest)| rest.contains('/') && !rest.contains('?') && !rest.contains('#'));
        let in_query = out.contains('?');
        if in_path {
            if value == "." || value == ".." {
                return Err(format!("url: {text:?} gave {value:?}, which may not be a path segment"));
            }
            out.extend(percent_encoding::utf8_percent_encode(&value, PATH_SEGMENT));
        } else if in_query {
            out.extend(percent_encoding::utf8_percent_encode(
                &value,
                percent_encoding::NON_ALPHANUMERIC,
            ));
        } else {
            out.push_str(&value);
        }
    }
    Ok(out)
}

/// Renders every string inside a JSON value. A string that is exactly one `{{ expr }}` becomes
/// the expression's value with its own JSON type.
pub fn render_value(v: &Value, vars: &Vars) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) => {
            let p = parts(s)?;
            if let [(false, ""), (true, expr), (false, "")] = p.as_slice() {
                eval(expr, vars)?
            } else {
                Value::String(render(s, vars)?)
            }
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| render_value(x, vars)).collect::<Result<_, _>>()?),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| Ok((k.clone(), render_value(x, vars)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn url_values_in_the_path_stay_one_segment() {
        let ctx = json!({"base": "http://api.local/v1", "id": "../../v3/workflow/x", "q": "a&b=c", "dot": ".."});
        let input = json!({});
        let vars = Vars {
            ctx: &ctx,
            input: &input,
            extra: &[],
        };
        let url = render_url("{{ ctx.base }}/orders/{{ ctx.id }}?x={{ ctx.q }}", &vars).unwrap();
        assert_eq!(
            url,
            "http://api.local/v1/orders/..%2F..%2Fv3%2Fworkflow%2Fx?x=a%26b%3Dc"
        );
        let parsed = url::Url::parse(&url).unwrap();
        assert_eq!(parsed.path(), "/v1/orders/..%2F..%2Fv3%2Fworkflow%2Fx");
        assert!(render_url("{{ ctx.base }}/orders/{{ ctx.dot }}", &vars).is_err());
    }

    fn vars<'a>(ctx: &'a Value, input: &'a Value) -> Vars<'a> {
        Vars { ctx, input, extra: &[] }
    }

    #[test]
    fn script_sees_params_and_node_input() {
        let ctx = json!({"params": {"amount": 40}});
        let input = json!({"factor": 2});
        let v = eval("params.amount * input.factor + 2", &vars(&ctx, &input)).unwrap();
        assert_eq!(v, json!(82));
    }

    #[test]
    fn endless_loop_is_stopped_by_the_operation_limit() {
        let ctx = json!({});
        let err = eval("let x = 0; loop { x += 1; }", &vars(&ctx, &Value::Null)).unwrap_err();
        assert!(err.to_lowercase().contains("too many operations"), "{err}");
    }

    #[test]
    fn scripts_cannot_import_modules_or_eval() {
        let ctx = json!({});
        assert!(eval(r#"import "fs" as fs; 1"#, &vars(&ctx, &Value::Null)).is_err());
        assert!(compile(r#"eval("1+1")"#).is_err());
    }

    #[test]
    fn whole_template_keeps_its_json_type() {
        let ctx = json!({"params": {"orderId": "o-1", "n": 3}});
        let body = json!({"id": "{{ params.orderId }}", "count": "{{ params.n }}", "msg": "order {{params.orderId}}!"});
        let out = render_value(&body, &vars(&ctx, &Value::Null)).unwrap();
        assert_eq!(out, json!({"id": "o-1", "count": 3, "msg": "order o-1!"}));
    }

    #[test]
    fn unclosed_template_is_an_error() {
        assert!(check_template("hello {{ params.x").is_err());
    }
}
