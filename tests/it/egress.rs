//! Outbound requests (callbacks and HTTP nodes) cannot be pointed at internal addresses, walked
//! to other paths, or used to read internals back.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

/// A name this machine's hosts file maps to a loopback address (other than `localhost`).
fn name_resolving_to_loopback() -> String {
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    hosts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let ip = f.next()?;
            (ip.starts_with("127.") && !l.trim_start().starts_with('#')).then(|| f.collect::<Vec<_>>())
        })
        .flatten()
        .find(|n| !n.eq_ignore_ascii_case("localhost") && !n.contains("localhost"))
        .map(str::to_string)
        .expect("/etc/hosts names a loopback address")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_to_internal_addresses_in_any_disguise_are_refused_and_start_nothing() {
    let app = spawn_app().await;
    let loopback_name = name_resolving_to_loopback();
    let urls = [
        "https://[::ffff:127.0.0.1]:8443/h".to_string(),
        "https://localhost./h".into(),
        "https://metadata.google.internal./h".into(),
        "https://127.0.0.1.nip.io/h".into(),
        "https://169.254.169.254/latest/meta-data".into(),
        "https://[fd00::1]/h".into(),
        "https://10.0.0.8/h".into(),
        format!("https://{loopback_name}/h"),
        format!("https://{loopback_name}./h"),
    ];
    for (i, url) in urls.iter().enumerate() {
        let id = format!("cb-{i}");
        let r = app
            .call(
                Method::POST,
                "/v3/workflow/start",
                Some(json!({"workflow": "quick_screen", "workflowId": id, "callbackUrl": url})),
                &[],
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {r:?}");
        assert_eq!(r.body["code"], "callback_not_allowed", "{url}");
        assert_eq!(
            app.get(&id).await.status,
            StatusCode::NOT_FOUND,
            "{url}: nothing started"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_nodes_stay_on_their_path_refuse_internal_addresses_and_show_no_internals() {
    let app = spawn_app().await;
    // A path-walking value stays one segment: the orders stand-in gets it as the order id.
    let r = app.start("refund", json!({"orderId": "../../v3/workflow/x"})).await;
    assert_eq!(status_of(&r), "WAITING", "{r:?}");
    assert_eq!(r.answer().var("orderId"), "../../v3/workflow/x", "{r:?}");

    // Upstream errors say what happened, not where or what the upstream answered.
    let r = app.start("refund", json!({"orderId": "missing-1"})).await;
    let msg = r.body["errorMessage"].as_str().unwrap();
    assert!(msg.contains("404"), "{msg}");
    for internal in ["stand-ins", "127.0.0.1", "no such order", "http"] {
        assert!(!msg.contains(internal), "{msg:?} leaks {internal:?}");
    }

    let fetch = |url: String| app.start("fetch", json!({"url": url}));
    let cases = [
        (
            "cloud metadata",
            "http://169.254.169.254/latest/meta-data".to_string(),
            "not allowed",
        ),
        ("private network", "http://10.0.0.8/".to_string(), "not allowed"),
        (
            "too large",
            format!("{}/stand-ins/bytes/2000000", app.base),
            "larger than",
        ),
        ("redirect", format!("{}/stand-ins/redirect", app.base), "303"),
    ];
    for (what, url, expect) in cases {
        let r = fetch(url).await;
        assert_eq!(status_of(&r), "FAILED", "{what}: {r:?}");
        let msg = r.body["errorMessage"].as_str().unwrap();
        assert!(msg.contains(expect), "{what}: {msg}");
        assert!(
            !msg.contains("169.254") && !msg.contains("10.0.0.8") && !msg.contains("127.0.0.1"),
            "{what}: {msg}"
        );
    }
    let ok = fetch(format!("{}/stand-ins/bytes/1000", app.base)).await;
    assert_eq!(status_of(&ok), "COMPLETED", "{ok:?}");
}
