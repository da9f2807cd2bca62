//! The definition language as JSON Schema (2020-12), generated from the same types that parse
//! definitions: what editors complete and check against, and what the API document embeds.

use serde_json::{Map, Value, json};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(components(schemas(super::Definition, super::NodeResource)))]
struct Dsl;

/// Where generated schemas refer to each other.
const COMPONENTS: &str = "#/components/schemas/";

/// The language's schemas by name (`Definition`, `NodeResource`, every node kind…), referring
/// to each other under `#/components/schemas/`, each node kind closed with its `type` tag.
pub fn components() -> Map<String, Value> {
    let doc = serde_json::to_value(Dsl::openapi()).expect("schemas serialize");
    let generated = doc["components"]["schemas"].as_object().cloned().unwrap_or_default();
    let mut schemas = generated.clone();
    for s in schemas.values_mut() {
        close_tagged(s, &generated);
    }
    schemas
}

/// The whole language as one standalone document: `Definition` at the root, every other type
/// under `$defs`.
pub fn definition_json_schema() -> Value {
    let mut defs = Value::Object(components());
    rewrite_refs(&mut defs, COMPONENTS, "#/$defs/");
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "/v3/schemas/definition.json",
        "title": "Drift workflow definition",
        "$ref": "#/$defs/Definition",
        "$defs": defs,
    })
}

/// A serde internally tagged enum is generated as `oneOf` of `allOf: [{$ref: Struct},
/// {properties: {type: …}}]`, which no document can satisfy when `Struct` refuses unknown
/// fields (it refuses `type`), and whose errors would all point at the enum's object. Each
/// variant becomes a copy of `Struct` with the tag added, chosen by the tag (`if`/`then`), so a
/// wrong field is reported at that field.
///
/// An optional reference (`oneOf: [{$ref}, {type: null}]`) becomes the reference: authors leave
/// such a field out rather than write `null`, and a validator reports a mistake inside a
/// `oneOf` at the `oneOf`, not where it is.
fn close_tagged(s: &mut Value, all: &Map<String, Value>) {
    if let Some(chosen) = by_tag(s, all) {
        *s = chosen;
        return;
    }
    if let Some(r) = optional_ref(s) {
        *s = r;
    }
    match s {
        Value::Object(o) => o.values_mut().for_each(|v| close_tagged(v, all)),
        Value::Array(a) => a.iter_mut().for_each(|v| close_tagged(v, all)),
        _ => {}
    }
}

fn optional_ref(s: &Value) -> Option<Value> {
    let [r, null] = s.get("oneOf")?.as_array()?.as_slice() else {
        return None;
    };
    (r.get("$ref").is_some() && null == &json!({"type": "null"})).then(|| r.clone())
}

fn by_tag(s: &Value, all: &Map<String, Value>) -> Option<Value> {
    let variants = s.get("oneOf")?.as_array()?;
    let mut tag_name = None;
    let (mut tags, mut cases) = (Vec::new(), Vec::new());
    for v in variants {
        let Variant { tag, value, closed } = tagged_variant(v, all)?;
        tags.push(value.clone());
        cases.push(json!({
            "if": {"properties": {tag.clone(): {"const": value}}, "required": [tag]},
            "then": closed,
        }));
        tag_name = Some(tag);
    }
    let tag = tag_name?;
    let mut out = json!({
        "type": "object",
        "required": [tag],
        "properties": {tag.clone(): {"enum": tags}},
        "allOf": cases,
    });
    if let Some(d) = s.get("description") {
        out["description"] = d.clone();
    }
    Some(out)
}

/// One variant of a tagged enum: its tag's name and value, and its struct closed with the tag.
struct Variant {
    tag: String,
    value: Value,
    closed: Value,
}

