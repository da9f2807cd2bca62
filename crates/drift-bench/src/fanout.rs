//! `drift bench fanout`: N live subscribers (SSE and WebSocket, half each) over C workflows of a
//! running gateway. States go through Drift's own publish path (the Lua publish the worker
//! uses) at a fixed cadence, so the offered load does not depend on what publishing costs;
//! every subscriber must get every state, in order. Reports delivery rate, publish-to-client
//! latency, and the gateway's memory per idle connection.

use super::{Endpoints, Series, kb};
use crate::args::{Connect, Transport};
use anyhow::{Context, bail};
use drift_bus::{Conn, Layout, Publication, Publisher, Retention};
use drift_core::domain::routes;
use drift_core::domain::{ScopedWorkflowId, TenantId, WorkflowId, WorkflowState, WorkflowStatus};
use drift_server::client::Client;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Mutex;

pub struct FanoutResult {
    pub subscribers: usize,
    pub connect: Connect,
    /// The gateways' RSS growth at its highest while the subscribers connected, per connection.
    pub peak_kb_per_connection: Option<f64>,
    pub delivered: usize,
    pub expected: usize,
    pub in_order: bool,
    pub rate_per_sec: f64,
    pub latency: Series,
    /// The gateways' RSS growth per follower, all of them open and idle.
    pub kb_per_connection: Option<f64>,
    /// The connections the followers hold (fewer than followers with --per-connection).
    pub connections: usize,
    /// The gateways' CPU (user + system) per state delivered while states were published.
    pub gateway_cpu_us_per_state: Option<f64>,
}

/// How the followers are spread: over source addresses, over connections, over processes.
pub struct Spread {
    pub sources: u8,
    pub per_connection: usize,
    /// (DIR, P): one of P processes that publish once all are ready.
    pub barrier: Option<(std::path::PathBuf, usize)>,
}

/// `host:port` of a gateway's base URL.
fn host_port(base: &str) -> anyhow::Result<String> {
    let url = reqwest::Url::parse(base)?;
    let host = url.host_str().context("the gateway's URL has no host")?;
    let port = url.port_or_known_default().context("the gateway's URL has no port")?;
    Ok(format!("{host}:{port}"))
}

/// Names the bound behind a follower's failed connection: the gateway's connection caps refuse
/// at accept (hyper reports that early answer only as "unexpected message"), or the source
/// address has run out of ports.
fn refused_hint(e: anyhow::Error) -> anyhow::Error {
    let text = format!("{e:#}");
    if text.contains("unexpected message") || text.contains("reset by peer") {
        return e.context(
            "the gateway answered and closed the connection at accept: it holds at most \
             --max-connections-per-peer from one address (default 16,384; spread the subscribers \
             with --sources N) and --max-connections in all",
        );
    }
    if text.contains("os error 99") {
        return e.context(
            "this source address has no free port left to the gateway (the kernel's \
             ip_local_port_range, a last run's sockets in TIME_WAIT among them): spread the \
             subscribers with --sources N",
        );
    }
    e
}

/// How long one follower's stream may stay open: the longest a fan-out run takes.
const FOLLOW_BOUND: Duration = Duration::from_secs(30 * 60);

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

/// What one subscriber saw: each state's seq and latency.
#[derive(Default)]
struct Seen {
    seqs: Vec<u64>,
    latencies_us: Vec<u64>,
}

impl Seen {
    /// Notes a state; the first one makes the subscriber `ready`.
    fn record(&mut self, state: &Value, ready: &AtomicUsize) {
        if self.seqs.is_empty() {
            ready.fetch_add(1, Ordering::Relaxed);
        }
        let seq = state["seq"].as_u64().unwrap_or(0);
        self.seqs.push(seq);
        if let Some(sent) = state["disposition"]["sentAtUs"].as_u64() {
            self.latencies_us.push(now_us().saturating_sub(sent));
        }
    }
}

