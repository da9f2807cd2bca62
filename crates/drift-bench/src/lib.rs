//! `drift bench`: latency of the sync round trips against a running gateway (e.g. `drift dev`),
//! reported next to a bare HTTP round trip to the same gateway and next to the raw-SDK floor
//! (`floor`) on the same Temporal and Redis, all measured in the same process. A crate of its
//! own: nothing here is part of the gateway or the worker.

mod args;
mod cached;
mod engine;
mod fanout;
pub mod floor;
mod history;
mod load;
mod peer;
mod report;
mod simulate;
mod waiters;

use anyhow::{Context, bail};
use args::BenchCmd;
pub use args::{BenchArgs, Connect, Transport};
use drift_core::domain::routes;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

pub struct Series {
    pub name: &'static str,
    pub samples: Vec<Duration>,
}

impl Series {
    pub fn pct(&self, p: f64) -> Duration {
        let mut s = self.samples.clone();
        s.sort();
        s[((s.len() as f64 - 1.0) * p).round() as usize]
    }

    /// Percentile `p` as a table cell; "-" when nothing was measured.
    pub fn cell(&self, p: f64) -> String {
        match self.samples.is_empty() {
            true => "-".into(),
            false => ms(self.pct(p)),
        }
    }
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// A table cell for a value that may not have been measured.
pub fn cell(v: Option<impl std::fmt::Display>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

/// Kilobytes as a table cell, to one decimal.
pub fn kb(v: Option<f64>) -> String {
    cell(v.map(|k| format!("{k:.1}")))
}

/// Where the measured gateway's parts are: from flags, else from `drift dev`'s endpoints.json.
pub struct Endpoints {
    pub temporal_address: Option<String>,
    /// The gateway's Redis: one server or a cluster.
    pub redis: Option<drift_bus::RedisTarget>,
    /// The measured gateways' processes.
    pub pids: Vec<u32>,
    pub tenant: String,
    pub key_prefix: String,
}

impl Endpoints {
    fn of(a: &BenchArgs) -> anyhow::Result<Self> {
        let e = drift_server::client::dev_endpoints(&a.gateway.data_dir);
        let s = |k: &str| e[k].as_str().map(String::from);
        let flags = drift_bus::RedisTarget::from_flags(a.redis_url.as_deref(), &a.redis_cluster)
            .map_err(|e| anyhow::anyhow!(e))?;
        Ok(Self {
            temporal_address: a.temporal_address.clone().or_else(|| s("temporalAddress")),
            redis: flags.or_else(|| drift_server::client::dev_redis(&e)),
            pids: match a.pid.is_empty() {
                false => a.pid.clone(),
                true => e["pid"].as_u64().map(|p| p as u32).into_iter().collect(),
            },
            tenant: a
                .tenant
                .clone()
                .or_else(|| s("tenant"))
                .unwrap_or_else(|| "demo".into()),
            key_prefix: a
                .key_prefix
                .clone()
                .or_else(|| s("keyPrefix"))
                .unwrap_or_else(|| "drift".into()),
        })
    }
}

impl Endpoints {
    /// The measured gateways' resident memory together, in KB (None: no gateway process known).
    pub fn gateways_rss_kb(&self) -> Option<u64> {
        summed(&self.pids, rss_kb)
    }

    /// The gateway's Redis when it is one server (whose clients can be counted in one place).
    pub fn standalone_redis(&self) -> Option<&str> {
        match &self.redis {
            Some(drift_bus::RedisTarget::Standalone(u)) => Some(u),
            _ => None,
        }
    }
}

/// A figure of each process in `pids`, summed; None when there is none or one is unreadable.
pub fn summed<T: std::iter::Sum>(pids: &[u32], of: impl Fn(u32) -> Option<T>) -> Option<T> {
    match pids.is_empty() {
        true => None,
        false => pids.iter().map(|p| of(*p)).sum(),
    }
}

/// A process's resident memory, in KB (Linux).
pub fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The raw-SDK floor, set up on the gateway's Temporal and Redis.
struct Floor {
    client: temporalio_client::Client,
    /// The floor's screens reach it through a subscription hub, as Drift's do.
    hub: drift_bus::Hub,
    task_queue: String,
    /// What each start carries (`--floor-input-bytes`, `--floor-search-attributes`).
    start: crate::floor::FloorStart,
    stop: tokio_util::sync::CancellationToken,
    worker: std::thread::JoinHandle<anyhow::Result<()>>,
}

impl Floor {
    /// Stops the floor's worker and waits for it (see `stop_worker`).
    async fn stop(self) {
        self.stop.cancel();
        stop_worker(self.worker, "the floor's").await;
    }
}

/// How long a worker this process runs (the floor's, the engine side's) gets to drain once
/// stopped.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

/// Waits for a worker whose shutdown was asked, so that it says goodbye to Temporal while the
/// connection it shares with this runtime is still there (a bench that returned at once ended
/// with the SDK's warning that its shutdown call failed). A worker that stopped with an error,
/// before or now, says why; `whose` names it ("the floor's").
pub(crate) async fn stop_worker(worker: std::thread::JoinHandle<anyhow::Result<()>>, whose: &str) {
    match tokio::time::timeout(DRAIN, tokio::task::spawn_blocking(move || worker.join())).await {
        Ok(Ok(Ok(Err(e)))) => eprintln!("{e:#}"),
        Ok(_) => {}
        Err(_) => eprintln!(
            "{whose} worker had not stopped {} s after the bench; leaving it",
            DRAIN.as_secs()
        ),
    }
}

/// What the floor's starts carry, as asked (`--floor-input-bytes`, `--floor-search-attributes`).
fn floor_start(a: &BenchArgs, ends: &Endpoints) -> crate::floor::FloorStart {
    crate::floor::FloorStart::new(a.floor_input_bytes as usize, a.floor_search_attributes, &ends.tenant)
}

/// The floor on the gateway's Temporal and Redis; `start`: what its starts carry.
async fn floor(ends: &Endpoints, start: crate::floor::FloorStart) -> anyhow::Result<Floor> {
    let hint = "the floor needs --temporal-address and --redis-url or --redis-cluster (or a drift dev data folder with endpoints.json), or pass --no-floor";
    let temporal = ends.temporal_address.clone().context(hint)?;
    let redis = ends.redis.clone().context(hint)?;
    let task_queue = format!("drift-floor-{}", std::process::id());
    let cfg = drift_temporal::TemporalConfig {
        address: temporal.clone(),
        namespace: "default".into(),
        task_queue: task_queue.clone(),
        traced: false,
    };
    let client = drift_temporal::connect(&cfg)
        .await
        .with_context(|| format!("connecting to Temporal at {temporal} for the floor"))?;
    let stop = tokio_util::sync::CancellationToken::new();
    let worker = crate::floor::spawn_floor_worker(client.clone(), redis.clone(), task_queue.clone(), stop.clone())?;
    let hub = drift_bus::Hub::start(&redis, 1, stop.clone())?;
    Ok(Floor {
        client,
        hub,
        task_queue,
        start,
        stop,
        worker,
    })
}

pub async fn run(a: BenchArgs) -> anyhow::Result<()> {
    let ends = Endpoints::of(&a)?;
    let client = std::sync::Arc::new(drift_server::client::Client::new(&a.gateway)?);
    match a.what.clone() {
        None => {
            let rows = round_trips(&a, &ends, &client).await?;
            if let Some(dir) = &a.report {
                report::round_trips(dir, &rows)?;
            }
        }
        Some(BenchCmd::Fanout {
            subscribers,
            workflows,
            states,
            interval_ms,
            transport,
            gateways,
            connect,
            sources,
            per_connection,
            barrier,
            json_out,
        }) => {
            let gateways = match gateways.is_empty() {
                true => vec![client.clone()],
                false => gateways.iter().map(|g| std::sync::Arc::new(client.at(g))).collect(),
            };
            let mut results = Vec::new();
            for n in subscribers {
                let r = fanout::run_once(
                    &gateways,
                    &ends,
                    n,
                    workflows.max(1),
                    states.max(1),
                    Duration::from_millis(interval_ms.max(1)),
                    transport,
                    connect,
                    fanout::Spread {
                        sources,
                        per_connection: per_connection as usize,
                        barrier: barrier.clone(),
                    },
                )
                .await?;
                if let Some(path) = &json_out {
                    fanout::append_json(path, &r)?;
                }
                results.push(r);
                fanout::print(&results[results.len() - 1..]);
            }
            println!();
            fanout::print(&results);
            if let Some(dir) = &a.report {
                report::fanout(dir, &results)?;
            }
        }
        Some(BenchCmd::Load {
            concurrency,
            seconds,
            warmup_seconds,
            turns,
            think_ms,
            windows,
            engine,
        }) => {
            let pace = load::Pace {
                seconds: Duration::from_secs(seconds.max(1)),
                warmup: Duration::from_secs(warmup_seconds),
                slices: turns as usize,
                think: Duration::from_millis(think_ms),
                windows,
            };
            let r = load::run(
                client.clone(),
                &ends,
                &concurrency,
                pace,
                (!a.no_floor).then(|| floor_start(&a, &ends)),
                engine,
            )
            .await?;
            if let Some(dir) = &a.report {
                report::load(dir, &r)?;
            }
        }
        Some(BenchCmd::Simulate) => simulate::run(&client, a.rounds.max(4), a.warmup).await?,
        Some(BenchCmd::Cached { runs, screens }) => {
            cached::print(&cached::run(&client, &ends, runs.max(1), screens as usize).await?)
        }
        Some(BenchCmd::Waiters {
            waiters,
            delay_ms,
            ramp_per_sec,
        }) => {
            let r = waiters::run(
                client.clone(),
                &ends,
                waiters,
                Duration::from_millis(delay_ms),
                ramp_per_sec,
            )
            .await?;
            waiters::print(&r);
            if let Some(dir) = &a.report {
                report::waiters(dir, &r)?;
            }
        }
    }
    Ok(())
}

/// The sync round trips, each against the floor; answers the printed rows for the report.
async fn round_trips(
    a: &BenchArgs,
    ends: &Endpoints,
    client: &drift_server::client::Client,
) -> anyhow::Result<Vec<(Series, Option<f64>)>> {
    let base = client.base.clone();
    let mut floor = match a.no_floor {
        true => None,
        false => Some(floor(ends, floor_start(a, ends)).await?),
    };
    let series = |name: &'static str| Series { name, samples: vec![] };
    let (mut health, mut start, mut resume, mut refused) = (
        series("GET /healthz (baseline)"),
        series("start → first screen"),
        series("resume → next screen"),
        series("resume refused (409)"),
    );
    let (mut f_start, mut f_resume, mut fe_start, mut fe_resume) = (
        series("floor start, normal"),
        series("floor signal → screen, normal"),
        series("floor start, eager"),
        series("floor signal → screen, eager"),
    );
    let (mut p_start, mut p_resume) = (
        series("peer Update-With-Start → screen"),
        series("peer Update → next screen"),
    );
    eprintln!(
        "drift bench: {} rounds against {base} (bank_account start, refund resume){}",
        a.rounds,
        if floor.is_some() {
            ", with the raw-SDK floor on the same Temporal and Redis"
        } else {
            ""
        }
    );
    for i in 0..a.rounds + a.warmup {
        let keep = i >= a.warmup;
        let [h, s, rs, rf] = drift_round(client).await?;
        if keep {
            health.samples.push(h);
            start.samples.push(s);
            resume.samples.push(rs);
            refused.samples.push(rf);
        }
        if let Some(f) = floor.as_mut() {
            use crate::floor::floor_round;
            let lazy = floor_round(&f.client, &f.hub, &f.task_queue, &f.start, false, crate::floor::SETTLE).await?;
            let eager = floor_round(&f.client, &f.hub, &f.task_queue, &f.start, true, crate::floor::SETTLE).await?;
            if keep {
                f_start.samples.push(lazy.started);
                f_resume.samples.push(lazy.resumed);
                fe_start.samples.push(eager.started);
                fe_resume.samples.push(eager.resumed);
            }
            let peer = crate::peer::peer_round(&f.client, &f.task_queue, crate::floor::SETTLE).await?;
            if keep {
                p_start.samples.push(peer.started);
                p_resume.samples.push(peer.resumed);
            }
        }
        if (i + 1) % 50 == 0 {
            eprintln!("  {} / {}", i + 1, a.rounds + a.warmup);
        }
    }
    if let Some(f) = floor {
        f.stop().await;
    }
    let base_p50 = health.pct(0.5).as_secs_f64();
    let best = |a: &Series, b: &Series| {
        if a.samples.is_empty() {
            None
        } else {
            Some(a.pct(0.5).min(b.pct(0.5)).as_secs_f64())
        }
    };
    let (floor_start, floor_resume) = (best(&f_start, &fe_start), best(&f_resume, &fe_resume));
    let own = (!refused.samples.is_empty()).then(|| refused.pct(0.5));
    let against_peer = (!p_start.samples.is_empty()).then(|| {
        let r = |d: &Series, p: &Series, q| d.pct(q).as_secs_f64() / p.pct(q).as_secs_f64();
        format!(
            "Against the Update-based peer (Temporal alone, no Redis): start p50 {:.2}x, p99 {:.2}x; resume p50 {:.2}x, p99 {:.2}x",
            r(&start, &p_start, 0.5),
            r(&start, &p_start, 0.99),
            r(&resume, &p_resume, 0.5),
            r(&resume, &p_resume, 0.99)
        )
    });
    let rows: Vec<(Series, Option<f64>)> = vec![
        (health, None),
        (f_start, None),
        (fe_start, None),
        (start, floor_start),
        (f_resume, None),
        (fe_resume, None),
        (resume, floor_resume),
        (p_start, None),
        (p_resume, None),
        (refused, None),
    ];
    print_round_trips(&rows, base_p50);
    if let Some(line) = against_peer {
        println!("{line}");
    }
    // Every start and resume through the API pays at least what a refused one does (the HTTP
    // hop, authentication, the checks) on top of what Temporal and the workflow take, none of
    // which the floor has: the closest a ratio to the floor can come on this machine.
    if let (Some(own), Some(fs), Some(fr)) = (own, floor_start, floor_resume) {
        println!(
            "A refused resume, {}, is what every call costs before Temporal: the floor plus that \
             alone is {:.2}x for a start, {:.2}x for a resume",
            ms(own),
            1.0 + own.as_secs_f64() / fs,
            1.0 + own.as_secs_f64() / fr
        );
    }
    if let Some((health, refused)) = gateway_cpu(client, ends, CPU_CALLS).await? {
        println!(
            "The gateway's CPU per call ({CPU_CALLS} calls each, its processes): GET /healthz {} µs, a refused \
             resume {} µs, so {} µs of its own work before Temporal on every call",
            health.as_micros(),
            refused.as_micros(),
            refused.saturating_sub(health).as_micros()
        );
    }
    Ok(rows)
}

/// Calls of each kind whose CPU is measured: enough for the process's 10 ms clock ticks.
const CPU_CALLS: u32 = 3000;

/// The gateways' CPU per call (their processes' user + system time over `n` calls on one
/// connection): a bare `GET /healthz`, and a resume refused because its screen was answered,
/// which is everything a call does before Temporal (the HTTP hop, authentication, the
/// subscription, the checks' Redis round trip). None without the gateways' process ids.
async fn gateway_cpu(
    client: &drift_server::client::Client,
    ends: &Endpoints,
    n: u32,
) -> anyhow::Result<Option<(Duration, Duration)>> {
    if ends.pids.is_empty() {
        return Ok(None);
    }
    let (id, _, refused) = refund_answered(client).await?;
    let cpu = || summed(&ends.pids, load::cpu_of);
    let before = cpu();
    for _ in 0..n {
        healthz(client).await?;
    }
    let between = cpu();
    for _ in 0..n {
        refused_again(client, &id, &refused).await?;
    }
    let after = cpu();
    Ok(match (before, between, after) {
        (Some(b), Some(m), Some(a)) => Some(((m - b) / n, (a - m) / n)),
        _ => None,
    })
}

/// A bare `GET /healthz` (no credential: the baseline of an HTTP round trip).
pub(crate) async fn healthz(client: &drift_server::client::Client) -> anyhow::Result<()> {
    client
        .http
        .get(format!("{}/healthz", client.base))
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

/// A sync start's answer.
async fn start(client: &drift_server::client::Client, body: Value) -> anyhow::Result<Value> {
    Ok(client
        .call(reqwest::Method::POST, routes::START.template(), Some(&body))
        .await?
        .1)
}

/// A refund started and its first screen answered (a resume whose next screen needs no
/// activity: reason → confirm): its id, how long the answer took, and that answer again, which
/// is now refused.
async fn refund_answered(client: &drift_server::client::Client) -> anyhow::Result<(String, Duration, Value)> {
    let r = start(client, json!({"workflow": "refund", "params": {"orderId": "o-bench"}})).await?;
    let Some(id) = r["workflowId"].as_str().map(String::from) else {
        bail!("start failed: {r}")
    };
    // As the floor does: the screen is answered after the workflow task that showed it has
    // completed (the start is answered from inside that task), as a person answers it.
    tokio::time::sleep(crate::floor::SETTLE).await;
    let mut body = json!({"viewResponse": {"selectedOptions": {"reason": "damaged"}}});
    let t = Instant::now();
    let (_, r) = client
        .call(reqwest::Method::PUT, &routes::RESUME.to(&id), Some(&body))
        .await?;
    let took = t.elapsed();
    if r["seq"] != 2 {
        bail!("expected the next screen, got {r}");
    }
    body["seq"] = json!(1);
    Ok((id, took, body))
}

/// The answer to a screen already answered, which must be refused (409).
async fn refused_again(client: &drift_server::client::Client, id: &str, body: &Value) -> anyhow::Result<()> {
    let (status, _) = client
        .call(reqwest::Method::PUT, &routes::RESUME.to(id), Some(body))
        .await?;
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        bail!(
            "the gateway's rate limit refused a call (429): the bench's CPU measure makes thousands; \
             serve it with --rate-limit 0 (drift dev --rate-limit 0)"
        );
    }
    if status != reqwest::StatusCode::CONFLICT {
        bail!("expected 409 for a screen already answered, got {status}");
    }
    Ok(())
}

/// One round through the API: a bare `GET /healthz`, a start to its first screen, a resume to
/// the next screen, and the same resume again (refused: the screen was answered).
async fn drift_round(client: &drift_server::client::Client) -> anyhow::Result<[std::time::Duration; 4]> {
    let t = Instant::now();
    healthz(client).await?;
    let h = t.elapsed();

    let t = Instant::now();
    let r = start(client, json!({"workflow": "bank_account"})).await?;
    let s = t.elapsed();
    if r["workflowStatus"] != "WAITING" {
        bail!("expected a first screen, got {r}");
    }

    let (id, rs, refused) = refund_answered(client).await?;
    // The same call for the screen just left: Drift's own work on every call (the HTTP
    // hop, authentication, the checks' Redis round trip) and nothing sent to Temporal.
    tokio::time::sleep(crate::floor::SETTLE).await;
    let t = Instant::now();
    refused_again(client, &id, &refused).await?;
    let rf = t.elapsed();
    Ok([h, s, rs, rf])
}

/// The report's table: percentiles, each against `GET /healthz` and, where there is one, the
/// floor's p50.
fn print_round_trips(rows: &[(Series, Option<f64>)], base_p50: f64) {
    println!(
        "{:<32} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "round trip", "p50", "p90", "p99", "x healthz", "x floor"
    );
    for (s, against) in rows {
        if s.samples.is_empty() {
            continue;
        }
        let p50 = s.pct(0.5).as_secs_f64();
        println!(
            "{:<32} {:>10} {:>10} {:>10} {:>9.1}x {:>10}",
            s.name,
            ms(s.pct(0.5)),
            ms(s.pct(0.9)),
            ms(s.pct(0.99)),
            p50 / base_p50,
            against.map(|f| format!("{:.2}x", p50 / f)).unwrap_or_default()
        );
    }
}

/// Saves a benchmark's own definition on the gateway, publishes it and makes it ACTIVE.
pub async fn install(c: &drift_server::client::Client, definition: &Value) -> anyhow::Result<()> {
    let id = definition["id"].as_str().context("a definition has an id")?;
    c.publish(&format!("/v3/definitions/{id}"), id, definition, true)
        .await
        .with_context(|| format!("installing the benchmark's definition {id} (the key needs definitions:write)"))?;
    Ok(())
}
