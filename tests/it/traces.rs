//! One trace per interaction, as a real OTLP/HTTP receiver gets it: a `drift serve` process
//! exporting to a receiver here that decodes the protobuf requests (as a Collector would),
//! driven with a caller's own `traceparent`.

use crate::helpers::*;
use axum::http::{HeaderMap, StatusCode};
use drift::dev::Supervised;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value;
use prost::Message;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One span as exported.
#[derive(Debug, Clone)]
struct Span {
    trace: String,
    id: String,
    parent: String,
    name: String,
    service: String,
    attrs: BTreeMap<String, String>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn text(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

/// An OTLP/HTTP trace receiver (protobuf, `POST /v1/traces`), keeping what it decodes.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
    requests: Arc<Mutex<usize>>,
}

impl Collector {
    async fn serve(&self) -> String {
        let me = self.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let me = me.clone();
                async move {
                    let protobuf = headers
                        .get("content-type")
                        .is_some_and(|v| v.as_bytes() == b"application/x-protobuf");
                    let Ok(req) = ExportTraceServiceRequest::decode(body) else {
                        return (StatusCode::BAD_REQUEST, Vec::new());
                    };
                    if !protobuf {
                        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, Vec::new());
                    }
                    me.keep(req);
                    (StatusCode::OK, ExportTraceServiceResponse::default().encode_to_vec())
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    fn keep(&self, req: ExportTraceServiceRequest) {
        *self.requests.lock().unwrap() += 1;
        let mut spans = self.spans.lock().unwrap();
        for rs in req.resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .map(|kv| text(&kv.value))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    spans.push(Span {
                        trace: hex(&s.trace_id),
                        id: hex(&s.span_id),
                        parent: hex(&s.parent_span_id),
                        name: s.name,
                        service: service.clone(),
                        attrs: s
                            .attributes
                            .iter()
                            .map(|kv| (kv.key.clone(), text(&kv.value)))
                            .collect(),
                    });
                }
            }
        }
    }

    fn of_trace(&self, trace: &str) -> Vec<Span> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.trace == trace)
            .cloned()
            .collect()
    }

    /// Waits until the trace holds what `done` looks for (spans arrive in batches, each as it
    /// ends); the spans of the trace.
    async fn wait(&self, trace: &str, what: &str, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let spans = self.of_trace(trace);
            if done(&spans) {
                return spans;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the trace never held {what}; it has:\n{}",
                tree(&spans)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The trace as an indented tree of span names (the must-show of issue 42), parents first.
fn tree(spans: &[Span]) -> String {
    fn walk(spans: &[Span], parent: &str, depth: usize, out: &mut String) {
        for s in spans.iter().filter(|s| s.parent == parent) {
            let extra: Vec<String> = s
                .attrs
                .iter()
                .filter(|(k, _)| k.starts_with("drift.") || k.starts_with("http."))
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            out.push_str(&format!(
                "{}{} [{}] {} {}\n",
                "  ".repeat(depth),
                s.name,
                s.service,
                s.id,
                extra.join(" ")
            ));
            walk(spans, &s.id, depth + 1, out);
        }
    }
    let ids: std::collections::HashSet<&str> = spans.iter().map(|s| s.id.as_str()).collect();
    let mut out = String::new();
    let mut roots: Vec<&str> = spans
        .iter()
        .filter(|s| !ids.contains(s.parent.as_str()))
        .map(|s| s.parent.as_str())
        .collect();
    roots.sort();
    roots.dedup();
    for r in roots {
        out.push_str(&format!("(caller {r})\n"));
        walk(spans, r, 1, &mut out);
    }
    out
}

fn named<'a>(spans: &'a [Span], name: &str) -> Vec<&'a Span> {
    spans.iter().filter(|s| s.name == name).collect()
}

fn one<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    let found = named(spans, name);
    assert_eq!(found.len(), 1, "one {name:?} span expected in:\n{}", tree(spans));
    found[0]
}

fn parent_of<'a>(spans: &'a [Span], s: &Span) -> &'a Span {
    spans
        .iter()
        .find(|p| p.id == s.parent)
        .unwrap_or_else(|| panic!("{} has no parent in the trace:\n{}", s.name, tree(spans)))
}

/// A W3C traceparent of the test's own (the caller's span) and its trace id.
fn caller_trace() -> (String, String, String) {
    let trace = format!("{:032x}", rand::random::<u128>() | 1);
    let span = format!("{:016x}", rand::random::<u64>() | 1);
    (format!("00-{trace}-{span}-01"), trace, span)
}

/// The parts of a `traceparent` header: (trace id, parent span id).
fn parts(tp: &str) -> (String, String) {
    let p: Vec<&str> = tp.split('-').collect();
    assert_eq!(p.len(), 4, "traceparent {tp:?}");
    (p[1].to_string(), p[2].to_string())
}

