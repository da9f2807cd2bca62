//! Flows end to end through the blocking API: every node type on a real Temporal, the errors
//! each call can answer, idempotent starts, timeouts answering 202, ends from outside, and a
//! worker killed mid-flow.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refund_example_completes_through_blocking_calls_and_ran_on_temporal() {
    let app = spawn_app().await;
    let r = app.start("refund", json!({"orderId": "o-1"})).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(status_of(&r), "WAITING");
    let a = r.answer();
    assert_eq!(a.workflow_id, id_of(&r));
    assert_eq!(a.node.as_deref(), Some("refund_reason"));
    assert_eq!(a.screen().layout_id, "refund_reason");
    assert_eq!(a.var("orderId"), "o-1");
    assert_eq!(a.seq, 1);
    assert!(a.request_id.is_some());
    let id = id_of(&r);

    let r = app
        .resume(&id, json!({"reason": "damaged", "comment": "box crushed"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let a = r.answer();
    assert_eq!((a.screen().layout_id.as_str(), a.seq), ("refund_confirm", 2));
    assert_eq!(a.var("reason"), "damaged");

    let r = app.resume(&id, json!({"action": "confirm"})).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(status_of(&r), "COMPLETED");
    assert!(r.body["disposition"]["refundId"].as_str().unwrap().starts_with("rf-"));
    assert_eq!(r.body["links"]["self"], format!("/v3/workflow/{id}"));

    let d = temporal_cli(&["workflow", "describe", "--workflow-id", &format!("{}/{id}", app.tenant)]);
    let info = &d["workflowExecutionInfo"];
    assert_eq!(info["status"], "WORKFLOW_EXECUTION_STATUS_COMPLETED", "{d}");
    assert_eq!(info["type"]["name"], "drift");
    assert_eq!(info["taskQueue"], app.task_queue);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_order_branches_to_manual_review() {
    let app = spawn_app().await;
    let r = app.start("refund", json!({"orderId": "big-1"})).await;
    assert_eq!(r.body["view"]["layoutId"], "manual_review", "{r:?}");
    let r = app.resume(&id_of(&r), json!({"ack": "ok"})).await;
    assert_eq!(r.body["disposition"]["message"], "Sent to manual review");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_timer_http_and_script_nodes_run_to_completion() {
    let app = spawn_app().await;
    let r = app.start("monthly_report", json!({"month": "2026-10"})).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(status_of(&r), "SCHEDULER_WAITING");
    let id = id_of(&r);
    let done = app
        .eventually(&id, Duration::from_secs(30), |b| b["workflowStatus"] == "COMPLETED")
        .await;
    assert_eq!(done["disposition"]["month"], "2026-10");
    assert!(done["disposition"]["reportId"].as_str().unwrap().starts_with("rep-"));
    assert_eq!(done["seq"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_node_starts_a_child_workflow_and_the_parent_goes_on() {
    let app = spawn_app().await;
    let r = app.start("parent_child", json!({"topic": "taxes"})).await;
    assert_eq!(status_of(&r), "WAITING", "{r:?}");
    let parent = id_of(&r);
    let child_id = r.answer().var("childId").as_str().unwrap().to_string();
    let child = app
        .eventually(&child_id, Duration::from_secs(20), |b| b["workflowStatus"] == "WAITING")
        .await;
    assert_eq!(Answer::of(&child).var("topic"), "taxes");
    let r = app.resume(&child_id, json!({"ok": "ok"})).await;
    assert_eq!(status_of(&r), "COMPLETED", "{r:?}");
    let r = app.resume(&parent, json!({"ok": "ok"})).await;
    assert_eq!(status_of(&r), "COMPLETED", "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_http_node_routes_to_default_failure_node_with_its_error() {
    let app = spawn_app().await;
    let r = app.start("refund", json!({"orderId": "missing-7"})).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let a = r.answer();
    assert_eq!(a.workflow_status, "FAILED", "{a:?}");
    let msg = a.error_message.unwrap_or_default();
    assert!(msg.starts_with("Refund failed:") && msg.contains("404"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_script_node_routes_to_default_failure_node() {
    let app = spawn_app().await;
    let r = app.start("bad_script", json!({"a": 1, "b": 0})).await;
    assert_eq!(status_of(&r), "FAILED", "{r:?}");
    assert!(
        r.body["errorMessage"]
            .as_str()
            .unwrap()
            .starts_with("could not compute: script failed"),
        "{r:?}"
    );
    let ok = app.start("bad_script", json!({"a": 6, "b": 3})).await;
    assert_eq!(ok.body["disposition"]["result"], 2, "{ok:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loops_continue_as_new_and_keep_their_context() {
    let app = spawn_app().await;
    let r = app.start("looper", json!({"times": 40})).await;
    let id = id_of(&r);
    let done = app
        .eventually(&id, Duration::from_secs(60), |b| b["workflowStatus"] == "COMPLETED")
        .await;
    assert_eq!(done["disposition"]["count"], 40);
    assert_eq!(
        done["seq"], 1,
        "HTTP ticks are not stable states: only the end is published"
    );
    let d = temporal_cli(&["workflow", "describe", "--workflow-id", &format!("{}/{id}", app.tenant)]);
    let first_run = &d["workflowExecutionInfo"]["firstRunId"];
    let last_run = &d["workflowExecutionInfo"]["execution"]["runId"];
    assert!(first_run.is_string());
    assert_ne!(
        first_run, last_run,
        "the last run should be a continued-as-new run: {d}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_or_unauthenticated_calls_return_4xx_and_start_nothing() {
    let app = spawn_app().await;
    let r = app
        .http
        .post(format!("{}/v3/workflow/start", app.base))
        .header("X_TENANT_ID", &app.tenant)
        .header("X_CLIENT_ID", "t")
        .json(&json!({"workflow": "refund"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "tenant headers alone are no credential"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "unauthorized");
    assert!(body["message"].as_str().unwrap().contains("Bearer"));
    let r = app
        .http
        .post(format!("{}/v3/workflow/start", app.base))
        .header("authorization", bearer(&app.token("t")))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = app
        .call(
            Method::POST,
            "/v3/workflow/start",
            Some(json!({"workflow": "refund", "workflowId": "bad id!"})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    let r = app
        .call(
            Method::POST,
            "/v3/workflow/start",
            Some(json!({"workflow": "refund", "params": [1]})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    let big = "x".repeat(100 * 1024);
    let r = app
        .call(
            Method::POST,
            "/v3/workflow/start",
            Some(json!({"workflow": "refund", "params": {"b": big}})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_definition_unknown_workflow_and_other_tenants_workflow_are_404() {
    let app = spawn_app().await;
    let r = app.start("no_such_flow", json!({})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r:?}");
    assert_eq!(r.body["code"], "not_found");
    let r = app.get("wf-does-not-exist").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r:?}");
    let r = app.resume("wf-does-not-exist", json!({"x": 1})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r:?}");

    let mine = app.start("quick_screen", json!({"n": 1})).await;
    let id = id_of(&mine);
    let other = |m: Method, path: String, body: Option<Value>| {
        let mut req = app
            .http
            .request(m, format!("{}{path}", app.base))
            .header("authorization", bearer(&jwt("intruder", "x", ALL_SCOPES, 600)));
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send()
    };
    assert_eq!(
        other(Method::GET, format!("/v3/workflow/{id}"), None)
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    let body = json!({"viewResponse": {"selectedOptions": {"ok": "ok"}}});
    assert_eq!(
        other(Method::PUT, format!("/v3/workflow/resume/{id}"), Some(body))
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        other(Method::DELETE, format!("/v3/workflow/terminate/{id}"), None)
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        status_of(&app.get(&id).await),
        "WAITING",
        "the owner's workflow is untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_when_not_waiting_returns_409() {
    let app = spawn_app().await;
    let r = app.start("quick_screen", json!({"n": 2})).await;
    let id = id_of(&r);
    let stale = r.body["seq"].as_u64().unwrap() + 5;
    let r = app
        .call(
            Method::PUT,
            &format!("/v3/workflow/resume/{id}"),
            Some(json!({"viewResponse": {"selectedOptions": {"ok": "ok"}}, "seq": stale})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{r:?}");
    assert_eq!(r.body["code"], "stale_screen");
    assert_eq!(status_of(&app.resume(&id, json!({"ok": "ok"})).await), "COMPLETED");
    let r = app.resume(&id, json!({"ok": "ok"})).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{r:?}");
    assert_eq!(r.body["code"], "not_waiting");
    let r = app.start("monthly_report", json!({"month": "x"})).await;
    let r = app.resume(&id_of(&r), json!({})).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "a timer is not a screen: {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_with_missing_required_widget_returns_422_and_a_corrected_answer_succeeds() {
    let app = spawn_app().await;
    let r = app.start("refund", json!({"orderId": "o-422"})).await;
    let id = id_of(&r);
    let seq = r.body["seq"].clone();

    let r = app.resume(&id, json!({"comment": "no reason given"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r:?}");
    assert_eq!(r.body["code"], "invalid_answer");
    assert_eq!(r.body["details"][0]["widgetId"], "reason");

    let r = app.resume(&id, json!({"reason": "stolen"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r:?}");
    assert!(
        r.body["details"][0]["message"]
            .as_str()
            .unwrap()
            .contains("not one of the allowed values")
    );

    let now = app.get(&id).await;
    assert_eq!(status_of(&now), "WAITING");
    assert_eq!(now.body["seq"], seq, "a rejected answer changes nothing");

    let r = app.resume(&id, json!({"reason": "wrong_item"})).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.body["view"]["layoutId"], "refund_confirm");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnected_node_executed_three_times_leaves_seq_and_status_unchanged() {
    let app = spawn_app().await;
    let r = app.start("bank_account", json!({})).await;
    assert_eq!(r.body["view"]["layoutId"], "bank_account", "{r:?}");
    let id = id_of(&r);
    let before = app.get(&id).await.body;
    for (acct, valid) in [("123", false), ("12345678", true), ("abcdefgh", false)] {
        let r = app.execute(&id, "verify_account", json!({"accountNumber": acct})).await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        assert_eq!(r.body["workflowId"], id);
        assert_eq!(r.body["node"], "verify_account");
        assert_eq!(r.body["status"], "SUCCESS");
        assert_eq!(r.body["response"]["valid"], valid, "{r:?}");
    }
    let after = app.get(&id).await.body;
    assert_eq!(after["seq"], before["seq"]);
    assert_eq!(after["workflowStatus"], "WAITING");
    let r = app.execute(&id, "account_form", json!({})).await;
    assert_eq!(
        r.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a screen is not executable: {r:?}"
    );

    // Saving an invalid account loops back to the form; a valid one completes.
    let r = app.resume(&id, json!({"accountNumber": "42", "save": "save"})).await;
    assert_eq!(r.body["view"]["layoutId"], "bank_account", "{r:?}");
    let r = app
        .resume(&id, json!({"accountNumber": "87654321", "save": "save"}))
        .await;
    assert_eq!(status_of(&r), "COMPLETED", "{r:?}");
    assert_eq!(r.body["disposition"]["bankName"], "Drift Savings Bank");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_starts_get_their_own_screens_on_the_same_redis_connections() {
    let (redis, url, app) = spawn_app_on_own_redis().await;
    let first = app.start("quick_screen", json!({"n": -1})).await;
    assert_eq!(status_of(&first), "WAITING");
    let counter = ConnCounter::new(&url).await;
    let baseline = counter.count().await;

    let mut tasks = Vec::new();
    for n in 0..200 {
        let (http, base, tenant) = (app.http.clone(), app.base.clone(), app.tenant.clone());
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(format!("{base}/v3/workflow/start"))
                .header("authorization", bearer(&jwt(&tenant, "load", ALL_SCOPES, 600)))
                .json(&json!({"workflow": "quick_screen", "params": {"n": n}, "requestId": format!("req-{n}")}))
                .send()
                .await
                .unwrap();
            (n, r.status(), r.json::<Value>().await.unwrap())
        }));
    }
    let mut peak = 0;
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        peak = peak.max(counter.count().await);
        let (n, status, body) = t.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        let a = Answer::of(&body);
        assert_eq!(a.request_id, Some(format!("req-{n}")));
        assert_eq!(*a.var("n"), json!(n), "cross-talk: {body}");
        assert!(ids.insert(body["workflowId"].as_str().unwrap().to_string()));
    }
    assert_eq!(ids.len(), 200);
    let after = counter.count().await;
    assert_eq!(after, baseline, "connections after the burst");
    assert!(
        peak <= baseline,
        "connections grew during the burst: {peak} > {baseline}"
    );
    drop(app);
    on_infra(async move { redis.stop().await });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_mid_flow_and_restarted_continues_where_it_was() {
    let tq = format!("tq-{}", uid());
    let app = spawn_app_with(Opts {
        embed_worker: false,
        task_queue: Some(tq.clone()),
        ..Default::default()
    })
    .await;
    let mut w = app.spawn_worker();
    let r = app.start("refund", json!({"orderId": "o-crash"})).await;
    assert_eq!(r.body["view"]["layoutId"], "refund_reason", "{r:?}");
    let id = id_of(&r);

    w.kill().unwrap();
    w.wait().unwrap();
    // The answer goes in while no worker runs: it is accepted, not lost.
    let r = app
        .call(
            Method::PUT,
            &format!("/v3/workflow/resume/{id}"),
            Some(json!({"viewResponse": {"selectedOptions": {"reason": "damaged"}}})),
            &[("Prefer", "wait=1")],
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");

    let mut w2 = app.spawn_worker();
    let st = app.eventually(&id, Duration::from_secs(60), |b| b["seq"] == 2).await;
    assert_eq!(st["view"]["layoutId"], "refund_confirm");
    let r = app.resume(&id, json!({"action": "confirm"})).await;
    assert_eq!(status_of(&r), "COMPLETED", "{r:?}");
    w2.kill().unwrap();
    w2.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_that_runs_out_answers_202_with_links_and_the_state_arrives_later() {
    let app = spawn_app().await;
    let r = app
        .call(
            Method::POST,
            "/v3/workflow/start",
            Some(json!({"workflow": "slow_start", "params": {"ms": 1500}})),
            &[("Prefer", "wait=0.2")],
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    let id = id_of(&r);
    assert_eq!(r.body["links"]["self"], format!("/v3/workflow/{id}"));
    assert_eq!(r.body["links"]["events"], format!("/v3/workflow/{id}/events"));
    let st = app
        .eventually(&id, Duration::from_secs(20), |b| b["workflowStatus"] == "WAITING")
        .await;
    assert_eq!(st["view"]["layoutId"], "after_slow");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrying_a_start_with_the_same_idempotency_key_returns_the_same_workflow() {
    let app = spawn_app().await;
    let key = format!("order-{}", uid());
    let hdr = [("Idempotency-Key", key.as_str())];
    let start = || {
        app.call(
            Method::POST,
            "/v3/workflow/start",
            Some(json!({"workflow": "quick_screen", "params": {"n": 9}})),
            &hdr,
        )
    };
    let a = start().await;
    let b = start().await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    assert_eq!(b.status, StatusCode::OK, "{b:?}");
    assert_eq!(id_of(&a), id_of(&b));
    assert_eq!(b.body["seq"], 1);
    // Even after it completed, the key still names that workflow.
    app.resume(&id_of(&a), json!({"ok": "ok"})).await;
    let c = start().await;
    assert_eq!(id_of(&c), id_of(&a));
    assert_eq!(status_of(&c), "COMPLETED");
    // A different key is a different workflow.
    let d = app
        .call(
            Method::POST,
            "/v3/workflow/start",
            Some(json!({"workflow": "quick_screen", "params": {"n": 9}})),
            &[("Idempotency-Key", "another")],
        )
        .await;
    assert_ne!(id_of(&d), id_of(&a));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporal_unreachable_answers_503_and_starts_nothing() {
    let dead = format!("127.0.0.1:{}", drift::dev::free_port().unwrap());
    let app = spawn_app_with(Opts {
        embed_worker: false,
        temporal_address: Some(dead),
        ..Default::default()
    })
    .await;
    let r = app.start("quick_screen", json!({"n": 1})).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{r:?}");
    assert_eq!(r.body["code"], "unavailable");
    assert!(r.body["message"].as_str().unwrap().contains("Temporal"));
    let ready = app.call(Method::GET, "/readyz", None, &[]).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_unreachable_answers_503_and_starts_nothing() {
    let (redis, _, app) = spawn_app_on_own_redis().await;
    let ok = app.start("quick_screen", json!({"n": 1})).await;
    assert_eq!(ok.status, StatusCode::OK);
    on_infra(async move { redis.stop().await });
    let r = app
        .call(
            Method::POST,
            "/v3/workflow/start",
            Some(json!({"workflow": "quick_screen", "workflowId": "never-started", "params": {"n": 2}})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{r:?}");
    assert!(r.body["message"].as_str().unwrap().contains("Redis"));
    // Nothing was started on Temporal for the rejected call.
    let out = std::process::Command::new("temporal")
        .args([
            "workflow",
            "describe",
            "--workflow-id",
            &format!("{}/never-started", app.tenant),
            "--address",
            &infra().temporal_address,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "the workflow must not exist");
    // An async start with a generated id subscribes to nothing: its seq read is the Redis step
    // that must refuse it before anything reaches Temporal. Its id is unknown, so count the
    // tenant's runs instead: only the first start's.
    let r = app
        .call(
            Method::POST,
            "/v3/workflow/start",
            Some(json!({"workflow": "quick_screen", "params": {"n": 3}, "callbackUrl": "http://127.0.0.1:9/hook"})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{r:?}");
    assert!(r.body["message"].as_str().unwrap().contains("Redis"));
    let query = format!("WorkflowId STARTS_WITH '{}/'", app.tenant);
    let runs = || {
        temporal_cli(&["workflow", "list", "--query", &query])
            .as_array()
            .map_or(0, Vec::len)
    };
    // Visibility lags behind a start. A marker started after the refused call shows once the
    // list has caught up with it; a run the refused call started would show by then too.
    let marker = format!("{}/visibility-marker", app.tenant);
    temporal_cli(&[
        "workflow",
        "start",
        "--type",
        "visibility-marker",
        "--task-queue",
        &format!("nobody-{}", uid()),
        "--workflow-id",
        &marker,
    ]);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while runs() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the first run and the marker never both showed in the list"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    temporal_cli(&[
        "workflow",
        "terminate",
        "--workflow-id",
        &marker,
        "--reason",
        "test over",
    ]);
    assert_eq!(runs(), 2, "only the first start (and the marker) reached Temporal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_publishes_terminated_and_then_resume_is_409() {
    let app = spawn_app().await;
    let id = id_of(&app.start("quick_screen", json!({"n": 1})).await);
    let r = app
        .call(Method::DELETE, &format!("/v3/workflow/terminate/{id}"), None, &[])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(status_of(&r), "TERMINATED");
    assert_eq!(r.body["seq"], 2);
    assert_eq!(status_of(&app.get(&id).await), "TERMINATED");
    assert_eq!(app.resume(&id, json!({"ok": "ok"})).await.status, StatusCode::CONFLICT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_workflow_id_after_terminate_is_what_every_reader_sees() {
    let app = spawn_app().await;
    let start = json!({"workflow": "bank_account", "workflowId": "r1", "params": {}});
    let first = app
        .call(Method::POST, "/v3/workflow/start", Some(start.clone()), &[])
        .await;
    assert_eq!(first.body["seq"], 1, "{first:?}");
    let t = app.call(Method::DELETE, "/v3/workflow/terminate/r1", None, &[]).await;
    assert_eq!((status_of(&t), t.body["seq"].as_u64()), ("TERMINATED", Some(2)));
    let again = app.call(Method::POST, "/v3/workflow/start", Some(start), &[]).await;
    assert_eq!(status_of(&again), "WAITING", "{again:?}");
    let seq = again.body["seq"].as_u64().unwrap();
    assert!(seq > 2, "the new run's seq goes on from the old run's: {again:?}");
    let now = app.get("r1").await;
    assert_eq!(
        (status_of(&now), now.body["seq"].as_u64()),
        ("WAITING", Some(seq)),
        "GET shows the new run"
    );
    let mut sse = SseClient::connect(
        &app.events_url("r1", ""),
        &[("authorization", &bearer(&app.token("t")))],
    )
    .await
    .unwrap();
    assert_eq!(sse.next(Duration::from_secs(10)).await.unwrap().data["seq"], seq);
    let r = app
        .resume("r1", json!({"accountNumber": "11112222", "save": "save"}))
        .await;
    assert_eq!(
        (status_of(&r), r.body["seq"].as_u64()),
        ("COMPLETED", Some(seq + 1)),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_after_the_states_expired_publishes_a_seq_followers_take() {
    let app = spawn_app().await;
    let r = app.start("quick_screen", json!({"n": 1})).await;
    let (id, token) = (id_of(&r), r.body["streamToken"].as_str().unwrap().to_string());
    let mut sse = SseClient::connect(&app.events_url(&id, &format!("?token={token}")), &[])
        .await
        .unwrap();
    assert_eq!(sse.next(Duration::from_secs(10)).await.unwrap().data["seq"], 1);
    // The state TTL runs out: Redis forgets the latest state and the history.
    let mut redis = redis::Client::open(app.redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys = app.keys(&id);
    let _: () = redis::cmd("DEL")
        .arg(&keys.latest)
        .arg(&keys.history)
        .query_async(&mut redis)
        .await
        .unwrap();
    let t = app
        .call(Method::DELETE, &format!("/v3/workflow/terminate/{id}"), None, &[])
        .await;
    assert_eq!(
        (status_of(&t), t.body["seq"].as_u64()),
        ("TERMINATED", Some(2)),
        "{t:?}"
    );
    assert_eq!(
        sse.states_until_end(Duration::from_secs(10)).await,
        vec![2],
        "the follower takes it"
    );
    assert_eq!(status_of(&app.get(&id).await), "TERMINATED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_screen_taking_many_commands_continues_as_new_without_a_new_screen() {
    let app = spawn_app().await;
    let id = id_of(&app.start("bank_account", json!({})).await);
    app.verify_accounts(&id, 40).await;
    let st = app.get(&id).await;
    assert_eq!(
        (status_of(&st), st.body["seq"].as_u64()),
        ("WAITING", Some(1)),
        "still the first screen"
    );
    let d = temporal_cli(&["workflow", "describe", "--workflow-id", &format!("{}/{id}", app.tenant)]);
    let (first, last) = (
        &d["workflowExecutionInfo"]["firstRunId"],
        &d["workflowExecutionInfo"]["execution"]["runId"],
    );
    assert_ne!(
        first, last,
        "the history limit (100 events) made it continue as new: {d}"
    );
    let done = app
        .resume(&id, json!({"accountNumber": "11112222", "save": "save"}))
        .await;
    assert_eq!(
        (status_of(&done), done.body["seq"].as_u64()),
        ("COMPLETED", Some(2)),
        "{done:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_screen_with_a_timeout_goes_on_at_its_on_timeout_node_when_nobody_answers() {
    let app = spawn_app().await;
    let answered = id_of(&app.start("timed_screen", json!({})).await);
    let r = app.resume(&answered, json!({"ok": "ok"})).await;
    assert_eq!(r.body["disposition"]["answered"], true, "{r:?}");

    let before = chrono::Utc::now();
    let r = app.start("timed_screen", json!({})).await;
    assert_eq!((status_of(&r), r.body["seq"].as_u64()), ("WAITING", Some(1)));
    // The screen says when it stops waiting, so a page can show it: 1.5 s after it was shown.
    let expires = r.body["expiresAt"].as_str().expect("a timed screen has expiresAt");
    let expires = chrono::DateTime::parse_from_rfc3339(expires)
        .unwrap()
        .with_timezone(&chrono::Utc);
    let left = expires - before;
    assert!(
        left >= chrono::Duration::milliseconds(1_000) && left <= chrono::Duration::milliseconds(1_500 + 1_000),
        "expiresAt {expires} is 1.5 s after the start at {before}"
    );
    let id = id_of(&r);
    let token = r.body["streamToken"].as_str().unwrap().to_string();
    let mut sse = SseClient::connect(&app.events_url(&id, &format!("?token={token}")), &[])
        .await
        .unwrap();
    let seqs = sse.states_until_end(Duration::from_secs(20)).await;
    assert_eq!(seqs, vec![1, 2], "the timeout's outcome is published");
    let st = app.get(&id).await;
    assert_eq!(st.body["disposition"]["reason"], "no answer in time", "{st:?}");
    assert_eq!(st.body["expiresAt"], Value::Null, "an end has no deadline: {st:?}");
    let late = app.resume(&id, json!({"ok": "ok"})).await;
    assert_eq!(late.status, StatusCode::CONFLICT, "too late: {late:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_wait_taking_many_commands_continues_as_new_and_still_fires_on_time() {
    let app = spawn_app().await;
    let t0 = std::time::Instant::now();
    let r = app.start("waiting_room", json!({})).await;
    assert_eq!(
        (status_of(&r), r.body["seq"].as_u64()),
        ("SCHEDULER_WAITING", Some(1)),
        "{r:?}"
    );
    let id = id_of(&r);
    for _ in 0..40 {
        let r = app.execute(&id, "ping", json!({})).await;
        assert_eq!(r.body["response"], "pong", "{r:?}");
    }
    let st = app.get(&id).await;
    assert_eq!(
        (status_of(&st), st.body["seq"].as_u64()),
        ("SCHEDULER_WAITING", Some(1))
    );
    let done = app
        .eventually(&id, Duration::from_secs(30), |b| b["workflowStatus"] == "COMPLETED")
        .await;
    assert_eq!(done["seq"], 2, "no new state for the carried-over wait: {done}");
    assert!(t0.elapsed() >= Duration::from_secs(8), "the timer kept its time");
    let d = temporal_cli(&["workflow", "describe", "--workflow-id", &format!("{}/{id}", app.tenant)]);
    assert_ne!(
        d["workflowExecutionInfo"]["firstRunId"], d["workflowExecutionInfo"]["execution"]["runId"],
        "it continued as new during the wait"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_screen_taking_many_commands_continues_as_new_and_keeps_its_deadline() {
    let app = spawn_app().await;
    let r = app.start("waiting_screen", json!({})).await;
    let id = id_of(&r);
    let expires = r.body["expiresAt"].as_str().expect("expiresAt").to_string();
    for _ in 0..40 {
        let r = app.execute(&id, "ping", json!({})).await;
        assert_eq!(r.body["response"], "pong", "{r:?}");
    }
    let st = app.get(&id).await;
    assert_eq!(
        (st.body["seq"].as_u64(), st.body["expiresAt"].as_str()),
        (Some(1), Some(expires.as_str()))
    );
    let wf = format!("{}/{id}", app.tenant);
    let d = temporal_cli(&["workflow", "describe", "--workflow-id", &wf]);
    assert_ne!(
        d["workflowExecutionInfo"]["firstRunId"], d["workflowExecutionInfo"]["execution"]["runId"],
        "it continued as new on the screen"
    );
    // The new run's timer runs to the deadline published, not a full timeout from now (its
    // first workflow task may still be on its way: wait for the timer to show).
    let started = std::time::Instant::now();
    let timers = loop {
        let history = temporal_cli(&["workflow", "show", "--workflow-id", &wf]);
        let timers: Vec<f64> = history["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["timerStartedEventAttributes"]["startToFireTimeout"].as_str())
            .map(|t| t.trim_end_matches('s').parse().unwrap())
            .collect();
        if !timers.is_empty() {
            break timers;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no timer in the new run: {history}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(timers.len(), 1, "{timers:?}");
    assert!(
        timers[0] < 19.9,
        "the carried screen waits {}s, less than its 20s timeout",
        timers[0]
    );
    let done = app.resume(&id, json!({"ok": "ok"})).await;
    assert_eq!(done.body["disposition"]["answered"], true, "{done:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_on_refunds_confirm_returns_to_the_reason_with_its_answer_and_forward_goes_on() {
    let app = spawn_app().await;
    let r = app.start("refund", json!({"orderId": "o-1"})).await;
    assert_eq!((r.status, r.body["seq"].clone()), (StatusCode::OK, json!(1)), "{r:?}");
    let id = id_of(&r);
    // Its first screen comes after the order was fetched: Back cannot cross that call.
    assert_eq!(r.body["canGoBack"], Value::Null, "{r:?}");
    assert_eq!(r.body["backBlockedBy"], "fetch_order");
    let back = |id: String| {
        let app = &app;
        async move {
            app.call(Method::POST, &format!("/v3/workflow/{id}/back"), Some(json!({})), &[])
                .await
        }
    };
    let refused = back(id.clone()).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{refused:?}");
    assert_eq!(refused.body["code"], "cannot_go_back");
    assert_eq!(refused.body["details"]["node"], "fetch_order");
    eprintln!("back from refund's first screen: {} {}", refused.status, refused.body);

    let r = app.resume(&id, json!({"reason": "damaged"})).await;
    assert_eq!(
        (r.body["seq"].clone(), r.body["node"].clone()),
        (json!(2), json!("confirm")),
        "{r:?}"
    );
    assert_eq!(r.body["canGoBack"], true);
    let once = json!({"requestId": "back-1"});
    let path = format!("/v3/workflow/{id}/back");
    let r = app.call(Method::POST, &path, Some(once.clone()), &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    eprintln!("back on confirm: {}", r.body);
    // The same Back sent again (a retry) gets the same answer and goes back no further.
    let again = app.call(Method::POST, &path, Some(once), &[]).await;
    assert_eq!(
        (again.status, again.body["seq"].clone()),
        (StatusCode::OK, json!(3)),
        "{again:?}"
    );
    assert_eq!(r.body["seq"], 3);
    assert_eq!(r.body["node"], "refund_reason");
    assert_eq!(r.body["view"]["layoutId"], "refund_reason");
    assert_eq!(r.body["previousAnswer"], json!({"reason": "damaged"}));
    // Forward again with another answer: the branch and templates run again with it.
    let r = app.resume(&id, json!({"reason": "wrong_item"})).await;
    eprintln!("forward again: {}", r.body);
    assert_eq!(
        (r.body["seq"].clone(), r.body["node"].clone()),
        (json!(4), json!("confirm")),
        "{r:?}"
    );
    let recap = r.body["view"]["inputOptions"][0]["instructions"][0]["templateVariables"]["reason"].clone();
    assert_eq!(recap, "wrong_item", "{r:?}");
    let r = app.resume(&id, json!({"action": "confirm"})).await;
    assert_eq!(r.body["workflowStatus"], "COMPLETED", "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_from_a_flows_first_screen_is_refused_naming_it_and_nothing_reaches_the_workflow() {
    let app = spawn_app().await;
    let r = app.start("bank_account", json!({})).await;
    let id = id_of(&r);
    let refused = app
        .call(Method::POST, &format!("/v3/workflow/{id}/back"), Some(json!({})), &[])
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{refused:?}");
    assert_eq!(refused.body["details"]["node"], "account_form");
    assert!(
        refused.body["message"].as_str().unwrap().contains("first screen"),
        "{refused:?}"
    );
    // Nothing reached the workflow: it is still at seq 1.
    let now = app.call(Method::GET, &format!("/v3/workflow/{id}"), None, &[]).await;
    assert_eq!(now.body["seq"], 1, "{now:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_screen_whose_definition_says_back_false_refuses_back_and_can_still_be_returned_to() {
    let app = spawn_app().await;
    let r = app.start("no_back", json!({})).await;
    let id = id_of(&r);
    let back = |body: Value| {
        let (app, id) = (&app, id.clone());
        async move {
            app.call(Method::POST, &format!("/v3/workflow/{id}/back"), Some(body), &[])
                .await
        }
    };
    let r = app.resume(&id, json!({"pick": "b"})).await;
    assert_eq!(r.body["node"], "receipt", "{r:?}");
    // The screen itself is what stands in the way.
    assert_eq!(r.body["canGoBack"], Value::Null, "{r:?}");
    assert_eq!(r.body["backBlockedBy"], "receipt", "{r:?}");
    let refused = back(json!({})).await;
    eprintln!("back from a back:false screen: {} {}", refused.status, refused.body);
    assert_eq!(refused.status, StatusCode::CONFLICT, "{refused:?}");
    assert_eq!(refused.body["code"], "cannot_go_back");
    assert_eq!(refused.body["details"]["node"], "receipt");
    assert!(
        refused.body["message"].as_str().unwrap().contains("\"back\": false"),
        "{refused:?}"
    );
    assert_eq!(app.get(&id).await.body["seq"], 2, "nothing reached the workflow");

    // The next screen may go back to it; there it forbids Back again.
    let r = app.resume(&id, json!({"ok": "ok"})).await;
    assert_eq!(
        (r.body["node"].clone(), r.body["canGoBack"].clone()),
        (json!("finish"), json!(true)),
        "{r:?}"
    );
    let r = back(json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(
        (r.body["seq"].clone(), r.body["node"].clone()),
        (json!(4), json!("receipt")),
        "{r:?}"
    );
    assert_eq!(r.body["backBlockedBy"], "receipt", "{r:?}");
    assert_eq!(r.body["previousAnswer"], json!({"ok": "ok"}));
    let r = app.resume(&id, json!({"ok": "ok"})).await;
    assert_eq!(
        (r.body["seq"].clone(), r.body["node"].clone()),
        (json!(5), json!("finish")),
        "{r:?}"
    );
    let r = app.resume(&id, json!({"ok": "ok"})).await;
    assert_eq!(r.body["disposition"]["picked"], "b", "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_still_returns_to_the_previous_screen_after_the_run_continued_as_new() {
    let app = spawn_app().await;
    let r = app.start("no_back", json!({})).await;
    let id = id_of(&r);
    app.resume(&id, json!({"pick": "a"})).await;
    let r = app.resume(&id, json!({"ok": "ok"})).await;
    assert_eq!(
        (r.body["node"].clone(), r.body["seq"].clone()),
        (json!("finish"), json!(3)),
        "{r:?}"
    );
    // Node runs on this screen grow the history past the harness's limit (100 events): the run
    // continues as new while it waits here, carrying the screens Back may return to.
    for n in 0..40 {
        let x = app.execute(&id, "note", json!({"n": n})).await;
        assert_eq!(x.body["response"]["noted"], n, "{x:?}");
    }
    let d = temporal_cli(&["workflow", "describe", "--workflow-id", &format!("{}/{id}", app.tenant)]);
    assert_ne!(
        d["workflowExecutionInfo"]["firstRunId"], d["workflowExecutionInfo"]["execution"]["runId"],
        "it continued as new on the screen"
    );
    let r = app
        .call(
            Method::POST,
            &format!("/v3/workflow/{id}/back"),
            Some(json!({"seq": 3})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(
        (r.body["node"].clone(), r.body["seq"].clone()),
        (json!("receipt"), json!(4)),
        "{r:?}"
    );
    assert_eq!(r.body["previousAnswer"], json!({"ok": "ok"}));
    app.resume(&id, json!({"ok": "ok"})).await;
    let r = app.resume(&id, json!({"ok": "ok"})).await;
    assert_eq!(r.body["disposition"]["picked"], "a", "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_or_stale_back_is_refused_and_nothing_reaches_the_workflow() {
    let app = spawn_app().await;
    let id = id_of(&app.start("no_back", json!({})).await);
    let r = app.resume(&id, json!({"pick": "a"})).await;
    let r2 = app.resume(&id, json!({"ok": "ok"})).await;
    assert_eq!(
        (r.body["seq"].clone(), r2.body["canGoBack"].clone()),
        (json!(2), json!(true)),
        "{r2:?}"
    );
    let path = format!("/v3/workflow/{id}/back");
    for (what, body, status) in [
        (
            "an unknown field",
            json!({"seq": 3, "answer": {}}),
            StatusCode::BAD_REQUEST,
        ),
        ("seq not a number", json!({"seq": "3"}), StatusCode::BAD_REQUEST),
        (
            "a request id that is not one",
            json!({"requestId": "bad id\n!"}),
            StatusCode::BAD_REQUEST,
        ),
        ("a body that is not an object", json!([1, 2]), StatusCode::BAD_REQUEST),
        ("an older screen's seq", json!({"seq": 2}), StatusCode::CONFLICT),
    ] {
        let r = app.call(Method::POST, &path, Some(body), &[]).await;
        assert_eq!(r.status, status, "{what}: {r:?}");
        assert!(r.body["message"].is_string(), "{what}: a JSON error: {r:?}");
    }
    let r = app
        .http
        .post(format!("{}{path}", app.base))
        .header("authorization", bearer(&app.token("tests")))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "not JSON");
    let now = app.get(&id).await;
    assert_eq!(
        (now.body["seq"].clone(), now.body["node"].clone()),
        (json!(3), json!("finish")),
        "untouched: {now:?}"
    );
}
