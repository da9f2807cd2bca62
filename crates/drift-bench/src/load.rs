//! `drift bench load`: N callers doing start → screen → answer → end back to back, first on
//! the raw-SDK floor, then through the gateway, on the same Temporal and Redis in the same
//! run. Throughput, latency per round, and CPU per round of each side: the floor's process
//! (its client, its worker and the callers) against the gateway's (`drift dev`: gateway and
//! worker), with Temporal's and Redis's CPU beside them.

use super::{Endpoints, Series, ms, summed};
use anyhow::{Context, bail};
use drift_core::domain::routes;
use drift_server::client::Client;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The benchmark's definition: what the floor's workflow does, in the DSL. One screen, then
/// the end.
fn definition() -> Value {
    json!({
        "id": "bench_load",
        "description": "drift bench load: one screen, then the end (what the raw-SDK floor's workflow does)",
        "startNode": "ask",
        "states": {
            "ask": {"node": {"type": "INSTRUCTION", "layoutId": "bench_ask", "inputOptions": [
                {"id": "answer", "tags": {"values": ["ui.free_text"]}}]},
                    "nextNode": "done"},
            "done": {"node": {"type": "SUCCESS"}}
        }
    })
}

/// One side's run at one concurrency.
pub struct SideResult {
    pub name: &'static str,
    pub concurrency: usize,
    pub rounds: usize,
    pub failed: usize,
    pub seconds: f64,
    pub latency: Series,
    /// CPU of the side's own process per round (floor: the bench itself; Drift: the gateways).
    pub cpu_per_round: Option<Duration>,
    /// Temporal's and Redis's CPU per round.
    pub others_per_round: Option<Duration>,
}

impl SideResult {
    pub fn per_sec(&self) -> f64 {
        self.rounds as f64 / self.seconds
    }

    /// The row of the printed table and of the report, one cell per `COLUMNS`.
    pub fn cells(&self) -> [String; 9] {
        let cpu = |d: Option<Duration>| d.map(ms).unwrap_or_else(|| "-".into());
        [
            self.concurrency.to_string(),
            self.name.to_string(),
            self.rounds.to_string(),
            self.failed.to_string(),
            format!("{:.1}", self.per_sec()),
            self.latency.cell(0.5),
            self.latency.cell(0.99),
            cpu(self.cpu_per_round),
            cpu(self.others_per_round),
        ]
    }
}

/// CPU time a process has used so far (user + system).
pub(crate) fn cpu_of(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after its ')' are fixed.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_micros(ticks * 1_000_000 / hz))
}

/// The Temporal dev server and the Redis server(s) on this machine, by their command lines:
/// their CPU is shared by both sides, so it is reported beside each.
fn shared_pids(ends: &Endpoints) -> Vec<u32> {
    let ports: Vec<String> = match &ends.redis {
        Some(drift_bus::RedisTarget::Standalone(u)) => u.rsplit(':').next().map(String::from).into_iter().collect(),
        Some(drift_bus::RedisTarget::Cluster(nodes)) => nodes
            .iter()
            .filter_map(|n| n.rsplit(':').next().map(String::from))
            .collect(),
        None => vec![],
    };
    let temporal_port = ends
        .temporal_address
        .as_deref()
        .and_then(|a| a.rsplit(':').next())
        .map(String::from);
    let mut pids = vec![];
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let has = |s: &str| args.iter().any(|a| a.contains(s));
        let temporal = has("start-dev") && temporal_port.as_deref().is_some_and(&has);
        // redis-server shows its address in its process title ("redis-server 127.0.0.1:P").
        let redis = has("redis-server") && ports.iter().any(|p| has(p));
        if temporal || redis {
            pids.push(pid);
        }
    }
    pids
}

/// The loop every caller runs until `end`: rounds that finish after `from` are counted.
async fn callers<F, Fut>(concurrency: usize, from: Instant, end: Instant, round: F) -> (Vec<Duration>, usize)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let round = Arc::new(round);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let round = round.clone();
        tasks.spawn(async move {
            let (mut lat, mut failed, mut last) = (vec![], 0usize, None::<String>);
            while Instant::now() < end {
                let t = Instant::now();
                let r = tokio::time::timeout(Duration::from_secs(30), round()).await;
                let done = Instant::now();
                match r {
                    Ok(Ok(())) if done >= from && done <= end => lat.push(done - t),
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        failed += 1;
                        last = Some(format!("{e:#}"));
                    }
                    Err(_) => {
                        failed += 1;
                        last = Some("a round took over 30 s".into());
                    }
                }
                // A caller whose rounds keep failing stops, with the reason.
                if failed > 20 && failed > lat.len() {
                    break;
                }
            }
            (lat, failed, last)
        });
    }
    let (mut all, mut failed, mut last_error) = (vec![], 0, None);
    while let Some(r) = tasks.join_next().await {
        if let Ok((lat, f, last)) = r {
            all.extend(lat);
            failed += f;
            last_error = last.or(last_error);
        }
    }
    if let Some(e) = last_error {
        eprintln!("load: {failed} rounds failed; the last: {e}");
    }
    (all, failed)
}

