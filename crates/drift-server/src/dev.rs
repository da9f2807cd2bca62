//! `drift dev`: the one-command local platform. Starts `temporal server start-dev` and
//! `redis-server` as supervised children when no addresses are given, runs gateway + worker in
//! this process with the examples and their API stand-ins, and stops everything on Ctrl-C.

use crate::bus::RedisTarget;
use crate::config::DevArgs;
use crate::gateway::Outage;
use crate::startup::{self, Application, Settings};
use crate::temporal::{Temporal, TemporalConfig, connect};
use anyhow::{Context, bail};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

const SETUP_HINT: &str = "run scripts/setup.sh (it installs protoc, redis-server and the Temporal CLI), then try again";

/// A child process that is stopped when this handle is dropped or this process dies: a small
/// shell supervisor kills it when its parent goes away, even after `kill -9`.
pub struct Supervised {
    pub name: &'static str,
    child: Child,
    log: std::path::PathBuf,
}

/// Asks a process to stop (SIGTERM): the supervisor's trap then stops its child and waits.
fn terminate(pid: u32) {
    // SAFETY: kill(2) with a pid this process spawned and a valid signal number.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
}

/// A dropped handle (an early return, a panic) still stops its child: never SIGKILL the
/// supervisor, which would orphan the process it watches.
impl Drop for Supervised {
    fn drop(&mut self) {
        if let (Some(pid), Ok(None)) = (self.child.id(), self.child.try_wait()) {
            terminate(pid);
        }
    }
}

impl Supervised {
    pub fn spawn(name: &'static str, program: &str, args: &[String], log: &Path) -> anyhow::Result<Self> {
        let Some(path) = find_program(program) else {
            bail!("{program} was not found on PATH or in Python's scripts folder; {SETUP_HINT}");
        };
        let log_file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        // The trap is set before the child starts and names it by `$!` (set as it is forked),
        // so a stop that comes at once (drift failing right after starting this child) still
        // reaches it. A child may miss a TERM sent while it is starting up: `stop` sends it again
        // every half second, then KILL after 5 s.
        const SUPERVISOR: &str = r#"
stop() {
  [ -n "$!" ] || exit 0
  n=0
  while kill -0 $! 2>/dev/null && [ $n -lt 50 ]; do
    [ $((n % 5)) -eq 0 ] && kill $! 2>/dev/null
    sleep 0.1; n=$((n + 1))
  done
  kill -9 $! 2>/dev/null; wait $!; exit 0
}
trap stop TERM INT
"$@" &
while kill -0 "$DRIFT_PARENT" 2>/dev/null && kill -0 $! 2>/dev/null; do sleep 0.5; done
stop
"#;
        let child = Command::new("sh")
            .arg("-c")
            .arg(SUPERVISOR)
            .arg("drift-supervisor")
            .arg(&path)
            .args(args)
            .env("DRIFT_PARENT", std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {program}"))?;
        Ok(Self {
            name,
            child,
            log: log.to_path_buf(),
        })
    }

    /// Resolves when the child has exited (its supervisor notices within half a second).
    pub async fn exited(&mut self) {
        let _ = self.child.wait().await;
    }

    /// The last `lines` lines of the child's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Asks the child to stop and waits (bounded) for it.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            terminate(pid);
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

pub fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

/// A program on PATH, or where `pip install` put it (Python's scripts folder, or the user's
/// one) — `scripts/setup.sh` installs the Temporal CLI with pip, and that folder is often not
/// on PATH (pyenv shims appear only after a rehash).
pub fn find_program(program: &str) -> Option<std::path::PathBuf> {
    if let Some(p) = which(program) {
        return Some(p);
    }
    const SCRIPTS: &str =
        "import sysconfig;print(sysconfig.get_path('scripts'));print(sysconfig.get_path('scripts','posix_user'))";
    let mut dirs: Vec<std::path::PathBuf> = std::process::Command::new("python3")
        .args(["-c", SCRIPTS])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).lines().map(Into::into).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(std::path::PathBuf::from(home).join(".local/bin"));
    }
    dirs.into_iter().map(|d| d.join(program)).find(|p| p.is_file())
}

