//! The API's contract, generated from the handlers and the types they read and write: OpenAPI
//! 3.1 at `/v3/openapi.json`, the definition language's JSON Schema at
//! `/v3/schemas/definition.json`, and the reference page at `/docs` (Swagger UI, inside the
//! binary). The router records what it mounts, and a test holds the two together.

use super::definitions::{ActivateBody, SimulateBody, ValidateBody};
use super::error::ErrorBody;
use super::http::{
    Accepted, Deliveries, NotDelivered, ReplayBody, Replayed, ResendAnswer, ResendOutcome, Started, Ticket,
};
use axum::Json;
use drift_core::domain::{AttemptRecord, AttemptState, Links, WorkflowState, WorkflowStatus};
use drift_service::{BackBody, ExecuteBody, IssuedLink, LinkBody, LinkScreen, LinkStatus, Mode, ResumeBody, StartBody};
use serde_json::Value;
use std::sync::OnceLock;
use utoipa::openapi::OpenApi as Document;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Drift",
        description = "Durable screen flows on Temporal: start a workflow, answer its screens, and get the next one \
                       synchronously, asynchronously (202, then signed webhooks) or live (SSE, WebSocket; see \
                       `/v3/asyncapi.json`). Every error is `{code, message, details?}`.",
    ),
    paths(
        super::http::start,
        super::http::resume_doc,
        super::http::back_doc,
        super::http::execute_doc,
        super::http::get_state,
        super::http::terminate,
        super::http::deliveries,
        super::http::timeline,
        super::http::resend,
        super::http::replay,
        super::http::runs,
        super::links::create,
        super::links::revoke,
        super::sse::events,
        super::ws::upgrade,
        super::http::ticket,
        super::definitions::list,
        super::definitions::create,
        super::definitions::read,
        super::definitions::save,
        super::definitions::delete_snapshot,
        super::definitions::publish,
        super::definitions::activate,
        super::definitions::versions,
        super::definitions::graph,
        super::definitions::validate,
        super::definitions::simulate,
        super::healthz,
        super::readyz,
        super::metrics_text,
        openapi_json,
        super::asyncapi::asyncapi_json,
        definition_schema,
    ),
    components(schemas(
        WorkflowState, WorkflowStatus, Links, Started, Accepted, Ticket, Deliveries, ResendAnswer, ResendOutcome, ReplayBody, Replayed, NotDelivered, AttemptRecord, drift_core::domain::runs::RunsPage, drift_core::domain::runs::RunSummary, drift_core::domain::timeline::Timeline, drift_core::domain::timeline::TimelineState, drift_core::domain::timeline::Via, drift_core::domain::timeline::RequestKind,
        AttemptState, StartBody, ResumeBody, BackBody, ExecuteBody, Mode, ErrorBody, ActivateBody, ValidateBody, SimulateBody,
        LinkBody, IssuedLink, LinkScreen, LinkStatus,
    )),
    modifiers(&Security),
    tags(
        (name = "workflows", description = "Start, answer, read and end workflows"),
        (name = "live", description = "Follow workflows as they change: SSE, WebSocket, tickets"),
        (name = "definitions", description = "Workflow definitions: SNAPSHOT, publish, activate, versions, graph, simulate"),
        (name = "nodes", description = "Reusable node definitions, managed like workflow definitions"),
        (name = "operations", description = "Health, readiness, metrics and this document"),
    )
)]
struct Api;

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut Document) {
        let c = doc.components.get_or_insert_with(Default::default);
        let bearer = |format: Option<&str>, what: &str| {
            let mut h = Http::new(HttpAuthScheme::Bearer);
            h.bearer_format = format.map(str::to_string);
            h.description = Some(what.to_string());
            SecurityScheme::Http(h)
        };
        c.add_security_scheme(
            "apiKey",
            bearer(
                None,
                "An API key (`drift keys create`) as `Authorization: Bearer …`; its scopes are listed per operation",
            ),
        );
        c.add_security_scheme(
            "jwt",
            bearer(
                Some("JWT"),
                "A JWT from your identity provider (HS256 or RS256 as configured); `tenant`, `scope` claims",
            ),
        );
        c.add_security_scheme(
            "streamToken",
            SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Query(
                utoipa::openapi::security::ApiKeyValue::with_description(
                    "token",
                    "A start's `streamToken`: reads one workflow",
                ),
            )),
        );
    }
}

/// The document: what the handlers declare, the definitions operations repeated for nodes,
/// and the definition language's schemas (kept as JSON: they use JSON Schema keywords, such as
/// `if`/`then`, that utoipa's typed model does not hold).
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = serde_json::to_value(Api::openapi()).expect("the document serializes");
        nodes_like_definitions(&mut doc);
        let schemas = doc["components"]["schemas"].as_object_mut().expect("schemas");
        schemas.extend(drift_core::dsl::schema::components());
        doc
    })
}

