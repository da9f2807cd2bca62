//! `drift bench cached`: what a run waiting on a screen costs the worker that keeps it cached
//! (`--worker-cached-workflows`), for a small definition and a large one. Each run's start
//! carries its definition; this shows how much of that a cached run still holds on its own.

use crate::Endpoints;
use anyhow::{Context, bail};
use drift_core::domain::routes;
use drift_server::client::Client;
use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

/// Starts in flight at once.
const CALLERS: usize = 8;
/// The generated definition's id.
const LARGE: &str = "bench_large";

/// One definition's figures.
pub struct Row {
    pub definition: String,
    /// Its ACTIVE version's JSON, as the gateway serves it.
    pub json_bytes: usize,
    pub runs: usize,
    /// The gateway process's resident memory before and after its runs started, in KB.
    pub rss_kb: (u64, u64),
}

impl Row {
    pub fn kb_per_run(&self) -> f64 {
        (self.rss_kb.1 as f64 - self.rss_kb.0 as f64) / self.runs.max(1) as f64
    }
}

/// A definition of `screens` screens one after the other, each with three questions of four
/// choices: as large as a real multi-screen flow's (30 screens: 37 KB).
pub fn large_definition(screens: usize) -> Value {
    let screens = screens.max(1);
    let mut states = serde_json::Map::new();
    for i in 0..screens {
        let options: Vec<Value> = (0..3)
            .map(|j| {
                let values: Vec<Value> = (0..4)
                    .map(|k| json!({"displayValue": format!("Choice number {k} of question {j} on screen {i}"), "value": format!("v{k}")}))
                    .collect();
                json!({"id": format!("q{j}"), "tags": {"values": ["ui.button"]}, "possibleValues": values})
            })
            .collect();
        let next = if i + 1 < screens {
            format!("s{}", i + 1)
        } else {
            "done".into()
        };
        states.insert(
            format!("s{i}"),
            json!({"node": {"type": "INSTRUCTION", "layoutId": format!("screen_{i}"), "inputOptions": options}, "nextNode": next}),
        );
    }
    states.insert(
        "done".into(),
        json!({"node": {"type": "SUCCESS", "disposition": {"message": "done"}}}),
    );
    json!({"id": LARGE, "startNode": "s0", "states": states})
}

/// Starts one run of `workflow`; it must answer with its first screen.
async fn start_waiting(client: &Client, workflow: &str) -> anyhow::Result<()> {
    let (status, r) = client
        .call(
            Method::POST,
            routes::START.template(),
            Some(&json!({"workflow": workflow})),
        )
        .await?;
    if r["workflowStatus"] != "WAITING" {
        bail!("starting {workflow}: expected its first screen, got {status} {r}");
    }
    Ok(())
}

/// `runs` runs of each definition, left waiting on their first screen; the gateway's memory
/// before and after each set. Both sets stay cached only if the worker keeps twice `runs`.
pub async fn run(client: &Client, ends: &Endpoints, runs: usize, screens: usize) -> anyhow::Result<Vec<Row>> {
    if ends.gateways_rss_kb().is_none() {
        bail!("no gateway process to measure: run against `drift dev` on this machine, or pass --pid");
    }
    let large = format!("/v3/definitions/{LARGE}");
    client.publish(&large, LARGE, &large_definition(screens), true).await?;
    let mut rows = Vec::new();
    for workflow in ["bank_account", LARGE] {
        let (status, def) = client
            .call(Method::GET, &format!("/v3/definitions/{workflow}"), None)
            .await?;
        if !status.is_success() {
            bail!("reading {workflow}: {status} {def}");
        }
        // A few first: what every run shares (the runtime's pools, the definition's scripts).
        for _ in 0..3 {
            start_waiting(client, workflow).await?;
        }
        let settled = || async {
            // The first workflow task completes just after its screen is answered.
            tokio::time::sleep(Duration::from_millis(500)).await;
            ends.gateways_rss_kb().context("the gateway's memory could not be read")
        };
        let before = settled().await?;
        eprintln!("cached: {runs} runs of {workflow}");
        let failed = futures::stream::iter(0..runs)
            .map(|_| start_waiting(client, workflow))
            .buffer_unordered(CALLERS)
            .filter_map(|r| async move { r.err() })
            .collect::<Vec<_>>()
            .await;
        if let Some(e) = failed.first() {
            bail!("{} of {runs} starts failed; the first: {e:#}", failed.len());
        }
        rows.push(Row {
            definition: workflow.into(),
            json_bytes: def.to_string().len(),
            runs,
            rss_kb: (before, settled().await?),
        });
    }
    Ok(rows)
}

pub fn print(rows: &[Row]) {
    println!(
        "{:<14} {:>10} {:>6} {:>16} {:>16}",
        "definition", "JSON", "runs", "gateway RSS KB", "KB per run"
    );
    for r in rows {
        println!(
            "{:<14} {:>8} B {:>6} {:>16} {:>16.1}",
            r.definition,
            r.json_bytes,
            r.runs,
            format!("{} -> {}", r.rss_kb.0, r.rss_kb.1),
            r.kb_per_run()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_large_definition_is_a_valid_chain_of_its_screens_as_large_as_a_real_flow() {
        let def: drift_core::dsl::Definition = serde_json::from_value(large_definition(30)).expect("a definition");
        assert_eq!(drift_core::dsl::validate(&def, &Default::default()), vec![]);
        assert_eq!(def.states.len(), 31);
        let bytes = large_definition(30).to_string().len();
        assert!((30_000..45_000).contains(&bytes), "{bytes} B");
    }
}
