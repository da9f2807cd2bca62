//! Replays recorded Temporal histories against this build's workflow code, so a change that
//! would make a run in flight nondeterministic fails a test instead of a customer's run; and
//! records the histories (every run of a continue-as-new chain) that the tests keep.

use super::delivery::DeliveryWorkflow;
use super::workflow::DriftWorkflow;
use temporalio_client::{
    Client, NamespacedClient, WorkflowExecutionInfo, WorkflowFetchHistoryOptions, WorkflowHistory,
};
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;
use temporalio_sdk::workflow_replayer::{WorkflowReplayer, WorkflowReplayerOptions};

/// The outcome of replaying one recorded history.
#[derive(Debug)]
pub struct Replayed {
    pub name: String,
    /// Events in the history.
    pub events: usize,
    /// Why the workflow code does not fit the history (nondeterminism, a failed task), if it
    /// does not.
    pub failure: Option<String>,
}

/// Replays `histories` (a name and the history's JSON, as `record` writes it) with the SDK's
/// workflow replayer, on both workflow types the worker runs. A history that cannot be read
/// is an error; one the code does not fit is a `Replayed` with its failure.
pub async fn replay(histories: Vec<(String, Vec<u8>)>) -> anyhow::Result<Vec<Replayed>> {
    let replayer = WorkflowReplayer::new(
        WorkflowReplayerOptions::new()
            .register_workflow::<DriftWorkflow>()?
            .register_workflow::<DeliveryWorkflow>()?
            .build(),
    )?;
    let mut names = Vec::with_capacity(histories.len());
    let mut parsed = Vec::with_capacity(histories.len());
    for (name, json) in histories {
        let history = WorkflowHistory::from_json(&json).map_err(|e| anyhow::anyhow!("history {name}: {e}"))?;
        names.push(name);
        parsed.push(history);
    }
    let results = replayer.replay_workflows(parsed).await?;
    Ok(names
        .into_iter()
        .zip(results)
        .map(|(name, r)| Replayed {
            name,
            events: r.history.events().len(),
            failure: r.replay_failure.map(|f| f.to_string()),
        })
        .collect())
}

/// The histories of every run of `workflow_id` (its continue-as-new chain, first run first),
/// each as the JSON `replay` reads.
pub async fn record(client: &Client, workflow_id: &str) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut runs = Vec::new();
    let mut run_id: Option<String> = None;
    // A chain longer than this is not one a test makes: stop rather than walk forever.
    for _ in 0..64 {
        let info = WorkflowExecutionInfo::builder()
            .namespace(client.namespace())
            .workflow_id(workflow_id)
            .maybe_run_id(run_id.clone())
            .build();
        let history = info
            .bind_untyped(client.clone())
            .fetch_history(WorkflowFetchHistoryOptions::default());
        let events = history.into_events().await?;
        let previous = events.first().and_then(|e| match &e.attributes {
            Some(Attributes::WorkflowExecutionStartedEventAttributes(a))
                if !a.continued_execution_run_id.is_empty() =>
            {
                Some(a.continued_execution_run_id.clone())
            }
            _ => None,
        });
        let json = serde_json::to_vec(&temporalio_common::protos::temporal::api::history::v1::History { events })?;
        runs.push(json);
        match previous {
            Some(p) => run_id = Some(p),
            None => {
                runs.reverse();
                return Ok(runs);
            }
        }
    }
    anyhow::bail!("{workflow_id}: more than 64 runs in its continue-as-new chain")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The histories kept in the repository (`tests/histories`, written by the integration
    /// test `histories_of_every_feature_made_now_replay_on_this_workflow_code` with
    /// `DRIFT_RECORD_HISTORIES=1`): runs made by earlier releases, as if in flight now.
    fn kept() -> Vec<(String, Vec<u8>)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/histories");
        let mut kept: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .map(|p| {
                let name = p.file_stem().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(&p).unwrap())
            })
            .collect();
        kept.sort();
        kept
    }

    #[tokio::test]
    async fn every_kept_history_replays_on_this_workflow_code() {
        let kept = kept();
        assert!(kept.len() >= 20, "only {} histories kept", kept.len());
        let replayed = replay(kept).await.unwrap();
        let failed: Vec<_> = replayed.iter().filter(|r| r.failure.is_some()).collect();
        assert!(failed.is_empty(), "{failed:#?}");
        let events: usize = replayed.iter().map(|r| r.events).sum();
        eprintln!("replayed {} kept histories, {events} events", replayed.len());
    }
}
