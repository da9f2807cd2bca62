//! `drift dev`: the one-command local platform. Starts `temporal server start-dev` and
//! `redis-server` as supervised children when no addresses are given, runs gateway + worker in
//! this process with the examples and their API stand-ins, and stops everything on Ctrl-C.

use crate::bus::RedisTarget;
use crate::config::DevArgs;
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
        Ok(Self { name, child })
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
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
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
    let result = start_and_run(&a, &data, dev_key, &mut children, shutdown.clone()).await;
    // Whatever ended the run (an error starting the next child included), every child stops.
    shutdown.cancel();
    for c in children {
        eprintln!("drift dev: stopping {}", c.name);
        c.stop().await;
    }
    result
}

async fn start_and_run(
    a: &DevArgs,
    data: &Path,
    dev_key: Option<String>,
    children: &mut Vec<Supervised>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let redis = match startup::redis_target(&a.common)? {
        Some(r) => r,
        None => {
            let port = free_port()?;
            children.push(start_redis(&data.join("redis"), port)?);
            RedisTarget::Standalone(format!("redis://127.0.0.1:{port}"))
        }
    };
    let temporal_address = match &a.common.temporal_address {
        Some(t) => t.clone(),
        None => {
            let port = free_port()?;
            eprintln!(
                "drift dev: starting Temporal dev server on 127.0.0.1:{port} (data in {})",
                data.join("temporal").display()
            );
            children.push(start_temporal(&data.join("temporal"), port)?);
            format!("127.0.0.1:{port}")
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
    run_with(a, dev_key, &redis, &temporal_address, shutdown).await
}

async fn run_with(
    a: &DevArgs,
    dev_key: Option<String>,
    redis: &RedisTarget,
    temporal_address: &str,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // A cluster given by the user is checked when the gateway connects to it.
    if let RedisTarget::Standalone(url) = redis {
        wait_redis(url, Duration::from_secs(20)).await.context(SETUP_HINT)?;
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