/// `/v3/nodes` works as `/v3/definitions` does (without graph, validate and simulate): the same
/// operations under the `nodes` tag, with their own operation ids.
fn nodes_like_definitions(doc: &mut Value) {
    let paths = doc["paths"].as_object_mut().expect("paths");
    let copies: Vec<(String, Value)> = paths
        .iter()
        .filter(|(p, _)| {
            p.starts_with("/v3/definitions") && !["/graph", "/validate", "/simulate"].iter().any(|s| p.ends_with(s))
        })
        .map(|(p, item)| {
            let mut item = item.clone();
            for op in item.as_object_mut().into_iter().flat_map(|o| o.values_mut()) {
                op["tags"] = serde_json::json!(["nodes"]);
                if let Some(id) = op["operationId"].as_str() {
                    op["operationId"] = node_operation(id).into();
                }
                for at in [
                    "/requestBody/content/application~1json/schema/$ref",
                    "/responses/200/content/application~1json/schema/$ref",
                    "/responses/201/content/application~1json/schema/$ref",
                ] {
                    if let Some(r) = op.pointer_mut(at)
                        && r == "#/components/schemas/Definition"
                    {
                        *r = "#/components/schemas/NodeResource".into();
                    }
                }
            }
            (p.replacen("/v3/definitions", "/v3/nodes", 1), item)
        })
        .collect();
    paths.extend(copies);
}

/// `listDefinitions` → `listNodes`, `getDefinition` → `getNode`, `deleteSnapshot` →
/// `deleteNodeSnapshot`.
fn node_operation(id: &str) -> String {
    match id {
        "deleteSnapshot" => "deleteNodeSnapshot".into(),
        id => id
            .replace("Definitions", "Nodes")
            .replace("Definition", "Node")
            .replace("definition", "node"),
    }
}

/// The API document (OpenAPI 3.1)
#[utoipa::path(get, path = "/v3/openapi.json", tag = "operations", operation_id = "openapi",
    responses((status = 200, description = "This document", body = Object)))]
pub async fn openapi_json() -> Json<&'static Value> {
    Json(document())
}

/// The definition language (JSON Schema 2020-12)
///
/// For editors: completion and inline errors on definitions, from the types that parse them.
#[utoipa::path(get, path = "/v3/schemas/definition.json", tag = "operations", operation_id = "definitionSchema",
    responses((status = 200, description = "The schema", body = Object)))]
pub async fn definition_schema() -> Json<Value> {
    Json(drift_core::dsl::schema::definition_json_schema())
}

/// `/docs`: Swagger UI on the document, its assets inside the binary (no CDN: it works
/// offline).
pub fn reference_page<S: Clone + Send + Sync + 'static>() -> axum::Router<S> {
    utoipa_swagger_ui::SwaggerUi::new("/docs")
        .config(utoipa_swagger_ui::Config::new(["/v3/openapi.json"]).try_it_out_enabled(true))
        .into()
}

/// The operations the document names, as `(METHOD, path)`.
#[cfg(test)]
pub fn documented() -> Vec<(axum::http::Method, String)> {
    use axum::http::Method;
    let doc = document();
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for method in item.as_object().into_iter().flat_map(|o| o.keys()) {
            if let Ok(m) = Method::from_bytes(method.to_ascii_uppercase().as_bytes()) {
                out.push((m, path.clone()));
            }
        }
    }
    out
}

/// Every `$ref` in a document.
#[cfg(test)]
pub fn refs_in(v: &Value) -> Vec<String> {
    match v {
        Value::Object(o) => {
            let own = o.get("$ref").and_then(Value::as_str).map(str::to_string);
            own.into_iter().chain(o.values().flat_map(refs_in)).collect()
        }
        Value::Array(a) => a.iter().flat_map(refs_in).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn as_set(routes: Vec<(axum::http::Method, String)>) -> BTreeSet<String> {
        routes.into_iter().map(|(m, p)| format!("{m} {p}")).collect()
    }

    /// A route served without its documentation, or documented but not served, fails here.
    #[test]
    fn every_api_route_the_router_serves_is_in_the_openapi_document_and_no_other() {
        let served = as_set(super::super::mounted().routes);
        let documented = as_set(documented());
        let missing: Vec<_> = served.difference(&documented).collect();
        let unserved: Vec<_> = documented.difference(&served).collect();
        assert!(missing.is_empty(), "served but not in /v3/openapi.json: {missing:?}");
        assert!(unserved.is_empty(), "documented but not served: {unserved:?}");
        assert!(served.len() >= 30, "{served:?}");
    }

    /// Clients are generated from the document: every reference resolves, every operation has
    /// its own id, and the definition language is in it.
    #[test]
    fn the_document_refers_only_to_schemas_it_has_and_names_each_operation_once() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for r in &refs_in(doc) {
            let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("{r}"));
            assert!(schemas.contains_key(name), "{r} does not resolve");
        }
        for needed in [
            "Definition",
            "NodeResource",
            "WorkflowState",
            "View",
            "ErrorBody",
            "StartBody",
        ] {
            assert!(schemas.contains_key(needed), "{needed}");
        }
        let mut ids = BTreeSet::new();
        for item in doc["paths"].as_object().unwrap().values() {
            for op in item.as_object().unwrap().values() {
                let id = op["operationId"].as_str().expect("every operation has an id");
                assert!(ids.insert(id.to_string()), "operation id {id} twice");
            }
        }
        assert!(
            ids.contains("listNodes") && ids.contains("deleteNodeSnapshot"),
            "{ids:?}"
        );
    }
}
