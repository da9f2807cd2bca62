//! The peer a Temporal user would build instead of Drift's Redis bridge: the same screens
//! through Temporal's own request/response, Updates. The first screen comes back from an
//! Update-With-Start, each answer is an Update that returns the next screen (or the end) once
//! the workflow has moved on; no Redis. `drift bench` and `drift bench load` run it on the same
//! Temporal as the floor and Drift, so what the bridge buys over Temporal alone has numbers.

use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};
use temporalio_client::{
    Client, WorkflowExecuteUpdateOptions, WorkflowIdConflictPolicy, WorkflowUpdateWithStartOptions,
};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{WorkflowContext, WorkflowResult};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerInput {
    /// Screens before the end.
    pub screens: u32,
}

#[workflow]
#[derive(Default)]
pub struct PeerWorkflow {
    /// The screen shown now (1-based; 0 before the first).
    screen: u32,
    /// Answers taken.
    answered: u32,
    done: bool,
}

#[workflow_methods]
impl PeerWorkflow {
    #[run(name = "drift-peer")]
    pub async fn run(ctx: &mut WorkflowContext<Self>, input: PeerInput) -> WorkflowResult<()> {
        for n in 1..=input.screens {
            ctx.state_mut(|s| s.screen = n);
            ctx.wait_condition(move |s| s.answered >= n).await?;
        }
        ctx.state_mut(|s| s.done = true);
        // The last answer's Update returns the end before the run closes.
        let handlers = ctx.clone();
        ctx.wait_condition(move |_| handlers.all_handlers_finished()).await?;
        Ok(())
    }

    /// The screen shown now, once there is one: what Update-With-Start asks for.
    #[update(name = "screen")]
    pub async fn screen(ctx: &mut WorkflowContext<Self>, _unit: ()) -> u32 {
        let _ = ctx.wait_condition(|s| s.screen >= 1).await;
        ctx.state(|s| s.screen)
    }

    /// Answers screen `n`; returns the next screen once the workflow shows it, 0 at the end.
    #[update(name = "answer")]
    pub async fn answer(ctx: &mut WorkflowContext<Self>, n: u32) -> u32 {
        ctx.state_mut(|s| s.answered = s.answered.max(n));
        let _ = ctx.wait_condition(move |s| s.screen > n || s.done).await;
        ctx.state(|s| if s.done { 0 } else { s.screen })
    }
}

/// One peer round's workflow id and its two latencies.
pub struct PeerRound {
    pub id: String,
    pub started: Duration,
    pub resumed: Duration,
}

/// One peer round: Update-With-Start → the first screen, then, `settle` later (as a person
/// answers, after the task that showed the screen), an Update answering it → the end.
pub async fn peer_round(client: &Client, task_queue: &str, settle: Duration) -> anyhow::Result<PeerRound> {
    let id = format!("peer-{}", uuid::Uuid::now_v7().simple());
    let t = Instant::now();
    let opts =
        WorkflowUpdateWithStartOptions::new(task_queue.to_string(), id.clone(), WorkflowIdConflictPolicy::Fail).build();
    let screen = client
        .execute_update_with_start_workflow(
            PeerWorkflow::run,
            PeerInput { screens: 1 },
            PeerWorkflow::screen,
            (),
            opts,
        )
        .await
        .map_err(|e| anyhow::anyhow!("peer start: {e}"))?;
    anyhow::ensure!(screen == 1, "peer start: expected screen 1, got {screen}");
    let started = t.elapsed();
    if !settle.is_zero() {
        tokio::time::sleep(settle).await;
    }
    let t = Instant::now();
    let next = client
        .get_workflow_handle::<PeerWorkflow>(&id)
        .execute_update(PeerWorkflow::answer, 1, WorkflowExecuteUpdateOptions::default())
        .await
        .map_err(|e| anyhow::anyhow!("peer answer: {e}"))?;
    anyhow::ensure!(next == 0, "peer answer: expected the end, got screen {next}");
    Ok(PeerRound {
        id,
        started,
        resumed: t.elapsed(),
    })
}
