//! The service layer's behaviour on the in-memory adapters (`memory`): each call as a
//! transport makes it, with no Redis and no Temporal, in milliseconds. The integration tests
//! run the same paths on the real servers.

use super::memory::{Behaviour, MemoryBus, MemoryRuntime};
use super::*;
use drift_core::domain::{Rejection, RequestId, WorkflowState, WorkflowStatus};
use futures::StreamExt;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

struct Fixture {
    service: Service,
    bus: Arc<MemoryBus>,
    runtime: Arc<MemoryRuntime>,
    /// The definitions' SQLite file (each connection to `sqlite::memory:` would be its own
    /// database), removed with the fixture.
    db_file: std::path::PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.db_file.display()));
        }
    }
}

/// A one-screen workflow: `ask` (a screen), then the end.
fn asking() -> Value {
    json!({
        "id": "asking", "version": "1", "startNode": "ask",
        "states": {
            "ask": {"node": {"type": "INSTRUCTION", "layoutId": "ask", "inputOptions": []}, "nextNode": "done"},
            "done": {"node": {"type": "SUCCESS"}}
        }
    })
}

async fn fixture(behaviour: Behaviour) -> Fixture {
    let bus = MemoryBus::new(5);
    let runtime = MemoryRuntime::new(bus.clone(), behaviour);
    let db_file = std::env::temp_dir().join(format!("drift-service-test-{}.db", uuid::Uuid::new_v4()));
    let db = drift_db::Db::connect(&format!("sqlite://{}", db_file.display()))
        .await
        .expect("a SQLite file in the temporary folder");
    let catalog = Catalog::open(db, vec![], "test:definitions".into()).await.unwrap();
    catalog.import(vec![(false, asking())], "test").await.unwrap();
    let service = Service::new(Parts {
        catalog,
        runtime: runtime.clone(),
        states: bus.clone(),
        channels: bus.clone(),
        tokens: Tokens::new(Some("a test secret of some length"), Duration::from_secs(60)),
        auth: Authenticator::new(AuthMode::None),
        cfg: ServiceConfig {
            history_limit: 1_000,
            allowlist: Allowlist::parse(&[]).unwrap(),
            client_callbacks: BTreeMap::new(),
            max_command_bytes: 64 * 1024,
            execution_timeout: Duration::from_secs(3_600),
            budgets: Default::default(),
        },
    });
    Fixture {
        service,
        bus,
        runtime,
        db_file,
    }
}

fn caller(tenant: &str, scopes: &[Scope]) -> Caller {
    Caller::new(tenant, "tests", None, Scopes::of(scopes)).unwrap()
}

fn alice() -> Caller {
    caller("alice", &[Scope::Start, Scope::Drive, Scope::Read])
}

fn start_request(idempotency_key: Option<&str>, params: Value) -> StartRequest {
    StartRequest {
        workflow: "asking".into(),
        version: None,
        workflow_id: None,
        params,
        delivery: Delivery::default(),
        request_id: RequestId::generate(),
        idempotency_key: idempotency_key.map(str::to_string),
    }
}

fn resume(request_id: &RequestId, seq: Option<u64>) -> CommandRequest {
    CommandRequest::Resume {
        request_id: request_id.clone(),
        seq,
        view_response: json!({}),
        delivery: Delivery::default(),
    }
}

fn state_of(o: Outcome) -> WorkflowState {
    match o {
        Outcome::State(body) => serde_json::from_str(body.as_str()).unwrap(),
        other => panic!("expected a state, got {other:?}"),
    }
}

impl Fixture {
    /// Starts `asking` for `c` and waits for its first screen.
    async fn started(&self, c: &Caller) -> (WorkflowId, WorkflowState) {
        let mut d = self.service.start(c, start_request(None, json!({}))).await.unwrap();
        let st = state_of(self.wait(&mut d, Duration::from_secs(5)).await.unwrap());
        (d.id.clone(), st)
    }

    async fn wait(&self, d: &mut Dispatched, within: Duration) -> Result<Outcome, ServiceError> {
        self.service
            .wait(d, Instant::now() + within, &CancellationToken::new())
            .await
    }
}

#[tokio::test]
async fn a_sync_start_answers_with_the_first_screen_its_workflow_publishes() {
    let f = fixture(Behaviour::Answers { node: "ask" }).await;
    let (id, st) = f.started(&alice()).await;
    assert_eq!(
        (st.workflow_status, st.seq, st.node.as_deref()),
        (WorkflowStatus::Waiting, 1, Some("ask"))
    );
    assert_eq!(st.workflow_id, id.as_str());
    assert_eq!(f.runtime.started(), 1);
}

#[tokio::test]
async fn a_sync_wait_that_runs_out_answers_pending_with_the_latest_state_known() {
    let f = fixture(Behaviour::Silent).await;
    let mut d = f.service.start(&alice(), start_request(None, json!({}))).await.unwrap();
    let began = Instant::now();
    let out = f.wait(&mut d, Duration::from_millis(200)).await.unwrap();
    assert!(matches!(out, Outcome::Pending(None)), "{out:?}");
    assert!(
        began.elapsed() >= Duration::from_millis(200),
        "the wait held to its deadline"
    );
    assert_eq!(f.runtime.started(), 1, "the start was made; only its answer is late");
}