async fn sse_client(
    http: reqwest::Client,
    c: Arc<Client>,
    id: String,
    token: String,
    seen: Arc<Mutex<Seen>>,
    ready: Arc<AtomicUsize>,
) -> anyhow::Result<()> {
    let r = http
        .get(format!("{}{}?token={token}", c.base, routes::EVENTS.to(&id)))
        // The client's 30-s bound is for a call's whole answer; a stream's body is open for
        // the whole run (tens of thousands connecting take longer than that), so it gets the
        // run's own bound instead.
        .timeout(FOLLOW_BOUND)
        .send()
        .await
        .map_err(|e| refused_hint(e.into()))?;
    if !r.status().is_success() {
        // The gateway says which of its bounds refused the stream (e.g. its streams per tenant).
        let status = r.status();
        bail!(
            "the gateway refused an SSE stream: {status} {}",
            r.text().await.unwrap_or_default()
        );
    }
    let mut body = r.bytes_stream();
    let mut buf = Vec::<u8>::new();
    while let Some(chunk) = body.next().await {
        buf.extend_from_slice(&chunk?);
        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let frame: Vec<u8> = buf.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&frame);
            let data: String = text
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            if !text.lines().any(|l| l == "event: state" || l == "event:state") || data.is_empty() {
                continue;
            }
            let state: Value = serde_json::from_str(&data)?;
            seen.lock().await.record(&state, &ready);
            if state["workflowStatus"] == "COMPLETED" {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// One WebSocket following `subs` (each a different workflow), until every one is COMPLETED.
async fn ws_client(
    source: Option<std::net::IpAddr>,
    c: Arc<Client>,
    subs: Vec<(String, String, Arc<Mutex<Seen>>)>,
    ready: Arc<AtomicUsize>,
) -> anyhow::Result<()> {
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};
    let url = format!("{}{}", c.base.replacen("http", "ws", 1), routes::WS.template());
    let mut req = url.into_client_request()?;
    req.headers_mut().insert("authorization", c.auth.parse()?);
    // Sized like the gateway's sockets: the library's 128 KiB buffers, for each of thousands
    // of clients on the gateway's own cores, would make the bench measure itself.
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let addr = tokio::net::lookup_host(host_port(&c.base)?)
        .await?
        .next()
        .context("the gateway's address resolves to nothing")?;
    let socket = match addr {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    if let Some(from) = source {
        socket.bind(std::net::SocketAddr::new(from, 0))?;
    }
    let stream = socket.connect(addr).await.map_err(|e| refused_hint(e.into()))?;
    stream.set_nodelay(true)?;
    let (mut ws, _) = match tokio_tungstenite::client_async_with_config(req, stream, Some(config)).await {
        Ok(opened) => opened,
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => bail!(
            "the gateway refused a WebSocket: {} {}",
            r.status(),
            String::from_utf8_lossy(r.body().as_deref().unwrap_or_default())
        ),
        Err(e) => return Err(refused_hint(e.into())),
    };
    let mut open = std::collections::HashMap::new();
    for (id, token, seen) in subs {
        ws.send(Message::text(
            json!({"type": "subscribe", "workflowId": id, "token": token}).to_string(),
        ))
        .await?;
        open.insert(id, seen);
    }
    while let Some(m) = ws.next().await {
        let Message::Text(t) = m? else { continue };
        let v: Value = serde_json::from_str(&t)?;
        if v["type"] == "error" {
            bail!("the gateway refused a WebSocket subscription: {v}");
        }
        if v["type"] != "state" {
            continue;
        }
        let id = v["workflowId"].as_str().unwrap_or_default();
        let Some(seen) = open.get(id) else { continue };
        seen.lock().await.record(&v["state"], &ready);
        if v["state"]["workflowStatus"] == "COMPLETED" {
            open.remove(id);
            if open.is_empty() {
                let _ = ws.close(None).await;
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Publishes as the workers of the gateway's deployment do (its Redis, its key layout).
async fn publisher_as_workers(ends: &Endpoints) -> anyhow::Result<(Publisher, TenantId)> {
    let redis = ends
        .redis
        .clone()
        .context("fanout needs the gateway's Redis (--redis-url, --redis-cluster or drift dev's endpoints.json)")?;
    let tenant = TenantId::parse(&ends.tenant)?;
    let conn = Conn::connect(&redis, Duration::from_secs(3), 3).await?;
    let publisher = Publisher::new(
        conn,
        Retention {
            history_len: 100,
            ttl: Duration::from_secs(3600),
        },
        Layout::new(&ends.key_prefix).map_err(|e| anyhow::anyhow!("--key-prefix: {e}"))?,
        // As the default worker publishes.
        1,
    );
    Ok((publisher, tenant))
}

/// Real workflows (each waits on its first screen), so the gateway follows real ids: their ids
/// and stream tokens.
async fn start_flows(c: &Client, workflows: usize) -> anyhow::Result<Vec<(String, String)>> {
    let mut flows = Vec::new();
    for _ in 0..workflows {
        let (status, r) = c
            .call(
                reqwest::Method::POST,
                routes::START.template(),
                Some(&json!({"workflow": "bank_account"})),
            )
            .await?;
        if !status.is_success() {
            bail!("start: {status} {r}");
        }
        let id = r["workflowId"].as_str().context("no workflowId")?.to_string();
        let token = r["streamToken"].as_str().context("no streamToken")?.to_string();
        flows.push((id, token));
    }
    Ok(flows)
}

/// `states` rounds, one state per workflow each `interval`, the last one terminal; each state
/// carries when it was sent, for the latency.
async fn publish_states(
    publisher: &Publisher,
    tenant: &TenantId,
    flows: &[(String, String)],
    states: u64,
    interval: Duration,
) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(interval);
    for k in 0..states {
        tick.tick().await;
        let status = match k + 1 == states {
            true => WorkflowStatus::Completed,
            false => WorkflowStatus::Waiting,
        };
        for (id, _) in flows {
            let scoped = ScopedWorkflowId::new(tenant, &WorkflowId::parse(id)?);
            let state = WorkflowState {
                disposition: Some(json!({"sentAtUs": now_us()})),
                ..WorkflowState::bare(id, status, k + 2)
            };
            publisher.publish(&Publication::state(&scoped, &state)).await?;
        }
    }
    Ok(())
}

/// An HTTP client for SSE followers from `from`: over HTTP/1.1, each follower owns its
/// connection, as a browser tab does (a pooled one the gateway has since closed, idle, would
/// fail the stream it was handed to); over HTTP/2 (`shared`), all its streams share one.
fn sse_http(from: Option<std::net::IpAddr>, shared: bool) -> reqwest::Result<reqwest::Client> {
    let b = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .local_address(from);
    match shared {
        true => b.http2_prior_knowledge().tcp_nodelay(true),
        false => b.pool_max_idle_per_host(0),
    }
    .build()
}

/// Marks this process ready in the barrier's directory, then waits (bounded) until all its
/// parties are.
async fn barrier(dir: &std::path::Path, parties: usize) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(format!("ready.{}", std::process::id())), b"")?;
    let count = || {
        std::fs::read_dir(dir).map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("ready."))
                .count()
        })
    };
    let t = Instant::now();
    while count()? < parties {
        if t.elapsed() > Duration::from_secs(600) {
            bail!(
                "--barrier: {} of {parties} processes were ready in {} after 600 s",
                count()?,
                dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// The bound on connecting: subscribers must keep getting their first state (however long
/// tens of thousands take in all, on a machine shared with other bench processes).
struct Stall {
    ready: usize,
    since: Instant,
}

impl Stall {
    const BOUND: Duration = Duration::from_secs(60);

    fn new() -> Self {
        Self {
            ready: 0,
            since: Instant::now(),
        }
    }

    fn check(&mut self, ready: usize, opened: usize) -> anyhow::Result<()> {
        if ready > self.ready {
            (self.ready, self.since) = (ready, Instant::now());
        } else if self.since.elapsed() > Self::BOUND {
            bail!(
                "only {ready} of {opened} subscribers got their first state, none more in the last {} s",
                Self::BOUND.as_secs()
            );
        }
        Ok(())
    }
}

/// One run at `n` subscribers.
#[allow(clippy::too_many_arguments)]
pub async fn run_once(
    gateways: &[Arc<Client>],
    ends: &Endpoints,
    n: usize,
    workflows: usize,
    states: u64,
    interval: Duration,
    transport: Transport,
    connect: Connect,
    spread: Spread,
) -> anyhow::Result<FanoutResult> {
    let c = gateways[0].clone();
    let k = spread.per_connection.max(1);
    if k > 1 && transport != Transport::Sse && k > workflows {
        bail!("--per-connection {k}: a WebSocket follows each workflow once, so at most --workflows ({workflows})");
    }
    let sources: Vec<Option<std::net::IpAddr>> = match spread.sources {
        1 => vec![None],
        n => (1..=n).map(|k| Some(std::net::IpAddr::from([127, 0, 0, k]))).collect(),
    };
    let followers = sources
        .iter()
        .map(|from| sse_http(*from, false))
        .collect::<Result<Vec<_>, _>>()?;
    let (publisher, tenant) = publisher_as_workers(ends).await?;
    let flows = start_flows(&c, workflows).await?;
    let before = ends.gateways_rss_kb();
    let kind = match transport {
        Transport::Mixed => "half SSE, half WebSocket",
        Transport::Sse => "all SSE",
        Transport::Ws => "all WebSocket",
    };
    let how = match connect {
        Connect::Waves => "in waves of 250".to_string(),
        Connect::Burst => "all at once".to_string(),
        Connect::PerSecond(r) => format!("at {r}/s"),
    };
    let conns = n.div_ceil(k);
    eprintln!("fanout: connecting {n} subscribers ({kind}) over {workflows} workflows, {how}, {conns} connections");
    let ready = Arc::new(AtomicUsize::new(0));
    let mut seen = Vec::with_capacity(n);
    let mut tasks = tokio::task::JoinSet::new();
    // The gateways' RSS at its highest while connections are set up (a storm's high-water mark).
    let peak = Arc::new(AtomicUsize::new(0));
    let sampling = tokio_util::sync::CancellationToken::new();
    tokio::spawn({
        let (peak, pids, stop) = (peak.clone(), ends.pids.clone(), sampling.clone());
        async move {
            while !pids.is_empty() {
                if let Some(kb) = crate::summed(&pids, crate::rss_kb) {
                    peak.fetch_max(kb as usize, Ordering::Relaxed);
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        }
    });
    let t_connect = Instant::now();
    let mut stall = Stall::new();
    for conn in 0..conns {
        // The followers this connection carries: consecutive ones, so different workflows.
        let members = conn * k..((conn + 1) * k).min(n);
        let (from, gateway) = (sources[conn % sources.len()], gateways[conn % gateways.len()].clone());
        let subs: Vec<(String, String, Arc<Mutex<Seen>>)> = members
            .clone()
            .map(|i| {
                let (id, token) = flows[i % workflows].clone();
                let s = Arc::new(Mutex::new(Seen::default()));
                seen.push((i % workflows, s.clone()));
                (id, token, s)
            })
            .collect();
        let sse = match transport {
            Transport::Mixed => conn % 2 == 0,
            Transport::Sse => true,
            Transport::Ws => false,
        };
        if sse {
            // One follower a connection: the shared HTTP/1.1 client, which never pools; K of them:
            // an HTTP/2 connection of their own, as a browser's tabs share one.
            let http = match k {
                1 => followers[conn % followers.len()].clone(),
                _ => sse_http(from, true)?,
            };
            for (id, token, s) in subs {
                tasks.spawn(sse_client(http.clone(), gateway.clone(), id, token, s, ready.clone()));
            }
        } else {
            tasks.spawn(ws_client(from, gateway, subs, ready.clone()));
        }
        let opened = members.end;
        let crossed = |every: usize| opened / every > members.start / every;
        if let Connect::PerSecond(r) = connect {
            tokio::time::sleep_until((t_connect + Duration::from_secs_f64(opened as f64 / r)).into()).await;
        }
        // Waves: connections opened so that the gateway's accept queue is not the thing measured.
        if connect == Connect::Waves && crossed(250) {
            while ready.load(Ordering::Relaxed) + 100.max(k) < opened {
                // A refused subscriber never gets a first state: say why at once, not after
                // the wait below runs out.
                if let Some(Ok(Err(e))) = tasks.try_join_next() {
                    let hint = match format!("{e:#}").contains("too_many_connections") {
                        true => {
                            " (for a bench this size, start the gateway with a higher --max-streams and \
                                 --max-streams-per-tenant, or spread it over --gateways)"
                        }
                        false => "",
                    };
                    bail!("a subscriber failed when {opened} of {n} were opened: {e:#}{hint}");
                }
                stall.check(ready.load(Ordering::Relaxed), opened)?;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        if crossed(2000) {
            eprintln!("  {opened} connected");
        }
    }
    while ready.load(Ordering::Relaxed) < n {
        stall.check(ready.load(Ordering::Relaxed), n)?;
        if let Some(Ok(Err(e))) = tasks.try_join_next() {
            bail!("a subscriber failed: {e:#}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Idle: every connection open, nothing moving.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = ends.gateways_rss_kb();
    sampling.cancel();
    let kb_per_connection = match (before, after) {
        (Some(b), Some(a)) => Some(a.saturating_sub(b) as f64 / n as f64),
        _ => None,
    };
    eprintln!(
        "fanout: {n} subscribers ready in {:.1} s; publishing {states} states per workflow every {} ms",
        t_connect.elapsed().as_secs_f64(),
        interval.as_millis()
    );
    if let Some((dir, parties)) = &spread.barrier {
        eprintln!(
            "fanout: waiting for {parties} processes to be ready ({})",
            dir.display()
        );
        barrier(dir, *parties).await?;
    }
    let cpu = || crate::summed(&ends.pids, crate::load::cpu_of);
    let cpu_before = cpu();
    let t_pub = Instant::now();
    publish_states(&publisher, &tenant, &flows, states, interval).await?;
    let published_for = t_pub.elapsed();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !tasks.is_empty() {
        match tokio::time::timeout_at(deadline.into(), tasks.join_next()).await {
            Ok(Some(Ok(Err(e)))) => eprintln!("fanout: a subscriber ended with an error: {e:#}"),
            Ok(_) => {}
            Err(_) => {
                eprintln!("fanout: {} subscribers still open after 60 s", tasks.len());
                tasks.abort_all();
                break;
            }
        }
    }
    let done = t_pub.elapsed();
    let cpu_used = cpu().zip(cpu_before).map(|(a, b)| a.saturating_sub(b));
    let (mut delivered, mut in_order, mut lat) = (0usize, true, Vec::new());
    let want: Vec<u64> = (1..=states + 1).collect();
    for (_, s) in &seen {
        let s = s.lock().await;
        delivered += s.seqs.len();
        in_order &= s.seqs == want;
        lat.extend(s.latencies_us.iter().map(|u| Duration::from_micros(*u)));
    }
    for (id, _) in &flows {
        let _ = c.call(reqwest::Method::DELETE, &routes::TERMINATE.to(id), None).await;
    }
    let expected = n * (states as usize + 1);
    // The states delivered while publishing: all but each follower's first (its current state).
    let published_delivered = delivered.saturating_sub(n).max(1);
    Ok(FanoutResult {
        subscribers: n,
        connect,
        peak_kb_per_connection: match (before, peak.load(Ordering::Relaxed)) {
            (Some(b), p) if p > 0 => Some(p.saturating_sub(b as usize) as f64 / n as f64),
            _ => None,
        },
        delivered,
        expected,
        in_order,
        rate_per_sec: (n as f64 * states as f64) / done.max(published_for).as_secs_f64(),
        latency: Series {
            name: "publish → client",
            samples: lat,
        },
        kb_per_connection,
        connections: conns,
        gateway_cpu_us_per_state: cpu_used.map(|d| d.as_micros() as f64 / published_delivered as f64),
    })
}

/// Appends a run as one JSON line: its figures and every latency sample (µs), for
/// scripts/bench-followers.sh to merge the runs of several processes.
pub fn append_json(path: &std::path::Path, r: &FanoutResult) -> anyhow::Result<()> {
    use std::io::Write;
    let line = json!({
        "subscribers": r.subscribers,
        "connections": r.connections,
        "delivered": r.delivered,
        "expected": r.expected,
        "inOrder": r.in_order,
        "statesPerSec": r.rate_per_sec,
        "latencyUs": r.latency.samples.iter().map(|d| d.as_micros() as u64).collect::<Vec<_>>(),
    });
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    writeln!(f, "{line}")?;
    Ok(())
}

pub fn print(results: &[FanoutResult]) {
    println!(
        "{:>12} {:>12} {:>8} {:>14} {:>9} {:>12} {:>10} {:>10} {:>10} {:>10} {:>10} {:>12}",
        "subscribers",
        "connections",
        "connect",
        "delivered",
        "in order",
        "states/s",
        "p50",
        "p99",
        "max",
        "KB/sub",
        "peak KB",
        "gw µs/state"
    );
    for r in results {
        let l = &r.latency;
        println!(
            "{:>12} {:>12} {:>8} {:>14} {:>9} {:>12.0} {:>10} {:>10} {:>10} {:>10} {:>10} {:>12}",
            r.subscribers,
            r.connections,
            connect_cell(r.connect),
            format!("{}/{}", r.delivered, r.expected),
            if r.in_order { "yes" } else { "NO" },
            r.rate_per_sec,
            l.cell(0.5),
            l.cell(0.99),
            l.cell(1.0),
            kb(r.kb_per_connection),
            kb(r.peak_kb_per_connection),
            r.gateway_cpu_us_per_state.map_or("-".into(), |u| format!("{u:.1}"))
        );
    }
}

pub fn connect_cell(c: Connect) -> String {
    match c {
        Connect::Waves => "waves".into(),
        Connect::Burst => "burst".into(),
        Connect::PerSecond(r) => format!("{r}/s"),
    }
}