/// A port nothing listens on right now.
///
/// Chosen below the kernel's ephemeral range: the ports a program gets when it binds port 0
/// come from that range, and the Temporal CLI takes its internal services' ports that way while
/// it starts. A port chosen by binding 0 ourselves could be handed to one of them before the
/// frontend bound it (seen: "address already in use", then a panic in its worker service, with
/// the frontend up). No port is handed out twice by one process.
pub fn free_port() -> anyhow::Result<u16> {
    use std::sync::Mutex;
    static HANDED: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let (low, _) = ephemeral_range();
    let (from, to) = (10_000u16, low.max(10_001));
    let mut handed = HANDED.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..500 {
        let port = from + rand::random::<u16>() % (to - from);
        if handed.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed.push(port);
            return Ok(port);
        }
    }
    // A machine whose ephemeral range leaves nothing below it.
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The kernel's ephemeral port range (Linux's default when it cannot be read).
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|p| p.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32_768, 60_999))
}

/// Starts a Temporal dev server on `port` with its SQLite file under `dir`.
/// Server settings for a dev server that answers at its own speed. Temporal's history service
/// loads new transfer and timer tasks at most 20 times a second by default, so a workflow task
/// created by a signal within 50 ms of the previous load (a resume right after a screen) waits
/// for the next one: that was the whole 40-50 ms resume gap. Production clusters should raise
/// the same limits (they are per shard).
pub const TEMPORAL_TUNING: &[&str] = &[
    "history.transferProcessorMaxPollRPS=1000",
    "history.timerProcessorMaxPollRPS=1000",
];

pub fn start_temporal(dir: &Path, port: u16) -> anyhow::Result<Supervised> {
    std::fs::create_dir_all(dir)?;
    let args: Vec<String> = [
        "server",
        "start-dev",
        "--headless",
        "--ip",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--db-filename",
        &dir.join("temporal.db").display().to_string(),
        "--log-level",
        "warn",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(
        TEMPORAL_TUNING
            .iter()
            .flat_map(|kv| ["--dynamic-config-value".to_string(), kv.to_string()]),
    )
    .collect();
    Supervised::spawn("temporal", "temporal", &args, &dir.join("temporal.log"))
}

/// Starts redis-server on `port` with its data under `dir`.
pub fn start_redis(dir: &Path, port: u16) -> anyhow::Result<Supervised> {
    start_redis_with(dir, port, &[])
}

/// `start_redis` with more `redis-server` settings (e.g. `--cluster-enabled yes`).
pub fn start_redis_with(dir: &Path, port: u16, extra: &[&str]) -> anyhow::Result<Supervised> {
    std::fs::create_dir_all(dir)?;
    let args: Vec<String> = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--dir",
        &dir.display().to_string(),
        "--save",
        "60 1",
        "--appendonly",
        "no",
        "--protected-mode",
        "no",
    ]
    .iter()
    .chain(extra)
    .map(|s| s.to_string())
    .collect();
    Supervised::spawn("redis", "redis-server", &args, &dir.join("redis.log"))
}

