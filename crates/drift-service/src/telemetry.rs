//! Logging and metrics setup, shared by every subcommand (and by tests, once per process).

use metrics_exporter_prometheus::PrometheusBuilder;
pub use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::OnceLock;

pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DRIFT_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,temporalio_sdk_core=warn,temporalio_sdk=warn,tower_http=warn")
    });
    let json = std::env::var("DRIFT_LOG_FORMAT").is_ok_and(|f| f == "json");
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json { b.json().try_init() } else { b.try_init() };
}

/// The process-wide Prometheus recorder, with every series of `drift_core::metrics` described
/// (its `# HELP` line).
pub fn metrics() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets(&[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ])
                .ok()?
                .install_recorder()
                .ok()?;
            describe_all();
            Some(handle)
        })
        .clone()
}

/// Tells the recorder what each series means, and exports from the start (at zero) each series
/// known ahead: the unlabelled ones and each value of a label whose values are listed. A
/// dashboard's `rate()` then reads 0, not "no data", before the first event.
fn describe_all() {
    use drift_core::metrics::{ALL, Kind};
    for m in ALL {
        match m.kind {
            Kind::Counter => metrics::describe_counter!(m.name, m.help),
            Kind::Gauge => metrics::describe_gauge!(m.name, m.help),
            Kind::Histogram => metrics::describe_histogram!(m.name, m.help),
        }
        let series: Vec<Vec<metrics::Label>> = match (m.labels, m.values) {
            ([], _) => vec![vec![]],
            ([label], values) => values.iter().map(|v| vec![metrics::Label::new(*label, *v)]).collect(),
            _ => vec![],
        };
        for labels in series {
            match m.kind {
                Kind::Counter => drop(metrics::counter!(m.name, labels)),
                Kind::Gauge => drop(metrics::gauge!(m.name, labels)),
                Kind::Histogram => drop(metrics::histogram!(m.name, labels)),
            }
        }
    }
}

/// One unit of a gauge for as long as it lives: counted when made, uncounted when dropped —
/// also when the future holding it is dropped mid-wait (a client that went away).
pub struct GaugeGuard(&'static str);

impl GaugeGuard {
    pub fn new(name: &'static str) -> Self {
        metrics::gauge!(name).increment(1.0);
        Self(name)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        metrics::gauge!(self.0).decrement(1.0);
    }
}

/// Exports this process's spans over OTLP/HTTP (protobuf) until dropped; dropping it sends
/// what is still buffered, within a bound.
pub struct Traces {
    provider: opentelemetry_sdk::trace::SdkTracerProvider,
}

/// How long the last spans may take to go out at exit.
const TRACES_FLUSH: std::time::Duration = std::time::Duration::from_secs(5);

/// Installs the process's tracer provider, exporting to the OTLP/HTTP collector at `endpoint`
/// (`http://host:4318`, or its full `/v1/traces` URL), as `service` (`drift-gateway`,
/// `drift-worker`). Workflow spans take their ids from the workflow's random stream and are
/// not exported on replay (the Temporal SDK's `WorkflowIdGenerator` and
/// `WorkflowSpanProcessor`), so a replayed run names the spans it named the first time.
pub fn init_traces(endpoint: &str, service: &'static str) -> anyhow::Result<Traces> {
    use opentelemetry_otlp::{Protocol, WithExportConfig};
    let url = url_of(endpoint)?;
    // The blocking HTTP client owns a runtime of its own, which may be neither built nor
    // dropped on an async runtime's thread: the exporter is made on a plain one.
    let exporter = std::thread::spawn(move || {
        opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(url)
            .with_timeout(std::time::Duration::from_secs(10))
            .build()
    })
    .join()
    .map_err(|_| anyhow::anyhow!("building the OTLP exporter panicked"))??;
    let batch = opentelemetry_sdk::trace::BatchSpanProcessor::builder(exporter).build();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_span_processor(drift_temporal::trace::WorkflowSpanProcessor::new(batch))
        .with_id_generator(drift_temporal::trace::WorkflowIdGenerator::default())
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service)
                .build(),
        )
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    drift_bus::trace::set_enabled();
    tracing::info!(endpoint, service, "exporting traces over OTLP/HTTP");
    Ok(Traces { provider })
}

/// The exporter's URL: a collector's base address gets the traces path, as the OpenTelemetry
/// SDKs do with `OTEL_EXPORTER_OTLP_ENDPOINT`.
fn url_of(endpoint: &str) -> anyhow::Result<String> {
    let parsed = url::Url::parse(endpoint)
        .map_err(|e| anyhow::anyhow!("--otlp-endpoint {endpoint:?} is not a URL ({e}); e.g. http://127.0.0.1:4318"))?;
    if parsed.scheme() != "http" {
        anyhow::bail!(
            "--otlp-endpoint {endpoint:?}: only http:// is supported; run an OpenTelemetry Collector beside \
             Drift and point this at its OTLP/HTTP port (4318)"
        );
    }
    Ok(match parsed.path().trim_end_matches('/') {
        "" => format!("{}/v1/traces", endpoint.trim_end_matches('/')),
        _ => endpoint.to_string(),
    })
}

impl Drop for Traces {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown_with_timeout(TRACES_FLUSH) {
            tracing::warn!(error = %e, "the last spans could not be sent");
        }
    }
}

#[cfg(test)]
mod trace_tests {
    #[test]
    fn an_otlp_endpoint_gets_the_traces_path_unless_it_names_one() {
        assert_eq!(super::url_of("http://c:4318").unwrap(), "http://c:4318/v1/traces");
        assert_eq!(super::url_of("http://c:4318/").unwrap(), "http://c:4318/v1/traces");
        assert_eq!(
            super::url_of("http://c:4318/otlp/v1/traces").unwrap(),
            "http://c:4318/otlp/v1/traces"
        );
        assert!(
            super::url_of("https://c:4318")
                .unwrap_err()
                .to_string()
                .contains("Collector")
        );
        assert!(super::url_of("c:4318:x").is_err());
    }
}
