//! Every process ends: `drift serve`, `drift worker` and `drift dev` exit within their drain
//! time (plus a few seconds) of SIGTERM whatever their runs are doing, a second signal exits at
//! once, and `drift dev` stops its children after the gateway and worker, never before.

use crate::helpers::*;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The drain time the processes here run with.
const DRAIN_SECS: u64 = 3;
/// What the issue allows beyond it: "the drain time plus a few seconds".
const EXIT_BOUND: Duration = Duration::from_secs(DRAIN_SECS + 5);

/// An upstream that accepts connections and never answers: HTTP nodes calling it stay in
/// flight until their 300 s timeout. The count of connections it holds.
async fn silent_upstream() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/never", listener.local_addr().unwrap());
    let held = Arc::new(AtomicUsize::new(0));
    let count = held.clone();
    tokio::spawn(async move {
        let mut kept = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            kept.push(s);
        }
    });
    (url, held)
}

/// Stuck work for a process to stop under: `n` sync callers blocked on runs whose HTTP call
/// never gets an answer (in flight in the worker), with an SSE follower on each. Returns once
/// every call reached the upstream; the callers and streams live as long as the result.
async fn stuck_runs(base: &str, bearer: &str, n: usize) -> (Vec<tokio::task::JoinHandle<()>>, Vec<SseClient>) {
    let (upstream, held) = silent_upstream().await;
    let http = reqwest::Client::new();
    let mut callers = Vec::new();
    let ids: Vec<String> = (0..n).map(|i| format!("stuck-{}-{i}", uid())).collect();
    for id in &ids {
        let req = http
            .post(format!("{base}/v3/workflow/start"))
            .header("authorization", bearer)
            .header("prefer", "wait=60")
            .json(&json!({"workflow": "stuck_call", "workflowId": id, "params": {"url": upstream}}));
        callers.push(tokio::spawn(async move {
            // Answered or cut off by the stop: either is fine, only the stop's time counts.
            let _ = req.send().await;
        }));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while held.load(Ordering::SeqCst) < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {held:?} of {n} calls in flight"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut streams = Vec::new();
    for id in &ids {
        let url = format!("{base}/v3/workflow/{id}/events");
        streams.push(
            SseClient::connect(&url, &[("authorization", bearer)])
                .await
                .expect("a stream"),
        );
    }
    (callers, streams)
}

fn drain_flag() -> String {
    format!("--drain-secs={DRAIN_SECS}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_serve_with_its_worker_exits_within_its_drain_time_of_sigterm_with_stuck_runs_in_flight() {
    let (mut proc, app) = spawn_app_signalled(Opts {
        extra_args: vec![drain_flag()],
        ..Opts::default()
    })
    .await;
    let bearer = bearer(&app.token("tests"));
    let (_callers, _streams) = stuck_runs(&app.base, &bearer, 8).await;
    proc.signal(libc::SIGTERM);
    let (took, status) = proc.exit_within(Duration::from_secs(60)).await;
    eprintln!(
        "drift serve (embedded worker, 8 stuck runs, 8 waiters, 8 streams) exited {took:?} after SIGTERM: {status:?}"
    );
    assert!(
        status.is_some() && took <= EXIT_BOUND,
        "took {took:?} (bound {EXIT_BOUND:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_ends_a_stopping_drift_serve_at_once() {
    let (mut proc, app) = spawn_app_signalled(Opts {
        extra_args: vec!["--drain-secs=60".into()],
        ..Opts::default()
    })
    .await;
    let bearer = bearer(&app.token("tests"));
    let (_callers, _streams) = stuck_runs(&app.base, &bearer, 4).await;
    proc.signal(libc::SIGTERM);
    tokio::time::sleep(Duration::from_millis(300)).await;
    proc.signal(libc::SIGINT);
    let (took, status) = proc.exit_within(Duration::from_secs(60)).await;
    eprintln!("drift serve exited {took:?} after a second signal: {status:?}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert_eq!(status.and_then(|s| s.code()), Some(130), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_worker_exits_within_its_drain_time_of_sigterm_with_activities_in_flight() {
    let app = spawn_app_with(Opts {
        embed_worker: false,
        ..Opts::default()
    })
    .await;
    let flag = drain_flag();
    let mut worker = Proc(app.spawn_worker_with(&[&flag]));
    let bearer = bearer(&app.token("tests"));
    let (_callers, _streams) = stuck_runs(&app.base, &bearer, 8).await;
    worker.signal(libc::SIGTERM);
    let (took, status) = worker.exit_within(Duration::from_secs(60)).await;
    eprintln!("drift worker (8 HTTP calls in flight) exited {took:?} after SIGTERM: {status:?}");
    assert!(
        status.is_some() && took <= EXIT_BOUND,
        "took {took:?} (bound {EXIT_BOUND:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_dev_exits_within_its_drain_time_of_sigterm_with_stuck_runs_and_stops_its_children_after() {
    let dir = infra().dir.join(format!("dev-stop-{}", uid()));
    let data = dir.join("data");
    std::fs::create_dir_all(&dir).unwrap();
    let port = drift::dev::free_port().unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let log = dir.join("dev.log");
    let child = std::process::Command::new(drift_bin())
        .args([
            "dev",
            "--listen",
            &format!("127.0.0.1:{port}"),
            &drain_flag(),
            "--data-dir",
        ])
        .arg(&data)
        .arg(format!("--definitions={root}/examples,{root}/tests/fixtures"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut dev = Proc(child);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let ready = http.get(format!("{base}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "drift dev never became ready: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let key = std::fs::read_to_string(data.join("dev-api-key")).unwrap();
    let (_callers, _streams) = stuck_runs(&base, &bearer(key.trim()), 8).await;
    dev.signal(libc::SIGTERM);
    let (took, status) = dev.exit_within(Duration::from_secs(90)).await;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    eprintln!("drift dev (8 stuck runs, 8 waiters, 8 streams) exited {took:?} after SIGTERM: {status:?}");
    assert!(
        status.is_some() && took <= EXIT_BOUND,
        "took {took:?} (bound {EXIT_BOUND:?}): {text}"
    );
    // Temporal and Redis were stopped after the gateway and worker had drained, not before.
    let stopping = text.find("drift dev: stopping").expect("it stopped its children");
    assert!(
        text[..stopping].contains("drift dev: gateway and worker stopped"),
        "{text}"
    );
    let gone = tokio::time::Instant::now() + Duration::from_secs(10);
    while !crate::dev::children_of(&data).is_empty() {
        assert!(
            tokio::time::Instant::now() < gone,
            "left behind: {:?}",
            crate::dev::children_of(&data)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
