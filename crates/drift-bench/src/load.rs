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
    /// CPU of the side's own process (floor: the bench itself; Drift: the gateways), of
    /// Temporal and of Redis, over the measured time.
    pub cpu: [Option<Duration>; 3],
    /// The measured time on the wall clock (of the first slice, once slices are merged).
    pub wall: std::ops::Range<std::time::SystemTime>,
    /// Rounds a second in each turn, in order: set against another side's same turns, they say
    /// how far a ratio moves within one run.
    pub turns: Vec<f64>,
}

impl SideResult {
    /// `load: window drift 8 callers 1154 rounds <from> <to>`, in seconds since the Unix
    /// epoch: a profile stamped with the wall clock (`perf record -k CLOCK_REALTIME`) cut by
    /// side (scripts/perf-components.py reads these).
    fn print_window(&self) {
        let secs = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64()
        };
        eprintln!(
            "load: window {} {} callers {} rounds {:.3} {:.3}",
            self.name,
            self.concurrency,
            self.rounds,
            secs(self.wall.start),
            secs(self.wall.end)
        );
    }

    pub fn per_sec(&self) -> f64 {
        self.rounds as f64 / self.seconds
    }

    /// The side's own CPU per round (0), Temporal's (1), Redis's (2).
    pub fn per_round(&self, which: usize) -> Option<Duration> {
        self.cpu[which]
            .filter(|_| self.rounds > 0)
            .map(|c| c / self.rounds as u32)
    }

    /// Two slices of one side as one result.
    fn merge(mut self, other: SideResult) -> SideResult {
        self.rounds += other.rounds;
        self.failed += other.failed;
        self.seconds += other.seconds;
        self.latency.samples.extend(other.latency.samples);
        self.turns.extend(other.turns);
        for i in 0..3 {
            self.cpu[i] = self.cpu[i].zip(other.cpu[i]).map(|(a, b)| a + b);
        }
        self
    }

    /// The row of the printed table and of the report, one cell per `COLUMNS`.
    pub fn cells(&self) -> [String; 10] {
        let cpu = |d: Option<Duration>| d.map(ms).unwrap_or_else(|| "-".into());
        [
            self.concurrency.to_string(),
            self.name.to_string(),
            self.rounds.to_string(),
            self.failed.to_string(),
            format!("{:.1}", self.per_sec()),
            self.latency.cell(0.5),
            self.latency.cell(0.99),
            cpu(self.per_round(0)),
            cpu(self.per_round(1)),
            cpu(self.per_round(2)),
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

/// The processes whose CPU both sides share.
#[derive(Clone, Default)]
struct Shared {
    temporal: Vec<u32>,
    redis: Vec<u32>,
}

/// The Temporal dev server's and the Redis server(s)' processes on this machine, by their
/// command lines: their CPU is shared by both sides, so it is reported beside each.
fn shared_pids(ends: &Endpoints) -> Shared {
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
    let mut pids = Shared::default();
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
        if temporal {
            pids.temporal.push(pid);
        } else if redis {
            pids.redis.push(pid);
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
    shared: Shared,
    round: F,
) -> SideResult
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let from = Instant::now() + warmup;
    let end = from + seconds;
    // The same window on the wall clock, which a profiler's samples can carry.
    let wall_from = std::time::SystemTime::now() + warmup;
    let meter = tokio::spawn(async move {
        let read = || [&own, &shared.temporal, &shared.redis].map(|pids| summed(pids, cpu_of));
        tokio::time::sleep_until(from.into()).await;
        let before = read();
        tokio::time::sleep_until(end.into()).await;
        let after = read();
        let diff = |a: Option<Duration>, b: Option<Duration>| Some(a?.saturating_sub(b?));
        [0, 1, 2].map(|i| diff(after[i], before[i]))
    });
    let (lat, failed) = callers(concurrency, from, end, round).await;
    let cpu = meter.await.unwrap_or([None; 3]);
    let rounds = lat.len();
    let mut r = SideResult {
        name,
        concurrency,
        rounds,
        failed,
        seconds: seconds.as_secs_f64(),
        latency: Series { name, samples: lat },
        cpu,
        wall: wall_from..wall_from + seconds,
        turns: vec![],
    };
    r.turns.push(r.per_sec());
    r
}

/// A round through the gateway: a sync start to the screen, the answer (`think` later) to the
/// end. Returns the workflow's id.
async fn drift_round(c: Arc<Client>, think: Duration) -> anyhow::Result<String> {
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
    let id = r["workflowId"].as_str().context("no workflowId")?.to_string();
    if !think.is_zero() {
        tokio::time::sleep(think).await;
    }
    let body = json!({"viewResponse": {"selectedOptions": {"answer": "x"}}});
    let (status, r) = c
        .call(reqwest::Method::PUT, &routes::RESUME.to(&id), Some(&body))
        .await?;
    if r["workflowStatus"] != "COMPLETED" {
        bail!("resume: expected the end, got {status} {r}");
    }
    Ok(id)
}

/// How long each side runs, and how its callers pace their rounds.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Measured time per side and count.
    pub seconds: Duration,
    /// Unmeasured time before each side's first slice.
    pub warmup: Duration,
    /// Slices each side's measured time is cut into, the sides taking turns.
    pub slices: usize,
    /// How long a caller looks at a screen before answering it.
    pub think: Duration,
    /// Print each slice's measured time (wall clock), for cutting a profile by side.
    pub windows: bool,
}

pub async fn run(
    client: Arc<Client>,
    ends: &Endpoints,
    concurrency: &[usize],
    pace: Pace,
    // None: no floor; Some: the floor, its starts carrying this.
    floor_start: Option<crate::floor::FloorStart>,
    // Also the engine side: Drift's worker in this process, no gateway.
    engine: bool,
) -> anyhow::Result<Load> {
    let Pace {
        seconds,
        warmup,
        slices,
        think,
        windows,
    } = pace;
    crate::install(&client, &definition()).await?;
    let floor = match floor_start {
        None => None,
        Some(start) => Some(Arc::new(crate::floor(ends, start).await?)),
    };
    let engine = match engine {
        false => None,
        true => Some(Arc::new(crate::engine::Engine::start(ends, &definition()).await?)),
    };
    let shared = shared_pids(ends);
    let me = std::process::id();
    if ends.pids.is_empty() {
        eprintln!("load: no gateway process known (pass --pid): Drift's CPU per round is not measured");
    }
    let mut results = vec![];
    // Temporal's CPU per round drifts over a run (its in-memory store grows; its collector
    // runs when it will): each side's measured time is cut into slices, the two sides taking
    // turns, so both meet the same server. The first slice of each has the warm-up; the
    // others a second, in which the last side's rounds in flight finish.
    let slices = slices.max(1) as u32;
    for &n in concurrency {
        eprintln!(
            "load: {n} callers, {:.0} s per side in {slices} turns (+{:.0} s warm-up), {} ms to answer each screen",
            seconds.as_secs_f64(),
            warmup.as_secs_f64(),
            think.as_millis()
        );
        let (mut floor_r, mut peer_r, mut engine_r, mut drift_r) = (
            None::<SideResult>,
            None::<SideResult>,
            None::<SideResult>,
            None::<SideResult>,
        );
        let add = |acc: &mut Option<SideResult>, r: SideResult| {
            if windows {
                r.print_window();
            }
            *acc = Some(match acc.take() {
                Some(a) => a.merge(r),
                None => r,
            })
        };
        for turn in 0..slices {
            let warm = if turn == 0 {
                warmup
            } else {
                warmup.min(Duration::from_secs(1))
            };
            let slice = seconds / slices;
            if let Some(f) = &floor {
                let f = f.clone();
                let r = side("floor", n, warm, slice, vec![me], shared.clone(), move || {
                    let f = f.clone();
                    async move {
                        crate::floor::floor_round(&f.client, &f.hub, &f.task_queue, &f.start, true, think).await?;
                        anyhow::Ok(())
                    }
                })
                .await;
                add(&mut floor_r, r);
                // The Update-based peer runs in this process too (on the floor's worker).
                let f = floor.clone().expect("the floor");
                let r = side("peer", n, warm, slice, vec![me], shared.clone(), move || {
                    let f = f.clone();
                    async move {
                        crate::peer::peer_round(&f.client, &f.task_queue, think).await?;
                        anyhow::Ok(())
                    }
                })
                .await;
                add(&mut peer_r, r);
            }
            if let Some(e) = &engine {
                // Its own CPU is this process's, as the floor's is: callers, client and worker.
                let e = e.clone();
                let r = side("engine", n, warm, slice, vec![me], shared.clone(), move || {
                    let e = e.clone();
                    async move { e.round(think).await }
                })
                .await;
                add(&mut engine_r, r);
            }
            let c = client.clone();
            let r = side("drift", n, warm, slice, ends.pids.clone(), shared.clone(), move || {
                let c = c.clone();
                async move { drift_round(c, think).await.map(drop) }
            })
            .await;
            add(&mut drift_r, r);
        }
        let all: Vec<SideResult> = floor_r
            .into_iter()
            .chain(peer_r)
            .chain(engine_r)
            .chain(drift_r)
            .collect();
        print(&all);
        results.extend(all);
    }
    let histories = match &floor {
        Some(f) => histories(&client, ends, f).await,
        None => vec![],
    };
    if let Some(e) = engine {
        match Arc::try_unwrap(e) {
            Ok(e) => e.stop().await,
            Err(e) => e.stop_now(),
        }
    }
    if let Some(f) = floor {
        // Every side's caller has ended, and each held its clone only while it ran.
        match Arc::try_unwrap(f) {
            Ok(f) => f.stop().await,
            Err(f) => f.stop.cancel(),
        }
    }
    println!();
    print(&results);
    ratios(&results);
    crate::history::print(&histories);
    Ok(Load { results, histories })
}

/// What `drift bench load` measured: each side at each concurrency, and one round's history
/// of each side.
pub struct Load {
    pub results: Vec<SideResult>,
    pub histories: Vec<crate::history::History>,
}

/// One more round of each side, after the measured ones, and the history each left in
/// Temporal. A history that cannot be read is said, not fatal: the figures above stand.
async fn histories(client: &Arc<Client>, ends: &Endpoints, f: &crate::Floor) -> Vec<crate::history::History> {
    let read = async {
        let id = drift_round(client.clone(), Duration::ZERO).await?;
        let drift = crate::history::read(&f.client, "drift", &format!("{}/{id}", ends.tenant)).await?;
        let round = crate::floor::floor_round(&f.client, &f.hub, &f.task_queue, &f.start, true, Duration::ZERO).await?;
        let floor = crate::history::read(&f.client, "floor", &round.id).await?;
        let round = crate::peer::peer_round(&f.client, &f.task_queue, Duration::ZERO).await?;
        let peer = crate::history::read(&f.client, "peer", &round.id).await?;
        anyhow::Ok(vec![drift, floor, peer])
    };
    read.await.unwrap_or_else(|e| {
        eprintln!("load: one round's history not read: {e:#}");
        vec![]
    })
}

pub const COLUMNS: [&str; 10] = [
    "callers",
    "side",
    "rounds",
    "failed",
    "rounds/s",
    "p50",
    "p99",
    "CPU per round",
    "Temporal per round",
    "Redis per round",
];

pub fn print(results: &[SideResult]) {
    let line = |c: &[String]| {
        println!(
            "{:>7} {:<6} {:>7} {:>6} {:>9} {:>10} {:>10} {:>13} {:>18} {:>15}",
            c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9]
        )
    };
    line(&COLUMNS.map(String::from));
    for r in results {
        line(&r.cells());
    }
}

