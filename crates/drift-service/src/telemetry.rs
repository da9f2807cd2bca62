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
