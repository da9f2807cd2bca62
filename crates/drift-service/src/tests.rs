//! The service layer's behaviour on the in-memory adapters (`memory`): each call as a
//! transport makes it, with no Redis and no Temporal, in milliseconds. The integration tests
//! run the same paths on the real servers.

use super::memory::{Behaviour, MemoryBus, MemoryRuntime, MemoryWebhooks};
use super::*;
use drift_core::domain::timeline::{RequestKind, Via};
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
    webhooks: Arc<MemoryWebhooks>,
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
    let webhooks = Arc::new(MemoryWebhooks::default());
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
        webhooks: webhooks.clone(),
        tokens: Tokens::new(Some("a test secret of some length"), Duration::from_secs(60)),
        links: Some(LinkKeys::new("a link secret of some length", "https://drift.test/")),
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
        webhooks,
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
        via: Via::Sync,
    }
}

fn resume(request_id: &RequestId, seq: Option<u64>) -> CommandRequest {
    CommandRequest::Resume {
        request_id: request_id.clone(),
        seq,
        view_response: json!({"selectedOptions": {}}),
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
    let mut first = f
        .service
        .command(&c, &id, resume(&rid, Some(st.seq)), Via::Sync)
        .await
        .unwrap();
    let answered = state_of(f.wait(&mut first, Duration::from_secs(5)).await.unwrap());
    assert_eq!(answered.seq, 2);
    // The same request id again, for the screen it answered (now gone): its first answer.
    let mut retry = f
        .service
        .command(&c, &id, resume(&rid, Some(st.seq)), Via::Sync)
        .await
        .unwrap();
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
        .command(&c, &id, resume(&RequestId::generate(), Some(1)), Via::Sync)
        .await
        .unwrap();
    f.wait(&mut d, Duration::from_secs(5)).await.unwrap();
    let e = f
        .service
        .command(&c, &id, resume(&RequestId::generate(), Some(1)), Via::Sync)
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
    let e = f.service.command(&c, &id, back, Via::Sync).await.err();
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
        .command(&mallory, &id, resume(&RequestId::generate(), Some(st.seq)), Via::Sync)
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
        .command(&reader, &id, resume(&RequestId::generate(), Some(st.seq)), Via::Sync)
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

/// The token of an answer link's URL.
fn token_of(link: &IssuedLink) -> String {
    link.url
        .strip_prefix("https://drift.test/answer/")
        .expect("the public URL, then /answer/")
        .to_string()
}

/// An answer to `ask`, which has no widgets.
fn answer_of() -> Value {
    json!({"selectedOptions": {}})
}

impl Fixture {
    async fn link(&self, c: &Caller, id: &WorkflowId, assignee: Option<&str>) -> String {
        let body = LinkBody {
            assignee: assignee.map(str::to_string),
            ..LinkBody::default()
        };
        token_of(&self.service.issue_link(c, id, body).await.unwrap())
    }

    async fn answer_link(&self, token: &str, form: &str) -> Result<LinkScreen, ServiceError> {
        let stop = CancellationToken::new();
        self.service
            .answer_link(token, form, answer_of(), Duration::from_secs(5), &stop)
            .await
    }
}

#[tokio::test]
async fn an_answer_link_shows_its_screen_answers_it_once_and_then_says_who_answered() {
    let f = fixture(Behaviour::Answers { node: "ask" }).await;
    let (id, _) = f.started(&alice()).await;
    let issued = f
        .service
        .issue_link(
            &alice(),
            &id,
            LinkBody {
                assignee: Some("ann@example.com".into()),
                ..LinkBody::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(issued.seq, 1);
    let token = token_of(&issued);
    // Opened as often as a scanner or a preview likes: nothing is sent to the run.
    for _ in 0..3 {
        let open = f.service.open_link(&token).await.unwrap();
        assert_eq!((open.status, open.seq), (LinkStatus::Open, 1));
        assert_eq!(open.view.as_ref().map(|v| v.node.as_str()), Some("ask"));
        assert_eq!(open.assignee.as_deref(), Some("ann@example.com"));
    }
    let scoped = alice().scoped(&id);
    assert!(f.runtime.commands(&scoped).is_empty(), "opening a link answers nothing");
    let form = f
        .service
        .open_link(&token)
        .await
        .unwrap()
        .form_token
        .expect("a form token");
    let done = f.answer_link(&token, &form).await.unwrap();
    assert_eq!(done.status, LinkStatus::Answered);
    assert_eq!(done.answered_by.as_deref(), Some("ann@example.com"));
    assert!(
        done.view.is_none() && done.form_token.is_none(),
        "an answered link shows no screen"
    );
    let sent = f.runtime.commands(&scoped);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].request_id().as_str(), format!("link-{}", token_of_id(&token)));
    // The same page posted again, or the link opened later: answered, nothing sent again.
    let again = f.answer_link(&token, &form).await.unwrap_err();
    assert!(
        matches!(again, ServiceError::LinkClosed(LinkStatus::Answered)),
        "{again:?}"
    );
    assert_eq!(f.service.open_link(&token).await.unwrap().status, LinkStatus::Answered);
    assert_eq!(f.runtime.commands(&scoped).len(), 1);
}

/// The link id inside a token (its claims are base64 JSON).
fn token_of_id(token: &str) -> String {
    use base64::Engine;
    let payload = token.split('.').next().unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    claims["i"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_forged_altered_or_foreign_token_is_not_a_link_and_says_nothing_of_the_workflow() {
    let f = fixture(Behaviour::Answers { node: "ask" }).await;
    let (id, _) = f.started(&alice()).await;
    let token = f.link(&alice(), &id, None).await;
    let (payload, sig) = token.split_once('.').unwrap();
    let mut altered = payload.to_string();
    altered.insert(5, 'A');
    let other_secret = LinkKeys::new("another deployment's secret", "https://drift.test");
    let stream_token = f.service.0.tokens.issue(&alice().tenant, &id);
    let forged = [
        format!("{altered}.{sig}"),
        format!("{payload}.{}", sig.replace(char::is_alphabetic, "B")),
        format!("{payload}."),
        stream_token,
        String::new(),
        "x".repeat(5_000),
    ];
    for t in forged.iter() {
        let e = f.service.open_link(t).await.unwrap_err();
        assert!(
            matches!(&e, ServiceError::NotFound(m) if m == "this answer link is not valid"),
            "{t}: {e:?}"
        );
    }
    // Signed with another secret: not a link here either.
    let theirs = crate::links::issue_for_test(&other_secret, "alice", id.as_str(), 1, u64::MAX / 2_000);
    assert!(matches!(
        f.service.open_link(&theirs).await,
        Err(ServiceError::NotFound(_))
    ));
    // A form token is not a link, and a link is not its own form token.
    let form = f.service.open_link(&token).await.unwrap().form_token.unwrap();
    assert!(matches!(
        f.service.open_link(&form).await,
        Err(ServiceError::NotFound(_))
    ));
    assert!(matches!(
        f.answer_link(&token, &token).await,
        Err(ServiceError::Unauthorized(_))
    ));
    assert!(f.runtime.commands(&alice().scoped(&id)).is_empty());
}

#[tokio::test]
async fn a_revoked_or_expired_link_is_closed_and_a_link_made_after_revoking_works() {
    let f = fixture(Behaviour::Answers { node: "ask" }).await;
    let (id, _) = f.started(&alice()).await;
    let keys = f.service.0.links.as_ref().unwrap();
    let expired = crate::links::issue_for_test(keys, "alice", id.as_str(), 1, 1);
    assert_eq!(f.service.open_link(&expired).await.unwrap().status, LinkStatus::Expired);
    let before = f.link(&alice(), &id, None).await;
    let form = f.service.open_link(&before).await.unwrap().form_token.unwrap();
    f.service.revoke_links(&alice(), &id).await.unwrap();
    assert_eq!(f.service.open_link(&before).await.unwrap().status, LinkStatus::Revoked);
    let refused = f.answer_link(&before, &form).await.unwrap_err();
    assert!(
        matches!(refused, ServiceError::LinkClosed(LinkStatus::Revoked)),
        "{refused:?}"
    );
    let after = f.link(&alice(), &id, None).await;
    assert_eq!(f.service.open_link(&after).await.unwrap().status, LinkStatus::Open);
    assert!(f.runtime.commands(&alice().scoped(&id)).is_empty());
}

#[tokio::test]
async fn a_link_to_a_screen_the_run_moved_past_says_so_and_answers_nothing() {
    let f = fixture(Behaviour::Answers { node: "ask" }).await;
    let (id, _) = f.started(&alice()).await;
    let token = f.link(&alice(), &id, None).await;
    let form = f.service.open_link(&token).await.unwrap().form_token.unwrap();
    let rid = RequestId::generate();
    let mut d = f
        .service
        .command(&alice(), &id, resume(&rid, Some(1)), Via::Sync)
        .await
        .unwrap();
    f.wait(&mut d, Duration::from_secs(5)).await.unwrap();
    assert_eq!(f.service.open_link(&token).await.unwrap().status, LinkStatus::MovedOn);
    let refused = f.answer_link(&token, &form).await.unwrap_err();
    assert!(
        matches!(refused, ServiceError::LinkClosed(LinkStatus::MovedOn)),
        "{refused:?}"
    );
    assert_eq!(
        f.runtime.commands(&alice().scoped(&id)).len(),
        1,
        "only the app's own answer"
    );
}

#[tokio::test]
async fn a_link_needs_the_drive_scope_the_callers_own_waiting_workflow_and_sane_bounds() {
    let f = fixture(Behaviour::Answers { node: "ask" }).await;
    let (id, _) = f.started(&alice()).await;
    let reader = caller("alice", &[Scope::Read]);
    let e = f
        .service
        .issue_link(&reader, &id, LinkBody::default())
        .await
        .unwrap_err();
    assert!(matches!(e, ServiceError::Forbidden(_)), "{e:?}");
    let bob = caller("bob", &[Scope::Start, Scope::Drive, Scope::Read]);
    let e = f.service.issue_link(&bob, &id, LinkBody::default()).await.unwrap_err();
    assert!(
        matches!(e, ServiceError::NotFound(_)),
        "another tenant's workflow: {e:?}"
    );
    let e = f.service.revoke_links(&bob, &id).await.unwrap_err();
    assert!(matches!(e, ServiceError::NotFound(_)), "{e:?}");
    for bad in [
        LinkBody {
            ttl_secs: Some(0),
            ..LinkBody::default()
        },
        LinkBody {
            ttl_secs: Some(MAX_LINK_TTL.as_secs() + 1),
            ..LinkBody::default()
        },
        LinkBody {
            assignee: Some("ann\n<script>".into()),
            ..LinkBody::default()
        },
        LinkBody {
            assignee: Some("a".repeat(129)),
            ..LinkBody::default()
        },
    ] {
        let e = f.service.issue_link(&alice(), &id, bad).await.unwrap_err();
        assert!(matches!(e, ServiceError::Invalid(_)), "{e:?}");
    }
    let stale = LinkBody {
        seq: Some(7),
        ..LinkBody::default()
    };
    let e = f.service.issue_link(&alice(), &id, stale).await.unwrap_err();
    assert!(
        matches!(e, ServiceError::Rejected(Rejection::StaleScreen { .. })),
        "{e:?}"
    );
}

#[tokio::test]
async fn an_open_links_watch_says_when_the_screen_was_answered_elsewhere_and_then_ends() {
    let f = fixture(Behaviour::Answers { node: "ask" }).await;
    let (id, _) = f.started(&alice()).await;
    let token = f.link(&alice(), &id, None).await;
    let (tenant, changes) = f.service.follow_link(&token, CancellationToken::new()).await.unwrap();
    assert_eq!(tenant.as_str(), "alice");
    futures::pin_mut!(changes);
    assert_eq!(changes.next().await.unwrap().status, LinkStatus::Open);
    let rid = RequestId::generate();
    let mut d = f
        .service
        .command(&alice(), &id, resume(&rid, Some(1)), Via::Sync)
        .await
        .unwrap();
    f.wait(&mut d, Duration::from_secs(5)).await.unwrap();
    let moved = tokio::time::timeout(Duration::from_secs(5), changes.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(moved.status, LinkStatus::MovedOn);
    assert!(moved.view.is_none(), "nothing of the run's next state: {moved:?}");
    assert!(changes.next().await.is_none(), "a closed link's watch ends");
}

#[tokio::test]
async fn a_resend_sends_an_attempted_state_again_with_its_webhook_id_to_its_callback_and_nothing_else() {
    let f = fixture(Behaviour::Answers { node: "ask" }).await;
    let (id, st) = f.started(&alice()).await;
    let scoped = alice().scoped(&id);
    // Nothing attempted yet: nothing to resend.
    let none = f.service.resend(&alice(), &id, 1).await.unwrap_err();
    assert!(matches!(none, ServiceError::NotFound(_)), "{none:?}");
    f.bus.record_attempt(
        &scoped,
        AttemptRecord {
            url: "https://hooks.example/h".into(),
            seq: 1,
            attempt: 8,
            state: drift_core::domain::AttemptState::Failed,
            last_error: Some("receiver answered 503".into()),
            next_retry_at: None,
            updated_at: chrono::Utc::now(),
            webhook_id: Some("alice/run-1/1".into()),
            client: Some("tests".into()),
            status: Some(503),
            resend: false,
        },
        0,
    );

    let r = f.service.resend(&alice(), &id, 1).await.unwrap();
    assert_eq!((r.webhook_id.as_str(), r.seq), ("alice/run-1/1", 1));
    assert_eq!(r.outcome, drift_temporal::webhook::Resent::Delivered);

    // The run's timeline: its first state, how the start came, and both attempts in turn
    // with the receiver's answers (the request's note is written without waiting: wait for it).
    let timeline = loop {
        let t = f.service.timeline(&alice(), &id).await.unwrap();
        if t.states.first().is_some_and(|s| s.mode.is_some()) {
            break t;
        }
        tokio::task::yield_now().await;
    };
    let first = &timeline.states[0];
    assert_eq!(
        (first.seq, first.mode, first.request),
        (st.seq, Some(Via::Sync), Some(RequestKind::Start))
    );
    assert!(first.at.is_some());
    let answers: Vec<_> = first.webhooks.iter().map(|a| (a.attempt, a.status, a.resend)).collect();
    assert_eq!(answers, [(8, Some(503), false), (1, Some(200), true)]);
    let bob = f
        .service
        .timeline(&caller("bob", &[Scope::Read]), &id)
        .await
        .unwrap_err();
    assert!(
        matches!(bob, ServiceError::NotFound(_)),
        "another tenant's run: {bob:?}"
    );
    let sent = f.webhooks.sent.lock().unwrap().clone();
    let (d, cb) = &sent[0];
    assert_eq!(
        (cb.url.as_str(), cb.client.as_str()),
        ("https://hooks.example/h", "tests")
    );
    let body: Value = serde_json::from_str(&d.body).unwrap();
    assert_eq!(
        (body["seq"].as_u64(), body["tenant"].as_str()),
        (Some(st.seq), Some("alice"))
    );

    // Refused, and nothing sent: a state not attempted yet, one never published, another
    // tenant's workflow, a caller who may only read.
    for (who, seq, refused) in [
        (alice(), 2, "not attempted yet"),
        (alice(), 0, "not attempted yet"),
        (caller("bob", &[Scope::Drive]), 1, "another tenant"),
        (caller("alice", &[Scope::Read]), 1, "read only"),
    ] {
        let e = f.service.resend(&who, &id, seq).await.unwrap_err();
        let expected = match refused {
            "not attempted yet" => matches!(e, ServiceError::Conflict(_)),
            "another tenant" => matches!(e, ServiceError::NotFound(_)),
            _ => matches!(e, ServiceError::Forbidden(_)),
        };
        assert!(expected, "{refused}: {e:?}");
    }
    assert_eq!(f.webhooks.sent.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_replay_resends_its_tenants_range_at_most_a_bounded_number_per_call_and_says_where_to_go_on() {
    let f = fixture(Behaviour::Answers { node: "ask" }).await;
    let (id, _) = f.started(&alice()).await;
    let first = |seq: u64| AttemptRecord {
        url: "https://hooks.example/h".into(),
        seq,
        attempt: 1,
        state: drift_core::domain::AttemptState::Failed,
        last_error: None,
        next_retry_at: None,
        updated_at: chrono::Utc::now(),
        webhook_id: Some(format!("alice/run-1/{seq}")),
        client: Some("tests".into()),
        status: None,
        resend: false,
    };
    let t0 = chrono::Utc::now() - chrono::TimeDelta::minutes(10);
    // More first attempts in the range than one call sends (the same state, for brevity).
    let n = replay::MAX_DELIVERIES + 1;
    for i in 0..n {
        f.bus
            .record_attempt(&alice().scoped(&id), first(1), t0.timestamp_millis() + i as i64);
    }
    let until = chrono::Utc::now();
    let r = f.service.replay(&alice(), t0, until).await.unwrap();
    assert_eq!((r.sent, r.delivered), (replay::MAX_DELIVERIES, replay::MAX_DELIVERIES));
    let next = r.resume_from.expect("more to go");
    assert_eq!(
        next.timestamp_millis(),
        t0.timestamp_millis() + replay::MAX_DELIVERIES as i64
    );
    let rest = f.service.replay(&alice(), next, until).await.unwrap();
    assert_eq!((rest.sent, rest.resume_from), (1, None));

    // Another tenant's range holds nothing of alice's; bad ranges and readers are refused.
    let bob = caller("bob", &[Scope::Drive]);
    assert_eq!(f.service.replay(&bob, t0, until).await.unwrap().sent, 0);
    for (s, u) in [(until, t0), (until - chrono::TimeDelta::days(8), until)] {
        let e = f.service.replay(&alice(), s, u).await.unwrap_err();
        assert!(matches!(e, ServiceError::Invalid(_)), "{e:?}");
    }
    let reader = caller("alice", &[Scope::Read]);
    assert!(matches!(
        f.service.replay(&reader, t0, until).await.unwrap_err(),
        ServiceError::Forbidden(_)
    ));
    assert_eq!(f.webhooks.sent.lock().unwrap().len(), n);
}

#[tokio::test]
async fn the_runs_list_shows_only_the_callers_tenant_pages_and_refuses_bad_filters_by_name() {
    let f = fixture(Behaviour::Answers { node: "ask" }).await;
    let mut mine = vec![];
    for _ in 0..3 {
        mine.push(f.started(&alice()).await.0.as_str().to_string());
    }
    f.started(&caller("mallory", &[Scope::Start, Scope::Read])).await;
    let query = |q: RunsQuery| q.parse().unwrap();
    let reader = caller("alice", &[Scope::Read]);

    // Two pages of alice's three, waiting on `ask`; mallory's run is on neither.
    let first = f
        .service
        .runs(
            &reader,
            &query(RunsQuery {
                waiting_on: Some("ask".into()),
                page_size: Some(2),
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    assert_eq!(first.runs.len(), 2);
    let rest = f
        .service
        .runs(
            &reader,
            &query(RunsQuery {
                waiting_on: Some("ask".into()),
                page_token: first.next_page_token.clone(),
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    assert!(rest.next_page_token.is_none());
    let mut listed: Vec<String> = first
        .runs
        .iter()
        .chain(&rest.runs)
        .map(|r| r.workflow_id.clone())
        .collect();
    listed.sort();
    mine.sort();
    assert_eq!(listed, mine);
    let none = query(RunsQuery {
        definition: Some("other".into()),
        ..Default::default()
    });
    assert!(f.service.runs(&reader, &none).await.unwrap().runs.is_empty());

    // Each bad parameter is refused by name, before anything is asked of the runtime.
    for (q, names) in [
        (
            RunsQuery {
                status: Some("SLEEPING".into()),
                ..Default::default()
            },
            "`status`",
        ),
        (
            RunsQuery {
                waiting_on: Some("a' OR 'x".into()),
                ..Default::default()
            },
            "`waitingOn`",
        ),
        (
            RunsQuery {
                definition: Some("".into()),
                ..Default::default()
            },
            "`definition`",
        ),
        (
            RunsQuery {
                started_after: Some("yesterday".into()),
                ..Default::default()
            },
            "`startedAfter`",
        ),
        (
            RunsQuery {
                page_size: Some(0),
                ..Default::default()
            },
            "`pageSize`",
        ),
        (
            RunsQuery {
                page_size: Some(201),
                ..Default::default()
            },
            "`pageSize`",
        ),
        (
            RunsQuery {
                waiting_longer_than_secs: Some(u64::MAX),
                ..Default::default()
            },
            "`waitingLongerThanSecs`",
        ),
        (
            RunsQuery {
                page_token: Some("x".repeat(5000)),
                ..Default::default()
            },
            "`pageToken`",
        ),
        (
            RunsQuery {
                started_after: Some("2026-12-02T00:00:00Z".into()),
                started_before: Some("2026-12-01T00:00:00Z".into()),
                ..Default::default()
            },
            "`startedBefore`",
        ),
    ] {
        let e = q.parse().unwrap_err();
        assert!(
            matches!(&e, ServiceError::Invalid(m) if m.contains(names)),
            "{names}: {e}"
        );
    }
    // A token that is not one the list gave, and a caller without the read scope.
    let forged = query(RunsQuery {
        page_token: Some("not-an-offset".into()),
        ..Default::default()
    });
    assert!(matches!(
        f.service.runs(&reader, &forged).await,
        Err(ServiceError::Invalid(_))
    ));
    let writer = caller("alice", &[Scope::Start]);
    assert!(matches!(
        f.service.runs(&writer, &none).await,
        Err(ServiceError::Forbidden(_))
    ));
}