/// Drift against the floor and against the Update-based peer at each concurrency; with the
/// engine side, the engine against the floor and Drift against the engine (the gateway's part).
pub fn ratios(results: &[SideResult]) {
    const PAIRS: [(&str, &str, &str); 4] = [
        ("drift", "Drift", "floor"),
        ("drift", "Drift", "peer"),
        ("engine", "The engine", "floor"),
        ("drift", "Drift", "engine"),
    ];
    for (side, label, base) in PAIRS {
        for d in results.iter().filter(|r| r.name == side) {
            let Some(f) = results
                .iter()
                .find(|r| r.name == base && r.concurrency == d.concurrency)
            else {
                continue;
            };
            let ratio = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
                (Some(a), Some(b)) if !b.is_zero() => format!("{:.2}x", a.as_secs_f64() / b.as_secs_f64()),
                _ => "-".into(),
            };
            let pct = |s: &SideResult, p| (!s.latency.samples.is_empty()).then(|| s.latency.pct(p));
            let by_turn = turn_ratios(&d.turns, &f.turns)
                .map(|(low, median, high)| format!(" (turn by turn {low:.2}-{high:.2}x, median {median:.2}x)"))
                .unwrap_or_default();
            println!(
                "{} callers, {label} against the {base}: throughput {:.2}x{by_turn}, CPU per round {} (Temporal's {}), p50 {}, p99 {}",
                d.concurrency,
                d.per_sec() / f.per_sec().max(f64::MIN_POSITIVE),
                ratio(d.per_round(0), f.per_round(0)),
                ratio(d.per_round(1), f.per_round(1)),
                ratio(pct(d, 0.5), pct(f, 0.5)),
                ratio(pct(d, 0.99), pct(f, 0.99)),
            );
        }
    }
}

