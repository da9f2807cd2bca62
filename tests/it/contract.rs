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

/// What in `value` does not fit `schema`, whose references point into `doc`'s components.
fn misfits(doc: &Value, schema: Value, value: &Value) -> Vec<String> {
    let root = serde_json::json!({"allOf": [schema], "components": doc["components"]});
    let v = jsonschema::draft202012::new(&root).expect("the document's schemas compile");
    v.iter_errors(value)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
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
        let payload = serde_json::json!({"$ref": format!("#/components/messages/{message}/payload")});
        let errors = misfits(&self.0, payload, value);
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
    // Back from the first screen: refused as HTTP refuses it.
    send(&mut ws, json!({"type": "back", "requestId": "b1", "workflowId": id})).await;
    send(&mut ws, json!({"type": "ping"})).await;
    send(
        &mut ws,
        json!({"type": "subscribe", "requestId": "s1", "workflowId": id, "since": 0, "token": token}),
    )
    .await;
    send(&mut ws, json!({"type": "resume", "requestId": "good", "workflowId": id, "seq": 1, "viewResponse": {"selectedOptions": {"accountNumber": "11112222", "save": "save"}}})).await;
    let mut seen = std::collections::BTreeSet::new();
    while !(seen.contains("pong")
        && seen.contains("result")
        && seen.contains("error")
        && seen.contains("completed")
        && seen.contains("back refused"))
    {
        let m = ws.next(T).await.expect("the socket stays open");
        live.fits_typed("server", &m);
        let kind = m["type"].as_str().unwrap().to_string();
        if kind == "error" && m["requestId"] == "b1" {
            assert_eq!(m["code"], "cannot_go_back", "{m}");
            seen.insert("back refused".to_string());
        }
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

/// The OpenAPI document's answers, checked against what a real gateway answers.
struct ApiContract(Value);

impl ApiContract {
    /// Fails naming the operation, status and what in `body` does not fit the schema the
    /// document gives for it.
    fn fits(&self, method: &str, path: &str, status: u16, body: &Value) {
        let at = format!(
            "/paths/{}/{method}/responses/{status}/content/application~1json/schema",
            path.replace('~', "~0").replace('/', "~1")
        );
        let schema = self
            .0
            .pointer(&at)
            .unwrap_or_else(|| panic!("{method} {path} documents no {status} body"));
        let errors = misfits(&self.0, schema.clone(), body);
        assert!(
            errors.is_empty(),
            "{method} {path} {status}: {body} does not fit: {errors:?}"
        );
    }
}

/// Clients generated from the document read the gateway's real answers: each answer of the
/// workflow and definitions calls fits the schema documented for its status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateways_answers_fit_the_schemas_the_openapi_document_gives_them() {
    use crate::helpers::{id_of, spawn_app, uid};
    use reqwest::Method;
    use serde_json::json;
    let app = spawn_app().await;
    let doc: Value = reqwest::get(format!("{}/v3/openapi.json", app.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let api = ApiContract(doc);
    let check = |method: &str, path: &str, r: &crate::helpers::Resp| api.fits(method, path, r.status.as_u16(), &r.body);

    let started = app.start("refund", json!({"orderId": "o-contract"})).await;
    check("post", "/v3/workflow/start", &started);
    let id = id_of(&started);
    let refused = app.resume(&id, json!({})).await;
    assert_eq!(refused.status, 422);
    check("put", "/v3/workflow/resume/{id}", &refused);
    check(
        "put",
        "/v3/workflow/resume/{id}",
        &app.resume(&id, json!({"reason": "damaged"})).await,
    );
    check("get", "/v3/workflow/{id}", &app.get(&id).await);
    let wf = format!("/v3/workflow/terminate/{id}");
    check(
        "delete",
        "/v3/workflow/terminate/{id}",
        &app.call(Method::DELETE, &wf, None, &[]).await,
    );
    check("get", "/v3/workflow/{id}", &app.get("wf-no-such").await);
    let account = id_of(&app.start("bank_account", json!({})).await);
    let exec = format!("/v3/workflow/{account}/disconnected-node/execute");
    let body = json!({"node": "verify_account", "parameters": {"accountNumber": "12345678"}});
    check(
        "post",
        "/v3/workflow/{id}/disconnected-node/execute",
        &app.call(Method::POST, &exec, Some(body), &[]).await,
    );
    check(
        "post",
        "/v3/auth/ticket",
        &app.call(Method::POST, "/v3/auth/ticket", None, &[]).await,
    );

    let def = format!("contract-{}", uid());
    let flow = json!({"id": def, "startNode": "done", "states": {"done": {"node": {"type": "SUCCESS"}}}});
    let created = app.call(Method::POST, "/v3/definitions", Some(flow.clone()), &[]).await;
    assert_eq!(created.status, 201, "{created:?}");
    check("post", "/v3/definitions", &created);
    let base = format!("/v3/definitions/{def}");
    check(
        "post",
        "/v3/definitions/{id}/publish",
        &app.call(Method::POST, &format!("{base}/publish"), None, &[]).await,
    );
    let activate = app
        .call(
            Method::POST,
            &format!("{base}/activate"),
            Some(json!({"version": 1})),
            &[],
        )
        .await;
    check("post", "/v3/definitions/{id}/activate", &activate);
    check(
        "get",
        "/v3/definitions/{id}/versions",
        &app.call(Method::GET, &format!("{base}/versions"), None, &[]).await,
    );
    check(
        "get",
        "/v3/definitions",
        &app.call(Method::GET, "/v3/definitions", None, &[]).await,
    );
    check("get", "/v3/nodes", &app.call(Method::GET, "/v3/nodes", None, &[]).await);
    let mut broken = flow;
    broken["states"]["done"]["nextNode"] = json!("nowhere");
    let validate = json!({"workflows": [broken], "nodes": []});
    let validated = app
        .call(Method::POST, "/v3/definitions/validate", Some(validate), &[])
        .await;
    assert_eq!(validated.body["valid"], false, "{validated:?}");
    check("post", "/v3/definitions/validate", &validated);
}

#[tokio::test]
async fn every_series_the_gateway_exports_is_described_and_every_error_code_documented() {
    let app = spawn_app().await;
    // Something to count: a start (a histogram, counters) and a refused call.
    app.start("refund", serde_json::json!({"orderId": "A-1"})).await;
    let http = reqwest::Client::new();
    let text = http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let typed: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next())
        .filter(|n| n.starts_with("drift_"))
        .collect();
    assert!(typed.contains(&"drift_request_seconds") && typed.contains(&"drift_workflows_started_total"));
    for name in &typed {
        let m = drift::metrics::ALL
            .iter()
            .find(|m| m.name == *name)
            .unwrap_or_else(|| panic!("{name} is not defined in drift_core::metrics"));
        let help = format!("# HELP {name} {}", m.help);
        assert!(text.lines().any(|l| l == help), "no `{help}` in /metrics");
    }

    // The API document lists every error code, and each answer's code is one of them.
    let doc: Value = http
        .get(format!("{}/v3/openapi.json", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let codes = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for code in [
        "bad_request",
        "not_found",
        "stale_screen",
        "invalid_answer",
        "rate_limited",
        "busy",
    ] {
        assert!(codes.iter().any(|c| c == code), "{code} is not in ErrorCode: {codes:?}");
    }
    let refused = http
        .get(format!("{}/v3/workflow/no-such-workflow", app.base))
        .send()
        .await
        .unwrap();
    let body: Value = refused.json().await.unwrap();
    assert!(codes.contains(&body["code"]), "{body}");
}

/// The series a PromQL expression names, by their defined names (a histogram's `_bucket`,
/// `_count` and `_sum` are its own), with the labels the expression groups or selects by.
fn series_in(expr: &str) -> Vec<(&'static drift::metrics::Metric, Vec<String>)> {
    let words: Vec<&str> = expr
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("drift_"))
        .collect();
    // Labels in `by (…)` and in `{label=…}` selectors.
    let mut labels = Vec::new();
    for (i, _) in expr.match_indices("by (") {
        let inner = &expr[i + 4..];
        let inner = &inner[..inner.find(')').unwrap_or(inner.len())];
        labels.extend(inner.split(',').map(|l| l.trim().to_string()));
    }
    for (i, _) in expr.match_indices('{') {
        let inner = &expr[i + 1..];
        let inner = &inner[..inner.find('}').unwrap_or(inner.len())];
        labels.extend(
            inner
                .split(',')
                .filter_map(|m| m.split(['=', '!']).next())
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty()),
        );
    }
    words
        .into_iter()
        .map(|w| {
            let m = drift::metrics::ALL
                .iter()
                .find(|m| {
                    m.name == w
                        || (m.kind == drift::metrics::Kind::Histogram
                            && ["_bucket", "_count", "_sum"]
                                .iter()
                                .any(|s| w == format!("{}{s}", m.name)))
                })
                .unwrap_or_else(|| panic!("the dashboard's `{expr}` names {w}, which Drift does not define"));
            (m, labels.clone())
        })
        .collect()
}

#[tokio::test]
async fn every_query_on_the_grafana_dashboard_names_a_series_the_gateway_exports_with_its_own_labels() {
    let root = env!("CARGO_MANIFEST_DIR");
    let dash: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{root}/docs/grafana-dashboard.json")).unwrap()).unwrap();
    let app = spawn_app().await;
    // A call, so the one series whose labels are not known ahead (the call histogram) exists.
    app.start("refund", serde_json::json!({"orderId": "A-1"})).await;
    let text = reqwest::get(format!("{}/metrics", app.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    let panels: Vec<&Value> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] != "row")
        .collect();
    assert!(panels.len() >= 10, "{} panels", panels.len());
    let mut shown = std::collections::BTreeSet::new();
    for p in panels {
        let title = p["title"].as_str().unwrap();
        assert!(
            p["description"].is_string() && p["gridPos"]["w"].is_u64(),
            "{title}: description and place"
        );
        assert_eq!(
            p["datasource"]["uid"], "${datasource}",
            "{title}: the dashboard's data source"
        );
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            let expr = t["expr"].as_str().unwrap();
            for (m, labels) in series_in(expr) {
                assert!(
                    text.lines()
                        .any(|l| l == format!("# TYPE {} {}", m.name, format!("{:?}", m.kind).to_lowercase())),
                    "{title}: `{expr}` names {}, which the gateway's /metrics does not export",
                    m.name
                );
                for l in labels {
                    assert!(
                        m.labels.contains(&l.as_str()) || (l == "le" && m.kind == drift::metrics::Kind::Histogram),
                        "{title}: `{expr}` uses label {l:?}, which {} does not carry ({:?})",
                        m.name,
                        m.labels
                    );
                }
                if m.kind == drift::metrics::Kind::Counter {
                    assert!(
                        expr.contains("rate("),
                        "{title}: counter {} read without rate()",
                        m.name
                    );
                }
                shown.insert(m.name);
            }
        }
    }
    let missing: Vec<&str> = drift::metrics::ALL
        .iter()
        .map(|m| m.name)
        .filter(|n| !shown.contains(n))
        .collect();
    assert!(missing.is_empty(), "series on no panel of the dashboard: {missing:?}");
}
