//! Local infrastructure as child processes: a Temporal dev server and redis-servers on free
//! ports, each stopped with its parent (even after `kill -9`). `drift dev` runs its own with
//! these, and so do the integration tests and the store's script test.

use anyhow::{Context, bail};
use drift_temporal::{Temporal, TemporalConfig, connect};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

pub const SETUP_HINT: &str =
    "run scripts/setup.sh (it installs protoc, redis-server and the Temporal CLI), then try again";

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

    /// Asks the child to stop and waits (bounded) for it: its supervisor kills it after 5 s.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            terminate(pid);
        }
        if tokio::time::timeout(Duration::from_secs(6), self.child.wait())
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
    // The runs list's search attributes (`GET /v3/workflows`), registered with the server.
    .chain(
        drift_temporal::search::ATTRIBUTES
            .iter()
            .flat_map(|(name, kind)| ["--search-attribute".to_string(), format!("{name}={kind}")]),
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
