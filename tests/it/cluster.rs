//! The scale-out topology as users run it (`scripts/cluster.sh`): a 6-node Redis Cluster (3
//! masters, 3 replicas), three `drift serve` processes with nothing sticky in front of them and
//! two `drift worker`s, on the harness's Temporal and a PostgreSQL database of their own. The
//! failures are real: `kill -9` of a master or a gateway, `CLUSTER FAILOVER`, a slot migration,
//! `CLIENT KILL`. Each test measures how long its failure kept callers waiting and prints it.

use crate::helpers::*;
use crate::webhooks::Receiver;
use drift::dev::Supervised;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Topologies are heavy for a 2-core machine: one test drives one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const T: Duration = Duration::from_secs(30);

/// One gateway of a topology, called with the topology's admin key.
#[derive(Clone)]
struct Gw {
    base: String,
    key: String,
    pid: u32,
    http: reqwest::Client,
}

impl Gw {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("authorization", bearer(&self.key))
            .timeout(Duration::from_secs(60));
        if let Some(b) = body {
            req = req.json(&b);
        }
        send(req).await
    }

    async fn start(&self, body: Value) -> Resp {
        self.call(Method::POST, "/v3/workflow/start", Some(body)).await
    }

    async fn resume(&self, id: &str, selected: Value, request_id: &str) -> Resp {
        let body = json!({"viewResponse": {"selectedOptions": selected}, "requestId": request_id});
        self.call(Method::PUT, &format!("/v3/workflow/resume/{id}"), Some(body))
            .await
    }

    /// A resume retried with the same request id until it is answered: a 503 (nothing was
    /// changed), a 504 (outcome unknown) or a 202 (the answer is late) says to ask again. The
    /// answer, and the statuses of the attempts before it.
    async fn resume_until_answered(&self, id: &str, selected: Value, request_id: &str) -> (Resp, Vec<u16>) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut before = Vec::new();
        loop {
            let r = self.resume(id, selected.clone(), request_id).await;
            match r.status {
                StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT | StatusCode::ACCEPTED
                    if Instant::now() < deadline =>
                {
                    before.push(r.status.as_u16());
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                _ => return (r, before),
            }
        }
    }

    /// How many subscriptions this gateway's hub moved for reason `why` (see the hub).
    async fn moved(&self, why: &str) -> f64 {
        self.metric(&format!("drift_hub_subscriptions_moved_total{{why=\"{why}\"}}"))
            .await
    }

    /// Subscriptions this gateway's hub moved because their slot's master changed: the old
    /// master dropped them (`SUNSUBSCRIBE`), or, if the hub's periodic look at the slot map
    /// came first, the map said so.
    async fn moved_off_its_master(&self) -> f64 {
        self.moved("evicted").await + self.moved("slot map").await
    }

    /// One series of this gateway's `/metrics` (0 when absent).
    async fn metric(&self, series: &str) -> f64 {
        metric_at(&self.http, &self.base, series).await
    }
}

/// What `scripts/cluster.sh` started, from its `topology.json`.
struct Topology {
    gateways: Vec<Gw>,
    /// Redis node port → process id.
    redis_pids: HashMap<u16, u32>,
    dir: PathBuf,
    /// Stops the script, which stops everything it started.
    _script: Supervised,
}

