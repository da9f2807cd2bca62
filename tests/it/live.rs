//! Live mode: SSE and WebSocket followers of workflows, fed by the shared hub.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_and_ws_clients_see_every_state_of_a_refund_run_in_order() {
    let app = spawn_app().await;
    let r = app.start("refund", json!({"orderId": "o-live"})).await;
    let id = id_of(&r);
    let token = r.body["streamToken"]
        .as_str()
        .expect("start returns a streamToken")
        .to_string();

    let mut sse = SseClient::connect(&app.events_url(&id, &format!("?token={token}")), &[])
        .await
        .unwrap();
    let first = sse.next(T).await.unwrap();
    assert_eq!((first.event.as_str(), first.data["seq"].as_u64()), ("state", Some(1)));
    let mut ws = Ws::connect(&app.ws_url("")).await;
    ws.send(json!({"type": "subscribe", "requestId": "s1", "workflowId": id, "token": token}))
        .await;
    let s1 = ws.next_of("state", T).await;
    assert_eq!(s1["seq"], 1);
    assert_eq!(s1["state"]["view"]["layoutId"], "refund_reason");

    app.resume(&id, json!({"reason": "damaged"})).await;
    app.resume(&id, json!({"action": "confirm"})).await;

    let rest = sse.states_until_end(T).await;
    assert_eq!(rest, vec![2, 3], "SSE ends after the terminal state");
    let s2 = ws.next_of("state", T).await;
    let s3 = ws.next_of("state", T).await;
    assert_eq!((s2["seq"].as_u64(), s3["seq"].as_u64()), (Some(2), Some(3)));
    assert_eq!(s3["state"]["workflowStatus"], "COMPLETED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reconnects_with_last_event_id_or_since_gets_exactly_the_missed_states() {
    let app = spawn_app().await;
    let r = app.start("refund", json!({"orderId": "o-resume"})).await;
    let id = id_of(&r);
    let token = r.body["streamToken"].as_str().unwrap().to_string();
    {
        let mut sse = SseClient::connect(&app.events_url(&id, &format!("?token={token}")), &[])
            .await
            .unwrap();
        assert_eq!(sse.next(T).await.unwrap().data["seq"], 1);
    } // disconnected
    app.resume(&id, json!({"reason": "damaged"})).await;
    app.resume(&id, json!({"action": "cancel"})).await;

    let mut sse = SseClient::connect(
        &app.events_url(&id, ""),
        &[("Authorization", &format!("Bearer {token}")), ("Last-Event-ID", "1")],
    )
    .await
    .unwrap();
    assert_eq!(sse.states_until_end(T).await, vec![2, 3]);
    let mut sse = SseClient::connect(&app.events_url(&id, &format!("?token={token}&lastEventId=2")), &[])
        .await
        .unwrap();
    assert_eq!(sse.states_until_end(T).await, vec![3]);

    let mut ws = Ws::connect(&app.ws_url("")).await;
    ws.send(json!({"type": "subscribe", "workflowId": id, "since": 1, "token": token}))
        .await;
    assert_eq!(ws.next_of("state", T).await["seq"], 2);
    assert_eq!(ws.next_of("state", T).await["seq"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_beyond_the_history_log_is_told_so_and_gets_the_latest_state() {
    let app = spawn_app().await;
    let r = app.start("bank_account", json!({})).await;
    let id = id_of(&r);
    // The test app keeps 50 states of history; loop the form past that.
    for _ in 0..55 {
        let r = app.resume(&id, json!({"accountNumber": "1", "save": "save"})).await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
    }
    let latest = app.get(&id).await.body["seq"].as_u64().unwrap();
    assert_eq!(latest, 56);
    let mut sse = SseClient::connect(
        &app.events_url(&id, "?lastEventId=1"),
        &[("authorization", &bearer(&app.token("t")))],
    )
    .await
    .unwrap();
    let gap = sse.next(T).await.unwrap();
    assert_eq!(gap.event, "gap");
    assert_eq!(
        (gap.data["after"].as_u64(), gap.data["latest"].as_u64()),
        (Some(1), Some(latest))
    );
    assert_eq!(sse.next(T).await.unwrap().data["seq"], latest);

    // The socket says the same, in the shape the AsyncAPI document gives both.
    let live = crate::contract::LiveContract::fetch(&app).await;
    live.fits("sse.gap", &gap.data);
    let mut ws = Ws::connect_with(&app.ws_url(""), &[("authorization", &bearer(&app.token("t")))])
        .await
        .unwrap();
    ws.send(json!({"type": "subscribe", "workflowId": id, "since": 1}))
        .await;
    let gap = ws.next_of("gap", T).await;
    live.fits("server.gap", &gap);
    assert_eq!((gap["after"].as_u64(), gap["latest"].as_u64()), (Some(1), Some(latest)));
    assert_eq!(ws.next_of("state", T).await["seq"], latest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_client_starts_and_completes_a_flow_over_one_socket() {
    let app = spawn_app().await;
    let auth = bearer(&app.token("browser"));
    let mut ws = Ws::connect_with(&app.ws_url(""), &[("authorization", &auth)])
        .await
        .unwrap();
    ws.send(json!({"type": "start", "requestId": "r1", "workflow": "bank_account", "params": {}}))
        .await;
    // The first state may overtake the ack (the worker can publish before the start RPC returns).
    let (mut ack, mut s) = (None, None);
    while ack.is_none() || s.is_none() {
        let m = ws.next(T).await.expect("socket open");
        match m["type"].as_str() {
            Some("ack") => ack = Some(m),
            Some("state") => s = Some(m),
            _ => {}
        }
    }
    let (ack, s) = (ack.unwrap(), s.unwrap());
    assert_eq!(ack["requestId"], "r1");
    let id = ack["workflowId"].as_str().unwrap().to_string();
    assert!(ack["streamToken"].is_string());
    assert_eq!(s["workflowId"], id);
    assert_eq!(
        (s["seq"].as_u64(), s["state"]["requestId"].as_str()),
        (Some(1), Some("r1"))
    );

    for i in 0..3 {
        ws.send(json!({"type": "execute-node", "requestId": format!("x{i}"), "workflowId": id, "node": "verify_account", "parameters": {"accountNumber": "12345678"}})).await;
        let res = ws.next_of("result", T).await;
        assert_eq!(
            (res["requestId"].as_str(), res["response"]["valid"].as_bool()),
            (Some(format!("x{i}").as_str()), Some(true))
        );
    }
    ws.send(json!({"type": "resume", "requestId": "bad", "workflowId": id, "viewResponse": {"selectedOptions": {"save": "save"}}})).await;
    let err = ws.next_of("error", T).await;
    assert_eq!(
        (err["requestId"].as_str(), err["status"].as_u64()),
        (Some("bad"), Some(422))
    );
    assert_eq!(err["details"][0]["widgetId"], "accountNumber");

    ws.send(json!({"type": "resume", "requestId": "good", "workflowId": id, "viewResponse": {"selectedOptions": {"accountNumber": "11112222", "save": "save"}}})).await;
    let s = ws.next_of("state", T).await;
    assert_eq!(s["state"]["workflowStatus"], "COMPLETED");
    assert_eq!(s["state"]["requestId"], "good");
    assert_eq!(s["seq"], 2, "execute-node calls did not move seq");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_expired_and_other_workflow_tokens_are_refused() {
    let app = spawn_app().await;
    let a = id_of(&app.start("quick_screen", json!({"n": 1})).await);
    let b = app.start("quick_screen", json!({"n": 2})).await;
    let b_token = b.body["streamToken"].as_str().unwrap().to_string();
    let tokens = drift::Tokens::new(Some("test-secret"), Duration::from_secs(600));
    let tenant = drift::TenantId::parse(&app.tenant).unwrap();
    let wid = drift::WorkflowId::parse(&a).unwrap();
    let expired = tokens.issue_until(&tenant, &wid, 1);
    let forged = drift::Tokens::new(Some("not-the-secret"), Duration::from_secs(600)).issue(&tenant, &wid);

    for (what, q) in [
        ("missing", String::new()),
        ("expired", format!("?token={expired}")),
        ("other workflow", format!("?token={b_token}")),
        ("forged", format!("?token={forged}")),
    ] {
        let r = SseClient::connect(&app.events_url(&a, &q), &[]).await;
        assert_eq!(r.err(), Some(StatusCode::UNAUTHORIZED), "{what}");
    }
    // The same answer whether or not the workflow exists.
    let r = SseClient::connect(&app.events_url("wf-nonexistent", &format!("?token={b_token}")), &[]).await;
    assert_eq!(r.err(), Some(StatusCode::UNAUTHORIZED));

    let mut ws = Ws::connect(&app.ws_url("")).await;
    ws.send(json!({"type": "subscribe", "requestId": "s", "workflowId": a, "token": b_token}))
        .await;
    let err = ws.next_of("error", T).await;
    assert_eq!(
        (err["requestId"].as_str(), err["status"].as_u64()),
        (Some("s"), Some(401))
    );
    ws.send(json!({"type": "start", "requestId": "s2", "workflow": "quick_screen"}))
        .await;
    assert_eq!(
        ws.next_of("error", T).await["status"],
        401,
        "no tenant credentials, no start"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_sse_and_ws_subscribers_on_one_workflow_all_receive_every_state() {
    let (redis, url, app) = spawn_app_on_own_redis().await;
    let counter = ConnCounter::new(&url).await;
    let r = app.start("refund", json!({"orderId": "o-crowd"})).await;
    let id = id_of(&r);
    let token = r.body["streamToken"].as_str().unwrap().to_string();
    let baseline = counter.count().await;

    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(1000);
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let (ready, token, id) = (ready_tx.clone(), token.clone(), id.clone());
        let (events, ws_url) = (app.events_url(&id, &format!("?token={token}")), app.ws_url(""));
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                let mut sse = SseClient::connect(&events, &[]).await.unwrap();
                let first = sse.next(Duration::from_secs(60)).await.unwrap().data["seq"]
                    .as_u64()
                    .unwrap();
                ready.send(()).await.unwrap();
                let mut seqs = vec![first];
                seqs.extend(sse.states_until_end(Duration::from_secs(60)).await);
                seqs
            } else {
                let mut ws = Ws::connect(&ws_url).await;
                ws.send(json!({"type": "subscribe", "workflowId": id, "token": token}))
                    .await;
                let mut seqs = vec![
                    ws.next_of("state", Duration::from_secs(60)).await["seq"]
                        .as_u64()
                        .unwrap(),
                ];
                ready.send(()).await.unwrap();
                while seqs.last() != Some(&3) {
                    seqs.push(
                        ws.next_of("state", Duration::from_secs(60)).await["seq"]
                            .as_u64()
                            .unwrap(),
                    );
                }
                seqs
            }
        }));
    }
    for _ in 0..1000 {
        ready_rx.recv().await.unwrap();
    }
    assert_eq!(
        counter.count().await,
        baseline,
        "subscribers must not add Redis connections"
    );
    app.resume(&id, json!({"reason": "damaged"})).await;
    app.resume(&id, json!({"action": "confirm"})).await;
    for t in tasks {
        assert_eq!(t.await.unwrap(), vec![1, 2, 3]);
    }
    assert_eq!(counter.count().await, baseline);
    drop(app);
    on_infra(async move { redis.stop().await });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_mid_run_subscribers_keep_receiving_and_sync_calls_never_hang() {
    let (redis, url, app) = spawn_app_on_own_redis().await;
    let r = app.start("refund", json!({"orderId": "o-restart"})).await;
    let id = id_of(&r);
    let token = r.body["streamToken"].as_str().unwrap().to_string();
    let mut sse = SseClient::connect(&app.events_url(&id, &format!("?token={token}")), &[])
        .await
        .unwrap();
    assert_eq!(sse.next(T).await.unwrap().data["seq"], 1);
    let mut ws = Ws::connect(&app.ws_url("")).await;
    ws.send(json!({"type": "subscribe", "workflowId": id, "token": token}))
        .await;
    assert_eq!(ws.next_of("state", T).await["seq"], 1);

    // Restart Redis (its data is saved on shutdown and loaded again).
    let redis = restart_redis(redis, &url).await;

    // A sync call right after the restart: an answer or a 202, within its wait limit.
    let t0 = std::time::Instant::now();
    let mut answered = None;
    for _ in 0..50 {
        let r = app
            .call(
                reqwest::Method::PUT,
                &format!("/v3/workflow/resume/{id}"),
                Some(json!({"viewResponse": {"selectedOptions": {"reason": "damaged"}}})),
                &[("Prefer", "wait=5")],
            )
            .await;
        if r.status != StatusCode::SERVICE_UNAVAILABLE {
            answered = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let r = answered.expect("the gateway recovers from the Redis restart");
    assert!(matches!(r.status, StatusCode::OK | StatusCode::ACCEPTED), "{r:?}");
    assert!(t0.elapsed() < Duration::from_secs(30));

    let s2 = sse.next(T).await.unwrap();
    assert_eq!(s2.data["seq"], 2, "SSE keeps receiving after the restart");
    assert_eq!(
        ws.next_of("state", T).await["seq"],
        2,
        "WS keeps receiving after the restart"
    );
    app.resume(&id, json!({"action": "confirm"})).await;
    assert_eq!(sse.states_until_end(T).await, vec![3]);
    drop(app);
    on_infra(async move { redis.stop().await });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_does_not_delay_the_others() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app().await;
    let r = app.start("bank_account", json!({})).await;
    let id = id_of(&r);
    let token = r.body["streamToken"].as_str().unwrap().to_string();
    // A client that connects and never reads a byte.
    let addr = app.base.trim_start_matches("http://").to_string();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(1024).unwrap();
    let mut stalled = socket.connect(addr.parse().unwrap()).await.unwrap();
    stalled
        .write_all(format!("GET /v3/workflow/{id}/events?token={token} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();

    let mut sse = SseClient::connect(&app.events_url(&id, &format!("?token={token}")), &[])
        .await
        .unwrap();
    assert_eq!(sse.next(T).await.unwrap().data["seq"], 1);
    for n in 2..=30u64 {
        // The resume answers once the state is published; the live follower must have it
        // promptly after that, whatever the stalled client is doing.
        let r = app.resume(&id, json!({"accountNumber": "1", "save": "save"})).await;
        assert_eq!(r.body["seq"], n, "{r:?}");
        let ev = sse.next(Duration::from_secs(5)).await.unwrap();
        assert_eq!(ev.data["seq"], n);
    }
    drop(stalled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_streams_and_sockets_within_a_bounded_time() {
    let app = spawn_app().await;
    let r = app.start("quick_screen", json!({"n": 1})).await;
    let (id, token) = (id_of(&r), r.body["streamToken"].as_str().unwrap().to_string());
    let mut sse = SseClient::connect(&app.events_url(&id, &format!("?token={token}")), &[])
        .await
        .unwrap();
    assert_eq!(sse.next(T).await.unwrap().data["seq"], 1);
    let mut ws = Ws::connect(&app.ws_url("")).await;
    ws.send(json!({"type": "subscribe", "workflowId": id, "token": token}))
        .await;
    ws.next_of("state", T).await;

    let t0 = std::time::Instant::now();
    app.shutdown.cancel();
    assert!(sse.next(Duration::from_secs(5)).await.is_none(), "the SSE stream ends");
    // Messages already queued (the subscribe's ack) may come first; then the socket closes.
    while let Some(m) = ws.next(Duration::from_secs(5)).await {
        assert_ne!(m["type"], "state", "no new state after shutdown: {m}");
    }
    assert!(t0.elapsed() < Duration::from_secs(5));
}

/// This app's hub channels, as its /metrics reports them.
async fn hub_channels(app: &TestApp) -> u64 {
    app.metric("drift_hub_channels").await as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_clients_that_leave_free_their_channel_and_reconnects_at_the_end_get_204() {
    let app = spawn_app().await;
    // The gateway's own channels (definitions notices) are there before any workflow's.
    let own = hub_channels(&app).await;
    let r = app.start("bank_account", json!({})).await;
    let (id, token) = (id_of(&r), r.body["streamToken"].as_str().unwrap().to_string());
    let url = app.events_url(&id, &format!("?token={token}"));
    {
        let mut sse = SseClient::connect(&url, &[]).await.unwrap();
        assert_eq!(sse.next(T).await.unwrap().data["seq"], 1);
        assert_eq!(
            hub_channels(&app).await,
            own + 1,
            "the stream holds the workflow's channel"
        );
    } // the tab is closed while the workflow waits
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while hub_channels(&app).await != own {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the channel was not released within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Last-Event-ID beyond the latest state: a gap, then the latest state.
    let mut sse = SseClient::connect(&url, &[("Last-Event-ID", "7")]).await.unwrap();
    let gap = sse.next(T).await.unwrap();
    assert_eq!(
        (
            gap.event.as_str(),
            gap.data["after"].as_u64(),
            gap.data["latest"].as_u64()
        ),
        ("gap", Some(7), Some(1))
    );
    assert_eq!(sse.next(T).await.unwrap().data["seq"], 1);
    drop(sse);

    let done = app
        .resume(&id, json!({"accountNumber": "11112222", "save": "save"}))
        .await;
    assert_eq!(status_of(&done), "COMPLETED");
    // A browser reconnecting after the terminal state is told to stop (204), at or past it.
    for last in ["2", "3"] {
        let r = reqwest::Client::new()
            .get(&url)
            .header("Last-Event-ID", last)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT, "Last-Event-ID {last}");
    }
    // Without Last-Event-ID a client still gets the final state once.
    let mut sse = SseClient::connect(&url, &[]).await.unwrap();
    assert_eq!(sse.states_until_end(T).await, vec![2]);
}

/// Waits until the app's hub holds `n` channels.
async fn until_hub_channels(app: &TestApp, n: u64, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while hub_channels(app).await != n {
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within 5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_frees_its_channels_on_unsubscribe_and_when_it_goes() {
    let app = spawn_app().await;
    let own = hub_channels(&app).await;
    let mut flows = Vec::new();
    for _ in 0..2 {
        let r = app.start("bank_account", json!({})).await;
        flows.push((id_of(&r), r.body["streamToken"].as_str().unwrap().to_string()));
    }
    let mut ws = Ws::connect(&app.ws_url("")).await;
    for (id, token) in &flows {
        ws.send(json!({"type": "subscribe", "workflowId": id, "token": token}))
            .await;
        assert_eq!(ws.next_of("state", T).await["workflowId"], id.as_str());
    }
    until_hub_channels(&app, own + 2, "both workflows followed").await;

    ws.send(json!({"type": "unsubscribe", "workflowId": flows[0].0})).await;
    ws.next_of("ack", T).await;
    until_hub_channels(&app, own + 1, "an unsubscribe releases its channel").await;
    // The other follower still delivers.
    app.resume(&flows[1].0, json!({"accountNumber": "1", "save": "save"}))
        .await;
    let st = ws.next_of("state", T).await;
    assert_eq!(
        (st["workflowId"].as_str(), st["seq"].as_u64()),
        (Some(flows[1].0.as_str()), Some(2))
    );

    drop(ws);
    until_hub_channels(&app, own, "a closed socket releases every channel").await;
}

/// Sends `bytes` on a fresh connection (`trickle`: one byte at a time) and reads until `until`
/// appears, the server closes, or 5 s pass.
async fn raw(base: &str, bytes: &[u8], trickle: bool, until: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    if trickle {
        for b in bytes {
            s.write_all(std::slice::from_ref(b)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    } else {
        s.write_all(bytes).await.unwrap();
    }
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains(until) {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_stream_requests_in_odd_shapes_get_the_same_answers_as_any_other_request() {
    let app = spawn_app().await;
    let r = app.start("bank_account", json!({})).await;
    let (id, token) = (id_of(&r), r.body["streamToken"].as_str().unwrap().to_string());
    let target = format!("/v3/workflow/{id}/events?token={token}");
    let get = |version: &str, extra: &str| format!("GET {target} {version}\r\nHost: x\r\n{extra}\r\n");

    // Sent a byte at a time: the stream, chunked, with the first state.
    let out = raw(&app.base, get("HTTP/1.1", "").as_bytes(), true, "event: state").await;
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    for h in [
        "content-type: text/event-stream",
        "transfer-encoding: chunked",
        "date: ",
    ] {
        assert!(out.contains(h), "{h} missing: {out}");
    }
    assert!(out.contains("\"seq\":1"), "{out}");

    // After another request on a kept-alive connection, as HTTP/1.0, or with a body: still the
    // stream, from the ordinary HTTP server.
    let keep_alive = format!("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n{}", get("HTTP/1.1", ""));
    let http10 = get("HTTP/1.0", "");
    let with_body = format!("{}abc", get("HTTP/1.1", "Content-Length: 3\r\n"));
    for (what, req) in [("keep-alive", keep_alive), ("HTTP/1.0", http10), ("body", with_body)] {
        let out = raw(&app.base, req.as_bytes(), false, "event: state").await;
        assert!(
            out.contains(" 200 OK\r\n") && out.contains("\"seq\":1"),
            "{what}: {out}"
        );
    }

    // A head longer than the listener reads for itself goes to the HTTP server, whose limits
    // apply: well within them, the stream.
    let long = get("HTTP/1.1", &format!("X-Filler: {}\r\n", "a".repeat(100_000)));
    let out = raw(&app.base, long.as_bytes(), false, "event: state").await;
    assert!(
        out.contains(" 200 OK\r\n") && out.contains("\"seq\":1"),
        "{}",
        &out[..out.len().min(300)]
    );
    // Refused: a complete JSON answer with its length; the connection then carries the next
    // request (here the finished workflow's stream), and closes after one that asks it to.
    let done = app
        .resume(&id, json!({"accountNumber": "11112222", "save": "save"}))
        .await;
    assert_eq!(status_of(&done), "COMPLETED");
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(app.base.trim_start_matches("http://"))
            .await
            .unwrap();
        let first = format!("GET /v3/workflow/{id}/events HTTP/1.1\r\nHost: x\r\n\r\n");
        s.write_all(first.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&got).contains("}") {
            let n = tokio::time::timeout(T, s.read(&mut buf)).await.unwrap().unwrap();
            assert!(n > 0, "closed after {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        let out = String::from_utf8_lossy(&got).into_owned();
        assert!(out.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{out}");
        let body = out.split("\r\n\r\n").nth(1).unwrap_or_default();
        assert!(out.contains(&format!("content-length: {}", body.len())), "{out}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(body).unwrap()["code"],
            "unauthorized"
        );
        let second = get("HTTP/1.1", "Connection: close\r\n");
        s.write_all(second.as_bytes()).await.unwrap();
        let mut rest = Vec::new();
        tokio::time::timeout(T, s.read_to_end(&mut rest))
            .await
            .expect("the server closes after a stream that ends")
            .unwrap();
        let rest = String::from_utf8_lossy(&rest);
        assert!(
            rest.starts_with("HTTP/1.1 200 OK\r\n") && rest.contains("\"COMPLETED\""),
            "{rest}"
        );
        assert!(
            rest.contains("connection: close") && rest.ends_with("0\r\n\r\n"),
            "{rest}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_state_goes_out_on_the_channel_once() {
    // The workflow hands each state to the publisher early and its local activity publishes it
    // again (as replays and retries do): the channel must still carry each state once.
    let app = spawn_app().await;
    let sub = watch_channel(&app, "once").await;
    let r = app
        .call(
            reqwest::Method::POST,
            "/v3/workflow/start",
            Some(json!({"workflow": "quick_screen", "workflowId": "once", "params": {"n": 1}})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let r = app.resume("once", json!({"ok": "ok"})).await;
    assert_eq!(status_of(&r), "COMPLETED", "{r:?}");
    assert_eq!(
        channel_messages(sub).await,
        vec![("state".to_string(), 1), ("state".to_string(), 2)]
    );
}

#[tokio::test]
async fn a_workflow_evicted_from_the_worker_cache_is_replayed_and_publishes_each_state_once() {
    // With one cached workflow, starting a second evicts the first: its resume is then run
    // from its whole history (a replay), which must reach the same screen and publish only
    // the new state, not the replayed one again.
    let app = spawn_app_with(Opts {
        extra_args: vec!["--worker-cached-workflows=1".into()],
        ..Opts::default()
    })
    .await;
    let sub = watch_channel(&app, "evicted").await;
    for (id, n) in [("evicted", 1), ("newer", 2)] {
        let r = app
            .call(
                reqwest::Method::POST,
                "/v3/workflow/start",
                Some(json!({"workflow": "quick_screen", "workflowId": id, "params": {"n": n}})),
                &[],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
    }
    assert_eq!(replays(&app).await, 0);
    let r = app.resume("evicted", json!({"ok": "ok"})).await;
    assert_eq!(status_of(&r), "COMPLETED", "{r:?}");
    // Its own parameters, rebuilt by the replay (not the newer workflow's).
    let n = &r.body["disposition"]["n"];
    assert!(n == 1 || n == "1", "{r:?}");
    assert_eq!(
        channel_messages(sub).await,
        vec![("state".to_string(), 1), ("state".to_string(), 2)]
    );
    // The worker says it rebuilt a workflow from its history, on its own task queue's count.
    assert_eq!(replays(&app).await, 1);
}

/// A raw Redis subscriber on workflow `id`'s channel, as the gateway's hub sees it.
async fn watch_channel(app: &TestApp, id: &str) -> redis::aio::PubSub {
    let channel = app.keys(id).channel;
    let mut sub = redis::Client::open(app.redis_url.as_str())
        .unwrap()
        .get_async_pubsub()
        .await
        .unwrap();
    sub.subscribe(&channel).await.unwrap();
    sub
}

/// Each message's kind and seq, until the channel has been quiet for a second (a repeated
/// publish, e.g. the local activity's after the early hand-over, comes within milliseconds).
async fn channel_messages(mut sub: redis::aio::PubSub) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut messages = sub.on_message();
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(1), futures::StreamExt::next(&mut messages)).await
    {
        let v: serde_json::Value = serde_json::from_slice(m.get_payload_bytes()).unwrap();
        out.push((v["kind"].as_str().unwrap().to_string(), v["seq"].as_u64().unwrap()));
    }
    out
}

/// `drift_workflow_replays_total` for the app's task queue.
async fn replays(app: &TestApp) -> u64 {
    let series = format!("drift_workflow_replays_total{{task_queue=\"{}\"}}", app.task_queue);
    app.metric(&series).await as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_workflow_whose_redis_state_is_gone_is_read_back_from_temporal_and_stored_again() {
    // What an upgrade to a new key layout looks like to a workflow started before it (its
    // states are under names nobody reads any more), or what a Redis that lost its data does.
    let app = spawn_app().await;
    let r = app.start("refund", json!({"orderId": "o-upgrade"})).await;
    let (id, token) = (id_of(&r), r.body["streamToken"].as_str().unwrap().to_string());
    let keys = app.keys(&id);
    let mut redis = redis::Client::open(app.redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg(&keys.latest)
        .arg(&keys.history)
        .arg(&keys.seq)
        .query_async(&mut redis)
        .await
        .unwrap();

    // A follower that connects now is shown the screen the workflow is on, as seq 1.
    let mut sse = SseClient::connect(&app.events_url(&id, &format!("?token={token}")), &[])
        .await
        .unwrap();
    let first = sse.next(Duration::from_secs(10)).await.unwrap();
    assert_eq!((first.event.as_str(), first.data["seq"].as_u64()), ("state", Some(1)));
    assert_eq!(first.data["view"]["layoutId"], "refund_reason");
    // And it is in Redis again, for everyone after.
    let stored: Option<u64> = redis::cmd("HGET")
        .arg(&keys.latest)
        .arg("seq")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(stored, Some(1));
    let r = app.resume(&id, json!({"reason": "damaged"})).await;
    assert_eq!((r.status, r.body["seq"].as_u64()), (StatusCode::OK, Some(2)), "{r:?}");
    assert_eq!(sse.next(Duration::from_secs(10)).await.unwrap().data["seq"], 2);
}