#[tokio::test]
async fn a_stopping_gateway_answers_its_waiters_at_once_with_where_things_stand() {
    let f = fixture(Behaviour::Silent).await;
    let mut d = f.service.start(&alice(), start_request(None, json!({}))).await.unwrap();
    let stop = CancellationToken::new();
    stop.cancel();
    let out = f
        .service
        .wait(&mut d, Instant::now() + Duration::from_secs(3_600), &stop)
        .await;
    assert!(matches!(out, Ok(Outcome::Pending(None))), "{out:?}");
}

#[tokio::test]
async fn a_retried_start_with_the_same_idempotency_key_finds_the_first_workflow() {
    let f = fixture(Behaviour::Answers { node: "ask" }).await;
    let first = f
        .service
        .start(&alice(), start_request(Some("k-1"), json!({"a": 1})))
        .await
        .unwrap();
    let mut again = f
        .service
        .start(&alice(), start_request(Some("k-1"), json!({"a": 1})))
        .await
        .unwrap();
    assert_eq!(first.id, again.id);
    assert_eq!(f.runtime.started(), 1, "one workflow for one key");
    let st = state_of(f.wait(&mut again, Duration::from_secs(5)).await.unwrap());
    assert_eq!(st.seq, 1, "the retry is answered with the first start's screen");
}

#[tokio::test]
async fn an_idempotency_key_reused_for_other_params_is_refused_and_starts_nothing_new() {
    let f = fixture(Behaviour::Answers { node: "ask" }).await;
    f.service
        .start(&alice(), start_request(Some("k-2"), json!({"a": 1})))
        .await
        .unwrap();
    let e = f
        .service
        .start(&alice(), start_request(Some("k-2"), json!({"a": 2})))
        .await
        .err();
    assert!(matches!(e, Some(ServiceError::IdempotencyKeyReused)), "{e:?}");
    assert_eq!(f.runtime.started(), 1);
}

#[tokio::test]
async fn a_retried_command_gets_its_first_answer_and_is_not_sent_again() {
    let f = fixture(Behaviour::Answers { node: "ask" }).await;
    let c = alice();
    let (id, st) = f.started(&c).await;
    let rid = RequestId::generate();
    let mut first = f.service.command(&c, &id, resume(&rid, Some(st.seq))).await.unwrap();
    let answered = state_of(f.wait(&mut first, Duration::from_secs(5)).await.unwrap());
    assert_eq!(answered.seq, 2);
    // The same request id again, for the screen it answered (now gone): its first answer.
    let mut retry = f.service.command(&c, &id, resume(&rid, Some(st.seq))).await.unwrap();
    let again = state_of(f.wait(&mut retry, Duration::from_secs(5)).await.unwrap());
    assert_eq!(again.seq, 2);
    assert_eq!(f.runtime.commands(&c.scoped(&id)).len(), 1, "sent once");
}

#[tokio::test]
async fn an_answer_to_a_screen_that_moved_on_is_refused_as_stale_and_not_sent() {
    let f = fixture(Behaviour::Answers { node: "ask" }).await;
    let c = alice();
    let (id, _) = f.started(&c).await;
    let mut d = f
        .service
        .command(&c, &id, resume(&RequestId::generate(), Some(1)))
        .await
        .unwrap();
    f.wait(&mut d, Duration::from_secs(5)).await.unwrap();
    let e = f
        .service
        .command(&c, &id, resume(&RequestId::generate(), Some(1)))
        .await
        .err();
    assert!(
        matches!(
            e,
            Some(ServiceError::Rejected(Rejection::StaleScreen {
                answered: 1,
                current: 2
            }))
        ),
        "{e:?}"
    );
    assert_eq!(f.runtime.commands(&c.scoped(&id)).len(), 1);
}

#[tokio::test]
async fn back_where_the_screen_has_no_back_point_is_refused_and_not_sent() {
    let f = fixture(Behaviour::Answers { node: "ask" }).await;
    let c = alice();
    let (id, st) = f.started(&c).await;
    assert!(!st.can_go_back, "the first screen has nothing behind it");
    let back = CommandRequest::Back {
        request_id: RequestId::generate(),
        seq: Some(st.seq),
    };
    let e = f.service.command(&c, &id, back).await.err();
    assert!(
        matches!(e, Some(ServiceError::Rejected(Rejection::CannotGoBack { .. }))),
        "{e:?}"
    );
    assert!(f.runtime.commands(&c.scoped(&id)).is_empty());
}

#[tokio::test]
async fn another_tenant_can_neither_read_follow_nor_answer_a_workflow() {
    let f = fixture(Behaviour::Answers { node: "ask" }).await;
    let (id, st) = f.started(&alice()).await;
    let mallory = caller("mallory", &[Scope::Start, Scope::Drive, Scope::Read]);
    let read = f.service.current(&mallory, &id).await.err();
    assert!(matches!(read, Some(ServiceError::NotFound(_))), "{read:?}");
    let follow = f.service.follow(&mallory, &id, None).await.err();
    assert!(matches!(follow, Some(ServiceError::NotFound(_))), "{follow:?}");
    let answer = f
        .service
        .command(&mallory, &id, resume(&RequestId::generate(), Some(st.seq)))
        .await
        .err();
    assert!(matches!(answer, Some(ServiceError::NotFound(_))), "{answer:?}");
    assert!(f.runtime.commands(&alice().scoped(&id)).is_empty());
}

