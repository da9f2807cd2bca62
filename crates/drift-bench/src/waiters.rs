//! `drift bench waiters`: W sync starts blocked at once on one gateway, each first screen held
//! back by a slow stand-in call. All must be answered, on the gateway's fixed Redis
//! connections; reports memory per waiter.

use super::{Endpoints, Series, cell, kb};
use anyhow::bail;
use drift_core::domain::routes;
use drift_server::client::Client;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub struct WaitersResult {
    pub waiters: usize,
    pub answered: usize,
    /// The most requests blocked in the gateway at one moment.
    pub peak_blocked: usize,
    pub redis_clients_before: Option<usize>,
    /// The most Redis clients seen while the waiters were held.
    pub redis_clients_during: Option<usize>,
    /// The gateway's peak RSS growth over the peak number blocked at once.
    pub kb_per_waiter: Option<f64>,
    pub latency: Series,
}

/// The benchmark's own definition: a slow stand-in call before the first screen. (A timer
/// would not do: a sync call is answered by the SCHEDULER_WAITING state a timer publishes.)
fn definition(id: &str, delay: Duration) -> Value {
    let ms = delay.as_millis() as u64;
    json!({
        "id": id,
        "description": "drift bench waiters: a slow stand-in call before the first screen",
        "startNode": "slow",
        "enumStore": {"apiBase": "http://127.0.0.1:8080/stand-ins"},
        "states": {
            "slow": {"node": {"type": "HTTP", "url": format!("{{{{ enums.apiBase }}}}/slow/{ms}"), "timeoutMs": (ms + 10_000).min(300_000)},
                     "nextNode": "show"},
            "show": {"node": {"type": "INSTRUCTION", "layoutId": "after_slow", "inputOptions": [
                {"id": "ok", "tags": {"values": ["ui.button"]}, "possibleValues": [{"displayValue": "OK", "value": "ok"}]}]},
                     "nextNode": "done"},
            "done": {"node": {"type": "SUCCESS"}}
        }
    })
}

async fn redis_clients(url: &str) -> Option<usize> {
    let mut c = redis::Client::open(url)
        .ok()?
        .get_multiplexed_async_connection()
        .await
        .ok()?;
    let list: String = redis::cmd("CLIENT").arg("LIST").query_async(&mut c).await.ok()?;
    // Not counting this probe's own connection.
    Some(list.lines().count().saturating_sub(1))
}

/// The gateway's memory and its Redis connections while the waiters are held: read at most
/// once a second, the most of each kept, so both are seen while the most waiters are held.
struct Peaks {
    rss: Option<u64>,
    redis: Option<usize>,
    next: Instant,
}

impl Peaks {
    fn new(rss_before: Option<u64>) -> Self {
        Self {
            rss: rss_before,
            redis: None,
            next: Instant::now(),
        }
    }

    async fn sample(&mut self, ends: &Endpoints) {
        if Instant::now() < self.next {
            return;
        }
        self.next = Instant::now() + Duration::from_secs(1);
        self.rss = self.rss.max(ends.gateways_rss_kb());
        if let Some(u) = ends.standalone_redis() {
            self.redis = self.redis.max(redis_clients(u).await);
        }
    }
}

/// The waiters sent, finished (answered or not) and answered with their first screen.
#[derive(Default)]
struct Counts {
    sent: AtomicUsize,
    finished: AtomicUsize,
    answered: AtomicUsize,
}

/// One sync start of `workflow`, held until its first screen.
async fn one_waiter(
    http: reqwest::Client,
    c: Arc<Client>,
    workflow: &'static str,
    wait: Duration,
    counts: Arc<Counts>,
) -> anyhow::Result<Duration> {
    let t = Instant::now();
    counts.sent.fetch_add(1, Ordering::Relaxed);
    let r = http
        .post(format!("{}{}", c.base, routes::START.template()))
        .header("authorization", &c.auth)
        .header("prefer", format!("wait={}", wait.as_secs()))
        .json(&json!({"workflow": workflow}))
        .send()
        .await;
    counts.finished.fetch_add(1, Ordering::Relaxed);
    let r = r?;
    let status = r.status();
    let body: Value = r.json().await.unwrap_or_default();
    if status != reqwest::StatusCode::OK || body["workflowStatus"] != "WAITING" {
        bail!("{status}: {body}");
    }
    counts.answered.fetch_add(1, Ordering::Relaxed);
    Ok(t.elapsed())
}

/// The benchmark's definition, and one with no delay for the warm-up.
const SLOW: &str = "bench_slow_start";
const WARM: &str = "bench_warm_start";
/// Sync starts answered before the gateway's memory is read: what the first calls cost once
/// (connections to Temporal and Redis made, buffers grown, worker threads' stacks touched) is
/// not any one waiter's.
const WARM_UP: usize = 50;

async fn warm_up(c: &Arc<Client>, n: usize) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let counts = Arc::new(Counts::default());
    let calls = (0..n).map(|_| one_waiter(http.clone(), c.clone(), WARM, Duration::from_secs(60), counts.clone()));
    let failed = futures::future::join_all(calls)
        .await
        .into_iter()
        .filter_map(Result::err)
        .count();
    if failed > 0 {
        bail!("{failed} of the {n} warm-up calls failed");
    }
    Ok(())
}

