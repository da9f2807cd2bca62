//! Abuse-proofing at the edge: browser origins, and limits on connections, waiters and request
//! rates — the call over a limit is refused with Retry-After, the ones within keep working.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

fn with_flags(flags: &[&str]) -> Opts {
    Opts {
        extra_args: flags.iter().map(|f| f.to_string()).collect(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_from_a_disallowed_origin_cannot_open_a_socket_or_a_stream() {
    let app = spawn_app_with(with_flags(&["--allowed-origins=https://app.example"])).await;
    let r = app.start("quick_screen", json!({"n": 1})).await;
    let (id, token) = (id_of(&r), r.body["streamToken"].as_str().unwrap().to_string());
    let auth = bearer(&app.token("browser"));
    let evil = [("origin", "https://evil.example"), ("authorization", auth.as_str())];
    assert_eq!(
        Ws::connect_with(&app.ws_url(""), &evil).await.err(),
        Some(StatusCode::FORBIDDEN),
        "WebSocket from another site"
    );
    let sse = SseClient::connect(
        &app.events_url(&id, &format!("?token={token}")),
        &[("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(sse.err(), Some(StatusCode::FORBIDDEN), "SSE from another site");

    let good = [("origin", "https://app.example"), ("authorization", auth.as_str())];
    let mut ws = Ws::connect_with(&app.ws_url(""), &good).await.expect("allowed origin");
    ws.send(json!({"type": "subscribe", "workflowId": id})).await;
    assert_eq!(ws.next_of("state", T).await["seq"], 1);
    // A page the gateway served itself, on its own address.
    let own = app.base.replace("http://", "");
    let own_origin = format!("http://{own}");
    assert!(
        Ws::connect_with(
            &app.ws_url(""),
            &[("origin", own_origin.as_str()), ("authorization", auth.as_str())]
        )
        .await
        .is_ok()
    );

    // CORS: a preflight from the allowed origin is answered for it, another origin's is not.
    let preflight = |origin: &'static str| {
        app.http
            .request(Method::OPTIONS, format!("{}/v3/workflow/start", app.base))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization,content-type")
            .send()
    };
    let ok = preflight("https://app.example").await.unwrap();
    assert_eq!(ok.headers()["access-control-allow-origin"], "https://app.example");
    let no = preflight("https://evil.example").await.unwrap();
    assert!(no.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_over_a_tenants_limit_gets_429_and_the_first_ones_keep_streaming() {
    let app = spawn_app_with(with_flags(&["--max-streams-per-tenant=3"])).await;
    let id = id_of(&app.start("bank_account", json!({})).await);
    let auth = bearer(&app.token("t"));
    let h = [("authorization", auth.as_str())];
    let mut streams = Vec::new();
    for _ in 0..3 {
        let mut s = SseClient::connect(&app.events_url(&id, ""), &h)
            .await
            .expect("within the limit");
        assert_eq!(s.next(T).await.unwrap().data["seq"], 1);
        streams.push(s);
    }
    let r = app
        .http
        .get(app.events_url(&id, ""))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(
        Ws::connect_with(&app.ws_url(""), &h).await.err(),
        Some(StatusCode::TOO_MANY_REQUESTS),
        "sockets count too"
    );
    // Another tenant is not affected by this one's connections.
    let other = bearer(&jwt("another-tenant", "t", ALL_SCOPES, 600));
    assert!(
        Ws::connect_with(&app.ws_url(""), &[("authorization", other.as_str())])
            .await
            .is_ok()
    );

    let r = app
        .resume(&id, json!({"accountNumber": "11112222", "save": "save"}))
        .await;
    assert_eq!(status_of(&r), "COMPLETED", "{r:?}");
    for s in &mut streams {
        assert_eq!(s.states_until_end(T).await, vec![2], "the first three keep streaming");
    }
    // Their places are free again once they ended (a stream's place is given back as its
    // response ends, which the client may see first).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while SseClient::connect(&app.events_url(&id, ""), &h).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ended streams' places were not freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_without_credentials_is_closed_unless_it_follows_and_then_counts_for_its_tokens_tenant() {
    let app = spawn_app_with(with_flags(&[
        "--ws-subscribe-within-ms=500",
        "--max-streams-per-tenant=2",
    ]))
    .await;
    let r = app.start("bank_account", json!({})).await;
    let (id, token) = (id_of(&r), r.body["streamToken"].as_str().unwrap().to_string());

    // One that follows with a stream token stays open past the grace...
    let mut follower = Ws::connect(&app.ws_url("")).await;
    follower
        .send(json!({"type": "subscribe", "workflowId": id, "token": token}))
        .await;
    assert_eq!(follower.next_of("state", T).await["seq"], 1);
    // ... one that follows nothing is closed once it has passed (1008: policy).
    let mut idle = Ws::connect(&app.ws_url("")).await;
    assert_eq!(idle.close_code(T).await, Some(1008));
    follower.send(json!({"type": "ping"})).await;
    assert_eq!(
        follower.next_of("pong", T).await["type"],
        "pong",
        "the follower is still open"
    );

    // The follower holds one of its token's tenant's two places: the tenant's second
    // connection fits, a third is refused, and so is another token-only follow of that tenant.
    let auth = bearer(&app.token("t"));
    let h = [("authorization", auth.as_str())];
    let _second = SseClient::connect(&app.events_url(&id, ""), &h)
        .await
        .expect("the tenant's second place");
    assert_eq!(
        SseClient::connect(&app.events_url(&id, ""), &h).await.err(),
        Some(StatusCode::TOO_MANY_REQUESTS),
        "the tenant is at its limit"
    );
    let mut third = Ws::connect(&app.ws_url("")).await;
    third
        .send(json!({"type": "subscribe", "requestId": "s", "workflowId": id, "token": token}))
        .await;
    let err = third.next_of("error", T).await;
    assert_eq!(
        (err["status"].as_u64(), err["code"].as_str()),
        (Some(429), Some("too_many_connections"))
    );
    assert_eq!(third.close_code(T).await, Some(1008), "refused, it follows nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_waiter_over_the_limit_gets_503_and_starts_nothing_while_the_first_ones_are_answered() {
    let app = spawn_app_with(with_flags(&["--max-waiters=2"])).await;
    let slow = |id: &str| json!({"workflow": "slow_start", "workflowId": id, "params": {"ms": 2500}});
    let (a, b) = (
        app.call(Method::POST, "/v3/workflow/start", Some(slow("w-a")), &[]),
        app.call(Method::POST, "/v3/workflow/start", Some(slow("w-b")), &[]),
    );
    let both = tokio::spawn({
        let (http, base, auth, tenant) = (
            app.http.clone(),
            app.base.clone(),
            bearer(&app.token("tests")),
            app.tenant.clone(),
        );
        async move {
            tokio::time::sleep(Duration::from_millis(800)).await;
            let r = http
                .post(format!("{base}/v3/workflow/start"))
                .header("authorization", auth)
                .header("X_TENANT_ID", tenant)
                .json(&json!({"workflow": "slow_start", "workflowId": "w-c", "params": {"ms": 10}}))
                .send()
                .await
                .unwrap();
            (r.status(), r.headers().get("retry-after").cloned())
        }
    });
    let (a, b) = tokio::join!(a, b);
    let (third, retry_after) = both.await.unwrap();
    assert_eq!(third, StatusCode::SERVICE_UNAVAILABLE, "the third waiter");
    assert!(retry_after.is_some());
    assert_eq!((a.status, b.status), (StatusCode::OK, StatusCode::OK), "{a:?} {b:?}");
    assert_eq!(status_of(&a), "WAITING");
    assert_eq!(
        app.get("w-c").await.status,
        StatusCode::NOT_FOUND,
        "nothing was started for the refused call"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_that_waits_too_long_for_its_turn_gets_503_busy_and_starts_nothing() {
    // One start in flight to Temporal at a time, and a 1 ms wait for a turn: of a burst, the
    // first goes out and those behind it are refused untouched.
    let app = spawn_app_with(with_flags(&["--max-starts-in-flight=1", "--start-turn-wait-ms=1"])).await;
    let starts = (0..12).map(|i| {
        let id = format!("turn-{i}");
        let body = json!({"workflow": "quick_screen", "workflowId": id, "params": {"n": 1}});
        let app = &app;
        async move { (id, app.call(Method::POST, "/v3/workflow/start", Some(body), &[]).await) }
    });
    let answers = futures::future::join_all(starts).await;
    let mut busy = 0;
    for (id, r) in &answers {
        match r.status {
            StatusCode::OK => assert_eq!(status_of(r), "WAITING", "{id}: {r:?}"),
            StatusCode::SERVICE_UNAVAILABLE => {
                busy += 1;
                assert_eq!(r.body["code"], "busy", "{id}: {r:?}");
                assert!(
                    r.body["message"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("nothing was started"),
                    "{id}: {r:?}"
                );
                assert_eq!(
                    app.get(id).await.status,
                    StatusCode::NOT_FOUND,
                    "{id}: nothing was started for the refused call"
                );
            }
            other => panic!("{id}: {other} {r:?}"),
        }
    }
    assert!(busy > 0, "none waited past its turn: {answers:?}");
    assert!(busy < answers.len(), "the first start goes out: {answers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_over_its_rate_gets_429_with_retry_after_and_others_are_unaffected() {
    let app = spawn_app_with(with_flags(&["--rate-limit=2", "--rate-burst=5"])).await;
    let flood = bearer(&app.token("flood"));
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let r = app
            .http
            .get(format!("{}/v3/definitions", app.base))
            .header("authorization", &flood)
            .send()
            .await
            .unwrap();
        statuses.push((r.status(), r.headers().get("retry-after").cloned()));
    }
    assert!(
        statuses[..5].iter().all(|(s, _)| *s == StatusCode::OK),
        "the burst passes: {statuses:?}"
    );
    let (limited, retry) = &statuses[7];
    assert_eq!(*limited, StatusCode::TOO_MANY_REQUESTS, "{statuses:?}");
    assert!(retry.is_some());
    let other = app.call(Method::GET, "/v3/definitions", None, &[]).await;
    assert_eq!(other.status, StatusCode::OK, "another credential is not limited");
}
