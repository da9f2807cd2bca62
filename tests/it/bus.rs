//! The bus against the harness's real redis-server: what the publish script leaves for readers.

use crate::helpers::{infra, uid};
use drift::Layout;
use drift::bus::{Publication, RedisTarget, Retention, Store};
use drift::domain::{ScopedWorkflowId, WorkflowState, WorkflowStatus};
use std::time::Duration;

/// The publish script against a real redis-server: what readers see after out-of-order,
/// repeated and answering publishes, and after the history is trimmed.
#[tokio::test]
async fn the_publish_script_keeps_the_newest_state_a_bounded_history_and_each_answer_once() {
    let url = infra().redis_url.clone();
    let retention = Retention {
        history_len: 3,
        ttl: Duration::from_secs(60),
    };
    let store = Store::connect(
        &RedisTarget::Standalone(url),
        retention,
        Layout::new(&format!("t{}", uid())).unwrap(),
        0,
    )
    .await
    .unwrap();
    let wf = ScopedWorkflowId::try_from("t/w".to_string()).unwrap();
    let keys = store.layout().keys(&wf);
    let state = |seq, rid: Option<&str>| WorkflowState {
        request_id: rid.map(str::to_string),
        ..WorkflowState::bare("w", WorkflowStatus::Waiting, seq)
    };
    let publish = |st: WorkflowState| {
        let (store, wf) = (store.clone(), wf.clone());
        async move { store.publish(&Publication::state(&wf, &st)).await.unwrap() }
    };

    publish(state(1, None)).await;
    publish(state(3, Some("r3"))).await;
    // Older and repeated publishes (a retried or replayed activity) change nothing.
    publish(state(2, None)).await;
    publish(state(3, Some("r3"))).await;
    assert_eq!(store.latest(&keys).await.unwrap().unwrap().seq, 3);
    assert_eq!(store.high_seq(&keys).await.unwrap(), 3);
    let (after_1, complete) = store.history_after(&keys, 1).await.unwrap();
    assert_eq!(
        (after_1.iter().map(|s| s.seq).collect::<Vec<_>>(), complete),
        (vec![3], false)
    );
    // The answer to r3 is kept by its request id; a command reads it and the latest state in
    // one round trip.
    let (answer, latest) = store.answer_and_latest(&keys, "r3").await.unwrap();
    assert_eq!((answer.map(|a| a.seq), latest.map(|l| l.seq)), (Some(3), Some(3)));
    let (answer, latest) = store.answer_and_latest(&keys, "r-unknown").await.unwrap();
    assert_eq!((answer.map(|a| a.seq), latest.map(|l| l.seq)), (None, Some(3)));

    // The history keeps the last three; a follower from before them is told it is incomplete.
    for seq in 4..=7 {
        publish(state(seq, None)).await;
    }
    let (items, complete) = store.history_after(&keys, 1).await.unwrap();
    assert_eq!(
        (items.iter().map(|s| s.seq).collect::<Vec<_>>(), complete),
        (vec![5, 6, 7], false)
    );
    let (items, complete) = store.history_after(&keys, 4).await.unwrap();
    assert_eq!((items.len(), complete), (3, true));
    let (items, complete) = store.history_after(&keys, 7).await.unwrap();
    assert_eq!((items.len(), complete), (0, true));
}

/// The timeline's request and attempt lists against a real redis-server: a run with more
/// requests than a timeline shows keeps the newest and says the list was cut; one with exactly
/// as many is whole.
#[tokio::test]
async fn a_timeline_with_more_requests_than_it_keeps_shows_the_newest_and_says_it_was_cut() {
    use drift::domain::timeline::{RequestKind, RequestNote, TIMELINE_KEPT, Timeline, Via};
    let store = Store::connect(
        &RedisTarget::Standalone(infra().redis_url.clone()),
        Retention {
            history_len: 3,
            ttl: Duration::from_secs(60),
        },
        Layout::new(&format!("t{}", uid())).unwrap(),
        0,
    )
    .await
    .unwrap();
    let note = |i: usize| RequestNote {
        request_id: format!("r-{i}"),
        kind: RequestKind::Resume,
        via: Via::Sync,
        at: chrono::Utc::now(),
    };
    let (whole, cut) = (
        ScopedWorkflowId::try_from("t/whole".to_string()).unwrap(),
        ScopedWorkflowId::try_from("t/cut".to_string()).unwrap(),
    );
    for i in 1..=TIMELINE_KEPT + 1 {
        if i <= TIMELINE_KEPT {
            store.note_request(&whole, &note(i)).await;
        }
        store.note_request(&cut, &note(i)).await;
    }
    for wf in [&whole, &cut] {
        let st = WorkflowState {
            request_id: Some("r-1".into()),
            ..WorkflowState::bare(wf.parts().1, WorkflowStatus::Waiting, 1)
        };
        store.publish(&Publication::state(wf, &st)).await.unwrap();
    }
    let timeline = |wf: &ScopedWorkflowId| {
        let (store, wf) = (store.clone(), wf.clone());
        async move {
            let (states, requests, attempts) = store.timeline(&store.layout().keys(&wf)).await.unwrap();
            Timeline::build(wf.parts().1, states, requests, attempts)
        }
    };

    let t = timeline(&whole).await;
    assert!(
        t.requests_complete && t.webhooks_complete,
        "exactly {TIMELINE_KEPT} is all of it"
    );
    assert_eq!(
        t.states[0].request,
        Some(RequestKind::Resume),
        "the first request is still there"
    );

    let t = timeline(&cut).await;
    assert!(!t.requests_complete, "one past the bound says the list was cut");
    assert!(t.webhooks_complete, "the other list is whole");
    assert_eq!(t.states[0].request, None, "the oldest request (r-1) was let go");
}