#[tokio::test]
async fn a_credential_without_the_drive_scope_cannot_answer() {
    let f = fixture(Behaviour::Answers { node: "ask" }).await;
    let (id, st) = f.started(&alice()).await;
    let reader = caller("alice", &[Scope::Read]);
    let e = f
        .service
        .command(&reader, &id, resume(&RequestId::generate(), Some(st.seq)))
        .await
        .err();
    assert!(matches!(e, Some(ServiceError::Forbidden(_))), "{e:?}");
    assert!(f.runtime.commands(&alice().scoped(&id)).is_empty());
}

/// The seqs (and gaps) a follower is handed, until it has `n` items.
async fn followed(f: &Fixture, c: &Caller, id: &WorkflowId, since: Option<u64>, n: usize) -> Vec<String> {
    let follow = f.service.follow(c, id, since).await.unwrap();
    let stream = f.service.stream(follow, CancellationToken::new());
    let items: Vec<Followed> = tokio::time::timeout(Duration::from_secs(5), stream.take(n).collect())
        .await
        .expect("the follower was handed what it should have");
    items
        .into_iter()
        .map(|i| match i {
            Followed::Out(Out::State { seq, .. }) => seq.to_string(),
            Followed::Out(Out::Gap { after, latest }) => format!("gap {after}..{latest}"),
            Followed::Reply(rid, _) => format!("reply {rid}"),
        })
        .collect()
}

/// Publishes states 2..=last for `id` as its workflow would.
fn publish_up_to(f: &Fixture, c: &Caller, id: &WorkflowId, last: u64) {
    for seq in 2..=last {
        let status = if seq == last {
            WorkflowStatus::Completed
        } else {
            WorkflowStatus::Waiting
        };
        f.bus
            .publish_state(&c.scoped(id), &WorkflowState::bare(id.as_str(), status, seq));
    }
}

#[tokio::test]
async fn a_follower_catches_up_from_the_history_then_hears_live_states_to_the_end() {
    let f = fixture(Behaviour::Answers { node: "ask" }).await;
    let c = alice();
    let (id, _) = f.started(&c).await;
    publish_up_to(&f, &c, &id, 3);
    // From seq 1: 2 and 3 from the history; 3 is the end.
    assert_eq!(followed(&f, &c, &id, Some(1), 2).await, ["2", "3"]);
}

#[tokio::test]
async fn a_follower_behind_a_trimmed_history_hears_of_the_gap_then_the_latest() {
    let f = fixture(Behaviour::Answers { node: "ask" }).await;
    let c = alice();
    let (id, _) = f.started(&c).await;
    // Five states are kept: 1 and 2 are gone.
    publish_up_to(&f, &c, &id, 7);
    assert_eq!(followed(&f, &c, &id, Some(1), 2).await, ["gap 1..7", "7"]);
}

#[tokio::test]
async fn a_live_follower_is_handed_each_state_once_in_order() {
    let f = fixture(Behaviour::Answers { node: "ask" }).await;
    let c = alice();
    let (id, _) = f.started(&c).await;
    let follow = f.service.follow(&c, &id, Some(1)).await.unwrap();
    let stream = f.service.stream(follow, CancellationToken::new());
    publish_up_to(&f, &c, &id, 4);
    // A repeat of an old seq (a replayed publish) changes nothing.
    f.bus.publish_state(
        &c.scoped(&id),
        &WorkflowState::bare(id.as_str(), WorkflowStatus::Waiting, 2),
    );
    let got: Vec<u64> = tokio::time::timeout(Duration::from_secs(5), stream.collect::<Vec<_>>())
        .await
        .unwrap()
        .into_iter()
        .filter_map(|i| match i {
            Followed::Out(Out::State { seq, .. }) => Some(seq),
            _ => None,
        })
        .collect();
    assert_eq!(got, [2, 3, 4]);
}

#[tokio::test]
async fn a_waiter_that_missed_its_answer_finds_it_when_told_to_resync() {
    let f = fixture(Behaviour::Silent).await;
    let c = alice();
    let mut d = f.service.start(&c, start_request(None, json!({}))).await.unwrap();
    // The answer is stored, but its message never reached this gateway's subscription.
    let scoped = c.scoped(&d.id);
    let mut st = WorkflowState::bare(d.id.as_str(), WorkflowStatus::Waiting, 1);
    st.request_id = Some(d.request_id.to_string());
    let keys = States::layout(&*f.bus).keys(&scoped);
    f.bus.store_only(&scoped, &st);
    f.bus.resync(&keys.channel);
    let got = state_of(f.wait(&mut d, Duration::from_secs(5)).await.unwrap());
    assert_eq!(got.seq, 1);
}
