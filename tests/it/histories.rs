//! Temporal histories of every feature, made now on a real Temporal and replayed with the SDK's
//! replayer. With `DRIFT_RECORD_HISTORIES=1` they are also written to `tests/histories/`, where
//! the drift-server unit test `every_kept_history_replays_on_this_workflow_code` replays them on
//! every later build: the runs in flight when an upgrade lands.

use crate::helpers::*;
use crate::webhooks::Receiver;
use futures::FutureExt;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;

/// A run to record: the scenario's name, and the scoped workflow ids it made.
type Recorded = (&'static str, Vec<String>);

fn scoped(app: &TestApp, id: &str) -> String {
    format!("{}/{id}", app.tenant)
}

async fn refund_sync_with_back(app: &TestApp) -> Recorded {
    let id = id_of(&app.start("refund", json!({"orderId": "o-1"})).await);
    let r = app.resume(&id, json!({"reason": "damaged"})).await;
    assert_eq!(r.body["seq"], 2, "{r:?}");
    let path = format!("/v3/workflow/{id}/back");
    let r = app.call(Method::POST, &path, Some(json!({"seq": 2})), &[]).await;
    assert_eq!(r.body["node"], "refund_reason", "{r:?}");
    app.resume(&id, json!({"reason": "wrong_item"})).await;
    let r = app.resume(&id, json!({"action": "confirm"})).await;
    assert_eq!(status_of(&r), "COMPLETED", "{r:?}");
    ("refund-sync-back", vec![scoped(app, &id)])
}

async fn refund_async_with_webhooks(app: &TestApp) -> Recorded {
    let rx = Receiver::new(WEBHOOK_SECRET, vec![500]);
    let url = rx.serve(0).await;
    let start = json!({"workflow": "refund", "params": {"orderId": "o-async"}, "callbackUrl": url});
    let r = app.call(Method::POST, "/v3/workflow/start", Some(start), &[]).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    let id = id_of(&r);
    rx.wait_delivered(1, Duration::from_secs(30)).await;
    let answer = |selected| json!({"viewResponse": {"selectedOptions": selected}, "mode": "async", "callbackUrl": url});
    let resume = format!("/v3/workflow/resume/{id}");
    app.call(Method::PUT, &resume, Some(answer(json!({"reason": "damaged"}))), &[])
        .await;
    rx.wait_delivered(2, Duration::from_secs(30)).await;
    let back = format!("/v3/workflow/{id}/back");
    app.call(Method::POST, &back, Some(json!({"seq": 2})), &[]).await;
    rx.wait_delivered(3, Duration::from_secs(30)).await;
    let r = app
        .call(Method::PUT, &resume, Some(answer(json!({"reason": "wrong_item"}))), &[])
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    rx.wait_delivered(4, Duration::from_secs(30)).await;
    app.call(Method::PUT, &resume, Some(answer(json!({"action": "confirm"}))), &[])
        .await;
    let d = rx.wait_delivered(5, Duration::from_secs(30)).await;
    assert_eq!(d.last().map(|(_, s)| s.as_str()), Some("COMPLETED"), "{d:?}");
    let run = scoped(app, &id);
    ("refund-async-webhooks", vec![run.clone(), format!("{run}/deliveries")])
}

async fn refund_failing_http_node(app: &TestApp) -> Recorded {
    let id = id_of(&app.start("refund", json!({"orderId": "missing-7"})).await);
    assert_eq!(status_of(&app.get(&id).await), "FAILED");
    ("refund-http-failure", vec![scoped(app, &id)])
}

async fn bank_account_nodes_continue_as_new(app: &TestApp) -> Recorded {
    let id = id_of(&app.start("bank_account", json!({})).await);
    app.verify_accounts(&id, 40).await;
    let r = app
        .resume(&id, json!({"accountNumber": "11112222", "save": "save"}))
        .await;
    assert_eq!(status_of(&r), "COMPLETED", "{r:?}");
    ("bank-account-nodes-continue-as-new", vec![scoped(app, &id)])
}

async fn monthly_report_wait_http_script(app: &TestApp) -> Recorded {
    let id = id_of(&app.start("monthly_report", json!({"month": "2026-10"})).await);
    app.eventually(&id, Duration::from_secs(30), |b| b["workflowStatus"] == "COMPLETED")
        .await;
    ("monthly-report-wait", vec![scoped(app, &id)])
}

async fn parent_and_child(app: &TestApp) -> Recorded {
    let r = app.start("parent_child", json!({"topic": "taxes"})).await;
    let parent = id_of(&r);
    let child = r.answer().var("childId").as_str().unwrap().to_string();
    app.eventually(&child, Duration::from_secs(20), |b| b["workflowStatus"] == "WAITING")
        .await;
    app.resume(&child, json!({"ok": "ok"})).await;
    let r = app.resume(&parent, json!({"ok": "ok"})).await;
    assert_eq!(status_of(&r), "COMPLETED", "{r:?}");
    ("parent-child", vec![scoped(app, &parent), scoped(app, &child)])
}

async fn screen_timeout(app: &TestApp) -> Recorded {
    let id = id_of(&app.start("timed_screen", json!({})).await);
    let done = app
        .eventually(&id, Duration::from_secs(20), |b| b["workflowStatus"] == "COMPLETED")
        .await;
    assert_eq!(done["disposition"]["reason"], "no answer in time", "{done}");
    ("screen-timeout", vec![scoped(app, &id)])
}

async fn timed_screen_carried_over(app: &TestApp) -> Recorded {
    let id = id_of(&app.start("waiting_screen", json!({})).await);
    for _ in 0..40 {
        app.execute(&id, "ping", json!({})).await;
    }
    let r = app.resume(&id, json!({"ok": "ok"})).await;
    assert_eq!(r.body["disposition"]["answered"], true, "{r:?}");
    ("timed-screen-continue-as-new", vec![scoped(app, &id)])
}

async fn timer_wait_carried_over(app: &TestApp) -> Recorded {
    let id = id_of(&app.start("waiting_room", json!({})).await);
    for _ in 0..40 {
        app.execute(&id, "ping", json!({})).await;
    }
    app.eventually(&id, Duration::from_secs(30), |b| b["workflowStatus"] == "COMPLETED")
        .await;
    ("timer-wait-continue-as-new", vec![scoped(app, &id)])
}

async fn loop_continues_as_new(app: &TestApp) -> Recorded {
    let id = id_of(&app.start("looper", json!({"times": 40})).await);
    app.eventually(&id, Duration::from_secs(60), |b| b["workflowStatus"] == "COMPLETED")
        .await;
    ("looper-continue-as-new", vec![scoped(app, &id)])
}

async fn terminated(app: &TestApp) -> Recorded {
    let id = id_of(&app.start("quick_screen", json!({"n": 1})).await);
    let r = app
        .call(Method::DELETE, &format!("/v3/workflow/terminate/{id}"), None, &[])
        .await;
    assert_eq!(status_of(&r), "TERMINATED", "{r:?}");
    ("terminated", vec![scoped(app, &id)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histories_of_every_feature_made_now_replay_on_this_workflow_code() {
    let app = spawn_app().await;
    let a = &app;
    let scenarios: Vec<Recorded> = futures::future::join_all([
        refund_sync_with_back(a).boxed(),
        refund_async_with_webhooks(a).boxed(),
        refund_failing_http_node(a).boxed(),
        bank_account_nodes_continue_as_new(a).boxed(),
        monthly_report_wait_http_script(a).boxed(),
        parent_and_child(a).boxed(),
        screen_timeout(a).boxed(),
        timed_screen_carried_over(a).boxed(),
        timer_wait_carried_over(a).boxed(),
        loop_continues_as_new(a).boxed(),
        terminated(a).boxed(),
    ])
    .await;
    let client = drift::temporal::connect(&tcfg(&app.temporal_address, &app.task_queue))
        .await
        .unwrap();
    let mut histories = Vec::new();
    for (scenario, ids) in &scenarios {
        for (w, id) in ids.iter().enumerate() {
            let runs = drift::temporal::replay::record(&client, id).await.unwrap();
            let kind = if id.ends_with("/deliveries") {
                "deliveries"
            } else {
                "drift"
            };
            for (r, json) in runs.into_iter().enumerate() {
                histories.push((format!("{scenario}.{w}-{kind}.run{r}"), json));
            }
        }
    }
    let chained = |s: &str| histories.iter().filter(|(n, _)| n.starts_with(s)).count();
    for scenario in [
        "bank-account-nodes-continue-as-new",
        "looper-continue-as-new",
        "timed-screen-continue-as-new",
        "timer-wait-continue-as-new",
    ] {
        assert!(chained(scenario) > 1, "{scenario} continued as new");
    }
    if std::env::var_os("DRIFT_RECORD_HISTORIES").is_some() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/histories");
        std::fs::create_dir_all(&dir).unwrap();
        for (name, json) in &histories {
            std::fs::write(dir.join(format!("{name}.json")), json).unwrap();
        }
        eprintln!("recorded {} histories into {}", histories.len(), dir.display());
    }
    let replayed = drift::temporal::replay::replay(histories).await.unwrap();
    let failed: Vec<_> = replayed.iter().filter(|r| r.failure.is_some()).collect();
    assert!(failed.is_empty(), "{failed:#?}");
    for r in &replayed {
        eprintln!("replayed {} ({} events)", r.name, r.events);
    }
}
