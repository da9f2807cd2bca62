//! Nothing stuck, whatever a definition does: a run that would hand Temporal more than it
//! takes ends FAILED naming the node and the budget (for every caller, stream and webhook), a
//! CHILD that starts itself is refused or stopped, and a run whose workflow task keeps failing
//! is reported instead of answered with 202 forever.

use crate::helpers::*;
use crate::webhooks::Receiver;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn with_flags(flags: &[&str]) -> Opts {
    Opts {
        extra_args: flags.iter().map(|s| s.to_string()).collect(),
        ..Opts::default()
    }
}

/// Answers the wizard's step screen; the answer's status and body.
async fn next_step(app: &TestApp, id: &str) -> Resp {
    app.resume(id, json!({"next": "next"})).await
}

fn run_ids(app: &TestApp, id: &str) -> (Value, Value) {
    let d = temporal_cli(&["workflow", "describe", "--workflow-id", &format!("{}/{id}", app.tenant)]);
    let info = &d["workflowExecutionInfo"];
    (info["firstRunId"].clone(), info["execution"]["runId"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wizard_over_a_900_kb_answer_keeps_moving_past_every_continue_as_new_and_back_still_works() {
    // As a team tried it: a 900 KB list fetched once, then a screen looped through a pure
    // SCRIPT counter, with the harness's history limit of 100 events. Each answered screen is
    // a Back point; they used to carry a copy of the context each, and the 19th answer found
    // a run Temporal refused to continue (TMPRL1103), for good.
    let app = spawn_app().await;
    let r = app.start("wizard", json!({"bytes": 900_000})).await;
    assert_eq!((r.status, status_of(&r)), (StatusCode::OK, "WAITING"), "{r:?}");
    let id = id_of(&r);
    for n in 1..=45u64 {
        let r = next_step(&app, &id).await;
        assert_eq!(r.status, StatusCode::OK, "answer {n}: {r:?}");
        assert_eq!(
            (status_of(&r), r.body["seq"].as_u64()),
            ("WAITING", Some(n + 1)),
            "answer {n}: {r:?}"
        );
    }
    let (first, now) = run_ids(&app, &id);
    assert_ne!(first, now, "it continued as new (more than once) on the way");
    // Back returns through the screens carried across those continues, each as it was.
    let back = app
        .call(
            Method::POST,
            &format!("/v3/workflow/{id}/back"),
            Some(json!({"seq": 46})),
            &[],
        )
        .await;
    assert_eq!(back.status, StatusCode::OK, "{back:?}");
    assert_eq!(
        (back.body["seq"].clone(), back.body["previousAnswer"].clone()),
        (json!(47), json!({"next": "next"})),
        "{back:?}"
    );
    let r = next_step(&app, &id).await;
    assert_eq!((r.status, r.body["seq"].as_u64()), (StatusCode::OK, Some(48)), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_context_outgrowing_its_budget_ends_the_run_failed_naming_node_and_budget_for_caller_stream_and_webhook() {
    // Large answers kept in the context: past ~2 MB a continue-as-new would be refused by
    // Temporal. Two 600 KB answers fit the context budget; the third fetch would take it over,
    // so the run ends there, FAILED, and says so.
    let app = spawn_app().await;
    let r = app.start("fetch3", json!({"bytes": 600_000})).await;
    assert_eq!((r.status, status_of(&r)), (StatusCode::OK, "FAILED"), "{r:?}");
    let message = r.body["errorMessage"].as_str().unwrap().to_string();
    eprintln!("fetch3 ended: {message}");
    assert!(
        message.starts_with("node \"c\": the run's context would be")
            && message.ends_with("over the context budget of 1,310,720 bytes (--max-context-bytes)"),
        "{message}"
    );
    assert_eq!(app.get(&id_of(&r)).await.body["errorMessage"], message.as_str());

    // Async: the webhook receiver and a live follower get the same end.
    let rx = Receiver::new(WEBHOOK_SECRET, vec![]);
    let callback = rx.serve(0).await;
    let r = app
        .call(
            Method::POST,
            "/v3/workflow/start",
            Some(json!({"workflow": "fetch3", "params": {"bytes": 600_000}, "callbackUrl": callback})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    let (id, token) = (id_of(&r), r.body["streamToken"].as_str().unwrap().to_string());
    let mut sse = SseClient::connect(&app.events_url(&id, &format!("?token={token}")), &[])
        .await
        .unwrap();
    let mut last = Value::Null;
    while let Some(ev) = sse.next(T).await {
        if ev.event == "state" {
            last = ev.data;
        }
    }
    assert_eq!(
        (last["workflowStatus"].as_str(), last["errorMessage"].as_str()),
        (Some("FAILED"), Some(message.as_str()))
    );
    let delivered = rx.wait_delivered(1, T).await;
    assert_eq!(delivered, vec![(1, "FAILED".to_string())]);
    assert!(rx.hits().iter().all(|h| h.verified), "signed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_screen_over_the_state_budget_and_a_response_over_the_node_budget_each_fail_their_node() {
    // A dropdown filled from a 20,000-item catalog (about 900 KB): under the node output
    // budget as a response, over the state budget as a screen.
    let app = spawn_app_with(with_flags(&["--max-node-output-bytes=1048576"])).await;
    let r = app.start("catalog_pick", json!({"n": 20_000})).await;
    assert_eq!(status_of(&r), "FAILED", "{r:?}");
    let m = r.body["errorMessage"].as_str().unwrap();
    eprintln!("catalog_pick ended: {m}");
    assert!(
        m.starts_with("node \"pick\": its screen is")
            && m.ends_with("over the state budget of 524,288 bytes (--max-state-bytes)"),
        "{m}"
    );
    // A smaller catalog is a screen like any other.
    let r = app.start("catalog_pick", json!({"n": 50})).await;
    assert_eq!(status_of(&r), "WAITING", "{r:?}");
    let done = app.resume(&id_of(&r), json!({"item": "i7"})).await;
    assert_eq!(done.body["disposition"]["item"], "i7", "{done:?}");

    // A response over the run's node output budget fails its node, naming the budget.
    let small = spawn_app_with(with_flags(&["--max-node-output-bytes=100000"])).await;
    let url = format!("{}/stand-ins/bytes/200000", small.base);
    let r = small.start("fetch", json!({"url": url})).await;
    assert_eq!(status_of(&r), "FAILED", "{r:?}");
    assert_eq!(
        r.body["errorMessage"],
        "HTTP node \"get\" failed: the upstream's answer is larger than 100,000 bytes, the run's node output budget \
         (--max-node-output-bytes)"
    );
}

async fn create_and_publish(app: &TestApp, body: Value) -> Resp {
    let id = body["id"].as_str().unwrap().to_string();
    let r = app.call(Method::POST, "/v3/definitions", Some(body), &[]).await;
    if r.status != StatusCode::CREATED {
        return r;
    }
    app.call(Method::POST, &format!("/v3/definitions/{id}/publish"), None, &[])
        .await
}

fn spawning(id: &str, child: &str) -> Value {
    json!({"id": id, "startNode": "spawn", "states": {
        "spawn": {"node": {"type": "CHILD", "workflow": child}, "nextNode": "done"},
        "done": {"node": {"type": "SUCCESS"}}}})
}

fn errors(r: &Resp) -> Vec<Value> {
    r.body["details"]["errors"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_starts_itself_is_refused_when_saved_and_a_cycle_closed_by_a_publish_there() {
    // As a team found it: a CHILD starting its own workflow published, and one start made a
    // chain of about 120 runs, stopped only by the id's length.
    let app = spawn_app().await;
    let u = uid();
    // A CHILD that starts itself: refused as soon as it is saved.
    let selfish = format!("selfish-{u}");
    let r = create_and_publish(&app, spawning(&selfish, &selfish)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r:?}");
    let e = errors(&r);
    assert_eq!(
        (e[0]["node"].as_str(), e[0]["field"].as_str()),
        (Some("spawn"), Some("node.workflow")),
        "{r:?}"
    );
    assert!(
        e[0]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("{selfish} → {selfish}")),
        "{r:?}"
    );

    // A → B → A, closed by a publish: A was saved while B did not exist yet.
    let (a, b) = (format!("ping-{u}"), format!("pong-{u}"));
    let r = app
        .call(Method::POST, "/v3/definitions", Some(spawning(&a, &b)), &[])
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let r = create_and_publish(&app, spawning(&b, &a)).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "B alone starts no cycle (A has no version yet): {r:?}"
    );
    let r = app
        .call(Method::POST, &format!("/v3/definitions/{a}/publish"), None, &[])
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r:?}");
    assert!(
        errors(&r)[0]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("{a} → {b} → {a}")),
        "{r:?}"
    );
    let versions = app
        .call(Method::GET, &format!("/v3/definitions/{a}/versions"), None, &[])
        .await;
    assert!(
        !versions.body.to_string().contains("\"version\":1"),
        "nothing published: {versions:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_definition_whose_screen_is_over_the_state_budget_before_it_runs_is_refused_naming_node_and_budget() {
    let app = spawn_app_with(with_flags(&["--max-state-bytes=16384"])).await;
    let u = uid();
    // A screen whose static choices alone are over the state budget.
    let options: Vec<Value> = (0..600)
        .map(|i| json!({"displayValue": format!("Option number {i}"), "value": format!("o{i}")}))
        .collect();
    let wide = format!("wide-{u}");
    let body = json!({"id": wide, "startNode": "pick", "states": {
        "pick": {"node": {"type": "INSTRUCTION", "layoutId": "pick", "inputOptions": [
            {"id": "o", "tags": {"values": ["ui.dropdown"]}, "possibleValues": options}]}, "nextNode": "done"},
        "done": {"node": {"type": "SUCCESS"}}}});
    let r = create_and_publish(&app, body).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r:?}");
    let e = &errors(&r)[0];
    assert_eq!(
        (e["node"].as_str(), e["field"].as_str()),
        (Some("pick"), Some("node.inputOptions")),
        "{r:?}"
    );
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("over the state budget of 16,384 bytes (--max-state-bytes)"),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_cycle_through_a_node_published_later_stops_at_the_depth_bound_with_a_clear_reason() {
    // The cycle no publish of the workflow could see: its CHILD node is a node definition,
    // whose next version (published and activated afterwards) starts the workflow itself.
    let app = spawn_app_with(with_flags(&["--max-child-depth=3"])).await;
    let u = uid();
    let (spawner, leaf, looping) = (format!("spawner-{u}"), format!("leaf-{u}"), format!("looping-{u}"));
    let leaf_body = json!({"id": leaf, "startNode": "done", "states": {"done": {"node": {"type": "SUCCESS"}}}});
    assert_eq!(create_and_publish(&app, leaf_body).await.status, StatusCode::OK);
    let activate = |kind: &'static str, id: String, version: u64| {
        let app = &app;
        async move {
            let r = app
                .call(
                    Method::POST,
                    &format!("/v3/{kind}/{id}/activate"),
                    Some(json!({"version": version})),
                    &[],
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{r:?}");
        }
    };
    activate("definitions", leaf.clone(), 1).await;
    let node = |child: &str| json!({"id": spawner, "node": {"type": "CHILD", "workflow": child}});
    let r = app.call(Method::POST, "/v3/nodes", Some(node(&leaf)), &[]).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    app.call(Method::POST, &format!("/v3/nodes/{spawner}/publish"), None, &[])
        .await;
    activate("nodes", spawner.clone(), 1).await;
    let body = json!({"id": looping, "startNode": "spawn", "states": {
        "spawn": {"resourceId": spawner, "nextNode": "show"},
        "show": {"node": {"type": "INSTRUCTION", "layoutId": "spawned", "inputOptions": [
            {"id": "child", "tags": {"values": ["ui.static_text"]},
             "instructions": [{"templateId": "child", "templateVariables": {"childId": "$.spawn.workflowId"}}]}]},
         "nextNode": "done"},
        "done": {"node": {"type": "SUCCESS"}}}});
    assert_eq!(create_and_publish(&app, body).await.status, StatusCode::OK);
    activate("definitions", looping.clone(), 1).await;
    // Version 2 of the node starts the workflow that uses it.
    app.call(Method::PUT, &format!("/v3/nodes/{spawner}"), Some(node(&looping)), &[])
        .await;
    let r = app
        .call(Method::POST, &format!("/v3/nodes/{spawner}/publish"), None, &[])
        .await;
    assert_eq!(r.body["version"], 2, "{r:?}");
    activate("nodes", spawner.clone(), 2).await;

    let r = app.start(&looping, json!({})).await;
    assert_eq!(status_of(&r), "WAITING", "{r:?}");
    // Follow the chain: each run shows the id of the child it started.
    let mut state = r.body;
    for depth in 1..=3 {
        let child = state["view"]["inputOptions"][0]["instructions"][0]["templateVariables"]["childId"]
            .as_str()
            .unwrap_or_else(|| panic!("depth {}: {state}", depth - 1))
            .to_string();
        state = app
            .eventually(&child, T, |s| {
                ["WAITING", "FAILED"].contains(&s["workflowStatus"].as_str().unwrap_or(""))
            })
            .await;
    }
    assert_eq!(
        state["workflowStatus"], "FAILED",
        "the run at depth 3 starts no child: {state}"
    );
    let m = state["errorMessage"].as_str().unwrap();
    assert!(
        m.contains(
            "node \"spawn\": the child would run at depth 4, over the child depth bound of 3 (--max-child-depth)"
        ),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_workflow_task_keeps_failing_is_reported_to_callers_reads_and_metrics() {
    // A failing workflow task caused on purpose: budgets raised past Temporal's 2 MiB payload
    // limit (which a cluster could raise, this one does not), then a context of 2.7 MB that
    // the next continue-as-new carries. Temporal refuses it on every retry.
    let app = spawn_app_with(with_flags(&[
        "--max-context-bytes=3000000",
        "--max-carry-bytes=4000000",
    ]))
    .await;
    let r = app.start("fetch3", json!({"bytes": 900_000})).await;
    assert_eq!(status_of(&r), "WAITING", "{r:?}");
    let id = id_of(&r);
    let before = app.metric("drift_workflow_task_failing_total").await;
    let mut refused = None;
    for n in 1..=40 {
        let r = next_step(&app, &id).await;
        if r.status != StatusCode::OK {
            refused = Some((n, r));
            break;
        }
    }
    let (n, r) = refused.expect("the history limit (100 events) is reached within 40 answers");
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "answer {n}: {r:?}");
    assert_eq!(r.body["code"], "workflow_task_failing", "{r:?}");
    assert_eq!(r.body["details"]["cause"], "payloads_too_large", "{r:?}");
    assert!(
        r.body["details"]["message"].as_str().unwrap().contains("TMPRL1103"),
        "{r:?}"
    );
    assert!(r.body["details"]["attempts"].as_u64().unwrap() >= 2, "{r:?}");

    let st = app.get(&id).await;
    assert_eq!(st.status, StatusCode::OK, "{st:?}");
    assert_eq!(
        st.body["workflowStatus"], "WAITING",
        "the last state it published: {st:?}"
    );
    assert_eq!(st.body["workflowTaskFailing"]["cause"], "payloads_too_large", "{st:?}");
    assert!(app.metric("drift_workflow_task_failing_total").await > before);
    // A healthy run reads without it.
    let ok = app.start("wizard", json!({"bytes": 10})).await;
    assert!(app.get(&id_of(&ok)).await.body.get("workflowTaskFailing").is_none());
    app.call(Method::DELETE, &format!("/v3/workflow/terminate/{id}"), None, &[])
        .await;
}