/// A receiver (an API for the HTTP node, or a webhook receiver) that keeps each request's
/// `traceparent` and body.
#[derive(Clone, Default)]
struct Hop {
    got: Arc<Mutex<Vec<Got>>>,
}

/// A request a hop got: its `traceparent` and its JSON body.
type Got = (Option<String>, Value);

impl Hop {
    async fn serve(&self) -> String {
        let me = self.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap, body: axum::body::Bytes| {
            let me = me.clone();
            async move {
                let tp = headers
                    .get("traceparent")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                me.got.lock().unwrap().push((tp, body));
                axum::Json(json!({"ok": true}))
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/hook")
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }
}

async fn traced_app(collector: &Collector) -> (Supervised, TestApp) {
    let endpoint = collector.serve().await;
    spawn_app_process(Opts {
        extra_args: vec![format!("--otlp-endpoint={endpoint}")],
        ..Opts::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_joins_a_sync_start_the_workflows_http_node_the_publish_and_the_answer() {
    let collector = Collector::default();
    let (_drift, app) = traced_app(&collector).await;
    let api = Hop::default();
    let api_url = api.serve().await;
    let (tp, trace, caller_span) = caller_trace();

    let r = app
        .call(
            Method::POST,
            "/v3/workflow/start",
            Some(json!({"workflow": "fetch", "params": {"url": api_url}})),
            &[("traceparent", &tp)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.body["workflowStatus"], "COMPLETED", "{r:?}");

    let spans = collector
        .wait(
            &trace,
            "the call, the workflow, its HTTP node, the publish and the answer",
            |s| {
                ["POST /v3/workflow/start", "RunWorkflow:drift", "deliver to waiter"]
                    .iter()
                    .all(|n| s.iter().any(|x| x.name == *n))
                    && s.iter()
                        .any(|x| x.name.starts_with("RunActivity:") && x.name.contains("http"))
            },
        )
        .await;
    println!("sync start of `fetch`, as the receiver got it:\n{}", tree(&spans));

    // The gateway's call continues the caller's span.
    let call = one(&spans, "POST /v3/workflow/start");
    assert_eq!(call.parent, caller_span);
    assert_eq!(call.service, "drift-gateway");
    assert_eq!(call.attrs["http.response.status_code"], "200");
    // Through Temporal's headers: the start, the run, its HTTP node's activity.
    let start = one(&spans, "StartWorkflow:drift");
    assert_eq!(start.parent, call.id);
    let run = one(&spans, "RunWorkflow:drift");
    assert_eq!(run.parent, start.id);
    let http = spans
        .iter()
        .find(|s| s.name.starts_with("RunActivity:") && s.name.contains("http"))
        .unwrap();
    assert_eq!(
        parent_of(&spans, parent_of(&spans, http)).id,
        run.id,
        "HTTP node under the run"
    );
    // The API the node called got the trace, from the node's activity.
    let called = api.got();
    assert_eq!(called.len(), 1, "{called:?}");
    let (api_trace, api_parent) = parts(called[0].0.as_deref().expect("the API got a traceparent"));
    assert_eq!(
        (api_trace.as_str(), api_parent.as_str()),
        (trace.as_str(), http.id.as_str())
    );
    // The publish of the final state, under the run; the answer to the waiting call, under it.
    let publish = named(&spans, "publish")
        .into_iter()
        .find(|p| p.attrs.get("drift.seq").map(String::as_str) == Some("1"))
        .unwrap_or_else(|| panic!("no publish of seq 1:\n{}", tree(&spans)));
    assert_eq!(publish.parent, run.id);
    let answer = one(&spans, "deliver to waiter");
    assert_eq!(answer.parent, publish.id);
    assert_eq!(answer.service, "drift-gateway");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_joins_an_async_start_and_each_of_its_webhook_attempts() {
    let collector = Collector::default();
    let (_drift, app) = traced_app(&collector).await;
    let receiver = Hop::default();
    let url = receiver.serve().await;
    let (tp, trace, caller_span) = caller_trace();

    let r = app
        .call(
            Method::POST,
            "/v3/workflow/start",
            Some(json!({"workflow": "quick_screen", "params": {"n": 4}, "callbackUrl": url})),
            &[("traceparent", &tp)],
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    let id = id_of(&r);
    wait_until("the first webhook", || receiver.got().len() == 1).await;
    let r = app.resume(&id, json!({"ok": "ok"})).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    wait_until("the second webhook", || receiver.got().len() == 2).await;

    let spans = collector
        .wait(&trace, "both webhook attempts", |s| {
            s.iter()
                .filter(|x| x.name.starts_with("RunActivity:") && x.name.contains("webhook"))
                .count()
                == 2
                && s.iter().any(|x| x.name == "RunWorkflow:drift")
        })
        .await;
    println!(
        "async start of `quick_screen`, as the receiver got it:\n{}",
        tree(&spans)
    );

    let call = one(&spans, "POST /v3/workflow/start");
    assert_eq!(call.parent, caller_span);
    assert_eq!(call.attrs["http.response.status_code"], "202");
    let attempts: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name.starts_with("RunActivity:") && s.name.contains("webhook"))
        .collect();
    // Each attempt is in the start's trace, and the receiver got that attempt's span.
    for (got, seq) in receiver.got().iter().zip([1, 2]) {
        assert_eq!(got.1["seq"], seq, "{got:?}");
        let (t, parent) = parts(got.0.as_deref().expect("the receiver got a traceparent"));
        assert_eq!(t, trace, "webhook seq {seq}");
        let attempt = attempts
            .iter()
            .find(|a| a.id == parent)
            .unwrap_or_else(|| panic!("seq {seq}'s traceparent names no attempt:\n{}", tree(&spans)));
        assert_eq!(attempt.attrs["http.response.status_code"], "200");
        assert_eq!(attempt.attrs["drift.attempt"], "1");
    }
}

async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "{what} never came");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_message_and_an_sse_stream_each_continue_their_callers_trace() {
    const T: Duration = Duration::from_secs(20);
    let collector = Collector::default();
    let (_drift, app) = traced_app(&collector).await;
    let (start_tp, start_trace, start_caller) = caller_trace();
    let auth = bearer(&app.token("browser"));
    let mut ws = Ws::connect_with(&app.ws_url(""), &[("authorization", &auth)])
        .await
        .unwrap();
    ws.send(json!({"type": "start", "requestId": "r1", "workflow": "quick_screen", "params": {"n": 2}, "traceparent": start_tp}))
        .await;
    let ack = ws.next_of("ack", T).await;
    let id = ack["workflowId"]
        .as_str()
        .expect("the start is acknowledged")
        .to_string();
    let token = ack["streamToken"].as_str().unwrap().to_string();

    // A follower over SSE, with a trace of its own for the stream's request.
    let (sse_tp, sse_trace, sse_caller) = caller_trace();
    let mut sse = SseClient::connect(
        &app.events_url(&id, &format!("?token={token}")),
        &[("traceparent", &sse_tp)],
    )
    .await
    .unwrap();
    assert_eq!(sse.next(T).await.unwrap().data["seq"], 1);

    // The answer, over the socket, with a third trace.
    let (resume_tp, resume_trace, resume_caller) = caller_trace();
    ws.send(json!({"type": "resume", "requestId": "r2", "workflowId": id, "viewResponse": {"selectedOptions": {"ok": "ok"}}, "traceparent": resume_tp}))
        .await;
    loop {
        let s = ws.next_of("state", T).await;
        if s["seq"] == 2 {
            break;
        }
    }
    assert_eq!(sse.states_until_end(T).await, vec![2]);

    let started = collector
        .wait(&start_trace, "the socket's start and both streams' deliveries", |s| {
            ["ws start", "deliver to sse", "RunWorkflow:drift"]
                .iter()
                .all(|n| s.iter().any(|x| x.name == *n))
                && s.iter().filter(|x| x.name == "deliver to ws").count() == 2
        })
        .await;
    println!("a start over the WebSocket, followed over SSE too:\n{}", tree(&started));
    let start = one(&started, "ws start");
    assert_eq!(
        (start.parent.as_str(), start.service.as_str()),
        (start_caller.as_str(), "drift-gateway")
    );
    assert_eq!(one(&started, "StartWorkflow:drift").parent, start.id);
    // Each delivery of a state hangs under the publish of that state.
    for d in named(&started, "deliver to ws")
        .into_iter()
        .chain(named(&started, "deliver to sse"))
    {
        let publish = parent_of(&started, d);
        assert_eq!(
            (publish.name.as_str(), &publish.attrs["drift.seq"]),
            ("publish", &d.attrs["drift.seq"])
        );
    }

    let stream = collector
        .wait(&sse_trace, "the stream's request", |s| {
            s.iter().any(|x| x.name == "GET /v3/workflow/{id}/events")
        })
        .await;
    assert_eq!(one(&stream, "GET /v3/workflow/{id}/events").parent, sse_caller);

    let resumed = collector
        .wait(&resume_trace, "the resume's signal as the workflow handled it", |s| {
            s.iter().any(|x| x.name == "HandleSignal:command")
        })
        .await;
    println!("a resume over the WebSocket:\n{}", tree(&resumed));
    let resume = one(&resumed, "ws resume");
    assert_eq!(resume.parent, resume_caller);
    let signal = one(&resumed, "SignalWorkflow:command");
    assert_eq!(signal.parent, resume.id);
    assert_eq!(one(&resumed, "HandleSignal:command").parent, signal.id);
}
