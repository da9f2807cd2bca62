//! Async mode: real HTTP receivers on loopback, verifying Standard Webhooks signatures with their
//! own HMAC code (not Drift's).

use crate::helpers::*;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub(crate) struct Hit {
    pub id: String,
    pub tenant: String,
    pub seq: u64,
    pub status: String,
    pub answered: u16,
    pub verified: bool,
    /// The state's answer link, when its screen asks for one.
    pub answer_url: Option<String>,
    /// The request as it came, for checks with the reference verifier.
    pub headers: HeaderMap,
    pub body: axum::body::Bytes,
}

impl Hit {
    /// Whether the reference implementation (the `standardwebhooks` crate) accepts the request
    /// as signed with `secret`.
    fn verifies_with(&self, secret: &str) -> bool {
        standardwebhooks::Webhook::new(secret)
            .and_then(|w| w.verify(&self.body, &self.headers))
            .is_ok()
    }
}

/// A webhook receiver: answers from `script` (then 200), recording every request.
#[derive(Clone)]
pub(crate) struct Receiver {
    hits: Arc<Mutex<Vec<Hit>>>,
    script: Arc<Mutex<Vec<u16>>>,
    secret: &'static str,
}

/// The receiver's own Standard Webhooks verification: HMAC-SHA256 over `id.timestamp.body`.
fn verify(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let get = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let (id, ts, sigs) = (get("webhook-id"), get("webhook-timestamp"), get("webhook-signature"));
    let Ok(ts_n) = ts.parse::<i64>() else { return false };
    if (chrono::Utc::now().timestamp() - ts_n).abs() > 300 {
        return false;
    }
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    sigs.split(' ').any(|s| s == format!("v1,{expected}"))
}

impl Receiver {
    pub(crate) fn new(secret: &'static str, script: Vec<u16>) -> Self {
        Self {
            hits: Arc::default(),
            script: Arc::new(Mutex::new(script)),
            secret,
        }
    }

    /// Serves on `port` (0: any) until the test ends; returns the callback URL.
    pub(crate) async fn serve(&self, port: u16) -> String {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        self.serve_on(listener)
    }

