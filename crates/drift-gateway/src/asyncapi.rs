//! The live protocols' contract: AsyncAPI 3 at `/v3/asyncapi.json`, the WebSocket's client and
//! server messages and the SSE stream's events, generated from the serde types the gateway
//! reads and writes (one message per variant of `ClientMsg` and `ServerMsg`).

use super::sse::GapEvent;
use super::ws::protocol::{ClientMsg, ServerMsg};
use axum::Json;
use drift_core::domain::WorkflowState;
use serde_json::{Map, Value, json};
use std::sync::OnceLock;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(components(schemas(ClientMsg, ServerMsg, GapEvent, WorkflowState)))]
struct Live;

const SCHEMAS: &str = "#/components/schemas/";

/// The document, built once.
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(build)
}

fn build() -> Value {
    let generated = serde_json::to_value(Live::openapi()).expect("schemas serialize");
    let mut schemas = generated["components"]["schemas"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mut messages = Map::new();
    let client = by_type(schemas.remove("ClientMsg"), "client", &schemas, &mut messages);
    let server = by_type(schemas.remove("ServerMsg"), "server", &schemas, &mut messages);
    let sse: Vec<String> = [
        (
            "state",
            "WorkflowState",
            "A state of the workflow: the SSE event `state`, its `id:` the state's `seq`, its data the \
             workflow's answer as HTTP gives it",
        ),
        (
            "gap",
            "GapEvent",
            "The SSE event `gap`: the states after `after` are no longer kept; the latest follows",
        ),
    ]
    .into_iter()
    .map(|(event, schema, summary)| {
        let name = format!("sse.{event}");
        let payload = json!({"$ref": format!("{SCHEMAS}{schema}")});
        let message = json!({"name": event, "title": format!("{event} (SSE)"), "summary": summary, "payload": payload});
        messages.insert(name.clone(), message);
        name
    })
    .collect();
    let refs = |names: &[String]| -> Map<String, Value> {
        names
            .iter()
            .map(|n| (n.clone(), json!({"$ref": format!("#/components/messages/{n}")})))
            .collect()
    };
    let on_channel = |channel: &str, names: &[String]| -> Vec<Value> {
        names
            .iter()
            .map(|n| json!({"$ref": format!("#/channels/{channel}/messages/{n}")}))
            .collect()
    };
    let both: Vec<String> = client.iter().chain(&server).cloned().collect();
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "Drift live",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Follow and drive workflows live. The WebSocket (`/v3/ws`) carries JSON text frames tagged \
                            by `type`: a client subscribes to workflows and starts, resumes, goes back and executes nodes; the \
                            gateway acknowledges by `requestId` and pushes each state. Server-Sent Events \
                            (`/v3/workflow/{id}/events`) push one workflow's states. Both resume after a seq \
                            (`since`, `Last-Event-ID`) and say `gap` when the history no longer reaches back. The \
                            HTTP calls are in `/v3/openapi.json`.",
        },
        "servers": {
            "gateway": {
                "host": "{host}",
                "protocol": "ws",
                "description": "The gateway's address (`ws` or `wss` as its HTTP is `http` or `https`)",
                "variables": {"host": {"default": "localhost:8080"}},
                "security": [
                    {"$ref": "#/components/securitySchemes/apiKey"},
                    {"$ref": "#/components/securitySchemes/ticket"},
                    {"$ref": "#/components/securitySchemes/streamToken"},
                ],
            },
        },
        "channels": {
            "websocket": {
                "address": "/v3/ws",
                "title": "The WebSocket",
                "description": "One socket for many workflows. Open it with `Authorization: Bearer …`, or in a browser \
                                with `?ticket=` from `POST /v3/auth/ticket`; without either it may only subscribe with \
                                stream tokens, and is closed (1008) when it follows nothing within 10 s. The gateway \
                                pings every 20 s and closes a socket idle for 60 s.",
                "messages": refs(&both),
                "bindings": {"ws": {
                    "method": "GET",
                    "query": {"type": "object", "properties": {
                        "ticket": {"type": "string", "description": "A one-minute, one-use ticket"},
                    }},
                }},
            },
            "events": {
                "address": "/v3/workflow/{id}/events",
                "title": "Server-Sent Events",
                "description": "`GET` with `Accept: text/event-stream`: the current state (or every state after \
                                `Last-Event-ID` / `?lastEventId=`), then each new one. The stream ends after the \
                                terminal state; a reconnect at or after the terminal seq gets `204 No Content`, which \
                                tells an `EventSource` to stop. Browsers pass the start's `streamToken` as `?token=`. \
                                A comment every 15 s keeps the connection open.",
                "parameters": {"id": {"description": "The workflow id"}},
                "messages": refs(&sse),
                "bindings": {"http": {"method": "GET"}},
            },
        },
        "operations": {
            "sendCommand": {
                "action": "send",
                "title": "Client to gateway",
                "channel": {"$ref": "#/channels/websocket"},
                "messages": on_channel("websocket", &client),
            },
            "receiveOnSocket": {
                "action": "receive",
                "title": "Gateway to client",
                "channel": {"$ref": "#/channels/websocket"},
                "messages": on_channel("websocket", &server),
            },
            "receiveEvents": {
                "action": "receive",
                "title": "One workflow's states",
                "channel": {"$ref": "#/channels/events"},
                "messages": on_channel("events", &sse),
            },
        },
        "components": {
            "messages": messages,
            "schemas": schemas,
            "securitySchemes": {
                "apiKey": {"type": "httpApiKey", "name": "Authorization", "in": "header",
                    "description": "`Bearer` and an API key or a JWT"},
                "ticket": {"type": "httpApiKey", "name": "ticket", "in": "query",
                    "description": "A ticket from `POST /v3/auth/ticket` (browsers)"},
                "streamToken": {"type": "httpApiKey", "name": "token", "in": "query",
                    "description": "A start's `streamToken`: reads one workflow (SSE; on the socket, in `subscribe`)"},
            },
        },
    })
}

