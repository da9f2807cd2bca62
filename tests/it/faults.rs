//! Faults while answers are on their way: every answer a caller waits for reaches it, once.
//! Each test is bounded in time and talks to servers of its own on loopback.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_sent_twice_with_one_request_id_is_applied_once_and_answered_alike() {
    let app = spawn_app().await;
    let id = id_of(&app.start("refund", json!({"orderId": "o-twice"})).await);
    let body = json!({"viewResponse": {"selectedOptions": {"reason": "damaged"}}, "requestId": "same-1"});
    let path = format!("/v3/workflow/resume/{id}");
    let first = app.call(Method::PUT, &path, Some(body.clone()), &[]).await;
    let second = app.call(Method::PUT, &path, Some(body), &[]).await;
    assert_eq!(
        (first.status, second.status),
        (StatusCode::OK, StatusCode::OK),
        "{second:?}"
    );
    assert_eq!(first.body["seq"], 2);
    assert_eq!(second.body, first.body, "the retry gets the first answer");
    let st = app.get(&id).await;
    assert_eq!(
        (st.body["seq"].as_u64(), st.body["view"]["layoutId"].as_str()),
        (Some(2), Some("refund_confirm"))
    );

    // execute-node too: the same request id is run once and answered alike, over the socket too.
    let b = id_of(&app.start("bank_account", json!({})).await);
    let exec = json!({"node": "verify_account", "parameters": {"accountNumber": "12345678"}, "requestId": "x-1"});
    let path = format!("/v3/workflow/{b}/disconnected-node/execute");
    let r1 = app.call(Method::POST, &path, Some(exec.clone()), &[]).await;
    let r2 = app.call(Method::POST, &path, Some(exec), &[]).await;
    assert_eq!(r1.body["response"]["valid"], true, "{r1:?}");
    assert_eq!(r2.body, r1.body);
    let auth = bearer(&app.token("ws"));
    let mut ws = Ws::connect_with(&app.ws_url(""), &[("authorization", &auth)])
        .await
        .unwrap();
    ws.send(json!({"type": "resume", "requestId": "same-1", "workflowId": id, "viewResponse": {"selectedOptions": {"reason": "damaged"}}}))
        .await;
    let s = ws.next_of("state", Duration::from_secs(10)).await;
    assert_eq!(
        (s["seq"].as_u64(), s["state"]["requestId"].as_str()),
        (Some(2), Some("same-1"))
    );
    assert_eq!(app.get(&id).await.body["seq"], 2, "still applied once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_connections_killed_every_100ms_lose_no_node_result_and_no_rejection() {
    let (redis, url, app) = spawn_app_on_own_redis().await;
    let id = id_of(&app.start("bank_account", json!({})).await);
    let stop = Arc::new(AtomicBool::new(false));
    let kills = Arc::new(AtomicUsize::new(0));
    let killer = tokio::spawn({
        let (stop, kills, url) = (stop.clone(), kills.clone(), url.clone());
        async move {
            let mut c = redis::Client::open(url.as_str())
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            while !stop.load(Ordering::SeqCst) && tokio::time::Instant::now() < deadline {
                let n: i64 = redis::cmd("CLIENT")
                    .arg("KILL")
                    .arg("TYPE")
                    .arg("pubsub")
                    .query_async(&mut c)
                    .await
                    .unwrap_or(0);
                kills.fetch_add(n as usize, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    // Command i: even ones execute a node (its result must come back), odd ones answer the
    // screen with something invalid (its 422 must come back).
    let send = {
        let (http, base, auth, id) = (
            app.http.clone(),
            app.base.clone(),
            bearer(&app.token("faults")),
            id.clone(),
        );
        move |i: usize, wait_secs: u64| {
            let (http, base, auth, id) = (http.clone(), base.clone(), auth.clone(), id.clone());
            async move {
                let (path, body) = if i.is_multiple_of(2) {
                    let p = format!("/v3/workflow/{id}/disconnected-node/execute");
                    (
                        p,
                        json!({"node": "verify_account", "parameters": {"accountNumber": format!("{:08}", i)}, "requestId": format!("x-{i}")}),
                    )
                } else {
                    let p = format!("/v3/workflow/resume/{id}");
                    (
                        p,
                        json!({"viewResponse": {"selectedOptions": {"save": "save"}}, "requestId": format!("a-{i}")}),
                    )
                };
                let r = http
                    .request(
                        if i.is_multiple_of(2) { Method::POST } else { Method::PUT },
                        format!("{base}{path}"),
                    )
                    .header("authorization", auth)
                    .header("prefer", format!("wait={wait_secs}"))
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                let status = r.status();
                (i, status, r.json::<Value>().await.unwrap_or_default())
            }
        }
    };
    let mut tasks = Vec::new();
    for i in 0..200 {
        tasks.push(tokio::spawn(send(i, 20)));
        if i % 20 == 19 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    stop.store(true, Ordering::SeqCst);
    killer.await.unwrap();
    // A call whose answer did not come within its wait got 202 (a loaded machine works through
    // the 200 commands on one workflow slower): the client retries it with the same request id,
    // and must get the answer then, not a second run.
    let (mut results, mut rejections, mut retried, mut lost) = (0, 0, 0, Vec::new());
    for (i, status, body) in outcomes {
        let (status, body) = match status {
            StatusCode::ACCEPTED => {
                retried += 1;
                let (_, status, body) = send(i, 60).await;
                (status, body)
            }
            _ => (status, body),
        };
        match (i % 2, status) {
            (0, StatusCode::OK) if body["response"]["accountNumber"] == format!("{:08}", i) => results += 1,
            (1, StatusCode::UNPROCESSABLE_ENTITY) => rejections += 1,
            _ => lost.push(format!("{i}: {status} {body}")),
        }
    }
    eprintln!(
        "faults: {} pub/sub connections killed; 100 execute-node: {results} answered; 100 invalid answers: {rejections} got 422; {retried} answered after their wait (retried); lost {}",
        kills.load(Ordering::SeqCst),
        lost.len()
    );
    assert!(lost.is_empty(), "lost or wrong answers:\n{}", lost.join("\n"));
    assert_eq!((results, rejections), (100, 100));
    assert!(kills.load(Ordering::SeqCst) > 0, "the fault was injected");
    drop(app);
    on_infra(async move { redis.stop().await });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_terminated_with_temporals_own_cli_is_seen_terminated_with_its_reason() {
    let app = spawn_app_with(Opts {
        extra_args: vec!["--reconcile-secs=1".into()],
        ..Default::default()
    })
    .await;
    let r = app.start("bank_account", json!({})).await;
    let (followed, token) = (id_of(&r), r.body["streamToken"].as_str().unwrap().to_string());
    let touched = id_of(&app.start("bank_account", json!({})).await);
    let mut sse = SseClient::connect(&app.events_url(&followed, &format!("?token={token}")), &[])
        .await
        .unwrap();
    assert_eq!(sse.next(Duration::from_secs(10)).await.unwrap().data["seq"], 1);
    for id in [&followed, &touched] {
        temporal_cli(&[
            "workflow",
            "terminate",
            "--workflow-id",
            &format!("{}/{id}", app.tenant),
            "--reason",
            "ops cleanup",
        ]);
    }
    // The live follower hears of it without anyone touching the workflow.
    let end = sse.next(Duration::from_secs(60)).await.expect("an end");
    assert_eq!(end.data["workflowStatus"], "TERMINATED", "{end:?}");
    assert_eq!(end.data["errorMessage"], "ops cleanup");
    assert_eq!(end.data["seq"], 2);
    // The next one to touch the other one sees it too: a resume is 409, then GET is TERMINATED.
    let r = app
        .resume(&touched, json!({"accountNumber": "11112222", "save": "save"}))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{r:?}");
    let st = app.get(&touched).await;
    assert_eq!(
        (status_of(&st), st.body["errorMessage"].as_str()),
        ("TERMINATED", Some("ops cleanup")),
        "{st:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_past_its_execution_timeout_is_seen_failed_with_the_reason() {
    let app = spawn_app().await;
    let id = id_of(&app.start("short_lived", json!({"n": 1})).await);
    let st = app
        .eventually(&id, Duration::from_secs(30), |b| b["workflowStatus"] == "FAILED")
        .await;
    assert!(
        st["errorMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("execution timeout"),
        "{st}"
    );
    let r = app.resume(&id, json!({"ok": "ok"})).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_restarted_under_100_sse_clients_loses_and_repeats_no_state() {
    // One worker; gateways come and go in front of it.
    let worker = spawn_app().await;
    let gateway = |prefix: String, tq: String| {
        spawn_app_with(Opts {
            embed_worker: false,
            task_queue: Some(tq),
            key_prefix: Some(prefix),
            ..Default::default()
        })
    };
    let mut g1 = gateway(worker.key_prefix.clone(), worker.task_queue.clone()).await;
    g1.tenant = worker.tenant.clone();
    // Started where the examples' stand-ins stay up (the definition points at them).
    let r = worker.start("refund", json!({"orderId": "o-restart"})).await;
    let (id, token) = (id_of(&r), r.body["streamToken"].as_str().unwrap().to_string());

    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(100);
    let (go_tx, _) = tokio::sync::broadcast::channel::<String>(1);
    let mut clients = Vec::new();
    for _ in 0..100 {
        let first = g1.events_url(&id, &format!("?token={token}"));
        let (tx, mut go, token, id) = (tx.clone(), go_tx.subscribe(), token.clone(), id.clone());
        clients.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut sse = SseClient::connect(&first, &[]).await.unwrap();
            while let Some(ev) = sse.next(Duration::from_secs(30)).await {
                seen.push(ev.data["seq"].as_u64().unwrap());
                tx.send(()).await.unwrap();
            }
            // The gateway went away: reconnect to the new one from the last state seen.
            let base = go.recv().await.unwrap();
            let last = seen.last().unwrap().to_string();
            let url = format!("{base}/v3/workflow/{id}/events?token={token}");
            let mut sse = SseClient::connect(&url, &[("Last-Event-ID", &last)]).await.unwrap();
            seen.extend(sse.states_until_end(Duration::from_secs(30)).await);
            // After the end, a reconnect is told to stop.
            let last = seen.last().unwrap().to_string();
            let again = reqwest::Client::new()
                .get(&url)
                .header("Last-Event-ID", last)
                .send()
                .await
                .unwrap();
            (seen, again.status())
        }));
    }
    for _ in 0..100 {
        rx.recv().await.unwrap(); // every client has the first state
    }
    drop(g1); // the gateway restarts: its streams close
    let r = worker.resume(&id, json!({"reason": "damaged"})).await;
    assert_eq!(r.body["seq"], 2, "{r:?}");
    let mut g2 = gateway(worker.key_prefix.clone(), worker.task_queue.clone()).await;
    g2.tenant = worker.tenant.clone();
    go_tx.send(g2.base.clone()).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = g2.resume(&id, json!({"action": "confirm"})).await;
    assert_eq!(status_of(&r), "COMPLETED", "{r:?}");
    let mut exact = 0;
    for c in clients {
        let (seen, after_end) = c.await.unwrap();
        assert_eq!(seen, vec![1, 2, 3], "every state exactly once, in order");
        assert_eq!(after_end, StatusCode::NO_CONTENT);
        exact += 1;
    }
    eprintln!("faults: gateway restarted under 100 SSE clients: {exact} got states 1, 2, 3 exactly once, then 204");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_sync_resumes_while_redis_restarts_each_get_their_own_answer_in_bound() {
    let (mut redis, url, app) = spawn_app_on_own_redis().await;
    let mut ids = Vec::new();
    for n in 0..200 {
        ids.push(id_of(&app.start("quick_screen", json!({"n": n})).await));
    }
    let wait = Duration::from_secs(15);
    let mut tasks = Vec::new();
    for (n, id) in ids.iter().cloned().enumerate() {
        let (http, base, auth) = (app.http.clone(), app.base.clone(), bearer(&app.token("faults")));
        tasks.push(tokio::spawn(async move {
            let t0 = std::time::Instant::now();
            let r = http
                .put(format!("{base}/v3/workflow/resume/{id}"))
                .header("authorization", auth)
                .header("prefer", "wait=15")
                .json(&json!({"viewResponse": {"selectedOptions": {"ok": "ok"}}, "requestId": format!("r-{n}")}))
                .send()
                .await
                .unwrap();
            let status = r.status();
            (n, id, status, r.json::<Value>().await.unwrap_or_default(), t0.elapsed())
        }));
        if n == 60 {
            // Mid-burst, Redis restarts (its data saved on shutdown and loaded again).
            redis = restart_redis(redis, &url).await;
        }
    }
    let (mut own, mut later, mut wrong) = (0, 0, Vec::new());
    let mut pending = Vec::new();
    for t in tasks {
        let (n, id, status, body, took) = t.await.unwrap();
        assert!(took < wait + Duration::from_secs(5), "call {n} waited {took:?}");
        match status {
            StatusCode::OK if body["workflowId"] == id.as_str() && body["requestId"] == format!("r-{n}") => {
                assert_eq!(body["workflowStatus"], "COMPLETED");
                own += 1;
            }
            StatusCode::ACCEPTED if body["workflowId"] == id.as_str() => pending.push(id),
            _ => wrong.push(format!("{n}: {status} {body}")),
        }
    }
    assert!(wrong.is_empty(), "wrong answers:\n{}", wrong.join("\n"));
    for id in &pending {
        app.eventually(id, Duration::from_secs(60), |b| b["workflowStatus"] == "COMPLETED")
            .await;
        later += 1;
    }
    eprintln!(
        "faults: 200 resumes across a Redis restart: {own} answered in time, {later} answered 202 then completed, 0 crossed"
    );
    assert_eq!(own + later, 200);
    drop(app);
    drop(redis);
}
