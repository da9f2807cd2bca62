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
