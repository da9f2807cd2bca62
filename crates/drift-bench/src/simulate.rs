//! `drift bench simulate`: what an author waits for. A simulation of refund to its end beside the
//! same flow run for real on the same gateway (Temporal, Redis, the stand-in API), both beside a
//! bare HTTP round trip, and how soon a flow that loops is ended.

use crate::{Series, ms};
use anyhow::{Context, bail};
use drift_core::domain::routes;
use drift_server::client::Client;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The examples' refund test's first case (reason, confirm, refunded): its scenario.
fn refund_scenario() -> anyhow::Result<Value> {
    let file: Value = serde_json::from_str(include_str!("../../../examples/refund.test.json"))?;
    let mut case = file["cases"][0].clone();
    let o = case
        .as_object_mut()
        .context("examples/refund.test.json has a first case")?;
    o.remove("name");
    o.remove("expect");
    Ok(case)
}

/// A flow that never settles (a SCRIPT node looping on itself), sent unsaved: the interpreter
/// fails it after 1,000 script and branch steps, as it fails a real run.
fn spinning() -> Value {
    json!({
        "definition": {
            "id": "refund",
            "startNode": "spin",
            "states": {
                "spin": {"node": {"type": "SCRIPT", "script": "1"}, "nextNode": "spin"}
            }
        }
    })
}

async fn simulated(client: &Client, body: &Value, want: &str) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let (status, r) = client
        .call(Method::POST, "/v3/definitions/refund/simulate", Some(body))
        .await?;
    let took = t.elapsed();
    let got = r["stopped"]["reason"]
        .as_str()
        .or(r["finalState"]["workflowStatus"].as_str())
        .unwrap_or_default();
    if !status.is_success() || got != want {
        let r = r.to_string();
        bail!("simulate: expected {want}, got {status} {}", &r[..r.len().min(400)]);
    }
    Ok(took)
}

/// Refund run for real to its end: the three calls' time (a person's pause between them is not
/// counted).
async fn real(client: &Client) -> anyhow::Result<Duration> {
    let mut took = Duration::ZERO;
    let t = Instant::now();
    let (_, r) = client
        .call(
            Method::POST,
            routes::START.template(),
            Some(&json!({"workflow": "refund", "params": {"orderId": "o-bench"}})),
        )
        .await?;
    took += t.elapsed();
    let Some(id) = r["workflowId"].as_str().map(String::from) else {
        bail!("start failed: {r}")
    };
    let mut last = r;
    for (seq, answer) in [(1, json!({"reason": "damaged"})), (2, json!({"action": "confirm"}))] {
        tokio::time::sleep(crate::floor::SETTLE).await;
        let body = json!({"viewResponse": {"selectedOptions": answer}, "seq": seq});
        let t = Instant::now();
        last = client.call(Method::PUT, &routes::RESUME.to(&id), Some(&body)).await?.1;
        took += t.elapsed();
    }
    if last["workflowStatus"] != "COMPLETED" {
        bail!("expected refund to complete, got {last}");
    }
    Ok(took)
}

pub async fn run(client: &Client, rounds: usize, warmup: usize) -> anyhow::Result<()> {
    let scenario = refund_scenario()?;
    let spin = spinning();
    let series = |name: &'static str| Series { name, samples: vec![] };
    let (mut health, mut sim, mut stop, mut live) = (
        series("GET /healthz (baseline)"),
        series("refund simulated to its end"),
        series("a looping flow, failed (1,000 steps)"),
        series("refund run for real to its end"),
    );
    eprintln!(
        "drift bench simulate: {rounds} rounds against {} (real runs: {})",
        client.base,
        rounds / 4
    );
    for i in 0..rounds + warmup {
        let keep = i >= warmup;
        let t = Instant::now();
        crate::healthz(client).await?;
        let h = t.elapsed();
        let s = simulated(client, &scenario, "COMPLETED").await?;
        if keep {
            health.samples.push(h);
            sim.samples.push(s);
        }
        // The bounded ones are slower by design: fewer of them.
        if i % 4 == 0 {
            let st = simulated(client, &spin, "FAILED").await?;
            let r = real(client).await?;
            if keep {
                stop.samples.push(st);
                live.samples.push(r);
            }
        }
        if (i + 1) % 100 == 0 {
            eprintln!("  {} / {}", i + 1, rounds + warmup);
        }
    }
    let base = health.pct(0.5).as_secs_f64();
    println!(
        "{:<38} {:>10} {:>10} {:>10} {:>10}",
        "call", "p50", "p90", "p99", "x healthz"
    );
    for s in [&health, &sim, &live, &stop] {
        println!(
            "{:<38} {:>10} {:>10} {:>10} {:>9.1}x",
            s.name,
            ms(s.pct(0.5)),
            ms(s.pct(0.9)),
            ms(s.pct(0.99)),
            s.pct(0.5).as_secs_f64() / base
        );
    }
    println!(
        "a simulation answers in 1/{:.0} of the real run's time (p50)",
        live.pct(0.5).as_secs_f64() / sim.pct(0.5).as_secs_f64()
    );
    Ok(())
}
