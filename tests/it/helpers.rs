//! Test harness: one real Temporal dev server and one real redis-server per test binary (on
//! free ports, stopped when the binary exits), and `spawn_app` for an isolated application
//! (own task queue and Redis key prefix) served on a real port. The application is the one
//! `drift serve` runs, built from the same command-line flags, on a runtime of its own as in
//! its own process.

use clap::Parser;
use drift::TemporalConfig;
use drift::cli::{Cli, Cmd};
use drift::dev::{Supervised, free_port, start_redis, start_temporal, wait_redis, wait_temporal};
use drift::startup::Application;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub struct Infra {
    pub temporal_address: String,
    pub redis_url: String,
    pub dir: PathBuf,
    _children: Vec<Supervised>,
}

/// A runtime that outlives every test, owning the infrastructure children.
fn infra_runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    })
}

/// Runs `f` on the infrastructure runtime from any test.
pub fn on_infra<T: Send + 'static>(f: impl std::future::Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || infra_runtime().block_on(f))
        .join()
        .expect("infra thread")
}

/// Panics raised outside the tests' own code (in Drift or its dependencies), counted since the
/// harness started: a hostile request must never cause one.
pub static SERVER_PANICS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn count_server_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let in_tests = info.location().is_some_and(|l| l.file().starts_with("tests/"));
        if !in_tests {
            SERVER_PANICS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        default(info);
    }));
}

