//! `drift bench load` against a real gateway, Temporal and Redis: every side it compares (the
//! raw-SDK floor, the Update-based peer, Drift's engine without the gateway, and Drift through
//! the gateway) completes rounds, so the figures the docs quote come from rounds that ran. What
//! the rounds measure is the benchmark's business, not this test's.

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_bench_drives_the_floor_the_peer_the_engine_and_drift_to_the_end_of_their_rounds() {
    let app = spawn_app_with(Opts {
        extra_args: vec!["--rate-limit=0".into()],
        ..Opts::default()
    })
    .await;
    let token = app.token("bench");
    let (ok, text) = drift_cli(&[
        "bench",
        "--url",
        &app.base,
        "--api-key",
        &token,
        "--temporal-address",
        &app.temporal_address,
        "--redis-url",
        &app.redis_url,
        "--tenant",
        &app.tenant,
        "--key-prefix",
        &app.key_prefix,
        "load",
        "--concurrency",
        "2",
        "--seconds",
        "2",
        "--warmup-seconds",
        "0",
        "--turns",
        "1",
        "--engine",
    ])
    .await;
    assert!(ok, "drift bench load failed:\n{text}");
    // The final table: `callers side rounds failed rounds/s …`, one row per side.
    let table: Vec<Vec<&str>> = text
        .lines()
        .rev()
        .take_while(|l| !l.trim_start().starts_with("callers side"))
        .map(|l| l.split_whitespace().collect())
        .filter(|cells: &Vec<&str>| cells.len() > 4 && cells[0] == "2")
        .collect();
    for side in ["floor", "peer", "engine", "drift"] {
        let row = table
            .iter()
            .find(|cells| cells[1] == side)
            .unwrap_or_else(|| panic!("no row for {side}:\n{text}"));
        let rounds: usize = row[2].parse().unwrap();
        assert!(rounds > 0, "{side} completed no round:\n{text}");
        assert_eq!(row[3], "0", "{side} had failed rounds:\n{text}");
    }
    for ratio in [
        "Drift against the floor",
        "The engine against the floor",
        "Drift against the engine",
    ] {
        assert!(text.contains(ratio), "no {ratio:?} line:\n{text}");
    }
    // One closed round of each side, read back from Temporal's history.
    assert!(text.contains("One round's history in Temporal"), "{text}");
}
