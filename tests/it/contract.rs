//! The API's contract as a client fetches it from a running gateway: the OpenAPI document, the
//! definition language's schema and the reference page, which must work with no network.

use crate::helpers::spawn_app;
use serde_json::Value;

#[tokio::test]
async fn the_gateway_serves_its_openapi_document_the_definition_schema_and_an_offline_reference_page() {
    let app = spawn_app().await;
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{}{path}", app.base)).send();

    let doc: Value = get("/v3/openapi.json").await.unwrap().json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/v3/workflow/start"]["post"]["responses"]["202"].is_object());
    assert!(doc["components"]["securitySchemes"]["apiKey"].is_object());

    let schema: Value = get("/v3/schemas/definition.json").await.unwrap().json().await.unwrap();
    assert_eq!(schema["$ref"], "#/$defs/Definition");
    assert!(schema["$defs"]["HttpNode"].is_object());

    // The page and everything it loads come from the gateway itself.
    let page = get("/docs/").await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    for src in html
        .split(['"', '\''])
        .filter(|s| s.ends_with(".js") || s.ends_with(".css"))
    {
        assert!(!src.contains("://"), "the reference page loads {src} from elsewhere");
        let asset = get(&format!("/docs/{}", src.trim_start_matches("./"))).await.unwrap();
        assert_eq!(asset.status(), 200, "{src}");
    }
    let init = get("/docs/swagger-initializer.js").await.unwrap().text().await.unwrap();
    assert!(init.contains("/v3/openapi.json"), "{init}");
}

/// The AsyncAPI document's messages, checked against what really crosses a socket or stream.
pub struct LiveContract(Value);

impl LiveContract {
    pub async fn fetch(app: &crate::helpers::TestApp) -> Self {
        let doc: Value = reqwest::get(format!("{}/v3/asyncapi.json", app.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(doc["asyncapi"], "3.0.0");
        LiveContract(doc)
    }

    /// Fails naming the message and what in it does not fit the payload schema of `message`
    /// (e.g. `server.state`).
    pub fn fits(&self, message: &str, value: &Value) {
        assert!(
            self.0["components"]["messages"][message].is_object(),
            "no message {message} in the AsyncAPI document"
        );
        let schema = serde_json::json!({
            "$ref": format!("#/components/messages/{message}/payload"),
            "components": self.0["components"],
        });
        let v = jsonschema::draft202012::new(&schema).expect("the payload is valid JSON Schema");
        let errors: Vec<String> = v
            .iter_errors(value)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{message} {value} does not fit its schema: {errors:?}"
        );
    }

    /// As `fits`, for the message of this side named by the value's `type`.
    pub fn fits_typed(&self, side: &str, value: &Value) {
        let kind = value["type"].as_str().unwrap_or_else(|| panic!("untyped {value}"));
        self.fits(&format!("{side}.{kind}"), value);
    }
}

/// Every message a client sends and the gateway answers on a real socket and event stream fits
/// the AsyncAPI message of its type, so clients generated from the document read what comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_socket_and_the_event_stream_carry_fits_the_asyncapi_messages() {
    use crate::helpers::{SseClient, Ws, bearer, spawn_app};
    use serde_json::json;
    use std::time::Duration;
    const T: Duration = Duration::from_secs(20);
    let app = spawn_app().await;
    let live = LiveContract::fetch(&app).await;
    let auth = bearer(&app.token("browser"));
    let mut ws = Ws::connect_with(&app.ws_url(""), &[("authorization", &auth)])
        .await
        .unwrap();
    let send = async |ws: &mut Ws, m: Value| {
        live.fits_typed("client", &m);
        ws.send(m).await;
    };
    send(
        &mut ws,
        json!({"type": "start", "requestId": "r1", "workflow": "bank_account", "params": {}, "idempotencyKey": "k1"}),
    )
    .await;
    let ack = ws.next_of("ack", T).await;
    let id = ack["workflowId"].as_str().unwrap().to_string();
    let token = ack["streamToken"].as_str().unwrap().to_string();
    send(&mut ws, json!({"type": "execute-node", "requestId": "x1", "workflowId": id, "node": "verify_account", "parameters": {"accountNumber": "12345678"}})).await;
    send(&mut ws, json!({"type": "resume", "requestId": "bad", "workflowId": id, "viewResponse": {"selectedOptions": {"save": "save"}}})).await;
    send(&mut ws, json!({"type": "ping"})).await;
    send(
        &mut ws,
        json!({"type": "subscribe", "requestId": "s1", "workflowId": id, "since": 0, "token": token}),
    )
    .await;
    send(&mut ws, json!({"type": "resume", "requestId": "good", "workflowId": id, "seq": 1, "viewResponse": {"selectedOptions": {"accountNumber": "11112222", "save": "save"}}})).await;
    let mut seen = std::collections::BTreeSet::new();
    while !(seen.contains("pong") && seen.contains("result") && seen.contains("error") && seen.contains("completed")) {
        let m = ws.next(T).await.expect("the socket stays open");
        live.fits_typed("server", &m);
        let kind = m["type"].as_str().unwrap().to_string();
        if kind == "state" && m["state"]["workflowStatus"] == "COMPLETED" {
            seen.insert("completed".to_string());
        }
        seen.insert(kind);
    }
    send(&mut ws, json!({"type": "unsubscribe", "workflowId": id})).await;
    send(&mut ws, json!({"type": "subscribe", "workflowId": "no such"})).await;
    let refused = ws.next_of("error", T).await;
    live.fits("server.error", &refused);

    let mut sse = SseClient::connect(&app.events_url(&id, &format!("?token={token}&lastEventId=0")), &[])
        .await
        .unwrap();
    let mut states = 0;
    while let Some(ev) = sse.next(T).await {
        live.fits(&format!("sse.{}", ev.event), &ev.data);
        states += 1;
    }
    assert_eq!(states, 2, "both states, then the end");
}