fn tagged_variant(s: &Value, all: &Map<String, Value>) -> Option<Variant> {
    let [target, tag_part] = s.get("allOf")?.as_array()?.as_slice() else {
        return None;
    };
    let [(tag, tag_schema)] = tag_part.get("properties")?.as_object()?.iter().collect::<Vec<_>>()[..] else {
        return None;
    };
    let [value] = tag_schema.get("enum")?.as_array()?.as_slice() else {
        return None;
    };
    let name = target.get("$ref")?.as_str()?.strip_prefix(COMPONENTS)?;
    let mut closed = all.get(name)?.clone();
    let o = closed.as_object_mut()?;
    o.entry("properties")
        .or_insert_with(|| json!({}))
        .as_object_mut()?
        .insert(tag.clone(), tag_schema.clone());
    o.entry("required")
        .or_insert_with(|| json!([]))
        .as_array_mut()?
        .insert(0, json!(tag));
    Some(Variant {
        tag: tag.clone(),
        value: value.clone(),
        closed,
    })
}

fn rewrite_refs(v: &mut Value, from: &str, to: &str) {
    match v {
        Value::Object(o) => {
            if let Some(Value::String(r)) = o.get_mut("$ref")
                && let Some(name) = r.strip_prefix(from)
            {
                *r = format!("{to}{name}");
            }
            o.values_mut().for_each(|v| rewrite_refs(v, from, to));
        }
        Value::Array(a) => a.iter_mut().for_each(|v| rewrite_refs(v, from, to)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn validator(root: &str) -> jsonschema::Validator {
        let mut schema = definition_json_schema();
        schema["$ref"] = json!(format!("#/$defs/{root}"));
        jsonschema::draft202012::new(&schema).expect("the generated schema is valid JSON Schema")
    }

    fn files(dir: &str) -> Vec<(PathBuf, Value)> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(dir);
        let mut out: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .map(|p| {
                let v = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
                (p, v)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Whatever the parser takes, the schema an editor checks against takes too.
    #[test]
    fn every_example_and_fixture_the_parser_accepts_fits_the_schema() {
        let (workflows, nodes) = (validator("Definition"), validator("NodeResource"));
        let mut checked = 0;
        for dir in ["examples", "tests/fixtures"] {
            for (path, v) in files(dir) {
                if serde_json::from_value::<super::super::Definition>(v.clone()).is_ok() {
                    let errors: Vec<String> = workflows
                        .iter_errors(&v)
                        .map(|e| format!("{e} at {}", e.instance_path()))
                        .collect();
                    assert!(errors.is_empty(), "{}: {errors:?}", path.display());
                    checked += 1;
                }
            }
        }
        for (path, v) in files("examples/nodes") {
            serde_json::from_value::<super::super::NodeResource>(v.clone()).unwrap();
            let errors: Vec<String> = nodes.iter_errors(&v).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{}: {errors:?}", path.display());
            checked += 1;
        }
        assert!(checked >= 10, "only {checked} files checked");
    }

    /// What the parser refuses the schema refuses too, and says where.
    #[test]
    fn a_misspelt_field_an_unknown_node_type_and_a_missing_url_are_marked_where_they_are() {
        let v = validator("Definition");
        let base = |node: Value| json!({"id": "x", "startNode": "a", "states": {"a": {"node": node}}});
        for (node, at) in [
            (
                json!({"type": "HTTP", "url": "https://x", "timeoutMS": 5}),
                "/states/a/node",
            ),
            (json!({"type": "HTTPS", "url": "https://x"}), "/states/a/node"),
            (json!({"type": "HTTP"}), "/states/a/node"),
            (json!({"type": "HTTP", "url": 5}), "/states/a/node/url"),
        ] {
            let doc = base(node.clone());
            assert!(
                serde_json::from_value::<super::super::Definition>(doc.clone()).is_err(),
                "{node}"
            );
            let paths: Vec<String> = v.iter_errors(&doc).map(|e| e.instance_path().to_string()).collect();
            assert!(paths.iter().any(|p| p.starts_with(at)), "{node}: {paths:?}");
        }
        assert!(v.is_valid(&base(json!({"type": "HTTP", "url": "https://x", "timeoutMs": 5}))));
    }
}