fn report_failures(failures: &[String]) {
    if let Some(f) = failures.first() {
        eprintln!("waiters: {} failed; first: {f}", failures.len());
        if f.contains("429") {
            eprintln!(
                "waiters: the gateway's per-credential rate limit refused some; run it with --rate-limit 0 for this benchmark"
            );
        }
    }
}

pub async fn run(
    c: Arc<Client>,
    ends: &Endpoints,
    n: usize,
    delay: Duration,
    ramp_per_sec: u64,
) -> anyhow::Result<WaitersResult> {
    if delay > Duration::from_millis(drift_dev::standins::SLOWEST_MS) {
        bail!(
            "the slow stand-in holds a call at most {} ms (--delay-ms {})",
            drift_dev::standins::SLOWEST_MS,
            drift_dev::standins::SLOWEST_MS
        );
    }
    crate::install(&c, &definition(SLOW, delay)).await?;
    crate::install(&c, &definition(WARM, Duration::ZERO)).await?;
    let redis_before = match ends.standalone_redis() {
        Some(u) => redis_clients(u).await,
        None => None,
    };
    warm_up(&c, n.min(WARM_UP)).await?;
    let rss_before = ends.gateways_rss_kb();
    let ramp = match ramp_per_sec {
        0 => Duration::ZERO,
        r => Duration::from_secs_f64(n as f64 / r as f64),
    };
    eprintln!(
        "waiters: {n} sync starts over {:.0} s, each first screen {} ms behind a slow stand-in call",
        ramp.as_secs_f64(),
        delay.as_millis()
    );
    // Each waiter may wait for the whole ramp (Temporal works through the starts in order),
    // then its delay; the gateway must allow it (`--max-wait-ms`).
    let wait = ramp + delay + Duration::from_secs(100);
    // A client of its own, with no idle-connection cap: every waiter holds a connection.
    let http = reqwest::Client::builder()
        .timeout(wait + Duration::from_secs(10))
        .build()?;
    let counts = Arc::new(Counts::default());
    let (answered, sent, finished) = (&counts.answered, &counts.sent, &counts.finished);
    let mut tasks = tokio::task::JoinSet::new();
    let t0 = Instant::now();
    let mut peak_blocked = 0;
    let mut peaks = Peaks::new(rss_before);
    for i in 0..n {
        if ramp_per_sec > 0 {
            let due = t0 + Duration::from_secs_f64(i as f64 / ramp_per_sec as f64);
            tokio::time::sleep_until(due.into()).await;
            peak_blocked = peak_blocked.max(i - finished.load(Ordering::Relaxed).min(i));
            peaks.sample(ends).await;
            if i % (ramp_per_sec as usize * 10).max(1) == 0 && i > 0 {
                eprintln!("  {i} sent; {} answered", answered.load(Ordering::Relaxed));
            }
        }
        tasks.spawn(one_waiter(http.clone(), c.clone(), SLOW, wait, counts.clone()));
    }
    let mut samples = Vec::with_capacity(n);
    let mut failures = Vec::new();
    let mut all_sent_said = false;
    loop {
        let blocked = sent.load(Ordering::Relaxed) - finished.load(Ordering::Relaxed);
        peak_blocked = peak_blocked.max(blocked);
        peaks.sample(ends).await;
        if !all_sent_said && sent.load(Ordering::Relaxed) == n {
            all_sent_said = true;
            eprintln!("  all {n} sent; {blocked} blocked now");
        }
        match tokio::time::timeout(Duration::from_millis(200), tasks.join_next()).await {
            Ok(Some(Ok(Ok(d)))) => samples.push(d),
            Ok(Some(Ok(Err(e)))) => failures.push(e.to_string()),
            Ok(Some(Err(e))) => failures.push(e.to_string()),
            Ok(None) => break,
            Err(_) => {}
        }
        if t0.elapsed() > wait + Duration::from_secs(30) {
            tasks.abort_all();
            break;
        }
    }
    report_failures(&failures);
    // The growth at its peak over the most held at once: what one blocked request costs.
    let kb_per_waiter = match (rss_before, peaks.rss) {
        (Some(b), Some(p)) if peak_blocked > 0 => Some(p.saturating_sub(b) as f64 / peak_blocked as f64),
        _ => None,
    };
    Ok(WaitersResult {
        waiters: n,
        answered: answered.load(Ordering::Relaxed),
        peak_blocked,
        redis_clients_before: redis_before,
        redis_clients_during: peaks.redis,
        kb_per_waiter,
        latency: Series {
            name: "start → first screen (slow stand-in)",
            samples,
        },
    })
}

pub fn print(r: &WaitersResult) {
    println!(
        "{:>8} {:>10} {:>14} {:>20} {:>10} {:>10} {:>10}",
        "waiters", "answered", "peak blocked", "Redis conns (before→during)", "p50", "max", "KB/waiter"
    );
    let l = &r.latency;
    println!(
        "{:>8} {:>10} {:>14} {:>20} {:>10} {:>10} {:>10}",
        r.waiters,
        r.answered,
        r.peak_blocked,
        format!("{} → {}", cell(r.redis_clients_before), cell(r.redis_clients_during)),
        l.cell(0.5),
        l.cell(1.0),
        kb(r.kb_per_waiter)
    );
}
