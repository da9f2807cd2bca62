//! `drift dev`: the one-command local platform. Starts `temporal server start-dev` and
//! `redis-server` as supervised children when no addresses are given, runs gateway + worker in
//! this process with the examples and their API stand-ins, and stops everything on Ctrl-C.

use crate::args::DevArgs;
use crate::processes::{SETUP_HINT, Supervised, free_port, start_redis, start_temporal, wait_redis, wait_temporal};
use anyhow::Context;
use drift_bus::RedisTarget;
use drift_gateway::Outage;
use drift_server::startup::{self, Application, Settings};
use drift_temporal::TemporalConfig;
use std::path::Path;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub async fn run(mut a: DevArgs) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    // The drain, then the children's stop (each within its supervisor's 5 s).
    let drain = Duration::from_secs(a.common.drain_secs);
    startup::spawn_signal(shutdown.clone(), drain + startup::EXIT_GRACE);
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
        .get_or_insert_with(|| drift_server::config::default_database_url(&data))
        .clone();
    let dev_key = match a.gateway.auth {
        drift_server::config::AuthArg::Required => Some(dev_api_key(&data, &database_url).await?),
        drift_server::config::AuthArg::None => None,
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
    // The children outlive the gateway and worker: a worker finishing its tasks still needs
    // Temporal and Redis.
    let stop_children = CancellationToken::new();
    let supervisor = tokio::spawn(supervise(
        children,
        outage.clone(),
        shutdown.clone(),
        stop_children.clone(),
    ));
    let result = run_with(&a, dev_key, &redis, &temporal_address, outage, shutdown.clone()).await;
    eprintln!("drift dev: gateway and worker stopped");
    // Whatever ended the run, every child stops, after the gateway and worker did.
    shutdown.cancel();
    stop_children.cancel();
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
/// it gave up, if it did; every child is stopped either way, once `stop` is cancelled (after
/// the gateway and worker ended) or when supervision gives up.
async fn supervise(
    mut children: Vec<Managed>,
    outage: Outage,
    shutdown: CancellationToken,
    stop: CancellationToken,
) -> Option<String> {
    const EXITS: usize = 3;
    let mut exits: Vec<std::time::Instant> = Vec::new();
    let mut failed = None;
    while !children.is_empty() {
        let exited = {
            let any = futures::future::select_all(children.iter_mut().map(|c| Box::pin(c.proc.exited())));
            tokio::select! {
                (_, i, _) = any => Some(i),
                _ = stop.cancelled() => None,
            }
        };
        let Some(i) = exited else { break };
        if shutdown.is_cancelled() {
            // Stopping anyway: a child that ends now is not started again.
            break;
        }
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
    // Stopped side by side: each takes up to its supervisor's 5 s.
    futures::future::join_all(children.into_iter().map(|c| {
        eprintln!("drift dev: stopping {}", c.proc.name);
        c.proc.stop()
    }))
    .await;
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
        routes: axum::Router::new(),
        own_enums: Vec::new(),
        demo_key: dev_key.clone(),
        outage,
    };
    let mut settings = crate::with_stand_ins(settings);
    settings.routes = settings
        .routes
        .merge(crate::standins::demo_receiver(a.common.webhook_secret.clone()));
    let _traces = drift_server::startup::traces(&settings.common, "drift-dev")?;
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
    let kept = std::fs::read_to_string(&path).ok();
    let (key, new_id) =
        drift_service::keys::key_to_keep(database_url, kept.as_deref().map(str::trim), "demo", "drift dev")
            .await
            .with_context(|| format!("opening the key store at {}", data.display()))?;
    if let Some(id) = new_id {
        write_secret(&path, &key)?;
        eprintln!(
            "drift dev: created API key {id} (tenant demo), written to {}",
            path.display()
        );
    }
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