/// Runs one side: `warmup`, then `seconds` measured, with CPU read at both ends of the
/// measured window.
async fn side<F, Fut>(
    name: &'static str,
    concurrency: usize,
    warmup: Duration,
    seconds: Duration,
    own: Vec<u32>,
    shared: Vec<u32>,
    round: F,
) -> SideResult
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let from = Instant::now() + warmup;
    let end = from + seconds;
    let meter = tokio::spawn(async move {
        tokio::time::sleep_until(from.into()).await;
        let before = (summed(&own, cpu_of), summed(&shared, cpu_of));
        tokio::time::sleep_until(end.into()).await;
        let after = (summed(&own, cpu_of), summed(&shared, cpu_of));
        let diff = |a: Option<Duration>, b: Option<Duration>| Some(a?.saturating_sub(b?));
        (diff(after.0, before.0), diff(after.1, before.1))
    });
    let (lat, failed) = callers(concurrency, from, end, round).await;
    let (own_cpu, shared_cpu) = meter.await.unwrap_or((None, None));
    let rounds = lat.len();
    let per = |c: Option<Duration>| c.filter(|_| rounds > 0).map(|c| c / rounds as u32);
    SideResult {
        name,
        concurrency,
        rounds,
        failed,
        seconds: seconds.as_secs_f64(),
        latency: Series { name, samples: lat },
        cpu_per_round: per(own_cpu),
        others_per_round: per(shared_cpu),
    }
}

/// A round through the gateway: a sync start to the screen, the answer to the end.
async fn drift_round(c: Arc<Client>) -> anyhow::Result<()> {
    let (status, r) = c
        .call(
            reqwest::Method::POST,
            routes::START.template(),
            Some(&json!({"workflow": "bench_load"})),
        )
        .await?;
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        bail!("429: the gateway limits requests per credential; serve it with --rate-limit 0 for this bench");
    }
    if r["workflowStatus"] != "WAITING" {
        bail!("start: expected the screen, got {status} {r}");
    }
    let id = r["workflowId"].as_str().context("no workflowId")?;
    let body = json!({"viewResponse": {"selectedOptions": {"answer": "x"}}});
    let (status, r) = c
        .call(reqwest::Method::PUT, &routes::RESUME.to(id), Some(&body))
        .await?;
    if r["workflowStatus"] != "COMPLETED" {
        bail!("resume: expected the end, got {status} {r}");
    }
    Ok(())
}

pub async fn run(
    client: Arc<Client>,
    ends: &Endpoints,
    concurrency: &[usize],
    seconds: Duration,
    warmup: Duration,
    no_floor: bool,
) -> anyhow::Result<Vec<SideResult>> {
    crate::install(&client, &definition()).await?;
    let floor = match no_floor {
        true => None,
        false => Some(Arc::new(crate::floor(ends).await?)),
    };
    let shared = shared_pids(ends);
    let me = std::process::id();
    if ends.pids.is_empty() {
        eprintln!("load: no gateway process known (pass --pid): Drift's CPU per round is not measured");
    }
    let mut results = vec![];
    for &n in concurrency {
        if let Some(f) = &floor {
            eprintln!(
                "load: the floor, {n} callers, {:.0} s (+{:.0} s warm-up)",
                seconds.as_secs_f64(),
                warmup.as_secs_f64()
            );
            let f = f.clone();
            let r = side("floor", n, warmup, seconds, vec![me], shared.clone(), move || {
                let f = f.clone();
                async move {
                    crate::floor::floor_round(&f.client, &f.hub, &f.task_queue, true, Duration::ZERO).await?;
                    anyhow::Ok(())
                }
            })
            .await;
            print(std::slice::from_ref(&r));
            results.push(r);
        }
        eprintln!(
            "load: Drift, {n} callers, {:.0} s (+{:.0} s warm-up)",
            seconds.as_secs_f64(),
            warmup.as_secs_f64()
        );
        let c = client.clone();
        let r = side(
            "drift",
            n,
            warmup,
            seconds,
            ends.pids.clone(),
            shared.clone(),
            move || drift_round(c.clone()),
        )
        .await;
        print(std::slice::from_ref(&r));
        results.push(r);
    }
    if let Some(f) = floor {
        f.stop.cancel();
    }
    println!();
    print(&results);
    ratios(&results);
    Ok(results)
}

pub const COLUMNS: [&str; 9] = [
    "callers",
    "side",
    "rounds",
    "failed",
    "rounds/s",
    "p50",
    "p99",
    "CPU per round",
    "Temporal + Redis per round",
];

pub fn print(results: &[SideResult]) {
    let line = |c: &[String]| {
        println!(
            "{:>7} {:<6} {:>7} {:>6} {:>9} {:>10} {:>10} {:>13} {:>26}",
            c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8]
        )
    };
    line(&COLUMNS.map(String::from));
    for r in results {
        line(&r.cells());
    }
}

/// Drift against the floor at each concurrency.
pub fn ratios(results: &[SideResult]) {
    for d in results.iter().filter(|r| r.name == "drift") {
        let Some(f) = results
            .iter()
            .find(|r| r.name == "floor" && r.concurrency == d.concurrency)
        else {
            continue;
        };
        let cpu = match (d.cpu_per_round, f.cpu_per_round) {
            (Some(a), Some(b)) if !b.is_zero() => format!("{:.2}x", a.as_secs_f64() / b.as_secs_f64()),
            _ => "-".into(),
        };
        let p50 = match (d.latency.samples.is_empty(), f.latency.samples.is_empty()) {
            (false, false) => format!(
                "{:.2}x",
                d.latency.pct(0.5).as_secs_f64() / f.latency.pct(0.5).as_secs_f64()
            ),
            _ => "-".into(),
        };
        println!(
            "{} callers: Drift's throughput is {:.2}x the floor's, its CPU per round {cpu}, its p50 {p50}",
            d.concurrency,
            d.per_sec() / f.per_sec().max(f64::MIN_POSITIVE)
        );
    }
}
