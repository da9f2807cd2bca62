//! Definitions as a product, against the real gateway, Temporal and both databases: SNAPSHOT →
//! publish → ACTIVE, rollback, immutability, validation naming node and field, node
//! definitions, two gateways on one PostgreSQL and Redis, and the graph.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

/// A gateway on SQLite (the harness's default) or on a fresh PostgreSQL database.
async fn app_on(backend: &str) -> TestApp {
    match backend {
        "sqlite" => spawn_app().await,
        _ => {
            let url = pg_database().await;
            spawn_app_with(Opts {
                extra_args: vec![format!("--database-url={url}")],
                ..Opts::default()
            })
            .await
        }
    }
}

/// A one-screen flow whose screen and outcome say which version it is.
fn greeting(id: &str, label: &str) -> Value {
    json!({
        "id": id,
        "description": format!("greeting {label}"),
        "startNode": "ask",
        "states": {
            "ask": {"node": {"type": "INSTRUCTION", "layoutId": format!("greet-{label}"),
                              "inputOptions": [{"id": "ok", "tags": {"values": ["ui.button"]},
                                                "possibleValues": [{"displayValue": "OK", "value": "ok"}]}]},
                    "nextNode": "done"},
            "done": {"node": {"type": "SUCCESS", "disposition": {"ranOn": label}}}
        }
    })
}

async fn start_version(app: &TestApp, id: &str, version: Option<&str>) -> crate::helpers::Resp {
    let mut body = json!({"workflow": id, "params": {}});
    if let Some(v) = version {
        body["version"] = json!(v);
    }
    app.call(Method::POST, "/v3/workflow/start", Some(body), &[]).await
}