/// One side's rounds a second against another's, turn by turn (each pair ran next to each
/// other on the same server): the lowest, the median and the highest. None for a single turn,
/// or when a turn of the base did no rounds.
pub fn turn_ratios(side: &[f64], base: &[f64]) -> Option<(f64, f64, f64)> {
    let mut r: Vec<f64> = side
        .iter()
        .zip(base)
        .map(|(s, b)| (*b > 0.0).then(|| s / b))
        .collect::<Option<_>>()?;
    if r.len() < 2 {
        return None;
    }
    r.sort_by(f64::total_cmp);
    let n = r.len();
    let median = match n % 2 {
        1 => r[n / 2],
        _ => (r[n / 2 - 1] + r[n / 2]) / 2.0,
    };
    Some((r[0], median, r[n - 1]))
}

#[cfg(test)]
mod turn_tests {
    use super::turn_ratios;

    #[test]
    fn turn_ratios_pair_each_turn_with_the_base_turn_beside_it_and_give_the_spread() {
        let close = |got: Option<(f64, f64, f64)>, want: (f64, f64, f64)| {
            let got = got.expect("a spread");
            let off = [got.0 - want.0, got.1 - want.1, got.2 - want.2];
            assert!(off.iter().all(|d| d.abs() < 1e-9), "{got:?} against {want:?}");
        };
        close(turn_ratios(&[90.0, 80.0, 100.0, 70.0], &[100.0; 4]), (0.7, 0.85, 1.0));
        close(turn_ratios(&[45.0, 60.0, 50.0], &[50.0, 60.0, 100.0]), (0.5, 0.9, 1.0));
        assert_eq!(turn_ratios(&[80.0], &[100.0]), None, "one turn has no spread");
        assert_eq!(
            turn_ratios(&[80.0, 90.0], &[100.0, 0.0]),
            None,
            "a base turn with no rounds"
        );
    }
}
