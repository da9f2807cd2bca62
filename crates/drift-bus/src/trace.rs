//! Trace context across Drift's hops (W3C Trace Context): read from a caller's `traceparent`,
//! carried on each published message to the hub's deliveries, sent on webhooks and HTTP nodes.
//! Spans go to the process's OpenTelemetry provider; with none installed (no
//! `--otlp-endpoint`) `enabled()` is false and the hot paths make no span at all.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanKind, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue, global};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use std::sync::atomic::{AtomicBool, Ordering};

/// The instrumentation scope of Drift's own spans (the Temporal SDK's are `temporalio-sdk`).
pub const SCOPE: &str = "drift";
/// The W3C header (and message field) that carries a span's context.
pub const TRACEPARENT: &str = "traceparent";
/// Its companion, vendor state, passed on as received.
pub const TRACESTATE: &str = "tracestate";

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether this process exports traces (set once, when its provider is installed).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Called by whoever installs the provider.
pub fn set_enabled() {
    ENABLED.store(true, Ordering::Relaxed);
}

struct Pairs<'a>(Vec<(&'a str, &'a str)>);

impl Extractor for Pairs<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| *v)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| *k).collect()
    }
}

#[derive(Default)]
struct Collect(Vec<(&'static str, String)>);

impl Injector for Collect {
    fn set(&mut self, key: &str, value: String) {
        let key = match key {
            TRACEPARENT => TRACEPARENT,
            TRACESTATE => TRACESTATE,
            _ => return,
        };
        self.0.push((key, value));
    }
}

/// The context a caller's `traceparent` (and `tracestate`) names; an empty one when absent or
/// malformed (a new trace then starts here: a bad header never fails a call).
pub fn remote(traceparent: Option<&str>, tracestate: Option<&str>) -> Context {
    let mut pairs = Vec::with_capacity(2);
    if let Some(tp) = traceparent {
        pairs.push((TRACEPARENT, tp));
    }
    if let Some(ts) = tracestate {
        pairs.push((TRACESTATE, ts));
    }
    if pairs.is_empty() {
        return Context::new();
    }
    TraceContextPropagator::new().extract(&Pairs(pairs))
}

/// The headers that carry `cx` to the next hop (none when it holds no valid span).
pub fn headers(cx: &Context) -> Vec<(&'static str, String)> {
    if !cx.span().span_context().is_valid() {
        return Vec::new();
    }
    let mut out = Collect::default();
    TraceContextPropagator::new().inject_context(cx, &mut out);
    out.0
}

/// The headers that carry the current span to the next hop (none with traces off).
pub fn current_headers() -> Vec<(&'static str, String)> {
    match enabled() {
        true => headers(&Context::current()),
        false => Vec::new(),
    }
}

/// Sets attributes on the current span (the activity's, the call's), with traces on.
pub fn annotate(attrs: impl FnOnce() -> Vec<KeyValue>) {
    if enabled() {
        let cx = Context::current();
        let span = cx.span();
        for kv in attrs() {
            span.set_attribute(kv);
        }
    }
}

/// `cx`'s `traceparent`, if it holds a valid span.
pub fn traceparent(cx: &Context) -> Option<String> {
    headers(cx).into_iter().find(|(k, _)| *k == TRACEPARENT).map(|(_, v)| v)
}

/// Starts a span of Drift's own under `parent`; the returned context holds it (it ends when
/// the last clone of that context is dropped, or on `cx.span().end()`).
pub fn start(
    name: impl Into<std::borrow::Cow<'static, str>>,
    kind: SpanKind,
    parent: &Context,
    attrs: Vec<KeyValue>,
) -> Context {
    let tracer = global::tracer(SCOPE);
    let span = tracer
        .span_builder(name)
        .with_kind(kind)
        .with_attributes(attrs)
        .start_with_context(&tracer, parent);
    parent.with_span(span)
}

/// A span for one delivery of a published message to one receiver (`waiter`, `sse`, `ws`,
/// `answer page`), under the publish that sent it; ended at once (the hand-over is the work).
pub fn delivered(to: &'static str, trace: Option<&str>, seq: u64) {
    if !enabled() {
        return;
    }
    let parent = remote(trace, None);
    let cx = start(
        format!("deliver to {to}"),
        SpanKind::Consumer,
        &parent,
        vec![
            KeyValue::new("drift.receiver", to),
            KeyValue::new("drift.seq", seq as i64),
        ],
    );
    cx.span().end();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_read_from_a_caller_is_written_out_the_same() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let cx = remote(Some(tp), Some("vendor=x"));
        assert_eq!(traceparent(&cx).as_deref(), Some(tp));
        assert!(headers(&cx).contains(&(TRACESTATE, "vendor=x".to_string())));
    }

    #[test]
    fn a_malformed_or_missing_traceparent_gives_an_empty_context() {
        for bad in [
            None,
            Some(""),
            Some("00-zz-00-01"),
            Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
        ] {
            let cx = remote(bad, None);
            assert!(!cx.span().span_context().is_valid(), "{bad:?}");
            assert!(headers(&cx).is_empty());
        }
    }
}