async fn lifecycle(backend: &str) {
    let app = app_on(backend).await;
    let id = format!("greet-{}", uid());
    let base = format!("/v3/definitions/{id}");

    let r = app
        .call(Method::POST, "/v3/definitions", Some(greeting(&id, "v1")), &[])
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(r.body["version"], "SNAPSHOT");
    let again = app
        .call(Method::POST, "/v3/definitions", Some(greeting(&id, "v1")), &[])
        .await;
    assert_eq!(
        again.status,
        StatusCode::CONFLICT,
        "a second create of one id: {again:?}"
    );

    // Nothing published or active yet: nothing starts.
    let r = start_version(&app, &id, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r:?}");
    let r = app.call(Method::POST, &format!("{base}/publish"), None, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.body["version"], 1);
    let r = start_version(&app, &id, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "published but not active: {r:?}");
    assert!(r.body["message"].as_str().unwrap().contains("activate"), "{r:?}");

    let r = app
        .call(
            Method::POST,
            &format!("{base}/activate"),
            Some(json!({"version": 1})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let w1 = start_version(&app, &id, None).await;
    assert_eq!(w1.status, StatusCode::OK, "{w1:?}");
    assert_eq!(w1.body["view"]["layoutId"], "greet-v1");
    assert_eq!(w1.body["node"], "ask", "a state names its node: {w1:?}");
    let w1_id = w1.body["workflowId"].as_str().unwrap().to_string();

    // v2: edit the SNAPSHOT, publish, activate; new starts use it.
    let r = app.call(Method::PUT, &base, Some(greeting(&id, "v2")), &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let r = app.call(Method::POST, &format!("{base}/publish"), None, &[]).await;
    assert_eq!(r.body["version"], 2, "{r:?}");
    let r = app.call(Method::POST, &format!("{base}/publish"), None, &[]).await;
    assert_eq!(
        r.body["version"], 2,
        "an unchanged SNAPSHOT publishes nothing new: {r:?}"
    );
    assert_eq!(r.body["published"], false);
    app.call(
        Method::POST,
        &format!("{base}/activate"),
        Some(json!({"version": 2})),
        &[],
    )
    .await;
    let w2 = start_version(&app, &id, None).await;
    assert_eq!(w2.body["view"]["layoutId"], "greet-v2", "{w2:?}");

    // The run started on v1 completes on v1.
    let done = app.resume(&w1_id, json!({"ok": "ok"})).await;
    assert_eq!(done.status, StatusCode::OK, "{done:?}");
    assert_eq!(done.body["workflowStatus"], "COMPLETED");
    assert_eq!(done.body["disposition"]["ranOn"], "v1", "{done:?}");
    assert_eq!(done.body["path"], json!(["done"]));

    // Rollback: activate v1 again.
    app.call(
        Method::POST,
        &format!("{base}/activate"),
        Some(json!({"version": 1})),
        &[],
    )
    .await;
    let w3 = start_version(&app, &id, None).await;
    assert_eq!(w3.body["view"]["layoutId"], "greet-v1", "after rollback: {w3:?}");
    // A start that names a version gets it, whatever is ACTIVE.
    let w4 = start_version(&app, &id, Some("2")).await;
    assert_eq!(w4.body["view"]["layoutId"], "greet-v2", "{w4:?}");
    let w5 = start_version(&app, &id, Some("LATEST")).await;
    assert_eq!(w5.body["view"]["layoutId"], "greet-v2", "{w5:?}");

    // Who published what, when; which is ACTIVE.
    let r = app.call(Method::GET, &format!("{base}/versions"), None, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let versions = r.body["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["publishedBy"], "tests/tester");
    assert!(versions[0]["publishedAt"].is_string());
    assert_eq!(r.body["active"]["version"], 1);
    assert_eq!(versions[0]["active"], true);

    // Reads by selector.
    for (sel, label) in [
        ("1", "v1"),
        ("2", "v2"),
        ("LATEST", "v2"),
        ("ACTIVE", "v1"),
        ("SNAPSHOT", "v2"),
    ] {
        let r = app.call(Method::GET, &format!("{base}?version={sel}"), None, &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{sel}: {r:?}");
        assert_eq!(
            r.body["states"]["ask"]["node"]["layoutId"],
            format!("greet-{label}"),
            "{sel}"
        );
    }
    let r = app.call(Method::GET, &format!("{base}?version=7"), None, &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r:?}");

    // A published version cannot change: not by PUT, not by DELETE.
    let mut edit = greeting(&id, "sneaky");
    edit["version"] = json!("1");
    let r = app.call(Method::PUT, &base, Some(edit), &[]).await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (StatusCode::CONFLICT, Some("conflict")),
        "{r:?}"
    );
    // Both 409s are in the API document, with the code they carry.
    let doc = app.call(Method::GET, "/v3/openapi.json", None, &[]).await.body;
    for (path, method) in [("/v3/definitions/{id}", "put"), ("/v3/definitions", "post")] {
        let listed = &doc["paths"][path][method]["responses"]["409"]["description"];
        assert!(
            listed.as_str().is_some_and(|d| d.starts_with("`conflict`")),
            "{method} {path}: {listed}"
        );
    }
    let r = app.call(Method::DELETE, &format!("{base}?version=1"), None, &[]).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{r:?}");
    let r = app.call(Method::GET, &format!("{base}?version=1"), None, &[]).await;
    assert_eq!(r.body["states"]["ask"]["node"]["layoutId"], "greet-v1");
    // The SNAPSHOT can go; the versions stay.
    let r = app.call(Method::DELETE, &base, None, &[]).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{r:?}");
    let r = app.call(Method::POST, &format!("{base}/publish"), None, &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r:?}");
    let r = start_version(&app, &id, None).await;
    assert_eq!(r.body["view"]["layoutId"], "greet-v1");

    let r = app.call(Method::GET, "/v3/definitions", None, &[]).await;
    let item = r.body["definitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == id.as_str())
        .cloned()
        .unwrap();
    assert_eq!(item["latest"], 2);
    assert_eq!(item["active"], 1);
    assert_eq!(item["snapshot"], false);
}

async fn invalid_refused(backend: &str) {
    let app = app_on(backend).await;
    let id = format!("bad-{}", uid());
    let errors_of = |r: &crate::helpers::Resp| r.body["details"]["errors"].as_array().cloned().unwrap_or_default();
    let names = |errs: &[Value], node: &str, field: &str| {
        errs.iter()
            .any(|e| e["node"] == node && e["field"].as_str().unwrap_or("").starts_with(field))
    };

    let mut d = greeting(&id, "v1");
    d["states"]["ask"]["nextNode"] = json!("nowhere");
    let r = app.call(Method::POST, "/v3/definitions", Some(d), &[]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r:?}");
    assert_eq!(r.body["code"], "invalid_definition");
    assert!(names(&errors_of(&r), "ask", "nextNode"), "{r:?}");

    let mut d = greeting(&id, "v1");
    d["states"]["calc"] = json!({"node": {"type": "SCRIPT", "script": "let x = ;"}, "nextNode": "done"});
    d["states"]["ask"]["nextNode"] = json!("calc");
    let r = app.call(Method::POST, "/v3/definitions", Some(d), &[]).await;
    assert!(names(&errors_of(&r), "calc", "node.script"), "{r:?}");

    let mut d = greeting(&id, "v1");
    d["states"]["ask"]["node"]["colour"] = json!("blue");
    let r = app.call(Method::POST, "/v3/definitions", Some(d), &[]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r:?}");
    assert!(
        names(&errors_of(&r), "ask", "node"),
        "a shape error names its node: {r:?}"
    );

    let mut d = greeting(&id, "v1");
    d["startNode"] = json!("missing");
    let r = app.call(Method::POST, "/v3/definitions", Some(d), &[]).await;
    assert!(errors_of(&r).iter().any(|e| e["field"] == "startNode"), "{r:?}");

    // Nothing was stored by any of those.
    let r = app.call(Method::GET, &format!("/v3/definitions/{id}"), None, &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r:?}");

    // Node definitions: a bad one is refused, a good one is used by reference once published.
    let node_id = format!("n-{}", uid());
    let r = app
        .call(
            Method::POST,
            "/v3/nodes",
            Some(json!({"id": node_id, "node": {"type": "SCRIPT", "script": "1 +"}})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r:?}");
    let r = app
        .call(
            Method::POST,
            "/v3/nodes",
            Some(json!({"id": node_id, "node": {"type": "SCRIPT", "script": "params.n * 2"}})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let mut uses = greeting(&id, "v1");
    uses["states"]["ask"]["nextNode"] = json!("double");
    uses["states"]["double"] = json!({"resourceId": node_id, "resourceVersion": "ACTIVE", "nextNode": "done"});
    // The node is only a SNAPSHOT: the reference cannot resolve, so this cannot be stored.
    let r = app.call(Method::POST, "/v3/definitions", Some(uses.clone()), &[]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r:?}");
    assert!(names(&errors_of(&r), "double", "resourceId"), "{r:?}");
    let nbase = format!("/v3/nodes/{node_id}");
    assert_eq!(
        app.call(Method::POST, &format!("{nbase}/publish"), None, &[])
            .await
            .body["version"],
        1
    );
    app.call(
        Method::POST,
        &format!("{nbase}/activate"),
        Some(json!({"version": 1})),
        &[],
    )
    .await;
    let r = app.call(Method::POST, "/v3/definitions", Some(uses), &[]).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let r = app
        .call(Method::POST, &format!("/v3/definitions/{id}/publish"), None, &[])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    app.call(
        Method::POST,
        &format!("/v3/definitions/{id}/activate"),
        Some(json!({"version": 1})),
        &[],
    )
    .await;
    let w = app.start(&id, json!({"n": 21})).await;
    let done = app
        .resume(w.body["workflowId"].as_str().unwrap(), json!({"ok": "ok"}))
        .await;
    assert_eq!(done.body["workflowStatus"], "COMPLETED", "{done:?}");
    assert_eq!(done.body["path"], json!(["double", "done"]), "{done:?}");

    // Activating a version that does not exist changes nothing.
    let r = app
        .call(
            Method::POST,
            &format!("/v3/definitions/{id}/activate"),
            Some(json!({"version": 9})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r:?}");

    // Writing needs definitions:write.
    let reader = jwt(&app.tenant, "reader", "workflows:read", 600);
    let r = app
        .http
        .post(format!("{}/v3/definitions/{id}/publish", app.base))
        .header("authorization", bearer(&reader))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = app
        .http
        .get(format!("{}/v3/definitions/{id}", app.base))
        .header("authorization", bearer(&reader))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_publish_activate_start_then_v2_and_rollback_on_sqlite() {
    lifecycle("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_publish_activate_start_then_v2_and_rollback_on_postgres() {
    lifecycle("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_definitions_are_refused_naming_node_and_field_on_sqlite() {
    invalid_refused("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_definitions_are_refused_naming_node_and_field_on_postgres() {
    invalid_refused("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_on_one_postgres_and_redis_use_a_publish_within_a_second() {
    let url = pg_database().await;
    let prefix = format!("t{}", uid());
    // The periodic check is a minute away: only the Redis notice can make this quick.
    let opts = Opts {
        key_prefix: Some(prefix),
        extra_args: vec![format!("--database-url={url}"), "--definitions-check-ms=60000".into()],
        ..Opts::default()
    };
    // Both import the same folders into the one database at once.
    let (a, b) = tokio::join!(spawn_app_with(opts.clone()), spawn_app_with(opts));
    let id = format!("shared-{}", uid());
    let base = format!("/v3/definitions/{id}");
    for (label, version) in [("v1", 1), ("v2", 2)] {
        let method = if version == 1 { Method::POST } else { Method::PUT };
        let path = if version == 1 {
            "/v3/definitions".to_string()
        } else {
            base.clone()
        };
        let r = a.call(method, &path, Some(greeting(&id, label)), &[]).await;
        assert!(r.status.is_success(), "{r:?}");
        assert_eq!(
            a.call(Method::POST, &format!("{base}/publish"), None, &[]).await.body["version"],
            version
        );
        let r = a
            .call(
                Method::POST,
                &format!("{base}/activate"),
                Some(json!({"version": version})),
                &[],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        let t0 = tokio::time::Instant::now();
        let seen = loop {
            let r = start_version(&b, &id, None).await;
            if r.status == StatusCode::OK && r.body["view"]["layoutId"] == format!("greet-{label}") {
                break t0.elapsed();
            }
            assert!(t0.elapsed() < Duration::from_secs(5), "B never used {label}: {r:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        eprintln!("gateway B started {label} {seen:?} after A activated it");
        assert!(seen < Duration::from_secs(1), "B used {label} only after {seen:?}");
    }
    // The examples were imported once, not twice.
    let r = b.call(Method::GET, "/v3/definitions/refund/versions", None, &[]).await;
    assert_eq!(r.body["versions"].as_array().unwrap().len(), 1, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_graph_lists_nodes_edges_and_disconnected_nodes_and_draws_them() {
    let app = spawn_app().await;
    let r = app
        .call(Method::GET, "/v3/definitions/bank_account/graph", None, &[])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let nodes = r.body["nodes"].as_array().unwrap();
    assert!(nodes.len() >= 3, "{r:?}");
    assert!(nodes.iter().all(|n| n["type"].is_string() && n["x"].is_number()));
    assert!(r.body["edges"].as_array().unwrap().iter().any(|e| e["label"] == "next"));
    // bank_account's verification node is run with execute-node: disconnected.
    assert!(!r.body["disconnected"].as_array().unwrap().is_empty(), "{r:?}");
    let svg = app
        .http
        .get(format!("{}/v3/definitions/bank_account/graph?format=svg", app.base))
        .header("authorization", bearer(&app.token("tests")))
        .send()
        .await
        .unwrap();
    assert_eq!(svg.headers()["content-type"], "image/svg+xml");
    let text = svg.text().await.unwrap();
    for n in nodes {
        assert!(
            text.contains(&format!("data-node=\"{}\"", n["id"].as_str().unwrap())),
            "{n}"
        );
    }
    let r = app.call(Method::GET, "/v3/definitions/nope/graph", None, &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app
        .call(Method::GET, "/v3/definitions/bank_account/graph?format=png", None, &[])
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

/// Runs `drift definitions ...` against an app; answers (success, stdout + stderr).
async fn cli(app: &TestApp, args: &[&str]) -> (bool, String) {
    let token = app.token("ci");
    let mut all = vec!["definitions"];
    all.extend(args);
    all.extend(["--url", &app.base, "--api-key", &token]);
    drift_cli(&all).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_push_pull_and_validate_a_folder_against_a_running_gateway() {
    let app = spawn_app().await;
    let dir = infra().dir.join(format!("defs-{}", uid()));
    std::fs::create_dir_all(dir.join("nodes")).unwrap();
    let id = format!("git-{}", uid());
    let node_id = format!("gitnode-{}", uid());
    let write_flow = |label: &str| {
        let mut flow = greeting(&id, label);
        flow["version"] = json!("1");
        flow["states"]["ask"]["nextNode"] = json!("shared");
        flow["states"]["shared"] = json!({"resourceId": node_id, "nextNode": "done"});
        std::fs::write(
            dir.join(format!("{id}.json")),
            serde_json::to_string_pretty(&flow).unwrap(),
        )
        .unwrap();
    };
    std::fs::write(
        dir.join("nodes").join(format!("{node_id}.json")),
        json!({"id": node_id, "node": {"type": "SCRIPT", "script": "42"}}).to_string(),
    )
    .unwrap();
    write_flow("v1");
    let d = dir.to_str().unwrap();

    let (ok, out) = cli(&app, &["validate", d]).await;
    assert!(ok, "{out}");
    let (ok, out) = cli(&app, &["push", d]).await;
    assert!(ok, "{out}");
    assert!(out.contains("published v1, active"), "{out}");
    let r = app.start(&id, json!({})).await;
    assert_eq!(r.body["view"]["layoutId"], "greet-v1", "{r:?}");

    // Pushing again changes nothing; an edited file becomes v2 and serves.
    let (ok, out) = cli(&app, &["push", d]).await;
    assert!(ok && out.contains("unchanged (v1)"), "{out}");
    write_flow("v2");
    let (ok, out) = cli(&app, &["push", d]).await;
    assert!(ok && out.contains("published v2, active"), "{out}");
    let r = app.start(&id, json!({})).await;
    assert_eq!(r.body["view"]["layoutId"], "greet-v2", "{r:?}");

    // An invalid folder: validate names the node and field and fails; push changes nothing.
    let mut broken = greeting(&id, "v3");
    broken["states"]["ask"]["nextNode"] = json!("gone");
    std::fs::write(dir.join(format!("{id}.json")), broken.to_string()).unwrap();
    let (ok, out) = cli(&app, &["validate", d]).await;
    assert!(!ok, "{out}");
    assert!(out.contains("node ask, field nextNode"), "{out}");
    let (ok, out) = cli(&app, &["push", d]).await;
    assert!(!ok && out.contains("nothing was pushed"), "{out}");
    let r = app
        .call(Method::GET, &format!("/v3/definitions/{id}/versions"), None, &[])
        .await;
    assert_eq!(r.body["versions"].as_array().unwrap().len(), 2, "{r:?}");

    // A misspelt field is named where it is by the definition schema, before the gateway is
    // asked; `--offline` checks the same with no gateway at all.
    let mut misspelt = greeting(&id, "v3");
    misspelt["states"]["ask"]["node"]["layoutID"] = json!("greet-v3");
    std::fs::write(dir.join(format!("{id}.json")), misspelt.to_string()).unwrap();
    let (ok, out) = cli(&app, &["validate", d]).await;
    assert!(
        !ok && out.contains("SCHEMA  workflow") && out.contains("at /states/ask/node"),
        "{out}"
    );
    assert!(out.contains("layoutID"), "{out}");
    let offline = std::process::Command::new(drift_bin())
        .args(["definitions", "validate", "--offline", d, "--url", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&offline.stdout);
    assert!(
        !offline.status.success() && text.contains("at /states/ask/node"),
        "{text}"
    );
    std::fs::write(dir.join(format!("{id}.json")), greeting(&id, "v3").to_string()).unwrap();
    let offline = std::process::Command::new(drift_bin())
        .args(["definitions", "validate", "--offline", d, "--url", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert!(offline.status.success(), "{}", String::from_utf8_lossy(&offline.stdout));

    // Pull writes what serves.
    let pulled = infra().dir.join(format!("pulled-{}", uid()));
    let (ok, out) = cli(&app, &["pull", pulled.to_str().unwrap()]).await;
    assert!(ok, "{out}");
    let flow: Value =
        serde_json::from_str(&std::fs::read_to_string(pulled.join(format!("{id}.json"))).unwrap()).unwrap();
    assert_eq!(flow["version"], "2");
    assert_eq!(flow["states"]["ask"]["node"]["layoutId"], "greet-v2");
    assert!(pulled.join("nodes").join(format!("{node_id}.json")).is_file());
    assert!(pulled.join("refund.json").is_file(), "the examples are there too");
}

/// The examples' scripted refund (the first case of `examples/refund.test.json`): both screens
/// answered, both HTTP calls stubbed.
fn refund_scenario() -> Value {
    let file: Value = serde_json::from_str(include_str!("../../examples/refund.test.json")).unwrap();
    let mut case = file["cases"][0].clone();
    let o = case.as_object_mut().unwrap();
    o.remove("name");
    o.remove("expect");
    case
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulating_refund_with_the_examples_answers_lists_its_path_screens_and_end() {
    let app = spawn_app().await;
    let r = app
        .call(
            Method::POST,
            "/v3/definitions/refund/simulate",
            Some(refund_scenario()),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    eprintln!("simulate refund: {}", serde_json::to_string_pretty(&r.body).unwrap());
    let path: Vec<&str> = r.body["path"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["node"].as_str().unwrap())
        .collect();
    assert_eq!(
        path,
        [
            "fetch_order",
            "check_amount",
            "refund_reason",
            "confirm",
            "decide",
            "issue_refund",
            "refunded"
        ]
    );
    assert_eq!(r.body["path"][0]["type"], "HTTP");
    assert_eq!(r.body["path"][0]["output"]["amount"], 120);
    assert_eq!(
        r.body["path"][5]["output"],
        json!({"refundId": "rf-1", "status": "issued"})
    );
    assert_eq!(r.body["screens"][0]["view"]["layoutId"], "refund_reason");
    assert_eq!(r.body["screens"][1]["seq"], 2);
    assert_eq!(r.body["finalState"]["workflowStatus"], "COMPLETED");
    assert_eq!(r.body["finalState"]["disposition"]["refundId"], "rf-1");
    // Nothing ran on Temporal for it: the tenant has no workflows.
    let list = temporal_cli(&[
        "workflow",
        "list",
        "--query",
        &format!("WorkflowId STARTS_WITH '{}/'", app.tenant),
    ]);
    assert_eq!(list.as_array().map_or(0, Vec::len), 0, "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_a_simulated_screen_refuses_carries_the_422_a_real_resume_gets() {
    let app = spawn_app().await;
    let wrong = json!({"selectedOptions": {"reason": "bored"}});
    // The real one: refund on the stand-ins, answered with a reason the dropdown lacks.
    let started = app.start("refund", json!({"orderId": "o-1"})).await;
    assert_eq!(started.status, StatusCode::OK, "{started:?}");
    let real = app
        .call(
            Method::PUT,
            &format!("/v3/workflow/resume/{}", id_of(&started)),
            Some(json!({"viewResponse": wrong})),
            &[],
        )
        .await;
    assert_eq!(real.status, StatusCode::UNPROCESSABLE_ENTITY, "{real:?}");
    let mut sc = refund_scenario();
    sc["answers"]
        .as_array_mut()
        .unwrap()
        .insert(0, json!({"node": "refund_reason", "viewResponse": wrong}));
    let r = app
        .call(Method::POST, "/v3/definitions/refund/simulate", Some(sc), &[])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let rejected = &r.body["rejections"][0];
    assert_eq!(
        (rejected["answer"].clone(), rejected["node"].clone()),
        (json!(0), json!("refund_reason"))
    );
    assert_eq!(rejected["status"], 422);
    assert_eq!(rejected["error"], real.body, "the same body as the real resume's");
    assert_eq!(
        r.body["finalState"]["workflowStatus"], "COMPLETED",
        "the next answer was taken"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsaved_definition_is_simulated_and_bad_ones_are_refused_with_what_is_wrong() {
    let app = spawn_app().await;
    let id = format!("draft-{}", uid());
    let mut draft = greeting(&id, "draft");
    let r = app
        .call(
            Method::POST,
            &format!("/v3/definitions/{id}/simulate"),
            Some(json!({"definition": draft, "answers": [{"node": "ask", "viewResponse": {"selectedOptions": {"ok": "ok"}}}]})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.body["finalState"]["disposition"], json!({"ranOn": "draft"}));
    // Nothing was saved by it.
    let saved = app.call(Method::GET, &format!("/v3/definitions/{id}"), None, &[]).await;
    assert_eq!(saved.status, StatusCode::NOT_FOUND, "{saved:?}");

    draft["states"]["ask"]["nextNode"] = json!("gone");
    let r = app
        .call(
            Method::POST,
            &format!("/v3/definitions/{id}/simulate"),
            Some(json!({"definition": draft})),
            &[],
        )
        .await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_definition")),
        "{r:?}"
    );
    let r = app
        .call(
            Method::POST,
            "/v3/definitions/other/simulate",
            Some(json!({"definition": greeting(&id, "x")})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert!(r.body["message"].as_str().unwrap().contains("the path names"), "{r:?}");
    let r = app
        .call(
            Method::POST,
            "/v3/definitions/refund/simulate",
            Some(json!({"answer": []})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "an unknown field: {r:?}");
    let r = app
        .call(Method::POST, "/v3/definitions/nope/simulate", Some(json!({})), &[])
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r:?}");
    // A flow that never settles comes back stopped, in bounded time.
    let spin = json!({"id": id, "startNode": "a", "states": {
        "a": {"node": {"type": "SCRIPT", "script": "let x = 0; while x < 20000 { x += 1; } x"}, "nextNode": "a"}
    }});
    let t0 = std::time::Instant::now();
    let r = app
        .call(
            Method::POST,
            &format!("/v3/definitions/{id}/simulate"),
            Some(json!({"definition": spin})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert!(r.body["stopped"]["reason"].is_string(), "{r:?}");
    assert!(t0.elapsed() < Duration::from_secs(5), "took {:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definition_tests_pass_for_the_examples_and_a_changed_branch_rule_fails_them_and_push() {
    let app = spawn_app().await;
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let (ok, out) = cli(&app, &["test", examples]).await;
    assert!(ok && out.contains("11 passed, 0 failed"), "{out}");
    let (ok, out) = cli(&app, &["test", "--remote", examples]).await;
    assert!(ok && out.contains("11 passed, 0 failed"), "on the gateway: {out}");

    let dir = infra().dir.join(format!("changed-{}", uid()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["refund.json", "refund.test.json"] {
        std::fs::copy(format!("{examples}/{f}"), dir.join(f)).unwrap();
    }
    let refund = std::fs::read_to_string(dir.join("refund.json")).unwrap();
    let changed = refund.replace(
        "ctx.fetch_order.amount > enums.autoRefundLimit",
        "ctx.fetch_order.amount < enums.autoRefundLimit",
    );
    assert_ne!(refund, changed);
    std::fs::write(dir.join("refund.json"), changed).unwrap();
    let d = dir.to_str().unwrap();
    let (ok, out) = cli(&app, &["test", d]).await;
    eprintln!("{out}");
    assert!(!ok, "{out}");
    assert!(
        out.contains("FAIL    refund: a small order is refunded after the reason and the confirmation"),
        "{out}"
    );
    assert!(
        out.contains("path (at step 3): expected \"refund_reason\", got the end of the path"),
        "{out}"
    );
    assert!(out.contains("1 passed, 5 failed"), "{out}");
    let (ok, out) = cli(&app, &["push", d]).await;
    assert!(!ok && out.contains("nothing was pushed"), "{out}");
    let r = app
        .call(Method::GET, "/v3/definitions/refund/versions", None, &[])
        .await;
    assert_eq!(
        r.body["versions"].as_array().unwrap().len(),
        1,
        "refund is as it was: {r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_needs_a_credential_that_reads_and_runs_as_the_callers_own_tenant() {
    let app = spawn_app().await;
    let stream = app.start("quick_screen", json!({"n": 1})).await.body["streamToken"]
        .as_str()
        .unwrap()
        .to_string();
    let simulate = |auth: Option<String>| {
        let mut req = app
            .http
            .post(format!("{}/v3/definitions/refund/simulate", app.base))
            .json(&refund_scenario());
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        send(req)
    };
    let r = simulate(None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "no credential: {r:?}");
    let r = simulate(Some(bearer(&stream))).await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "a stream token reads one workflow only: {r:?}"
    );
    let starter = jwt(&app.tenant, "tests", "workflows:start workflows:drive", 600);
    let r = simulate(Some(bearer(&starter))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "no workflows:read: {r:?}");
    // Another tenant's reader simulates (definitions are shared), as itself: its own thread
    // context, and nothing of this tenant's.
    let other = jwt("other-tenant", "someone", "workflows:read", 600);
    let r = simulate(Some(bearer(&other))).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let tc = &r.body["finalState"]["context"]["threadContext"];
    assert_eq!(
        (tc["tenant"].as_str(), tc["client"].as_str()),
        (Some("other-tenant"), Some("someone")),
        "{r:?}"
    );
    assert!(!r.body.to_string().contains(&app.tenant), "{r:?}");
}
