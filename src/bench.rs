//! `drift bench`: latency of the sync round trips against a running gateway (e.g. `drift dev`),
//! reported next to a bare HTTP round trip to the same gateway measured in the same process.

use crate::config::BenchArgs;
use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

struct Series {
    name: &'static str,
    samples: Vec<Duration>,
}

impl Series {
    fn pct(&self, p: f64) -> Duration {
        let mut s = self.samples.clone();
        s.sort();
        s[((s.len() as f64 - 1.0) * p).round() as usize]
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

pub async fn run(a: BenchArgs) -> anyhow::Result<()> {
    let client = crate::client::Client::new(&a.gateway)?;
    let auth = client.auth.clone();
    let http = client.http.clone();
    let base = client.base.clone();
    let post = |path: &str, body: Value| {
        http.post(format!("{base}{path}"))
            .header("authorization", &auth)
            .json(&body)
    };
    let (mut health, mut start, mut resume) = (
        Series {
            name: "GET /healthz (baseline)",
            samples: vec![],
        },
        Series {
            name: "start → first screen",
            samples: vec![],
        },
        Series {
            name: "resume → next screen",
            samples: vec![],
        },
    );
    eprintln!(
        "drift bench: {} rounds against {base} (workflow bank_account)",
        a.rounds
    );
    for i in 0..a.rounds + a.warmup {
        let t = Instant::now();
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .context("gateway unreachable; start `drift dev` first")?;
        let h = t.elapsed();

        let t = Instant::now();
        let r: Value = post("/v3/workflow/start", json!({"workflow": "bank_account"}))
            .send()
            .await?
            .json()
            .await?;
        let s = t.elapsed();
        if r["workflowStatus"] != "WAITING" {
            bail!("expected a first screen, got {r}");
        }

        // A resume whose next screen needs no activity: refund's reason → confirm.
        let r: Value = post(
            "/v3/workflow/start",
            json!({"workflow": "refund", "params": {"orderId": "o-bench"}}),
        )
        .send()
        .await?
        .json()
        .await?;
        let Some(id) = r["workflowId"].as_str() else {
            bail!("start failed: {r}")
        };
        let t = Instant::now();
        let body = json!({"viewResponse": {"selectedOptions": {"reason": "damaged"}}});
        let r: Value = http
            .put(format!("{base}/v3/workflow/resume/{id}"))
            .header("authorization", &auth)
            .json(&body)
            .send()
            .await?
            .json()
            .await?;
        let rs = t.elapsed();
        if r["seq"] != 2 {
            bail!("expected the next screen, got {r}");
        }
        if i >= a.warmup {
            health.samples.push(h);
            start.samples.push(s);
            resume.samples.push(rs);
        }
        if (i + 1) % 50 == 0 {
            eprintln!("  {} / {}", i + 1, a.rounds + a.warmup);
        }
    }
    let base_p50 = health.pct(0.5).as_secs_f64();
    println!(
        "{:<28} {:>10} {:>10} {:>10} {:>12}",
        "round trip", "p50", "p90", "p99", "p50 / base"
    );
    for s in [&health, &start, &resume] {
        println!(
            "{:<28} {:>10} {:>10} {:>10} {:>11.1}x",
            s.name,
            ms(s.pct(0.5)),
            ms(s.pct(0.9)),
            ms(s.pct(0.99)),
            s.pct(0.5).as_secs_f64() / base_p50
        );
    }
    Ok(())
}
