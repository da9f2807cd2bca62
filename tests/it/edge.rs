//! The edge against sloppy and hostile clients, over raw sockets where a well-behaved HTTP client
//! cannot misbehave: requests without `Host`, ambiguous credentials, heads and bodies trickled a
//! byte at a time, idle sockets by the thousand, connection caps, replayed socket tickets,
//! reused Idempotency-Keys, oversized start params, and waiters that leave mid-wait.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const T: Duration = Duration::from_secs(20);

fn with_flags(flags: &[&str]) -> Opts {
    Opts {
        extra_args: flags.iter().map(|f| f.to_string()).collect(),
        ..Default::default()
    }
}

fn addr(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_string()
}

/// A connection from `source` (any 127.x address: each is its own peer to the gateway).
async fn connect_from(app: &TestApp, source: [u8; 4]) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind((source, 0).into())?;
    socket.connect(addr(app).parse().unwrap()).await
}

/// The status and body of the one response a connection gets (read until it closes or its
/// `content-length` is complete), or None if it closes or times out first.
async fn response(conn: &mut TcpStream, within: Duration) -> Option<(u16, String)> {
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let status = head.split(' ').nth(1)?.parse().ok()?;
            let length = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return Some((
                    status,
                    String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).to_string(),
                ));
            }
        }
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout_at(deadline, conn.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    }
}

/// How long until the server closes `conn` (reading and discarding what it sends), if within
/// `within`.
async fn closed_after(conn: &mut TcpStream, within: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout(within.saturating_sub(t0.elapsed()), conn.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(t0.elapsed()),
            Ok(Ok(_)) => {}
            Err(_) => return None,
        }
    }
}