/// Waits until Redis answers PING.
pub async fn wait_redis(url: &str, within: Duration) -> anyhow::Result<()> {
    let client = redis::Client::open(url)?;
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Ok(Ok(mut c)) =
            tokio::time::timeout(Duration::from_secs(1), client.get_multiplexed_async_connection()).await
            && redis::cmd("PING").query_async::<String>(&mut c).await.is_ok()
        {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("Redis at {url} did not answer within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until Temporal accepts a connection and answers.
pub async fn wait_temporal(cfg: &TemporalConfig, within: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Ok(c) = connect(cfg).await
            && Temporal::with_client(cfg.clone(), c).ping().await.is_ok()
        {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "Temporal at {} did not answer within {within:?} (see its log under the data folder)",
                cfg.address
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub async fn run(mut a: DevArgs) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    startup::spawn_signal(shutdown.clone());
    let data = a.common.data_dir.clone();
    std::fs::create_dir_all(&data).with_context(|| format!("creating data folder {}", data.display()))?;
    // Local callbacks (the demo receiver, your own test server) are fine on a dev machine.
    for local in ["http://127.0.0.1:*", "http://localhost:*"] {
        if !a.gateway.callback_allow.iter().any(|p| p == local) {
            a.gateway.callback_allow.push(local.to_string());
        }
    }
    // The examples' stand-ins and the demo receiver are on this machine.
    if !a.common.egress_allow.iter().any(|e| e == "loopback") {
        a.common.egress_allow.push("loopback".into());
    }
    if a.common.webhook_secret.is_none() {
        a.common.webhook_secret = Some(dev_webhook_secret(&data)?);
    }
    let database_url = a
        .common
        .database_url
        .get_or_insert_with(|| crate::config::default_database_url(&data))
        .clone();
    let dev_key = match a.gateway.auth {
        crate::config::AuthArg::Required => Some(dev_api_key(&data, &database_url).await?),
        crate::config::AuthArg::None => None,
    };
    let mut children = Vec::new();
    let started = start_children(&a, &data, &mut children).await;
    let (redis, temporal_address) = match started {
        Ok(s) => s,
        Err(e) => {
            // Whatever failed, every child started so far stops.
            for c in children {
                eprintln!("drift dev: stopping {}", c.proc.name);
                c.proc.stop().await;
            }
            return Err(e);
        }
    };
    let outage = Outage::default();
    let supervisor = tokio::spawn(supervise(children, outage.clone(), shutdown.clone()));
    let result = run_with(&a, dev_key, &redis, &temporal_address, outage, shutdown.clone()).await;
    // Whatever ended the run, every child stops.
    shutdown.cancel();
    match supervisor.await {
        Ok(Some(why)) => Err(anyhow::anyhow!(why)),
        _ => result,
    }
}

/// A child `drift dev` started, and how to start it again (same port, same data).
struct Managed {
    proc: Supervised,
    restart: Box<dyn Fn() -> anyhow::Result<Supervised> + Send + Sync>,
    ready: Ready,
}

/// How to tell that a (re)started child serves.
enum Ready {
    Redis(String),
    Temporal(TemporalConfig),
}

impl Ready {
    async fn wait(&self) -> anyhow::Result<()> {
        match self {
            Self::Redis(url) => wait_redis(url, Duration::from_secs(20)).await,
            Self::Temporal(cfg) => wait_temporal(cfg, Duration::from_secs(90)).await,
        }
    }
}

/// A child that exits makes `/readyz` fail at once; it is started again on its port with its
/// data, and `drift dev` stops (non-zero) if one exits three times within a minute. Returns why
/// it gave up, if it did; every child is stopped either way.
async fn supervise(mut children: Vec<Managed>, outage: Outage, shutdown: CancellationToken) -> Option<String> {
    const EXITS: usize = 3;
    let mut exits: Vec<std::time::Instant> = Vec::new();
    let mut failed = None;
    while !children.is_empty() {
        let exited = {
            let any = futures::future::select_all(children.iter_mut().map(|c| Box::pin(c.proc.exited())));
            tokio::select! {
                (_, i, _) = any => Some(i),
                _ = shutdown.cancelled() => None,
            }
        };
        let Some(i) = exited else { break };
        let c = &mut children[i];
        let name = c.proc.name;
        outage.set(Some(format!("{name} (started by drift dev) exited; restarting it")));
        eprintln!(
            "drift dev: {name} exited unexpectedly. The last lines of its log ({}):\n{}",
            c.proc.log_path().display(),
            c.proc.log_tail(20)
        );
        exits.retain(|t| t.elapsed() < Duration::from_secs(60));
        exits.push(std::time::Instant::now());
        if exits.len() >= EXITS {
            failed = Some(format!(
                "{name} exited {EXITS} times within a minute; drift dev stopped (see {})",
                c.proc.log_path().display()
            ));
            shutdown.cancel();
            break;
        }
        match (c.restart)() {
            Ok(p) => c.proc = p,
            Err(e) => {
                failed = Some(format!("restarting {name}: {e:#}"));
                shutdown.cancel();
                break;
            }
        }
        eprintln!("drift dev: restarted {name} on its port, with its data");
        let back = tokio::select! {
            r = c.ready.wait() => r,
            _ = shutdown.cancelled() => break,
        };
        match back {
            Ok(()) => {
                outage.set(None);
                eprintln!("drift dev: {name} is back");
            }
            Err(e) => eprintln!("drift dev: {name} did not come back yet: {e:#}"),
        }
    }
    for c in children {
        eprintln!("drift dev: stopping {}", c.proc.name);
        c.proc.stop().await;
    }
    failed
}

/// Starts the Redis and Temporal the flags do not name; returns where both are.
async fn start_children(
    a: &DevArgs,
    data: &Path,
    children: &mut Vec<Managed>,
) -> anyhow::Result<(RedisTarget, String)> {
    let redis = match startup::redis_target(&a.common)? {
        Some(r) => r,
        None => {
            let port = free_port()?;
            let dir = data.join("redis");
            let url = format!("redis://127.0.0.1:{port}");
            children.push(Managed {
                proc: start_redis(&dir, port)?,
                restart: Box::new(move || start_redis(&dir, port)),
                ready: Ready::Redis(url.clone()),
            });
            RedisTarget::Standalone(url)
        }
    };
    let temporal_address = match &a.common.temporal_address {
        Some(t) => t.clone(),
        None => {
            let port = free_port()?;
            let dir = data.join("temporal");
            eprintln!(
                "drift dev: starting Temporal dev server on 127.0.0.1:{port} (data in {})",
                dir.display()
            );
            let address = format!("127.0.0.1:{port}");
            children.push(Managed {
                proc: start_temporal(&dir, port)?,
                restart: Box::new(move || start_temporal(&dir, port)),
                ready: Ready::Temporal(startup::temporal_config(&a.common, &address)),
            });
            address
        }
    };
    // Where this dev's Temporal and Redis are, for `drift bench` (its floor runs on them too).
    let mut endpoints = serde_json::json!({
        "temporalAddress": temporal_address, "pid": std::process::id(),
        "keyPrefix": a.common.key_prefix, "tenant": "demo",
    });
    match &redis {
        RedisTarget::Standalone(u) => endpoints["redisUrl"] = u.as_str().into(),
        RedisTarget::Cluster(nodes) => endpoints["redisCluster"] = nodes.join(",").into(),
    }
    std::fs::write(data.join("endpoints.json"), endpoints.to_string()).ok();
    Ok((redis, temporal_address))
}

async fn run_with(
    a: &DevArgs,
    dev_key: Option<String>,
    redis: &RedisTarget,
    temporal_address: &str,
    outage: Outage,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // A cluster given by the user is checked when the gateway connects to it.
    if let RedisTarget::Standalone(url) = redis {
        tokio::select! {
            r = wait_redis(url, Duration::from_secs(20)) => r.context(SETUP_HINT)?,
            _ = shutdown.cancelled() => return Ok(()),
        };
    }
    eprintln!("drift dev: waiting for Temporal at {temporal_address} …");
    let tcfg = startup::temporal_config(&a.common, temporal_address);
    tokio::select! {
        r = wait_temporal(&tcfg, Duration::from_secs(90)) => r?,
        _ = shutdown.cancelled() => return Ok(()),
    };
    let mut common = a.common.clone();
    if let RedisTarget::Standalone(url) = redis {
        common.redis_url = Some(url.clone());
    }
    common.temporal_address = Some(temporal_address.to_string());
    let settings = Settings {
        common,
        gateway: a.gateway.clone(),
        embed_worker: true,
        stand_ins: true,
        demo_receiver: true,
        demo_key: dev_key.clone(),
        outage,
    };
    let app = Application::build(settings, shutdown).await?;
    let base = format!("http://{}", app.local_addr());
    let key = match &dev_key {
        Some(k) => format!(
            "    API key: {k}\n             (in {}; use it as Authorization: Bearer …)\n",
            a.common.data_dir.join("dev-api-key").display()
        ),
        None => "    Authentication is OFF (--auth none)\n".to_string(),
    };
    eprintln!(
        "\n  Drift is running.\n    Demo:    {base}/\n    API:     {base}/v3\n{key}    Health:  {base}/readyz\n    Metrics: {base}/metrics\n    Temporal at {temporal_address}, {}\n  Press Ctrl-C to stop.\n",
        redis.describe()
    );
    app.run_until_stopped().await
}

/// The dev API key (tenant `demo`, every scope), kept in the data folder so it survives
/// restarts; made anew when the file or the key store lost it.
async fn dev_api_key(data: &Path, database_url: &str) -> anyhow::Result<String> {
    let path = data.join("dev-api-key");
    let db = crate::db::Db::connect(database_url)
        .await
        .with_context(|| format!("opening the key store at {}", data.display()))?;
    if let Ok(k) = std::fs::read_to_string(&path) {
        let k = k.trim().to_string();
        if db.key_by_hash(&crate::service::hash_key(&k)).await?.is_some() {
            return Ok(k);
        }
    }
    let (id, key) = crate::admin::create_key(&db, "demo", "web-demo", None, "admin", Some("drift dev")).await?;
    write_secret(&path, &key)?;
    eprintln!(
        "drift dev: created API key {id} (tenant demo), written to {}",
        path.display()
    );
    Ok(key)
}

/// Writes a secret readable by its owner only.
fn write_secret(path: &Path, secret: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).with_context(|| format!("writing {}", path.display()))?;
    f.write_all(secret.as_bytes())?;
    Ok(())
}

/// A signing secret kept in the data folder, so receivers keep verifying across restarts.
fn dev_webhook_secret(data: &Path) -> anyhow::Result<String> {
    use base64::Engine;
    let path = data.join("webhook-secret");
    if let Ok(s) = std::fs::read_to_string(&path) {
        return Ok(s.trim().to_string());
    }
    let bytes: Vec<u8> = (0..24).map(|_| rand::random::<u8>()).collect();
    let secret = format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(bytes));
    write_secret(&path, &secret)?;
    eprintln!("drift dev: webhook signing secret written to {}", path.display());
    Ok(secret)
}