impl Topology {
    /// Runs `scripts/cluster.sh` (`mode`: `cluster` or `standalone` Redis) on the harness's
    /// Temporal, a new PostgreSQL database and the tests' webhook settings.
    async fn up(mode: &str) -> Topology {
        let dir = infra().dir.join(format!("topology-{}", uid()));
        let log = dir.with_extension("log");
        let args: Vec<String> = vec![
            format!("DRIFT_WEBHOOK_SECRET={WEBHOOK_SECRET}"),
            format!("DRIFT_WEBHOOK_SCHEDULE={WEBHOOK_SCHEDULE}"),
            // The hub's moves are logged, for whoever reads a failed run's logs.
            "DRIFT_LOG=warn,drift::bus=info".into(),
            "bash".into(),
            format!("{}/scripts/cluster.sh", env!("CARGO_MANIFEST_DIR")),
            "--dir".into(),
            dir.display().to_string(),
            "--redis".into(),
            mode.into(),
            "--temporal-address".into(),
            infra().temporal_address.clone(),
            "--database-url".into(),
            pg_database().await,
            "--drift-bin".into(),
            drift_bin().into(),
        ];
        let spawn_log = log.clone();
        let script = on_infra(async move { Supervised::spawn("cluster.sh", "env", &args, &spawn_log) }).unwrap();
        let file = dir.join("topology.json");
        let deadline = Instant::now() + Duration::from_secs(180);
        let t: Value = loop {
            if let Ok(text) = std::fs::read_to_string(&file) {
                break serde_json::from_str(&text).unwrap();
            }
            let said = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(
                Instant::now() < deadline && !said.contains("logs in"),
                "scripts/cluster.sh did not come up:\n{said}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let key = t["apiKey"].as_str().unwrap().to_string();
        let gateways = t["gateways"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| Gw {
                base: g["url"].as_str().unwrap().to_string(),
                key: key.clone(),
                pid: g["pid"].as_u64().unwrap() as u32,
                http: reqwest::Client::new(),
            })
            .collect();
        let redis_pids = t["redisNodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| (n["port"].as_u64().unwrap() as u16, n["pid"].as_u64().unwrap() as u32))
            .collect();
        Topology {
            gateways,
            redis_pids,
            dir,
            _script: script,
        }
    }

    fn gw(&self, i: usize) -> Gw {
        self.gateways[i].clone()
    }

    /// A connection to one Redis node (not through the cluster client: tests act on nodes).
    async fn node(&self, port: u16) -> redis::aio::MultiplexedConnection {
        redis::Client::open(format!("redis://127.0.0.1:{port}"))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// Any node that answers.
    async fn any_node(&self) -> redis::aio::MultiplexedConnection {
        for port in self.redis_pids.keys() {
            let c = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
            if let Ok(Ok(mut c)) =
                tokio::time::timeout(Duration::from_secs(1), c.get_multiplexed_async_connection()).await
                && redis::cmd("PING").query_async::<String>(&mut c).await.is_ok()
            {
                return c;
            }
        }
        panic!("no Redis node answers");
    }

    /// The slot of a workflow's channel and the port of the master serving it, as the cluster
    /// says now.
    async fn slot_of(&self, channel: &str) -> (u16, u16) {
        let mut c = self.any_node().await;
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(channel)
            .query_async(&mut c)
            .await
            .unwrap();
        (slot, owner_by(&mut c, slot).await.expect("the slot is served"))
    }

    /// The port of a master's replica, once the replica is linked (a failover before that
    /// loses writes).
    async fn linked_replica(&self, master: u16) -> u16 {
        let mut c = self.node(master).await;
        let deadline = Instant::now() + T;
        loop {
            let info: String = redis::cmd("INFO").arg("replication").query_async(&mut c).await.unwrap();
            // slave0:ip=127.0.0.1,port=30422,state=online,offset=…,lag=0
            let online = info.lines().find_map(|l| {
                let fields = l.strip_prefix("slave0:")?;
                fields
                    .contains("state=online")
                    .then(|| fields.split(',').find_map(|f| f.strip_prefix("port=")?.parse().ok()))?
            });
            if let Some(port) = online {
                return port;
            }
            assert!(
                Instant::now() < deadline,
                "master {master} has no linked replica: {info}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until node `port` reports `role`.
    async fn role_is(&self, port: u16, role: &str) {
        let mut c = self.node(port).await;
        let deadline = Instant::now() + T;
        loop {
            let r: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut c).await.unwrap();
            if matches!(&r[0], redis::Value::BulkString(b) if b == role.as_bytes()) {
                return;
            }
            assert!(Instant::now() < deadline, "node {port} never became {role}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Moves `slot` from master `src` to master `dst` the way `redis-cli --cluster reshard`
    /// does it: IMPORTING/MIGRATING, MIGRATE of its keys, then the new owner on every master.
    async fn migrate_slot(&self, slot: u16, src: u16, dst: u16) {
        let (mut s, mut d) = (self.node(src).await, self.node(dst).await);
        let id = |c: &mut redis::aio::MultiplexedConnection| {
            let mut c = c.clone();
            async move {
                redis::cmd("CLUSTER")
                    .arg("MYID")
                    .query_async::<String>(&mut c)
                    .await
                    .unwrap()
            }
        };
        let (src_id, dst_id) = (id(&mut s).await, id(&mut d).await);
        let setslot = |c: &mut redis::aio::MultiplexedConnection, how: &str, node: &str| {
            let mut c = c.clone();
            let (how, node) = (how.to_string(), node.to_string());
            async move {
                let _: () = redis::cmd("CLUSTER")
                    .arg("SETSLOT")
                    .arg(slot)
                    .arg(how)
                    .arg(node)
                    .query_async(&mut c)
                    .await
                    .unwrap();
            }
        };
        setslot(&mut d, "IMPORTING", &src_id).await;
        setslot(&mut s, "MIGRATING", &dst_id).await;
        loop {
            let keys: Vec<String> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(100)
                .query_async(&mut s)
                .await
                .unwrap();
            if keys.is_empty() {
                break;
            }
            let _: () = redis::cmd("MIGRATE")
                .arg("127.0.0.1")
                .arg(dst)
                .arg("")
                .arg(0)
                .arg(5000)
                .arg("KEYS")
                .arg(&keys)
                .query_async(&mut s)
                .await
                .unwrap();
        }
        setslot(&mut d, "NODE", &dst_id).await;
        setslot(&mut s, "NODE", &dst_id).await;
        for port in self.masters().await {
            if port != src && port != dst {
                setslot(&mut self.node(port).await, "NODE", &dst_id).await;
            }
        }
        // Replicas hear it from their masters: wait until every node says so.
        let deadline = Instant::now() + T;
        for port in self.redis_pids.keys() {
            while owner_by(&mut self.node(*port).await, slot).await != Some(dst) {
                assert!(
                    Instant::now() < deadline,
                    "node {port} never learned slot {slot}'s new owner"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// The masters' ports, as any node says now.
    async fn masters(&self) -> Vec<u16> {
        let slots: Vec<Vec<redis::Value>> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut self.any_node().await)
            .await
            .unwrap();
        let mut ports: Vec<u16> = slots.iter().map(|e| node_port(&e[2])).collect();
        ports.sort();
        ports.dedup();
        ports
    }
}

/// The port in a `CLUSTER SLOTS` node entry (`[host, port, id, …]`).
fn node_port(v: &redis::Value) -> u16 {
    match v {
        redis::Value::Array(n) => match n[1] {
            redis::Value::Int(p) => p as u16,
            ref other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

/// The port of the master serving `slot`, as the node behind `c` says.
async fn owner_by(c: &mut redis::aio::MultiplexedConnection, slot: u16) -> Option<u16> {
    let slots: Vec<Vec<redis::Value>> = redis::cmd("CLUSTER").arg("SLOTS").query_async(c).await.ok()?;
    let int = |v: &redis::Value| match v {
        redis::Value::Int(i) => *i as u16,
        other => panic!("{other:?}"),
    };
    slots
        .iter()
        .find(|e| int(&e[0]) <= slot && slot <= int(&e[1]))
        .map(|e| node_port(&e[2]))
}

fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) with a process id from the topology and a valid signal.
    assert_eq!(
        unsafe { libc::kill(pid as libc::pid_t, signal) },
        0,
        "kill -{signal} {pid}"
    );
}

fn kill9(pid: u32) {
    signal(pid, libc::SIGKILL);
}

/// Where workflow `id` of the topology's tenant (`demo`, default key prefix) keeps its channel.
fn channel_of(id: &str) -> String {
    let scoped = drift::ScopedWorkflowId::new(
        &drift::TenantId::parse("demo").unwrap(),
        &drift::WorkflowId::parse(id).unwrap(),
    );
    drift::Layout::new("drift").unwrap().keys(&scoped).channel
}

/// A live follower of one workflow: its seqs, in the order it got them, until the terminal one.
struct Follower {
    ready: tokio::sync::oneshot::Receiver<()>,
    done: tokio::task::JoinHandle<Vec<u64>>,
}

impl Follower {
    /// Follows over SSE on `gateways[0]`; when a stream breaks it reconnects with
    /// `Last-Event-ID` to the others in turn (never the first again: it may be the one killed).
    fn sse(gateways: Vec<Gw>, id: &str, token: &str) -> Follower {
        let (tx, ready) = tokio::sync::oneshot::channel();
        let (id, token) = (id.to_string(), token.to_string());
        let done = tokio::spawn(async move {
            let mut tx = Some(tx);
            let mut seqs: Vec<u64> = Vec::new();
            for attempt in 0.. {
                assert!(attempt < 50, "follower reconnected 50 times; got {seqs:?}");
                let g = match (attempt, gateways.len()) {
                    (0, _) | (_, 1) => &gateways[0],
                    (n, len) => &gateways[1 + (n - 1) % (len - 1)],
                };
                let url = format!("{}/v3/workflow/{id}/events?token={token}", g.base);
                let last = seqs.last().map(|s| s.to_string());
                let headers: Vec<(&str, &str)> = last.iter().map(|l| ("last-event-id", l.as_str())).collect();
                let mut sse = match SseClient::connect(&url, &headers).await {
                    Ok(s) => s,
                    // After the end, a reconnect is told there is nothing more.
                    Err(StatusCode::NO_CONTENT) => return seqs,
                    Err(other) => panic!("SSE on {} answered {other}", g.base),
                };
                while let Some(ev) = sse.next(Duration::from_secs(90)).await {
                    if ev.event != "state" {
                        continue;
                    }
                    seqs.push(ev.data["seq"].as_u64().unwrap());
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(());
                    }
                    let status = ev.data["workflowStatus"].as_str().unwrap_or_default();
                    if matches!(status, "COMPLETED" | "FAILED" | "TERMINATED") {
                        return seqs;
                    }
                }
            }
            unreachable!()
        });
        Follower { ready, done }
    }

    /// Follows over a WebSocket on `g`, with the stream token.
    fn ws(g: &Gw, id: &str, token: &str) -> Follower {
        let (tx, ready) = tokio::sync::oneshot::channel();
        let url = format!("{}/v3/ws", g.base.replacen("http", "ws", 1));
        let (id, token) = (id.to_string(), token.to_string());
        let done = tokio::spawn(async move {
            let mut ws = Ws::connect(&url).await;
            ws.send(json!({"type": "subscribe", "workflowId": id, "since": 0, "token": token}))
                .await;
            let mut tx = Some(tx);
            let mut seqs = Vec::new();
            loop {
                let m = ws.next_of("state", Duration::from_secs(90)).await;
                seqs.push(m["seq"].as_u64().unwrap());
                if let Some(tx) = tx.take() {
                    let _ = tx.send(());
                }
                let status = m["state"]["workflowStatus"].as_str().unwrap_or_default();
                if matches!(status, "COMPLETED" | "FAILED" | "TERMINATED") {
                    return seqs;
                }
            }
        });
        Follower { ready, done }
    }

    /// Waits until it has its first state.
    async fn ready(&mut self) {
        tokio::time::timeout(T, &mut self.ready)
            .await
            .expect("a follower got no first state in time")
            .expect("a follower failed before its first state");
    }

    async fn seqs(self) -> Vec<u64> {
        tokio::time::timeout(Duration::from_secs(120), self.done)
            .await
            .expect("a follower did not see the end in time")
            .expect("a follower failed")
    }
}

/// One topology (tests that want one wait their turn), its gateways A, B and C, and a
/// bank_account flow started on A, waiting on its form: its id and stream token.
struct Flow(tokio::sync::MutexGuard<'static, ()>, Topology, [Gw; 3], String, String);

impl Flow {
    async fn start() -> Flow {
        let turn = ONE_AT_A_TIME.lock().await;
        let topo = Topology::up("cluster").await;
        let gateways = [topo.gw(0), topo.gw(1), topo.gw(2)];
        let (id, token) = start_bank_account(&gateways[0]).await;
        Flow(turn, topo, gateways, id, token)
    }
}

/// The followers, once each has its first state.
async fn ready(mut followers: Vec<Follower>) -> Vec<Follower> {
    for f in &mut followers {
        f.ready().await;
    }
    followers
}

/// bank_account's form, answered with an account number that does not verify: the flow loops
/// back to the form, one new state per answer.
fn invalid_account() -> Value {
    json!({"accountNumber": "42", "save": "save"})
}

fn valid_account() -> Value {
    json!({"accountNumber": "87654321", "save": "save"})
}

/// Starts bank_account on `g`: its id and stream token.
async fn start_bank_account(g: &Gw) -> (String, String) {
    let r = g.start(json!({"workflow": "bank_account"})).await;
    assert_eq!((r.status, status_of(&r)), (StatusCode::OK, "WAITING"), "{r:?}");
    (id_of(&r), r.body["streamToken"].as_str().unwrap().to_string())
}

/// The resume that moves a flow at `seq` on: answered once, however often it was sent. The
/// answer, and the statuses of the attempts before it.
async fn step_retried(g: &Gw, id: &str, seq: u64, answer: Value) -> (Resp, Vec<u16>) {
    let rid = format!("step-{seq}");
    let (r, before) = g.resume_until_answered(id, answer, &rid).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?} after {before:?}");
    assert_eq!(r.body["seq"], seq + 1, "{r:?}");
    (r, before)
}

async fn step(g: &Gw, id: &str, seq: u64, answer: Value) -> Resp {
    step_retried(g, id, seq, answer).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_on_one_gateway_resume_on_another_stream_on_a_third_every_state_once_in_order_everywhere() {
    let _one = ONE_AT_A_TIME.lock().await;
    let topo = Topology::up("cluster").await;
    let (a, b, c) = (topo.gw(0), topo.gw(1), topo.gw(2));
    let rx = Receiver::new(WEBHOOK_SECRET, vec![]);
    let hook = rx.serve(0).await;

    // Async start on A: the webhooks come from whichever worker runs each delivery.
    let r = a
        .start(json!({"workflow": "refund", "params": {"orderId": "o-1"}, "callbackUrl": hook}))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    let (id, token) = (id_of(&r), r.body["streamToken"].as_str().unwrap().to_string());
    let mut sse = Follower::sse(vec![c.clone()], &id, &token);
    let mut ws = Follower::ws(&a, &id, &token);
    sse.ready().await;
    ws.ready().await;

    // Each screen is answered on B (sync), and read back on C.
    let r = step(&b, &id, 1, json!({"reason": "damaged"})).await;
    assert_eq!(r.body["view"]["layoutId"], "refund_confirm");
    assert_eq!(
        c.call(Method::GET, &format!("/v3/workflow/{id}"), None).await.body["seq"],
        2
    );
    let r = step(&b, &id, 2, json!({"action": "confirm"})).await;
    assert_eq!(status_of(&r), "COMPLETED", "{r:?}");

    assert_eq!(sse.seqs().await, vec![1, 2, 3], "SSE on C");
    assert_eq!(ws.seqs().await, vec![1, 2, 3], "WebSocket on A");
    let delivered = rx.wait_delivered(3, T).await;
    assert_eq!(
        delivered,
        vec![
            (1, "WAITING".to_string()),
            (2, "WAITING".to_string()),
            (3, "COMPLETED".to_string())
        ],
        "webhooks"
    );
    assert!(rx.hits().iter().all(|h| h.verified), "{:?}", rx.hits());
    // The same screen's answer, sent again to a third gateway, is the first answer.
    let again = c.resume(&id, json!({"reason": "damaged"}), "step-1").await;
    assert_eq!(
        (again.status, again.body["seq"].as_u64()),
        (StatusCode::OK, Some(2)),
        "{again:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_killed_under_a_followed_workflow_is_replaced_by_its_replica_and_nothing_is_lost_or_repeated() {
    let Flow(_turn, topo, [a, b, c], id, token) = Flow::start().await;
    let followers = ready(vec![
        Follower::sse(vec![b.clone()], &id, &token),
        Follower::sse(vec![c.clone()], &id, &token),
        Follower::ws(&a, &id, &token),
    ])
    .await;
    step(&b, &id, 1, invalid_account()).await;
    let (_, master) = topo.slot_of(&channel_of(&id)).await;
    let replica = topo.linked_replica(master).await;

    kill9(topo.redis_pids[&master]);
    let killed = Instant::now();
    // Mid-flow: the next answer is sent at once; until the replica takes over it gets a 503
    // that changed nothing (or a late answer), and is sent again with the same request id.
    let (r, retried) = step_retried(&b, &id, 2, invalid_account()).await;
    let answered = killed.elapsed();
    topo.role_is(replica, "master").await;
    let promoted = killed.elapsed();
    // Sent again to another gateway: the first answer, not a second application.
    let again = c.resume(&id, invalid_account(), "step-2").await;
    assert_eq!(
        (again.status, &again.body["seq"]),
        (StatusCode::OK, &r.body["seq"]),
        "{again:?}"
    );
    step(&c, &id, 3, valid_account()).await;
    for f in followers {
        assert_eq!(f.seqs().await, vec![1, 2, 3, 4]);
    }
    eprintln!(
        "failover: kill -9 of the master: the replica was master after {promoted:?}; the sync \
         answer sent at once was answered after {answered:?} (statuses before it: {retried:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_failover_of_a_followed_workflows_master_loses_and_repeats_nothing() {
    let Flow(_turn, topo, [a, b, c], id, token) = Flow::start().await;
    let followers = ready(vec![
        Follower::sse(vec![c.clone()], &id, &token),
        Follower::ws(&b, &id, &token),
    ])
    .await;
    let (_, master) = topo.slot_of(&channel_of(&id)).await;
    let replica = topo.linked_replica(master).await;
    let before = c.moved_off_its_master().await;

    let t0 = Instant::now();
    let _: String = redis::cmd("CLUSTER")
        .arg("FAILOVER")
        .query_async(&mut topo.node(replica).await)
        .await
        .unwrap();
    // An answer sent while the roles swap.
    step(&b, &id, 1, invalid_account()).await;
    let answered = t0.elapsed();
    topo.role_is(replica, "master").await;
    step(&a, &id, 2, valid_account()).await;
    for f in followers {
        assert_eq!(f.seqs().await, vec![1, 2, 3]);
    }
    // The old master dropped the follower's sharded subscription by itself; the hub moved it.
    assert!(c.moved_off_its_master().await > before, "the move was not seen");
    eprintln!("failover: CLUSTER FAILOVER: the answer sent at once was answered after {answered:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_migration_of_a_followed_workflow_loses_and_repeats_nothing() {
    let Flow(_turn, topo, [a, b, c], id, token) = Flow::start().await;
    let followers = ready(vec![
        Follower::sse(vec![c.clone()], &id, &token),
        Follower::ws(&b, &id, &token),
    ])
    .await;
    step(&b, &id, 1, invalid_account()).await;
    let (slot, master) = topo.slot_of(&channel_of(&id)).await;
    let dst = topo.masters().await.into_iter().find(|p| *p != master).unwrap();

    let before = c.moved_off_its_master().await;
    let t0 = Instant::now();
    topo.migrate_slot(slot, master, dst).await;
    let migrated = t0.elapsed();
    assert_eq!(topo.slot_of(&channel_of(&id)).await.1, dst);
    // The state and its history moved with the slot: a reader anywhere still has them.
    let r = c.call(Method::GET, &format!("/v3/workflow/{id}"), None).await;
    assert_eq!((r.status, &r.body["seq"]), (StatusCode::OK, &json!(2)), "{r:?}");
    step(&a, &id, 2, invalid_account()).await;
    let answered = t0.elapsed();
    step(&b, &id, 3, valid_account()).await;
    for f in followers {
        assert_eq!(f.seqs().await, vec![1, 2, 3, 4]);
    }
    // The old owner dropped the follower's sharded subscription by itself; the hub moved it.
    assert!(c.moved_off_its_master().await > before, "the move was not seen");
    eprintln!("failover: slot migration took {migrated:?}; the next answer came {answered:?} after it began");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_kill_of_every_pubsub_connection_on_every_node_loses_and_repeats_nothing() {
    let Flow(_turn, topo, [a, b, c], id, token) = Flow::start().await;
    let followers = ready(vec![
        Follower::sse(vec![c.clone()], &id, &token),
        Follower::ws(&b, &id, &token),
        Follower::sse(vec![a.clone()], &id, &token),
    ])
    .await;
    let before = c.moved("connection lost").await;
    let t0 = Instant::now();
    let mut killed = 0;
    for port in topo.redis_pids.keys() {
        let n: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .query_async(&mut topo.node(*port).await)
            .await
            .unwrap();
        killed += n;
    }
    assert!(killed >= 3, "every gateway holds pub/sub connections: {killed}");
    step(&b, &id, 1, invalid_account()).await;
    let answered = t0.elapsed();
    step(&c, &id, 2, valid_account()).await;
    for f in followers {
        assert_eq!(f.seqs().await, vec![1, 2, 3]);
    }
    assert!(
        c.moved("connection lost").await > before,
        "the lost connection was not seen"
    );
    eprintln!("failover: CLIENT KILL TYPE pubsub ({killed} connections): the next answer came after {answered:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_under_a_hundred_sse_clients_loses_nothing_when_they_reconnect_elsewhere() {
    let Flow(_turn, topo, [a, b, c], id, token) = Flow::start().await;
    // Each client starts on C; when its stream breaks it goes on at A, then B, and so on,
    // with the last id it saw.
    let clients: Vec<Follower> = ready(
        (0..100)
            .map(|i| {
                let others = if i % 2 == 0 { [&a, &b] } else { [&b, &a] };
                Follower::sse(vec![c.clone(), others[0].clone(), others[1].clone()], &id, &token)
            })
            .collect(),
    )
    .await;
    step(&a, &id, 1, invalid_account()).await;
    step(&a, &id, 2, invalid_account()).await;

    kill9(c.pid);
    let killed = Instant::now();
    step(&a, &id, 3, invalid_account()).await;
    step(&b, &id, 4, invalid_account()).await;
    step(&a, &id, 5, valid_account()).await;
    let want: Vec<u64> = (1..=6).collect();
    for f in clients {
        assert_eq!(f.seqs().await, want, "nothing lost, nothing twice");
    }
    eprintln!(
        "failover: gateway kill -9 under 100 SSE clients: all had every state {:?} after the kill",
        killed.elapsed()
    );
    assert!(topo.dir.exists());
}

/// A redis-server of the test's own with cluster support on and no slots assigned: a node of a
/// cluster that was never created, as far as a client can tell.
fn cluster_node(port: u16) -> Supervised {
    let dir = infra().dir.join(format!("cluster-node-{port}"));
    on_infra(async move { drift::dev::start_redis_with(&dir, port, &["--cluster-enabled", "yes"]) }).unwrap()
}

/// Runs `drift` with `args` until it exits (bounded); its exit status and standard error.
async fn drift_exits(args: &[&str]) -> (std::process::ExitStatus, String) {
    let out = tokio::time::timeout(
        T,
        tokio::process::Command::new(drift_bin())
            .args(args)
            .env("RUST_BACKTRACE", "0")
            .output(),
    )
    .await
    .expect("drift did not exit in time")
    .unwrap();
    (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_of_the_other_kind_than_configured_is_refused_at_start_naming_the_flag_to_use() {
    let port = drift::dev::free_port().unwrap();
    let _node = cluster_node(port);
    let node_url = format!("redis://127.0.0.1:{port}");
    drift::dev::wait_redis(&node_url, T).await.unwrap();
    let one_server = infra().redis_url.trim_start_matches("redis://").to_string();
    let db = format!(
        "sqlite://{}",
        infra().dir.join(format!("misconf-{}.db", uid())).display()
    );
    let temporal = infra().temporal_address.clone();
    let serve = |redis: Vec<String>| {
        let mut a = vec!["serve", "--listen=127.0.0.1:0", "--auth=none"]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>();
        a.extend([format!("--temporal-address={temporal}"), format!("--database-url={db}")]);
        a.extend(redis);
        a
    };
    let worker = |redis: Vec<String>| {
        let mut a = vec!["worker".to_string(), format!("--temporal-address={temporal}")];
        a.extend(redis);
        a
    };
    let cases = [
        (
            vec![format!("--redis-url={node_url}")],
            "cluster_enabled:1",
            "--redis-cluster host:port",
        ),
        (
            vec![format!("--redis-cluster={one_server}")],
            "cluster support disabled",
            "--redis-url",
        ),
    ];
    for (redis, why, flag) in cases {
        for args in [serve(redis.clone()), worker(redis.clone())] {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let (status, said) = drift_exits(&args).await;
            assert!(!status.success(), "{args:?} started");
            assert!(said.contains(why) && said.contains(flag), "{args:?} said: {said}");
        }
    }
    let both = serve(vec![
        format!("--redis-url={node_url}"),
        format!("--redis-cluster={one_server}"),
    ]);
    let (status, said) = drift_exits(&both.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert!(!status.success() && said.contains("not both"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_and_names_the_flag_to_use_when_its_redis_turns_out_to_be_a_cluster_node() {
    let (redis, url, app) = spawn_app_on_own_redis().await;
    let readyz = || async { reqwest::get(format!("{}/readyz", app.base)).await.unwrap() };
    assert_eq!(readyz().await.status(), StatusCode::OK);
    // The same address now answered by a cluster node (someone pointed DNS at a cluster).
    on_infra(async move { redis.stop().await });
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    // The stopped server's port can take a moment to be free again: a node that could not
    // bind it is started again, until one answers there.
    let mut _node = None;
    for _ in 0..5 {
        let node = cluster_node(port);
        let listening = async {
            while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(5), listening).await.is_ok() {
            _node = Some(node);
            break;
        }
    }
    assert!(_node.is_some(), "no cluster node came up on port {port}");
    let deadline = Instant::now() + T;
    loop {
        let r = readyz().await;
        let (status, body) = (r.status(), r.json::<Value>().await.unwrap());
        let said = body["redis"].as_str().unwrap_or_default().to_string();
        if status == StatusCode::SERVICE_UNAVAILABLE && said.contains("cluster_enabled:1") {
            assert!(said.contains("--redis-cluster"), "{body}");
            assert_eq!(body["temporal"], "ok");
            break;
        }
        assert!(Instant::now() < deadline, "readyz still says {status} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_its_master_took_but_never_replicated_is_published_again_after_the_failover() {
    let Flow(_turn, topo, [a, b, c], id, token) = Flow::start().await;
    let mut follower = Follower::sse(vec![c.clone(), b.clone()], &id, &token);
    follower.ready().await;
    let (_, master) = topo.slot_of(&channel_of(&id)).await;
    let replica = topo.linked_replica(master).await;

    // The replica is frozen and the master drops its link: what the master takes now reaches
    // no replica. (Briefly: a replica frozen longer than the node timeout is itself failed.)
    signal(topo.redis_pids[&replica], libc::SIGSTOP);
    let _: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("replica")
        .query_async(&mut topo.node(master).await)
        .await
        .unwrap();
    let r = step(&b, &id, 1, invalid_account()).await;
    kill9(topo.redis_pids[&master]);
    signal(topo.redis_pids[&replica], libc::SIGCONT);
    assert_eq!(r.body["seq"], 2, "{r:?}");
    let killed = Instant::now();
    topo.role_is(replica, "master").await;

    // The screen the caller was shown (seq 2) comes back on the replica, so answering it works.
    let deadline = Instant::now() + T;
    loop {
        let r = c.call(Method::GET, &format!("/v3/workflow/{id}"), None).await;
        if r.status == StatusCode::OK && r.body["seq"] == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the state the caller was shown is lost: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let restored = killed.elapsed();
    step(&c, &id, 2, invalid_account()).await;
    step(&a, &id, 3, valid_account()).await;
    assert_eq!(follower.seqs().await, vec![1, 2, 3, 4]);
    eprintln!("failover: an unreplicated state was on the promoted replica {restored:?} after the kill");
}