/// A tagged enum's schema split into one message per variant, named `{side}.{type}`; returns
/// the names in order. Each payload is one object (see `merged`). A client message is closed
/// (the gateway refuses unknown fields in commands) and may carry a `requestId`; a server
/// message stays open, so a client generated today reads tomorrow's additions.
fn by_type(
    schema: Option<Value>,
    side: &str,
    schemas: &Map<String, Value>,
    messages: &mut Map<String, Value>,
) -> Vec<String> {
    let variants = schema
        .as_ref()
        .and_then(|s| s.get("oneOf"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut names = Vec::new();
    for v in variants {
        let tag = tag_of(&v).unwrap_or_else(|| panic!("a {side} message without a `type` tag: {v}"));
        let name = format!("{side}.{tag}");
        let mut payload = merged(&v, schemas);
        if side == "client" {
            payload["properties"]
                .as_object_mut()
                .expect("merged properties")
                .entry("requestId")
                .or_insert_with(|| {
                    json!({"type": ["string", "null"], "description": "Names this message in its answer (`ack`, `result`, `error`)"})
                });
            payload["additionalProperties"] = json!(false);
        }
        let summary = v.get("description").cloned().unwrap_or(Value::Null);
        messages.insert(
            name.clone(),
            json!({"name": tag, "title": format!("{tag} ({side})"), "summary": summary, "payload": payload}),
        );
        names.push(name);
    }
    names
}

/// A variant as one object: serde's `flatten` and the tag come out of utoipa as `allOf` parts
/// (some of them references), which generators turn into intersections and which no
/// `additionalProperties` can close. Their properties and required names are merged here.
fn merged(v: &Value, schemas: &Map<String, Value>) -> Value {
    fn collect(v: &Value, schemas: &Map<String, Value>, props: &mut Map<String, Value>, required: &mut Vec<Value>) {
        if let Some(target) = v
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix(SCHEMAS))
        {
            let s = schemas
                .get(target)
                .unwrap_or_else(|| panic!("{target} is referred to but not generated"));
            return collect(s, schemas, props, required);
        }
        for part in v.get("allOf").and_then(Value::as_array).into_iter().flatten() {
            collect(part, schemas, props, required);
        }
        props.extend(
            v.get("properties")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
        );
        for name in v.get("required").and_then(Value::as_array).into_iter().flatten() {
            if !required.contains(name) {
                required.push(name.clone());
            }
        }
    }
    let (mut props, mut required) = (Map::new(), Vec::new());
    collect(v, schemas, &mut props, &mut required);
    let mut out = json!({"type": "object", "properties": props, "required": required});
    if let Some(d) = v.get("description") {
        out["description"] = d.clone();
    }
    out
}

/// The value of a variant's `type` property, at its top level or in one of its `allOf` parts.
fn tag_of(v: &Value) -> Option<String> {
    let own = v.pointer("/properties/type/enum/0").and_then(Value::as_str);
    own.map(str::to_string)
        .or_else(|| v.get("allOf")?.as_array()?.iter().find_map(tag_of))
}

/// The live protocols (AsyncAPI 3)
///
/// The WebSocket's messages and the SSE events, for code generators and readers.
#[utoipa::path(get, path = "/v3/asyncapi.json", tag = "operations", operation_id = "asyncapi",
    responses((status = 200, description = "The AsyncAPI document", body = Object)))]
pub async fn asyncapi_json() -> Json<&'static Value> {
    Json(document())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_type_of_both_sides_is_a_message_and_every_reference_resolves() {
        let doc = document();
        let messages = doc["components"]["messages"].as_object().unwrap();
        for name in [
            "client.subscribe",
            "client.unsubscribe",
            "client.start",
            "client.resume",
            "client.back",
            "client.execute-node",
            "client.ping",
            "server.state",
            "server.gap",
            "server.ack",
            "server.result",
            "server.error",
            "server.pong",
            "sse.state",
            "sse.gap",
        ] {
            assert!(messages.contains_key(name), "{name} missing: {:?}", messages.keys());
        }
        assert_eq!(messages.len(), 15, "{:?}", messages.keys());
        for (name, m) in messages.iter().filter(|(n, _)| !n.starts_with("sse.")) {
            let p = &m["payload"];
            assert!(
                p.get("allOf").is_none() && p["properties"]["type"].is_object(),
                "{name}: {p}"
            );
            assert_eq!(
                p["additionalProperties"] == false,
                name.starts_with("client."),
                "{name}"
            );
        }
        let resume = &messages["client.resume"]["payload"];
        for field in ["workflowId", "viewResponse", "seq", "token", "requestId"] {
            assert!(resume["properties"][field].is_object(), "{field}: {resume}");
        }
        let refs = super::super::api_doc::refs_in(doc);
        assert!(refs.len() > 30);
        for r in refs {
            let at = r.strip_prefix('#').unwrap_or_else(|| panic!("{r}"));
            assert!(doc.pointer(at).is_some(), "{r} does not resolve");
        }
    }
}
