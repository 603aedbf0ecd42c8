//! The pipeline of the tests that export to a collector of their own and
//! read what it received, export by export.
//!
//! Include it with `#[path = "support/otlp_pipeline.rs"] mod otlp_pipeline;`.

use std::time::Duration;

use snapview_instrument::{Protocol, Telemetry, TelemetryGuard};
use tracing::Subscriber;

/// A metrics interval no test lasts: the metrics go out only when flushed
/// (each flush waits for its export) or when the guard is dropped.
#[allow(dead_code)] // Not every including test file flushes by hand.
pub const ONLY_WHEN_FLUSHED: Duration = Duration::from_secs(3600);

/// A pipeline exporting over `protocol` to `endpoint`, its metrics every
/// `metrics_interval`, and its subscriber. Each export may take 10 s: on a
/// loaded machine, one cut short would lose what the test waits for.
pub fn pipeline(
    protocol: Protocol,
    endpoint: &str,
    metrics_interval: Duration,
) -> (impl Subscriber + Send + Sync + 'static, TelemetryGuard) {
    Telemetry::builder()
        .fmt(false)
        .otlp(protocol)
        .otlp_endpoint(endpoint)
        .metrics_interval(metrics_interval)
        .otlp_timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}