pub fn infra() -> &'static Infra {
    static INFRA: OnceLock<Infra> = OnceLock::new();
    INFRA.get_or_init(|| {
        drift::telemetry::init_tracing();
        count_server_panics();
        on_infra(async {
            let dir = std::env::temp_dir().join(format!("drift-test-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let (rp, tp) = (free_port().unwrap(), free_port().unwrap());
            let redis = start_redis(&dir.join("redis"), rp).expect("redis-server (run scripts/setup.sh)");
            let temporal = start_temporal(&dir.join("temporal"), tp).expect("temporal CLI (run scripts/setup.sh)");
            let redis_url = format!("redis://127.0.0.1:{rp}");
            let temporal_address = format!("127.0.0.1:{tp}");
            wait_redis(&redis_url, Duration::from_secs(20)).await.unwrap();
            wait_temporal(&tcfg(&temporal_address, "probe"), Duration::from_secs(120))
                .await
                .unwrap();
            Infra {
                temporal_address,
                redis_url,
                dir,
                _children: vec![redis, temporal],
            }
        })
    })
}

pub fn tcfg(address: &str, tq: &str) -> TemporalConfig {
    TemporalConfig {
        address: address.to_string(),
        namespace: "default".into(),
        task_queue: tq.to_string(),
        traced: false,
    }
}

pub fn uid() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

#[derive(Clone)]
pub struct Opts {
    pub embed_worker: bool,
    pub temporal_address: Option<String>,
    pub redis_url: Option<String>,
    pub task_queue: Option<String>,
    pub default_wait: Duration,
    pub client_callbacks: std::collections::BTreeMap<String, String>,
    /// More `drift serve` flags, e.g. limits.
    pub extra_args: Vec<String>,
    /// Share another app's Redis keys (several gateways of one deployment).
    pub key_prefix: Option<String>,
}

pub const JWT_SECRET: &str = "test-jwt-secret-0123456789";
pub const ALL_SCOPES: &str = "workflows:start workflows:drive workflows:read definitions:write";

/// An HS256 JWT the test applications accept.
pub fn jwt(tenant: &str, client: &str, scopes: &str, expires_in: i64) -> String {
    let exp = chrono::Utc::now().timestamp() + expires_in;
    let claims = json!({"tenant": tenant, "client": client, "sub": "tester", "scope": scopes, "exp": exp});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The test apps' webhook retry schedule: short, so failures recover within a test.
pub const WEBHOOK_SCHEDULE: &str = "200ms,300ms,400ms,500ms,700ms,1s,1s,1s,2s,2s,2s,2s,3s";

pub const WEBHOOK_SECRET: &str = "whsec_dGVzdC13ZWJob29rLXNlY3JldC0wMTIzNDU2Nzg5";
pub const ALICE_SECRET: &str = "whsec_YWxpY2Utc2VjcmV0LWFsaWNlLXNlY3JldC0wMDA=";

impl Default for Opts {
    fn default() -> Self {
        Self {
            embed_worker: true,
            temporal_address: None,
            redis_url: None,
            task_queue: None,
            default_wait: Duration::from_secs(20),
            client_callbacks: Default::default(),
            extra_args: vec![],
            key_prefix: None,
        }
    }
}

pub struct TestApp {
    pub base: String,
    /// The application's key store (for `drift keys`).
    pub database_url: String,
    /// Prefix of the application's Redis keys.
    pub key_prefix: String,
    pub http: reqwest::Client,
    pub tenant: String,
    pub task_queue: String,
    pub redis_url: String,
    pub temporal_address: String,
    pub shutdown: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Opts::default()).await
}

/// Where an application runs, and the flags `drift serve` gets for it.
struct Planned {
    temporal_address: String,
    redis_url: String,
    task_queue: String,
    database_url: String,
    key_prefix: String,
    args: Vec<String>,
}

fn plan(o: &Opts, listen: &str) -> Planned {
    let inf = infra();
    let temporal_address = o
        .temporal_address
        .clone()
        .unwrap_or_else(|| inf.temporal_address.clone());
    let redis_url = o.redis_url.clone().unwrap_or_else(|| inf.redis_url.clone());
    let task_queue = o.task_queue.clone().unwrap_or_else(|| format!("tq-{}", uid()));
    let root = env!("CARGO_MANIFEST_DIR");
    let database_url = format!("sqlite://{}", inf.dir.join(format!("keys-{}.db", uid())).display());
    let key_prefix = o.key_prefix.clone().unwrap_or_else(|| format!("t{}", uid()));
    let mut args: Vec<String> = [
        "drift",
        "serve",
        &format!("--listen={listen}"),
        &format!("--temporal-address={temporal_address}"),
        &format!("--redis-url={redis_url}"),
        &format!("--task-queue={task_queue}"),
        &format!("--key-prefix={key_prefix}"),
        &format!("--definitions={root}/examples,{root}/tests/fixtures"),
        "--stand-ins",
        &format!("--default-wait-ms={}", o.default_wait.as_millis()),
        "--max-wait-ms=60000",
        "--history-limit=100",
        "--max-body-bytes=65536",
        "--callback-allow=https://*,http://127.0.0.1:*",
        "--stream-secret=test-secret",
        "--stream-token-ttl-secs=600",
        "--history-len=50",
        "--state-ttl-secs=3600",
        &format!("--webhook-secret={WEBHOOK_SECRET}"),
        &format!("--client-secret=alice={ALICE_SECRET}"),
        &format!("--webhook-schedule={WEBHOOK_SCHEDULE}"),
        "--webhook-timeout-ms=5000",
        &format!("--jwt-secret={JWT_SECRET}"),
        "--egress-allow=loopback",
        &format!("--database-url={database_url}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if o.embed_worker {
        args.push("--embed-worker".into());
    }
    for (client, url) in &o.client_callbacks {
        args.push(format!("--client-callback={client}={url}"));
    }
    // A flag given in `extra_args` replaces the harness's default for it.
    let named = |a: &str| a.split('=').next().unwrap_or(a).to_string();
    args.retain(|a| !o.extra_args.iter().any(|e| named(e) == named(a)));
    args.extend(o.extra_args.iter().cloned());
    Planned {
        temporal_address,
        redis_url,
        task_queue,
        database_url,
        key_prefix,
        args,
    }
}

impl Planned {
    fn app(self, addr: std::net::SocketAddr, shutdown: CancellationToken) -> TestApp {
        TestApp {
            base: format!("http://{addr}"),
            database_url: self.database_url,
            key_prefix: self.key_prefix,
            http: reqwest::Client::new(),
            tenant: format!("tenant{}", uid()),
            task_queue: self.task_queue,
            redis_url: self.redis_url,
            temporal_address: self.temporal_address,
            shutdown,
        }
    }
}

pub async fn spawn_app_with(o: Opts) -> TestApp {
    let planned = plan(&o, "127.0.0.1:0");
    let Cmd::Serve(serve) = Cli::try_parse_from(&planned.args).expect("test flags parse").cmd else {
        unreachable!("parsed a serve command")
    };
    let settings = drift::dev::serve_settings(serve);
    let shutdown = CancellationToken::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let token = shutdown.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            match Application::build(settings, token).await {
                Ok(app) => {
                    let _ = tx.send(Ok(app.local_addr()));
                    if let Err(e) = app.run_until_stopped().await {
                        eprintln!("test application stopped with an error: {e:#}");
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        });
    });
    let addr = rx.await.expect("application thread").expect("application builds");
    planned.app(addr, shutdown)
}

/// The application as its own `drift serve` process, for tests that read its process-wide
/// figures (`/metrics`) undisturbed by the other tests' applications in this process.
pub async fn spawn_app_process(o: Opts) -> (Supervised, TestApp) {
    let port = free_port().unwrap();
    let planned = plan(&o, &format!("127.0.0.1:{port}"));
    let log = infra().dir.join(format!("serve-{port}.log"));
    let child = Supervised::spawn("drift serve", drift_bin(), &planned.args[1..], &log).expect("drift serve starts");
    let addr = answering(port, &log).await;
    (child, planned.app(addr, CancellationToken::new()))
}

/// The application as a `drift serve` process of its own that signals reach directly (no
/// supervisor between), for tests of how it stops.
pub async fn spawn_app_signalled(o: Opts) -> (Proc, TestApp) {
    let port = free_port().unwrap();
    let planned = plan(&o, &format!("127.0.0.1:{port}"));
    let log = infra().dir.join(format!("serve-{port}.log"));
    let child = std::process::Command::new(drift_bin())
        .args(&planned.args[1..])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("drift serve starts");
    let proc = Proc(child);
    let addr = answering(port, &log).await;
    (proc, planned.app(addr, CancellationToken::new()))
}

/// Waits until a gateway on `port` answers `/healthz`; its address.
async fn answering(port: u16, log: &std::path::Path) -> std::net::SocketAddr {
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while http.get(format!("http://{addr}/healthz")).send().await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "drift did not answer: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    addr
}

/// A Drift process a test signals itself; killed if the test ends before it exits.
pub struct Proc(pub std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on a child this test spawned, with a valid signal number.
        unsafe {
            libc::kill(self.0.id() as libc::pid_t, signal);
        }
    }

    /// How long the process takes to exit from now (bounded by `within`), and how it ended.
    pub async fn exit_within(&mut self, within: Duration) -> (Duration, Option<std::process::ExitStatus>) {
        let t0 = std::time::Instant::now();
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return (t0.elapsed(), Some(status));
            }
            if t0.elapsed() > within {
                return (t0.elapsed(), None);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A parsed answer.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub body: Value,
}

impl TestApp {
    /// A real `drift worker` process for this app (its Temporal, Redis and task queue), set up
    /// as the app's embedded worker would be: loopback reachable, the tests' webhook secret and
    /// schedule. For tests that kill workers.
    pub fn spawn_worker(&self) -> std::process::Child {
        self.spawn_worker_with(&[])
    }

    /// `spawn_worker` with more flags.
    pub fn spawn_worker_with(&self, flags: &[&str]) -> std::process::Child {
        std::process::Command::new(drift_bin())
            .args([
                "worker",
                "--temporal-address",
                &self.temporal_address,
                "--redis-url",
                &self.redis_url,
            ])
            .args(["--task-queue", &self.task_queue, "--egress-allow", "loopback"])
            .args(["--key-prefix", &self.key_prefix, "--public-url", &self.base])
            .args([
                "--webhook-secret",
                WEBHOOK_SECRET,
                "--webhook-schedule",
                WEBHOOK_SCHEDULE,
            ])
            .args(flags)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Where workflow `id` of this app's tenant keeps its Redis data.
    pub fn keys(&self, id: &str) -> drift::RedisKeys {
        let tenant = drift::TenantId::parse(&self.tenant).unwrap();
        let id = drift::WorkflowId::parse(id).unwrap();
        drift::Layout::new(&self.key_prefix)
            .unwrap()
            .keys(&drift::ScopedWorkflowId::new(&tenant, &id))
    }

    /// A JWT for this app's tenant with every workflow scope, as client `client`.
    pub fn token(&self, client: &str) -> String {
        jwt(&self.tenant, client, ALL_SCOPES, 600)
    }

    /// Calls the API as this app's tenant (client `tests`), with the compatibility headers too.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>, headers: &[(&str, &str)]) -> Resp {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("authorization", bearer(&self.token("tests")))
            .header("X_TENANT_ID", &self.tenant)
            .header("X_CLIENT_ID", "tests");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        send(req).await
    }

    pub async fn start(&self, workflow: &str, params: Value) -> Resp {
        self.call(
            Method::POST,
            "/v3/workflow/start",
            Some(json!({"workflow": workflow, "params": params})),
            &[],
        )
        .await
    }

    pub async fn resume(&self, id: &str, selected: Value) -> Resp {
        self.call(
            Method::PUT,
            &format!("/v3/workflow/resume/{id}"),
            Some(json!({"viewResponse": {"selectedOptions": selected}})),
            &[],
        )
        .await
    }

    pub async fn execute(&self, id: &str, node: &str, parameters: Value) -> Resp {
        self.call(
            Method::POST,
            &format!("/v3/workflow/{id}/disconnected-node/execute"),
            Some(json!({"node": node, "parameters": parameters})),
            &[],
        )
        .await
    }

    /// Runs bank_account's disconnected `verify_account` node `times` times on one screen (each
    /// with another account number), checking each answer: commands that make the run continue
    /// as new without a new screen.
    pub async fn verify_accounts(&self, id: &str, times: usize) {
        for i in 0..times {
            let r = self
                .execute(id, "verify_account", json!({"accountNumber": format!("{i:08}")}))
                .await;
            assert_eq!(r.body["response"]["valid"], true, "{r:?}");
        }
    }

    pub async fn get(&self, id: &str) -> Resp {
        self.call(Method::GET, &format!("/v3/workflow/{id}"), None, &[]).await
    }

    /// Waits (bounded) until the workflow's delivery workflow has handled its terminal state:
    /// from then on no webhook attempt can come, so a test may assert what did not arrive.
    pub async fn deliveries_over(&self, id: &str, within: Duration) -> drift::temporal::DeliveryState {
        let temporal = drift::temporal::Temporal::new(tcfg(&self.temporal_address, &self.task_queue));
        let scoped = drift::ScopedWorkflowId::new(
            &drift::TenantId::parse(&self.tenant).unwrap(),
            &drift::WorkflowId::parse(id).unwrap(),
        );
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let now = temporal.deliveries(&scoped).await;
            if let Ok(Some((state, true))) = now {
                return state;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "deliveries of {id} not over; last: {now:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls the state until `pred` holds (bounded).
    pub async fn eventually(&self, id: &str, within: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let r = self.get(id).await;
            if r.status == StatusCode::OK && pred(&r.body) {
                return r.body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "state never matched; last: {:?}",
                r
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// One series of a gateway's `/metrics` (its name and labels as printed; 0 when absent).
pub async fn metric_at(http: &reqwest::Client, base: &str, series: &str) -> f64 {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("/metrics")
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

impl TestApp {
    /// One series of this app's `/metrics` (0 when absent). Gauges are per process: an app of
    /// the test binary shares them with the other tests' apps.
    pub async fn metric(&self, series: &str) -> f64 {
        metric_at(&self.http, &self.base, series).await
    }

    /// The series' value once it is `value`, or its last value when `within` ran out.
    pub async fn metric_reaches(&self, series: &str, value: f64, within: Duration) -> f64 {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let now = self.metric(series).await;
            if now == value || tokio::time::Instant::now() > deadline {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Sends a request; its status and JSON body (or its text as a JSON string).
pub async fn send(req: reqwest::RequestBuilder) -> Resp {
    let r = req.send().await.expect("request");
    let status = r.status();
    let text = r.text().await.unwrap();
    Resp {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

/// A workflow answer as a client reads it (the fields tests look at), parsed from JSON: a
/// misspelt field fails at the parse, not as a silent `null` in a comparison.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Answer {
    pub workflow_id: String,
    pub workflow_status: String,
    pub seq: u64,
    #[serde(default)]
    pub request_id: Option<String>,
    #[serde(default)]
    pub node: Option<String>,
    #[serde(default)]
    pub view: Option<Screen>,
    #[serde(default)]
    pub error_message: Option<String>,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Screen {
    pub layout_id: String,
    pub input_options: Vec<Value>,
}

impl Answer {
    pub fn of(body: &Value) -> Self {
        serde_json::from_value(body.clone()).unwrap_or_else(|e| panic!("not a workflow answer ({e}): {body}"))
    }

    pub fn screen(&self) -> &Screen {
        self.view.as_ref().unwrap_or_else(|| panic!("no screen in {self:?}"))
    }

    /// A template variable of the screen's instructions (the first widget that has it).
    pub fn var(&self, name: &str) -> &Value {
        self.screen()
            .input_options
            .iter()
            .flat_map(|w| w["instructions"].as_array().into_iter().flatten())
            .find_map(|i| i["templateVariables"].get(name))
            .unwrap_or_else(|| panic!("no template variable {name:?} on {self:?}"))
    }
}

impl Resp {
    /// The body as a workflow answer (panics, naming the body, when it is not one).
    pub fn answer(&self) -> Answer {
        Answer::of(&self.body)
    }
}

pub fn id_of(r: &Resp) -> String {
    r.body["workflowId"]
        .as_str()
        .unwrap_or_else(|| panic!("no workflowId in {r:?}"))
        .to_string()
}

pub fn status_of(r: &Resp) -> &str {
    r.body["workflowStatus"].as_str().unwrap_or("")
}

/// Runs the real `temporal` CLI against the test server.
pub fn temporal_cli(args: &[&str]) -> Value {
    let out = std::process::Command::new("temporal")
        .args(args)
        .args(["--address", &infra().temporal_address, "--output", "json"])
        .output()
        .expect("temporal CLI");
    assert!(
        out.status.success(),
        "temporal {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// A redis-server of a test's own (for tests that stop it or count its connections).
pub async fn own_redis() -> (Supervised, String) {
    let port = free_port().unwrap();
    let dir = infra().dir.join(format!("redis-{port}"));
    let child = on_infra(async move { start_redis(&dir, port) }).unwrap();
    let url = format!("redis://127.0.0.1:{port}");
    wait_redis(&url, Duration::from_secs(10)).await.unwrap();
    (child, url)
}

/// An app on a redis-server of its own, for tests that stop, restart or count it.
pub async fn spawn_app_on_own_redis() -> (Supervised, String, TestApp) {
    let (redis, url) = own_redis().await;
    let app = spawn_app_with(Opts {
        redis_url: Some(url.clone()),
        ..Default::default()
    })
    .await;
    (redis, url, app)
}

/// Restarts a test's own redis-server on its port: its data is saved on shutdown and loaded
/// again.
pub async fn restart_redis(redis: Supervised, url: &str) -> Supervised {
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    let dir = infra().dir.join(format!("redis-{port}"));
    on_infra(async move { redis.stop().await });
    let redis = on_infra(async move { start_redis(&dir, port) }).unwrap();
    wait_redis(url, Duration::from_secs(10)).await.unwrap();
    redis
}

/// Counts a Redis server's client connections over one connection of its own (not counted).
pub struct ConnCounter(redis::aio::MultiplexedConnection);

impl ConnCounter {
    pub async fn new(url: &str) -> Self {
        Self(
            redis::Client::open(url)
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap(),
        )
    }

    pub async fn count(&self) -> usize {
        let mut c = self.0.clone();
        let list: String = redis::cmd("CLIENT").arg("LIST").query_async(&mut c).await.unwrap();
        list.lines().filter(|l| !l.trim().is_empty()).count() - 1
    }
}

pub fn drift_bin() -> &'static str {
    env!("CARGO_BIN_EXE_drift")
}

/// Runs the `drift` binary with `args` (its logs at errors only); answers (success, stdout +
/// stderr).
pub async fn drift_cli(args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new(drift_bin())
        .args(args)
        .env("DRIFT_LOG", "error")
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// One Server-Sent Event.
#[derive(Debug, Clone)]
pub struct Sse {
    pub event: String,
    pub id: Option<String>,
    pub data: Value,
}

/// A minimal SSE reader over a real HTTP connection.
pub struct SseClient {
    stream: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: String,
}

impl SseClient {
    pub async fn connect(url: &str, headers: &[(&str, &str)]) -> Result<SseClient, StatusCode> {
        let mut req = reqwest::Client::new().get(url).header("accept", "text/event-stream");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.send().await.expect("sse request");
        if r.status() != StatusCode::OK {
            return Err(r.status());
        }
        Ok(SseClient {
            stream: Box::pin(r.bytes_stream()),
            buf: String::new(),
        })
    }

    /// The next event (keepalive comments skipped); `None` when the stream ended.
    pub async fn next(&mut self, within: Duration) -> Option<Sse> {
        use futures::StreamExt;
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let frame: String = self.buf.drain(..end + 2).collect();
                let (mut event, mut id, mut data) = ("message".to_string(), None, String::new());
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if data.is_empty() && id.is_none() {
                    continue; // a comment (keepalive)
                }
                return Some(Sse {
                    event,
                    id,
                    data: serde_json::from_str(&data).unwrap_or(Value::String(data)),
                });
            }
            let chunk = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .expect("no SSE event in time");
            match chunk {
                Some(Ok(b)) => self.buf.push_str(&String::from_utf8_lossy(&b)),
                _ => return None,
            }
        }
    }

    /// Reads state events until a terminal one (or the end), returning their seqs.
    pub async fn states_until_end(&mut self, within: Duration) -> Vec<u64> {
        let mut seqs = Vec::new();
        while let Some(ev) = self.next(within).await {
            if ev.event == "state" {
                seqs.push(ev.data["seq"].as_u64().unwrap());
                assert_eq!(
                    ev.id.as_deref(),
                    Some(ev.data["seq"].to_string().as_str()),
                    "id: is the seq"
                );
            }
        }
        seqs
    }
}

/// A WebSocket client speaking Drift's JSON protocol.
pub struct Ws {
    inner: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
}

impl Ws {
    pub async fn connect(url: &str) -> Ws {
        Self::connect_with(url, &[]).await.expect("ws connect")
    }

    /// Connects with extra handshake headers; the HTTP status when the upgrade is refused.
    pub async fn connect_with(url: &str, headers: &[(&str, &str)]) -> Result<Ws, StatusCode> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = url.into_client_request().unwrap();
        for (k, v) in headers {
            req.headers_mut().insert(
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        match tokio_tungstenite::connect_async(req).await {
            Ok((inner, _)) => Ok(Ws { inner }),
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
                Err(StatusCode::from_u16(r.status().as_u16()).unwrap())
            }
            Err(e) => panic!("ws connect: {e}"),
        }
    }

    pub async fn send_text(&mut self, text: String) {
        use futures::SinkExt;
        let _ = self
            .inner
            .send(tokio_tungstenite::tungstenite::Message::Text(text.into()))
            .await;
    }

    pub async fn send(&mut self, v: Value) {
        use futures::SinkExt;
        self.inner
            .send(tokio_tungstenite::tungstenite::Message::Text(v.to_string().into()))
            .await
            .unwrap();
    }

    /// The next JSON message; `None` when the socket closed.
    pub async fn next(&mut self, within: Duration) -> Option<Value> {
        use futures::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        loop {
            let m = tokio::time::timeout(within, self.inner.next())
                .await
                .expect("no WS message in time");
            match m {
                Some(Ok(Message::Text(t))) => return Some(serde_json::from_str(&t).unwrap()),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                _ => {}
            }
        }
    }

    /// Skips messages until the server closes the socket; its close code (None: no close frame).
    pub async fn close_code(&mut self, within: Duration) -> Option<u16> {
        use futures::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        loop {
            let m = tokio::time::timeout(within, self.inner.next())
                .await
                .expect("the socket was not closed in time");
            match m {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                None | Some(Err(_)) => return None,
                _ => {}
            }
        }
    }

    /// Skips messages until one of `kind` arrives.
    pub async fn next_of(&mut self, kind: &str, within: Duration) -> Value {
        loop {
            let m = self
                .next(within)
                .await
                .unwrap_or_else(|| panic!("socket closed waiting for {kind}"));
            if m["type"] == kind {
                return m;
            }
        }
    }
}

impl TestApp {
    pub fn ws_url(&self, query: &str) -> String {
        format!("{}/v3/ws{query}", self.base.replacen("http", "ws", 1))
    }

    pub fn events_url(&self, id: &str, query: &str) -> String {
        format!("{}/v3/workflow/{id}/events{query}", self.base)
    }
}

/// A real PostgreSQL server for this test binary (initdb in a temp folder, a free port),
/// stopped with the binary. Each test gets a database of its own from `pg_database`.
pub struct Pg {
    pub admin_url: String,
    _child: Supervised,
}

fn pg_bin(name: &str) -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin").join(name))
                .collect()
        })
        .unwrap_or_default();
    found.retain(|p| p.exists());
    found.sort();
    found
        .pop()
        .unwrap_or_else(|| panic!("PostgreSQL's {name} was not found under /usr/lib/postgresql (run scripts/setup.sh)"))
}

/// As root, PostgreSQL must run as its own user: `setpriv` execs it in place, so a stop
/// signal reaches the server itself.
fn as_postgres(program: PathBuf) -> (String, Vec<String>) {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return (program.display().to_string(), vec![]);
    }
    (
        "setpriv".into(),
        vec![
            "--reuid=postgres".into(),
            "--regid=postgres".into(),
            "--init-groups".into(),
            "--".into(),
            program.display().to_string(),
        ],
    )
}

pub fn postgres() -> &'static Pg {
    static PG: OnceLock<Pg> = OnceLock::new();
    PG.get_or_init(|| {
        let dir = infra().dir.join("pg");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            let ok = std::process::Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(ok.success(), "chown postgres {}", dir.display());
        }
        let data = dir.join("data");
        let (prog, mut args) = as_postgres(pg_bin("initdb"));
        args.extend([
            "-D".into(),
            data.display().to_string(),
            "-A".into(),
            "trust".into(),
            "-U".into(),
            "drift".into(),
        ]);
        let out = std::process::Command::new(&prog).args(&args).output().expect("initdb");
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        let port = free_port().unwrap();
        let (prog, mut args) = as_postgres(pg_bin("postgres"));
        args.extend([
            "-D".into(),
            data.display().to_string(),
            "-p".into(),
            port.to_string(),
            "-k".into(),
            dir.display().to_string(),
            "-h".into(),
            "127.0.0.1".into(),
            "-c".into(),
            "max_connections=300".into(),
            "-c".into(),
            "fsync=off".into(),
        ]);
        let prog: &'static str = Box::leak(prog.into_boxed_str());
        let child = Supervised::spawn("postgres", prog, &args, &dir.join("postgres.log")).expect("postgres");
        let admin_url = format!("postgres://drift@127.0.0.1:{port}/postgres");
        let url = admin_url.clone();
        on_infra(async move {
            use sqlx::Connection;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                match sqlx::PgConnection::connect(&url).await {
                    Ok(c) => {
                        let _ = c.close().await;
                        break;
                    }
                    Err(e) if tokio::time::Instant::now() > deadline => panic!("postgres did not start: {e}"),
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        Pg {
            admin_url,
            _child: child,
        }
    })
}

/// A new, empty database on the harness's PostgreSQL server.
pub async fn pg_database() -> String {
    use sqlx::Connection;
    let pg = postgres();
    let name = format!("d{}", uid());
    let mut c = sqlx::PgConnection::connect(&pg.admin_url).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    pg.admin_url.replace("/postgres", &format!("/{name}"))
}