/// Lets this process hold `n` open files if the hard limit allows (a fresh machine's soft limit
/// can be 1,024; these sockets count twice, as the gateway runs in this process).
fn raise_open_files(n: u64) {
    // SAFETY: getrlimit/setrlimit on this process with a valid, initialised struct.
    unsafe {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < n {
            l.rlim_cur = n.min(l.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

/// Whether the gateway answers a plain GET at once, on a fresh connection.
async fn served_within(app: &TestApp, within: Duration) -> bool {
    let http = reqwest::Client::builder().timeout(within).build().unwrap();
    http.get(format!("{}/healthz", app.base))
        .send()
        .await
        .is_ok_and(|r| r.status() == StatusCode::OK)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_1_1_request_without_host_or_with_two_gets_400_on_every_path() {
    let app = spawn_app().await;
    let id = id_of(&app.start("quick_screen", json!({"n": 1})).await);
    let auth = bearer(&app.token("raw"));
    for (what, request) in [
        ("no Host, hyper's path", "GET /healthz HTTP/1.1\r\n\r\n".to_string()),
        (
            "no Host, the event-stream listener's path",
            format!("GET /v3/workflow/{id}/events HTTP/1.1\r\nAuthorization: {auth}\r\n\r\n"),
        ),
        (
            "no Host on a start",
            format!(
                "POST /v3/workflow/start HTTP/1.1\r\nAuthorization: {auth}\r\ncontent-type: application/json\r\ncontent-length: 27\r\n\r\n{{\"workflow\":\"quick_screen\"}}"
            ),
        ),
        (
            "two Hosts",
            "GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_string(),
        ),
    ] {
        let mut conn = TcpStream::connect(addr(&app)).await.unwrap();
        conn.write_all(request.as_bytes()).await.unwrap();
        let (status, body) = response(&mut conn, T)
            .await
            .unwrap_or_else(|| panic!("{what}: no answer"));
        assert_eq!(status, 400, "{what}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert!(body["message"].as_str().unwrap().contains("Host"), "{what}: {body}");
    }
    // HTTP/1.0 has no Host requirement; HTTP/1.1 with one is served.
    for request in [
        "GET /healthz HTTP/1.0\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let mut conn = TcpStream::connect(addr(&app)).await.unwrap();
        conn.write_all(request.as_bytes()).await.unwrap();
        assert_eq!(response(&mut conn, T).await.map(|r| r.0), Some(200), "{request}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_authorization_headers_get_400_and_start_nothing_whichever_comes_first() {
    let app = spawn_app().await;
    let good = bearer(&app.token("tests"));
    let forged = bearer("dk_forged_0000000000000000000000");
    for (first, second) in [(&good, &forged), (&forged, &good), (&good, &good)] {
        let id = format!("two-auth-{}", uid());
        let r = send(
            app.http
                .post(format!("{}/v3/workflow/start", app.base))
                .header("authorization", first.as_str())
                .header("authorization", second.as_str())
                .json(&json!({"workflow": "quick_screen", "workflowId": id, "params": {"n": 1}})),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
        assert!(r.body["message"].as_str().unwrap().contains("Authorization"), "{r:?}");
        assert_eq!(app.get(&id).await.status, StatusCode::NOT_FOUND, "nothing was started");
    }
    // A second tenant header is as ambiguous.
    let r = send(
        app.http
            .get(format!("{}/v3/definitions", app.base))
            .header("authorization", good.as_str())
            .header("X_TENANT_ID", app.tenant.as_str())
            .header("X_TENANT_ID", "someone-else"),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trickling_a_request_head_is_closed_after_the_head_timeout_while_others_are_served() {
    let app = spawn_app_with(with_flags(&["--head-timeout-ms=1500", "--idle-timeout-ms=20000"])).await;
    // First head, trickled from the connection's start; then a second head after one request
    // served by hyper (the case hyper's own timer never saw).
    for after_a_request in [false, true] {
        let mut conn = TcpStream::connect(addr(&app)).await.unwrap();
        if after_a_request {
            conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            assert_eq!(response(&mut conn, T).await.map(|r| r.0), Some(200));
        }
        let trickle = async {
            conn.write_all(b"POST /v3/workflow/start HTTP/1.1\r\n").await?;
            for i in 0..40 {
                tokio::time::sleep(Duration::from_millis(250)).await;
                conn.write_all(format!("X-Slow-{i}: 1\r\n").as_bytes()).await?;
            }
            Ok::<_, std::io::Error>(())
        };
        let t0 = Instant::now();
        let sent_all = trickle.await.is_ok();
        let mut waited = closed_after(&mut conn, Duration::from_secs(5)).await;
        if !sent_all {
            waited = Some(t0.elapsed());
        }
        let closed = waited.map(|_| t0.elapsed());
        println!("edge: a trickled head (after a request: {after_a_request}) was closed after {closed:?}");
        assert!(
            closed.is_some_and(|c| c < Duration::from_secs(8)),
            "a head trickled for 10 s is cut at the 1.5 s head timeout: {closed:?}"
        );
        assert!(served_within(&app, Duration::from_secs(2)).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_request_body_gets_408_after_the_body_timeout_and_starts_nothing() {
    let app = spawn_app_with(with_flags(&["--body-timeout-ms=1500"])).await;
    let id = format!("trickled-{}", uid());
    let body = json!({"workflow": "quick_screen", "workflowId": id, "params": {"n": 1}}).to_string();
    let mut conn = TcpStream::connect(addr(&app)).await.unwrap();
    let head = format!(
        "POST /v3/workflow/start HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        bearer(&app.token("tests")),
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let (mut reader, mut writer) = conn.into_split();
    let t0 = Instant::now();
    let trickle = tokio::spawn(async move {
        for b in body.as_bytes() {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if writer.write_all(&[*b]).await.is_err() {
                return;
            }
        }
    });
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), reader.read_to_end(&mut got)).await;
    let took = t0.elapsed();
    trickle.abort();
    let text = String::from_utf8_lossy(&got);
    println!("edge: a trickled body was answered after {took:?}");
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");
    assert!(took < Duration::from_secs(8), "{took:?}");
    assert_eq!(app.get(&id).await.status, StatusCode::NOT_FOUND, "nothing was started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kept_alive_connection_waits_the_idle_timeout_not_the_head_timeout() {
    let app = spawn_app_with(with_flags(&["--head-timeout-ms=1000", "--idle-timeout-ms=4000"])).await;
    let mut conn = TcpStream::connect(addr(&app)).await.unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(response(&mut conn, T).await.map(|r| r.0), Some(200));
    // Idle longer than a head may take, shorter than idle: still served.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        response(&mut conn, T).await.map(|r| r.0),
        Some(200),
        "idle for 2 s of 4"
    );
    // Then idle past the idle timeout: closed.
    let closed = closed_after(&mut conn, Duration::from_secs(15)).await;
    println!("edge: an idle kept-alive connection was closed after {closed:?}");
    assert!(
        closed.is_some_and(|c| c >= Duration::from_millis(3000) && c < Duration::from_secs(10)),
        "{closed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_per_peer_cap_get_429_and_over_the_gateway_cap_503_and_closing_frees_places() {
    let app = spawn_app_with(with_flags(&[
        "--max-connections=30",
        "--max-connections-per-peer=20",
        "--head-timeout-ms=60000",
    ]))
    .await;
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(connect_from(&app, [127, 0, 0, 1]).await.unwrap());
    }
    let mut over = connect_from(&app, [127, 0, 0, 1]).await.unwrap();
    let (status, body) = response(&mut over, T).await.expect("a refusal");
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("--max-connections-per-peer"), "{body}");
    // Another address still gets in, up to the gateway's cap.
    for _ in 0..10 {
        held.push(connect_from(&app, [127, 0, 0, 2]).await.unwrap());
    }
    let mut full = connect_from(&app, [127, 0, 0, 3]).await.unwrap();
    let (status, body) = response(&mut full, T).await.expect("a refusal");
    assert_eq!(status, 503, "{body}");
    // Held connections are served; closing some frees their places.
    held[0]
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(response(&mut held[0], T).await.map(|r| r.0), Some(200));
    held.truncate(5);
    let mut again = None;
    for _ in 0..50 {
        let mut c = connect_from(&app, [127, 0, 0, 3]).await.unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        again = response(&mut c, T).await.map(|r| r.0);
        if again == Some(200) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(again, Some(200), "a closed connection's place is free again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_thousand_idle_sockets_and_a_trickler_do_not_keep_a_normal_client_waiting() {
    raise_open_files(10_000);
    let app = spawn_app_with(with_flags(&["--head-timeout-ms=3000"])).await;
    let mut idle = Vec::new();
    for i in 0..3000u32 {
        // Spread over peer addresses as many clients would be.
        let source = [127, 0, 1 + (i / 250) as u8, 1 + (i % 250) as u8];
        idle.push(connect_from(&app, source).await.unwrap());
    }
    let mut trickler = TcpStream::connect(addr(&app)).await.unwrap();
    trickler.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    let t0 = Instant::now();
    let id = id_of(&app.start("quick_screen", json!({"n": 1})).await);
    assert!(served_within(&app, Duration::from_secs(2)).await);
    let served = t0.elapsed();
    println!("edge: with 3,000 idle sockets open, a start and a GET were answered in {served:?}");
    assert!(!id.is_empty());
    // Every idle socket is closed by the head timeout.
    let t0 = Instant::now();
    let mut closed = 0;
    for conn in idle.iter_mut().chain(std::iter::once(&mut trickler)) {
        if closed_after(conn, Duration::from_secs(20).saturating_sub(t0.elapsed()))
            .await
            .is_some()
        {
            closed += 1;
        }
    }
    println!(
        "edge: {closed} of 3,001 idle sockets closed, the last {:?} after the check began",
        t0.elapsed()
    );
    assert_eq!(closed, 3001);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_ticket_opens_one_socket_on_any_gateway_and_a_second_use_gets_401() {
    let a = spawn_app().await;
    let b = spawn_app_with(Opts {
        key_prefix: Some(a.key_prefix.clone()),
        task_queue: Some(a.task_queue.clone()),
        ..Default::default()
    })
    .await;
    async fn ticket(app: &TestApp) -> String {
        let r = app.call(Method::POST, "/v3/auth/ticket", None, &[]).await;
        r.body["ticket"].as_str().unwrap().to_string()
    }
    let first = ticket(&a).await;
    let mut ws = Ws::connect(&a.ws_url(&format!("?ticket={first}"))).await;
    for (gateway, app) in [("the same gateway", &a), ("another gateway", &b)] {
        let again = Ws::connect_with(&app.ws_url(&format!("?ticket={first}")), &[]).await;
        assert_eq!(again.err(), Some(StatusCode::UNAUTHORIZED), "replayed on {gateway}");
    }
    // The first socket works; a fresh ticket opens one on the other gateway.
    ws.send(json!({"type": "start", "requestId": "r1", "workflow": "quick_screen", "params": {"n": 3}}))
        .await;
    assert_eq!(ws.next_of("state", T).await["state"]["workflowStatus"], "WAITING");
    let second = ticket(&a).await;
    assert_ne!(second, first);
    assert!(
        Ws::connect_with(&b.ws_url(&format!("?ticket={second}")), &[])
            .await
            .is_ok()
    );
    // Two sockets racing with one ticket: exactly one opens.
    let third = ticket(&b).await;
    let (url_a, url_b) = (
        a.ws_url(&format!("?ticket={third}")),
        b.ws_url(&format!("?ticket={third}")),
    );
    let (x, y) = tokio::join!(Ws::connect_with(&url_a, &[]), Ws::connect_with(&url_b, &[]));
    assert_eq!([x.is_ok(), y.is_ok()].iter().filter(|o| **o).count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_reused_for_another_request_gets_422_and_starts_nothing() {
    let app = spawn_app().await;
    let key = format!("key-{}", uid());
    let headers = [("idempotency-key", key.as_str())];
    let start = |body: Value| app.call(Method::POST, "/v3/workflow/start", Some(body), &headers);
    let first = start(json!({"workflow": "quick_screen", "params": {"n": 1}})).await;
    assert_eq!(status_of(&first), "WAITING", "{first:?}");
    let id = id_of(&first);
    for other in [
        json!({"workflow": "bank_account"}),
        json!({"workflow": "quick_screen", "params": {"n": 2}}),
        json!({"workflow": "quick_screen", "params": {"n": 1}, "mode": "async", "callbackUrl": "http://127.0.0.1:9/h"}),
        json!({"workflow": "quick_screen", "version": "1", "params": {"n": 1}}),
    ] {
        let r = start(other.clone()).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{other}: {r:?}");
        assert_eq!(r.body["code"], "idempotency_key_reused", "{r:?}");
    }
    // The same request (keys in another order, another requestId) still gets the first answer,
    // and the workflow is where it was.
    let again = start(json!({"params": {"n": 1}, "workflow": "quick_screen", "requestId": "another"})).await;
    assert_eq!((again.status, id_of(&again)), (StatusCode::OK, id.clone()), "{again:?}");
    let st = app.get(&id).await;
    assert_eq!((status_of(&st), st.body["seq"].as_u64()), ("WAITING", Some(1)));
    assert_eq!(st.body["view"]["layoutId"], first.body["view"]["layoutId"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_params_over_the_command_cap_get_413_and_start_nothing() {
    let app = spawn_app_with(with_flags(&["--max-body-bytes=1048576", "--max-command-bytes=65536"])).await;
    let id = format!("big-params-{}", uid());
    let r = app
        .call(
            Method::POST,
            "/v3/workflow/start",
            Some(json!({"workflow": "quick_screen", "workflowId": id, "params": {"n": 1, "blob": "x".repeat(900 * 1024)}})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{r:?}");
    assert_eq!(r.body["code"], "too_large");
    assert!(r.body["message"].as_str().unwrap().contains("params"), "{r:?}");
    assert_eq!(app.get(&id).await.status, StatusCode::NOT_FOUND, "nothing was started");
    // Under the cap it starts.
    let ok = app
        .call(
            Method::POST,
            "/v3/workflow/start",
            Some(json!({"workflow": "quick_screen", "params": {"n": 1, "blob": "x".repeat(30 * 1024)}})),
            &[],
        )
        .await;
    assert_eq!(status_of(&ok), "WAITING", "{ok:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_callers_that_leave_mid_wait_are_not_counted_as_waiting() {
    // Its own process: the gauge is process-wide, and other tests' apps wait in this one.
    let (_serve, app) = spawn_app_process(Opts::default()).await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(700))
        .build()
        .unwrap();
    // Each first screen is 9 s away: only a wait dropped when its caller leaves ends sooner.
    for _ in 0..5 {
        let r = impatient
            .post(format!("{}/v3/workflow/start", app.base))
            .header("authorization", bearer(&app.token("tests")))
            .header("prefer", "wait=20")
            .json(&json!({"workflow": "slow_start", "params": {"ms": 9000}}))
            .send()
            .await;
        assert!(r.is_err(), "the client gave up before the answer: {r:?}");
    }
    // Waiters still counted while others wait, and none once they have all gone.
    let waiting = app
        .metric_reaches("drift_sync_waiters", 0.0, Duration::from_secs(3))
        .await;
    assert_eq!(waiting, 0.0, "callers that left are not waiting");
    let waiter = tokio::spawn({
        let (base, auth) = (app.base.clone(), bearer(&app.token("tests")));
        async move {
            reqwest::Client::new()
                .post(format!("{base}/v3/workflow/start"))
                .header("authorization", auth)
                .header("prefer", "wait=20")
                .json(&json!({"workflow": "slow_call", "params": {"ms": 2500}}))
                .send()
                .await
                .map(|r| r.status())
        }
    });
    let seen = app
        .metric_reaches("drift_sync_waiters", 1.0, Duration::from_secs(2))
        .await;
    assert_eq!(seen, 1.0, "a caller still waiting is counted");
    assert_eq!(waiter.await.unwrap().ok(), Some(StatusCode::OK));
    assert_eq!(app.metric("drift_sync_waiters").await, 0.0);
}