    /// Serves on a bound listener until the test ends; returns the callback URL.
    fn serve_on(&self, listener: tokio::net::TcpListener) -> String {
        let me = self.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let me = me.clone();
                async move {
                    let answer = {
                        let mut s = me.script.lock().unwrap();
                        if s.is_empty() { 200 } else { s.remove(0) }
                    };
                    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                    me.hits.lock().unwrap().push(Hit {
                        id: headers
                            .get("webhook-id")
                            .and_then(|h| h.to_str().ok())
                            .unwrap_or_default()
                            .to_string(),
                        tenant: v["tenant"].as_str().unwrap_or_default().to_string(),
                        seq: v["seq"].as_u64().unwrap_or_default(),
                        status: v["workflowStatus"].as_str().unwrap_or_default().to_string(),
                        answered: answer,
                        verified: verify(me.secret, &headers, &body),
                        answer_url: v["answerUrl"].as_str().map(str::to_string),
                        headers,
                        body,
                    });
                    StatusCode::from_u16(answer).unwrap()
                }
            }),
        );
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }

    pub(crate) fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// States answered 2xx, in arrival order.
    fn delivered(&self) -> Vec<(u64, String)> {
        self.hits()
            .into_iter()
            .filter(|h| h.answered < 300)
            .map(|h| (h.seq, h.status))
            .collect()
    }

    pub(crate) async fn wait_delivered(&self, n: usize, within: Duration) -> Vec<(u64, String)> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let d = self.delivered();
            if d.len() >= n {
                return d;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {d:?} delivered; hits: {:?}",
                self.hits()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub(crate) async fn start_async(app: &TestApp, workflow: &str, params: Value, callback: &str) -> (Resp, Duration) {
    let t0 = std::time::Instant::now();
    let r = app
        .call(
            Method::POST,
            "/v3/workflow/start",
            Some(json!({"workflow": workflow, "params": params, "callbackUrl": callback})),
            &[],
        )
        .await;
    (r, t0.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_run_of_the_long_running_example_delivers_every_state_in_order_signed() {
    let app = spawn_app().await;
    let rx = Receiver::new(WEBHOOK_SECRET, vec![]);
    let url = rx.serve(0).await;
    let (r, took) = start_async(&app, "monthly_report", json!({"month": "2026-11"}), &url).await;
    assert_eq!(r.status, reqwest::StatusCode::ACCEPTED, "{r:?}");
    assert!(took < Duration::from_secs(1), "202 took {took:?}");
    let id = id_of(&r);
    assert!(r.body["streamToken"].is_string() && r.body["links"]["self"].is_string());

    let d = rx.wait_delivered(2, Duration::from_secs(30)).await;
    assert_eq!(d, vec![(1, "SCHEDULER_WAITING".into()), (2, "COMPLETED".into())]);
    let hits = rx.hits();
    let run = hits[0].id.rsplit_once('/').unwrap().0.to_string();
    for h in &hits {
        assert!(h.verified, "signature must verify: {h:?}");
        assert_eq!(h.id, format!("{run}/{}", h.seq), "one run, one id per state");
        assert_eq!(h.tenant, app.tenant);
    }
    let status = app
        .call(Method::GET, &format!("/v3/workflow/{id}/deliveries"), None, &[])
        .await;
    assert_eq!(status.body["lastAttempt"]["state"], "delivered", "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_client_secret_signs_and_async_resume_answers_202() {
    let app = spawn_app().await;
    let rx = Receiver::new(ALICE_SECRET, vec![]);
    let url = rx.serve(0).await;
    let r = app
        .http
        .post(format!("{}/v3/workflow/start", app.base))
        .header("authorization", bearer(&app.token("alice")))
        .json(&json!({"workflow": "quick_screen", "params": {"n": 5}, "callbackUrl": url}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED);
    let id = r.json::<Value>().await.unwrap()["workflowId"]
        .as_str()
        .unwrap()
        .to_string();
    rx.wait_delivered(1, Duration::from_secs(20)).await;
    let r = app
        .http
        .put(format!("{}/v3/workflow/resume/{id}", app.base))
        .header("authorization", bearer(&app.token("alice")))
        .json(&json!({"viewResponse": {"selectedOptions": {"ok": "ok"}}, "mode": "async", "callbackUrl": url}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED);
    let d = rx.wait_delivered(2, Duration::from_secs(20)).await;
    assert_eq!(d[1], (2, "COMPLETED".into()));
    assert!(
        rx.hits().iter().all(|h| h.verified),
        "alice's own secret: {:?}",
        rx.hits()
    );
}

/// The secret a rotation moves to (the harness's WEBHOOK_SECRET is the one it leaves).
const ROTATED_SECRET: &str = "whsec_cm90YXRlZC13ZWJob29rLXNlY3JldC0wMTIzNDU2Nzg=";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_secret_rotation_every_webhook_verifies_on_both_secrets_and_after_it_on_the_new_one_only() {
    // The overlap: receivers still on the old secret and receivers already on the new one both
    // accept every request, checked by the reference verifier.
    let rotating = |ends: &str| Opts {
        extra_args: vec![
            format!("--webhook-secret={ROTATED_SECRET}"),
            format!("--webhook-previous-secret={WEBHOOK_SECRET}"),
            format!("--webhook-rotation-ends={ends}"),
        ],
        ..Opts::default()
    };
    let app = spawn_app_with(rotating("2999-01-01T00:00:00Z")).await;
    let rx = Receiver::new(WEBHOOK_SECRET, vec![]);
    let url = rx.serve(0).await;
    let (r, _) = start_async(&app, "quick_screen", json!({"n": 5}), &url).await;
    assert_eq!(r.status, reqwest::StatusCode::ACCEPTED, "{r:?}");
    rx.wait_delivered(1, Duration::from_secs(20)).await;
    let h = &rx.hits()[0];
    let sigs = h.headers["webhook-signature"].to_str().unwrap();
    assert_eq!(sigs.split(' ').count(), 2, "two signatures: {sigs}");
    assert!(h.verified, "the receiver's own HMAC code, on the old secret");
    assert!(
        h.verifies_with(WEBHOOK_SECRET) && h.verifies_with(ROTATED_SECRET),
        "{sigs}"
    );
    assert!(!h.verifies_with(ALICE_SECRET), "and no other secret");
    drop(app);

    // The overlap over: the new secret alone.
    let app = spawn_app_with(rotating("2020-01-01T00:00:00Z")).await;
    let rx = Receiver::new(ROTATED_SECRET, vec![]);
    let url = rx.serve(0).await;
    let (r, _) = start_async(&app, "quick_screen", json!({"n": 5}), &url).await;
    assert_eq!(r.status, reqwest::StatusCode::ACCEPTED, "{r:?}");
    rx.wait_delivered(1, Duration::from_secs(20)).await;
    let h = &rx.hits()[0];
    assert!(h.verified && h.verifies_with(ROTATED_SECRET));
    assert!(
        !h.verifies_with(WEBHOOK_SECRET),
        "the old secret signs nothing after the overlap"
    );
}

#[tokio::test]
async fn a_rotation_without_the_secret_it_moves_to_is_refused_at_start() {
    for (flags, says) in [
        (
            vec![format!("--webhook-previous-secret={WEBHOOK_SECRET}")],
            "--webhook-previous-secret needs --webhook-secret",
        ),
        (
            vec![
                format!("--webhook-secret={WEBHOOK_SECRET}"),
                format!("--client-previous-secret=bob={ALICE_SECRET}"),
            ],
            "needs a --client-secret for \"bob\"",
        ),
        (
            vec![
                format!("--webhook-secret={WEBHOOK_SECRET}"),
                "--webhook-previous-secret=whsec_not base64!".to_string(),
            ],
            "(previous default) is not a whsec_ base64 secret",
        ),
    ] {
        let out = std::process::Command::new(drift_bin())
            .args([
                "serve",
                "--embed-worker",
                "--listen=127.0.0.1:0",
                "--redis-url=redis://127.0.0.1:1",
            ])
            .env_remove("DRIFT_WEBHOOK_SECRET")
            .args(&flags)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "{flags:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_is_down_then_failing_gets_every_state_once_it_is_back() {
    let app = spawn_app().await;
    let port = drift::dev::free_port().unwrap();
    let url = format!("http://127.0.0.1:{port}/hook");
    let (r, _) = start_async(&app, "refund", json!({"orderId": "o-down"}), &url).await;
    let id = id_of(&r);
    app.eventually(&id, Duration::from_secs(20), |b| b["workflowStatus"] == "WAITING")
        .await;
    // Connection refused for a while; the workflow moves on meanwhile (sync resumes).
    let r = app.resume(&id, json!({"reason": "damaged"})).await;
    assert_eq!(
        r.status,
        reqwest::StatusCode::OK,
        "the workflow is not held back: {r:?}"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        let st = app
            .call(Method::GET, &format!("/v3/workflow/{id}/deliveries"), None, &[])
            .await;
        if st.body["lastAttempt"]["state"] == "retrying" {
            break st;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no failed attempt recorded: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        status.body["lastAttempt"]["lastError"]
            .as_str()
            .unwrap()
            .contains("request failed"),
        "{status:?}"
    );
    assert!(!status.body["lastAttempt"]["nextRetryAt"].as_str().unwrap().is_empty());
    assert!(
        status.body["lastAttempt"]["attempt"].as_u64().unwrap() >= 1,
        "{status:?}"
    );

    // Back, but answering 500 three times first.
    let rx = Receiver::new(WEBHOOK_SECRET, vec![500, 500, 500]);
    rx.serve(port).await;
    let r = app.resume(&id, json!({"action": "confirm"})).await;
    assert_eq!(status_of(&r), "COMPLETED");
    // Bounded wait; on failure say where delivery stands (seen once under full-suite load).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while rx.delivered().len() < 3 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if rx.delivered().len() < 3 {
        let st = app
            .call(Method::GET, &format!("/v3/workflow/{id}/deliveries"), None, &[])
            .await;
        panic!(
            "not all states delivered: {:?}; hits {:?}; last attempt {:?}",
            rx.delivered(),
            rx.hits(),
            st.body
        );
    }
    let d = rx.delivered();
    assert_eq!(
        d,
        vec![(1, "WAITING".into()), (2, "WAITING".into()), (3, "COMPLETED".into())]
    );
    let hits = rx.hits();
    assert!(hits.iter().filter(|h| h.answered == 500).count() == 3);
    let run_prefix = hits[0].id.rsplit_once('/').unwrap().0.to_string();
    assert!(run_prefix.starts_with(&format!("{}/", app.tenant)), "{run_prefix}");
    for h in &hits {
        assert!(h.verified);
        assert_eq!(
            h.id,
            format!("{run_prefix}/{}", h.seq),
            "duplicates carry the same webhook-id"
        );
    }
    assert!(!id.is_empty());
    // Order: no later state is delivered before an earlier one.
    let seqs: Vec<u64> = hits.iter().map(|h| h.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] <= w[1]), "{seqs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_410_stops_deliveries_to_that_callback() {
    let app = spawn_app().await;
    let rx = Receiver::new(WEBHOOK_SECRET, vec![410]);
    let url = rx.serve(0).await;
    let (r, _) = start_async(&app, "refund", json!({"orderId": "o-gone"}), &url).await;
    let id = id_of(&r);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while rx.hits().is_empty() {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.eventually(&id, Duration::from_secs(20), |b| b["workflowStatus"] == "WAITING")
        .await;
    app.resume(&id, json!({"reason": "damaged"})).await;
    let r = app.resume(&id, json!({"action": "cancel"})).await;
    assert_eq!(status_of(&r), "COMPLETED");
    let over = app.deliveries_over(&id, Duration::from_secs(30)).await;
    assert!(over.gone.contains(&url), "{over:?}");
    assert_eq!((over.delivered, over.last_seq), (0, 1), "{over:?}");
    assert_eq!(rx.hits().len(), 1, "nothing after the 410: {:?}", rx.hits());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disallowed_callback_url_is_rejected_with_422_and_nothing_starts() {
    let app = spawn_app().await;
    for url in [
        "http://10.1.2.3/hook",
        "https://localhost/hook",
        "ftp://example.com/x",
        "http://example.com/hook",
    ] {
        let wid = format!("cb-{}", uid());
        let r = app
            .call(
                Method::POST,
                "/v3/workflow/start",
                Some(json!({"workflow": "quick_screen", "workflowId": wid, "callbackUrl": url})),
                &[],
            )
            .await;
        assert_eq!(r.status, reqwest::StatusCode::UNPROCESSABLE_ENTITY, "{url}: {r:?}");
        assert_eq!(r.body["code"], "callback_not_allowed");
        assert_eq!(
            app.get(&wid).await.status,
            reqwest::StatusCode::NOT_FOUND,
            "nothing started for {url}"
        );
    }
    let r = app
        .call(
            Method::POST,
            "/v3/workflow/start",
            Some(json!({"workflow": "quick_screen", "mode": "async"})),
            &[],
        )
        .await;
    assert_eq!(
        r.status,
        reqwest::StatusCode::BAD_REQUEST,
        "async without any callback: {r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_async_workflow_delivers_terminated() {
    let app = spawn_app().await;
    let rx = Receiver::new(WEBHOOK_SECRET, vec![]);
    let url = rx.serve(0).await;
    let (r, _) = start_async(&app, "quick_screen", json!({"n": 1}), &url).await;
    let id = id_of(&r);
    rx.wait_delivered(1, Duration::from_secs(20)).await;
    let r = app
        .call(Method::DELETE, &format!("/v3/workflow/terminate/{id}"), None, &[])
        .await;
    assert_eq!(status_of(&r), "TERMINATED");
    let d = rx.wait_delivered(2, Duration::from_secs(20)).await;
    assert_eq!(d[1], (2, "TERMINATED".into()));
    let hits = rx.hits();
    let run = |h: &Hit| h.id.rsplit_once('/').unwrap().0.to_string();
    assert_eq!(
        run(&hits[1]),
        run(&hits[0]),
        "the end published for the run carries its run's id"
    );
    assert!(
        hits.iter().all(|h| h.tenant == app.tenant),
        "bodies name the tenant: {hits:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_ids_are_unique_across_tenants_and_runs_and_each_body_names_its_tenant() {
    let app = spawn_app().await;
    let rx = Receiver::new(WEBHOOK_SECRET, vec![]);
    let url = rx.serve(0).await;
    let body = json!({"workflow": "quick_screen", "workflowId": "same-id", "params": {"n": 1}, "callbackUrl": url});
    let other = bearer(&jwt("tenant-b", "tests", ALL_SCOPES, 600));
    let a = app
        .call(Method::POST, "/v3/workflow/start", Some(body.clone()), &[])
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{a:?}");
    let b = app
        .http
        .post(format!("{}/v3/workflow/start", app.base))
        .header("authorization", other)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(b.status(), StatusCode::ACCEPTED);
    rx.wait_delivered(2, Duration::from_secs(20)).await;
    // The same id again after the first run ended: a new run.
    app.call(Method::DELETE, "/v3/workflow/terminate/same-id", None, &[])
        .await;
    rx.wait_delivered(3, Duration::from_secs(20)).await;
    let again = app.call(Method::POST, "/v3/workflow/start", Some(body), &[]).await;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{again:?}");
    let hits = rx.wait_delivered(4, Duration::from_secs(20)).await;
    assert_eq!(hits.len(), 4);
    let hits = rx.hits();
    let ids: std::collections::HashSet<&str> = hits.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(
        ids.len(),
        hits.len(),
        "every state of every tenant and run has its own id: {hits:?}"
    );
    let tenants: std::collections::HashSet<&str> = hits.iter().map(|h| h.tenant.as_str()).collect();
    assert_eq!(tenants, [app.tenant.as_str(), "tenant-b"].into_iter().collect());
    assert!(
        hits.iter().all(|h| h.id.starts_with(&format!("{}/", h.tenant))),
        "{hits:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_during_an_http_node_and_during_a_publish_loses_and_repeats_no_state() {
    let tq = format!("tq-{}", uid());
    let app = spawn_app_with(Opts {
        embed_worker: false,
        task_queue: Some(tq.clone()),
        ..Default::default()
    })
    .await;
    let kill9 = |w: &mut std::process::Child| {
        w.kill().unwrap(); // SIGKILL
        w.wait().unwrap();
    };
    let rx = Receiver::new(WEBHOOK_SECRET, vec![]);
    let url = rx.serve(0).await;
    let mut w1 = app.spawn_worker();
    let (r, _) = start_async(&app, "slow_call", json!({"ms": 2000}), &url).await;
    let (id, token) = (id_of(&r), r.body["streamToken"].as_str().unwrap().to_string());
    let mut sse = SseClient::connect(&app.events_url(&id, &format!("?token={token}")), &[])
        .await
        .unwrap();
    let mut ws = Ws::connect(&app.ws_url("")).await;
    ws.send(json!({"type": "subscribe", "workflowId": id, "token": token}))
        .await;
    ws.next_of("ack", Duration::from_secs(10)).await;

    // Killed while its HTTP node runs; another worker takes over.
    tokio::time::sleep(Duration::from_millis(700)).await;
    kill9(&mut w1);
    let mut w2 = app.spawn_worker();
    let first = sse.next(Duration::from_secs(60)).await.unwrap();
    assert_eq!(
        (first.data["seq"].as_u64(), first.data["workflowStatus"].as_str()),
        (Some(1), Some("WAITING"))
    );

    // Killed right as the answer is taken and the next state is being published.
    let resume = tokio::spawn({
        let (http, base, auth, id) = (
            app.http.clone(),
            app.base.clone(),
            bearer(&app.token("tests")),
            id.clone(),
        );
        async move {
            http.put(format!("{base}/v3/workflow/resume/{id}"))
                .header("authorization", auth)
                .header("prefer", "wait=1")
                .json(&json!({"viewResponse": {"selectedOptions": {"ok": "ok"}}}))
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    tokio::time::sleep(Duration::from_millis(30)).await;
    kill9(&mut w2);
    let mut w3 = app.spawn_worker();
    let status = resume.await.unwrap();
    assert!(status == StatusCode::OK || status == StatusCode::ACCEPTED, "{status}");

    let rest = sse.states_until_end(Duration::from_secs(60)).await;
    assert_eq!(rest, vec![2], "SSE: every state once, in order");
    let ws_seqs = [
        ws.next_of("state", Duration::from_secs(60)).await,
        ws.next_of("state", Duration::from_secs(60)).await,
    ]
    .map(|m| m["seq"].as_u64().unwrap());
    assert_eq!(ws_seqs, [1, 2], "WebSocket: every state once, in order");
    let delivered = rx.wait_delivered(2, Duration::from_secs(60)).await;
    app.deliveries_over(&id, Duration::from_secs(60)).await;
    let delivered_now = rx.delivered();
    assert_eq!(delivered_now, delivered, "no late duplicates");
    assert_eq!(
        delivered,
        vec![(1, "WAITING".into()), (2, "COMPLETED".into())],
        "webhook: every state once, in order"
    );
    eprintln!("faults: worker killed twice (HTTP node, publish): SSE [1, 2], WS {ws_seqs:?}, webhook {delivered:?}");
    kill9(&mut w3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_for_two_minutes_gets_every_state_once_in_order_when_it_is_back() {
    let app = spawn_app_with(Opts {
        extra_args: vec!["--webhook-schedule=1s,2s,4s,8s,15s,30s,30s,30s,30s,30s,30s".into()],
        ..Default::default()
    })
    .await;
    // The receiver's address is taken, but for two minutes every connection is dropped at once.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let down_for = Duration::from_secs(120);
    let outage = tokio::spawn(async move {
        let until = tokio::time::Instant::now() + down_for;
        let mut refused = 0u32;
        while let Ok(Ok((conn, _))) = tokio::time::timeout_at(until, listener.accept()).await {
            drop(conn);
            refused += 1;
        }
        (listener, refused)
    });
    let (r, _) = start_async(&app, "quick_screen", json!({"n": 1}), &url).await;
    let id = id_of(&r);
    app.eventually(&id, Duration::from_secs(20), |b| b["workflowStatus"] == "WAITING")
        .await;
    let done = app.resume(&id, json!({"ok": "ok"})).await;
    assert_eq!(status_of(&done), "COMPLETED", "{done:?}");

    let (listener, refused) = outage.await.unwrap();
    assert!(refused > 0, "deliveries were attempted while the receiver was down");
    let rx = Receiver::new(WEBHOOK_SECRET, vec![]);
    rx.serve_on(listener);
    let delivered = rx.wait_delivered(2, Duration::from_secs(90)).await;
    app.deliveries_over(&id, Duration::from_secs(60)).await;
    assert_eq!(rx.delivered(), delivered, "no duplicates after the outage");
    assert_eq!(
        delivered,
        vec![(1, "WAITING".into()), (2, "COMPLETED".into())],
        "every state once, in order"
    );
    assert!(rx.hits().iter().all(|h| h.verified));
    eprintln!("faults: receiver down 120 s ({refused} connections dropped), then up: delivered {delivered:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_back_in_an_async_run_reaches_its_webhook_and_an_sse_follower_as_the_next_state() {
    let app = spawn_app().await;
    let rx = Receiver::new(WEBHOOK_SECRET, vec![]);
    let url = rx.serve(0).await;
    let (r, _) = start_async(&app, "refund", json!({"orderId": "o-back"}), &url).await;
    assert_eq!(r.status, reqwest::StatusCode::ACCEPTED, "{r:?}");
    let id = id_of(&r);
    let mut sse = SseClient::connect(
        &app.events_url(&id, ""),
        &[("authorization", &bearer(&app.token("tests")))],
    )
    .await
    .unwrap();
    rx.wait_delivered(1, Duration::from_secs(20)).await;
    let answer =
        json!({"viewResponse": {"selectedOptions": {"reason": "damaged"}}, "mode": "async", "callbackUrl": url});
    let r = app
        .call(Method::PUT, &format!("/v3/workflow/resume/{id}"), Some(answer), &[])
        .await;
    assert_eq!(r.status, reqwest::StatusCode::ACCEPTED, "{r:?}");
    rx.wait_delivered(2, Duration::from_secs(20)).await;
    let r = app
        .call(
            Method::POST,
            &format!("/v3/workflow/{id}/back"),
            Some(json!({"seq": 2})),
            &[],
        )
        .await;
    assert_eq!(r.body["seq"], 3, "{r:?}");
    let d = rx.wait_delivered(3, Duration::from_secs(20)).await;
    assert_eq!(
        d,
        vec![(1, "WAITING".into()), (2, "WAITING".into()), (3, "WAITING".into())],
        "the Back state delivered as the next"
    );
    assert!(rx.hits().iter().all(|h| h.verified));
    let mut seen = vec![];
    while seen.last() != Some(&3) {
        let ev = sse.next(Duration::from_secs(10)).await.expect("the stream goes on");
        if ev.event == "state" {
            if ev.data["seq"] == 3 {
                assert_eq!(ev.data["node"], "refund_reason", "{:?}", ev.data);
                assert_eq!(ev.data["previousAnswer"], json!({"reason": "damaged"}));
            }
            seen.push(ev.data["seq"].as_u64().unwrap());
        }
    }
    assert_eq!(seen, vec![1, 2, 3], "each state once, in order, over SSE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drift_worker_serves_its_own_metrics_with_the_webhook_deliveries_it_made() {
    let app = spawn_app_with(Opts {
        embed_worker: false,
        ..Default::default()
    })
    .await;
    let port = drift::dev::free_port().unwrap();
    let listen = format!("127.0.0.1:{port}");
    let _worker = Proc(app.spawn_worker_with(&["--metrics-listen", &listen]));
    let rx = Receiver::new(WEBHOOK_SECRET, vec![]);
    let url = rx.serve(0).await;
    let (r, _) = start_async(&app, "quick_screen", json!({"n": 5}), &url).await;
    assert_eq!(r.status, reqwest::StatusCode::ACCEPTED, "{r:?}");
    rx.wait_delivered(1, Duration::from_secs(30)).await;

    // The worker's series, from the worker's own listener (the gateway has none of them).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = match reqwest::get(format!("http://{listen}/metrics")).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if text.lines().any(|l| l == "drift_webhook_delivered_total 1") {
            break text;
        }
        assert!(tokio::time::Instant::now() < deadline, "worker metrics: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for m in [
        drift::metrics::WEBHOOK_ATTEMPTS,
        drift::metrics::MESSAGES_PUBLISHED,
        drift::metrics::PUBLISH_UNREPLICATED,
    ] {
        let help = format!("# HELP {} {}", m.name, m.help);
        assert!(text.lines().any(|l| l == help), "no `{help}`");
    }
    let replays = format!(
        "{}{{task_queue=\"{}\"}} 0",
        drift::metrics::WORKFLOW_REPLAYS.name,
        app.task_queue
    );
    assert!(
        text.lines().any(|l| l == replays),
        "no `{replays}` (at zero from the start)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_lost_after_the_retries_ended_is_recovered_by_a_resend_with_its_webhook_id_on_both_secrets() {
    // Retries end fast, and the secret is mid-rotation.
    let app = spawn_app_with(Opts {
        extra_args: vec![
            "--webhook-schedule=100ms,100ms".into(),
            format!("--webhook-secret={ROTATED_SECRET}"),
            format!("--webhook-previous-secret={WEBHOOK_SECRET}"),
        ],
        ..Opts::default()
    })
    .await;
    // The receiver fails every attempt Drift makes (three), then is mended.
    let rx = Receiver::new(WEBHOOK_SECRET, vec![503, 503, 503]);
    let url = rx.serve(0).await;
    let (r, _) = start_async(&app, "quick_screen", json!({"n": 5}), &url).await;
    let id = id_of(&r);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let last = loop {
        let d = app
            .call(Method::GET, &format!("/v3/workflow/{id}/deliveries"), None, &[])
            .await;
        if d.body["lastAttempt"]["state"] == "failed" {
            break d.body["lastAttempt"].clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "{d:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        (last["seq"].as_u64(), last["attempt"].as_u64()),
        (Some(1), Some(3)),
        "{last}"
    );
    let lost_id = rx.hits()[0].id.clone();
    assert_eq!(last["webhookId"], lost_id.as_str());
    assert!(rx.delivered().is_empty());

    // Refused, and nothing sent: another tenant, a state not attempted yet, a seq that is not one.
    let other = jwt("someone-else", "tests", "workflows:drive workflows:read", 600);
    let r = send(
        app.http
            .post(format!("{}/v3/workflow/{id}/deliveries/1/resend", app.base))
            .header("authorization", bearer(&other)),
    )
    .await;
    assert_eq!(r.status, reqwest::StatusCode::NOT_FOUND, "{r:?}");
    let reader = jwt(&app.tenant, "tests", "workflows:read", 600);
    let r = send(
        app.http
            .post(format!("{}/v3/workflow/{id}/deliveries/1/resend", app.base))
            .header("authorization", bearer(&reader)),
    )
    .await;
    assert_eq!(r.status, reqwest::StatusCode::FORBIDDEN, "{r:?}");
    for (seq, status) in [("2", 409), ("0", 409), ("x", 400), ("99999999999999999999999", 400)] {
        let r = app
            .call(
                Method::POST,
                &format!("/v3/workflow/{id}/deliveries/{seq}/resend"),
                None,
                &[],
            )
            .await;
        assert_eq!(r.status.as_u16(), status, "seq {seq}: {r:?}");
        assert!(r.body["message"].is_string(), "{r:?}");
    }
    assert_eq!(rx.hits().len(), 3, "no refused call sent anything");

    // The resend: delivered, with the lost state's own webhook-id and body, verifying on both
    // secrets with the reference verifier.
    let r = app
        .call(
            Method::POST,
            &format!("/v3/workflow/{id}/deliveries/1/resend"),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, reqwest::StatusCode::OK, "{r:?}");
    assert_eq!(r.body["outcome"], "delivered", "{r:?}");
    assert_eq!(r.body["webhookId"], lost_id.as_str());
    let hits = rx.hits();
    let (lost, resent) = (&hits[0], &hits[3]);
    assert_eq!(
        (resent.id.as_str(), resent.seq, resent.answered),
        (lost_id.as_str(), 1, 200)
    );
    assert_eq!(resent.body, lost.body, "the same body");
    assert!(resent.verifies_with(WEBHOOK_SECRET) && resent.verifies_with(ROTATED_SECRET));

    // The run's timeline tells the same story: state 1, published when the async start came,
    // its three failed attempts and the resend, each with the receiver's answer; then an
    // answer over blocking HTTP and the state it led to.
    let r = app.resume(&id, json!({"ok": "ok"})).await;
    assert_eq!(r.status, reqwest::StatusCode::OK, "{r:?}");
    let t = app
        .call(Method::GET, &format!("/v3/workflow/{id}/timeline"), None, &[])
        .await;
    assert_eq!(t.status, reqwest::StatusCode::OK, "{t:?}");
    let states = t.body["states"].as_array().unwrap();
    assert_eq!(t.body["complete"], true, "{t:?}");
    assert_eq!(
        (&states[0]["seq"], &states[0]["mode"], &states[0]["request"]),
        (&json!(1), &json!("async"), &json!("start")),
        "{t:?}"
    );
    assert!(states[0]["at"].as_str().unwrap().starts_with("20"), "{t:?}");
    let answers: Vec<_> = states[0]["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["attempt"].as_u64().unwrap(),
                a["status"].as_u64().unwrap(),
                a["resend"] == true,
            )
        })
        .collect();
    assert_eq!(
        answers,
        [(1, 503, false), (2, 503, false), (3, 503, false), (1, 200, true)],
        "{t:?}"
    );
    assert_eq!(
        (&states[1]["seq"], &states[1]["mode"]),
        (&json!(2), &json!("sync")),
        "{t:?}"
    );
    let other = jwt("someone-else", "tests", "workflows:read", 600);
    let r = send(
        app.http
            .get(format!("{}/v3/workflow/{id}/timeline", app.base))
            .header("authorization", bearer(&other)),
    )
    .await;
    assert_eq!(r.status, reqwest::StatusCode::NOT_FOUND, "another tenant's run: {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_lost_after_the_retries_ended_is_recovered_by_a_replay_of_its_range_and_no_other_tenant_sees_it() {
    let app = spawn_app_with(Opts {
        extra_args: vec![
            "--webhook-schedule=100ms".into(),
            format!("--webhook-secret={ROTATED_SECRET}"),
            format!("--webhook-previous-secret={WEBHOOK_SECRET}"),
        ],
        ..Opts::default()
    })
    .await;
    let since = (chrono::Utc::now() - chrono::TimeDelta::seconds(1)).to_rfc3339();
    // Two runs' first states, each attempted twice and given up: the receiver was down.
    let rx = Receiver::new(WEBHOOK_SECRET, vec![503; 4]);
    let url = rx.serve(0).await;
    let mut ids = vec![];
    for _ in 0..2 {
        let (r, _) = start_async(&app, "quick_screen", json!({"n": 5}), &url).await;
        ids.push(id_of(&r));
    }
    for id in &ids {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while app
            .call(Method::GET, &format!("/v3/workflow/{id}/deliveries"), None, &[])
            .await
            .body["lastAttempt"]["state"]
            != "failed"
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{id} never gave up: {:?}",
                rx.hits()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_eq!(rx.hits().len(), 4);
    let replay = |token: String, body: Value| {
        send(
            app.http
                .post(format!("{}/v3/webhooks/replay", app.base))
                .header("authorization", bearer(&token))
                .json(&body),
        )
    };

    // Another tenant's replay of the same range finds nothing of this one's.
    let other = jwt("someone-else", "tests", "workflows:drive", 600);
    let r = replay(other, json!({"since": since})).await;
    assert_eq!((r.status.as_u16(), r.body["sent"].as_u64()), (200, Some(0)), "{r:?}");
    // Ranges refused untouched: reversed, longer than a week, not a time, an unknown field; and
    // a caller who may only read.
    let now = chrono::Utc::now();
    for body in [
        json!({"since": now.to_rfc3339(), "until": (now - chrono::TimeDelta::hours(1)).to_rfc3339()}),
        json!({"since": (now - chrono::TimeDelta::days(8)).to_rfc3339()}),
        json!({"since": "yesterday"}),
        json!({"since": since, "tenant": "someone-else"}),
    ] {
        let r = replay(app.token("tests"), body.clone()).await;
        assert!(
            r.status.is_client_error() && r.body["message"].is_string(),
            "{body}: {r:?}"
        );
    }
    let reader = jwt(&app.tenant, "tests", "workflows:read", 600);
    assert_eq!(
        replay(reader, json!({"since": since})).await.status,
        reqwest::StatusCode::FORBIDDEN
    );
    assert_eq!(rx.hits().len(), 4, "nothing refused sent anything");

    // The replay: both lost states again, each with its own webhook-id and body, on both secrets.
    let r = replay(app.token("tests"), json!({"since": since})).await;
    assert_eq!(r.status, reqwest::StatusCode::OK, "{r:?}");
    assert_eq!(
        (r.body["sent"].as_u64(), r.body["delivered"].as_u64()),
        (Some(2), Some(2)),
        "{r:?}"
    );
    assert!(
        r.body["resumeFrom"].is_null() && r.body["notDelivered"] == json!([]),
        "{r:?}"
    );
    let hits = rx.hits();
    let replayed = &hits[4..];
    assert_eq!(replayed.len(), 2);
    assert_ne!(replayed[0].id, replayed[1].id);
    for h in replayed {
        let lost = hits[..4].iter().find(|l| l.id == h.id).expect("a lost webhook-id");
        assert_eq!((h.answered, &h.body), (200, &lost.body));
        assert!(h.verifies_with(WEBHOOK_SECRET) && h.verifies_with(ROTATED_SECRET));
    }
    let mut got: Vec<String> = replayed
        .iter()
        .map(|h| h.id.rsplit('/').next().unwrap().to_string())
        .collect();
    got.dedup();
    assert_eq!(got, ["1"], "each run's first state");
}
