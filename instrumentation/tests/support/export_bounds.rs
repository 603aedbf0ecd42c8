//! What the tests of exports to a misbehaving collector share: the pipeline
//! they build, the spans they send, and the bounds they hold it to.

use std::time::{Duration, Instant};

use snapview_instrument::probe::MapProbe;
use snapview_instrument::{Op, Protocol, Telemetry, TelemetryGuard};

/// The export timeout given to the pipeline: long enough for the first
/// exports to connect and be sent within it on a loaded machine, as they
/// must, once (nothing sends them again).
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(1);
/// The most a flush, the drop of the guard, or an export the collector
/// holds up may take: the export timeout, with room for a loaded machine.
pub const BOUND: Duration = Duration::from_secs(3);
/// How long a test waits for what should happen within [`BOUND`]; past
/// it, the export is taken to hang.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A pipeline exporting to `endpoint` with [`EXPORT_TIMEOUT`], whose metrics
/// go out only when flushed, and the dispatcher of its subscriber.
pub fn pipeline(protocol: Protocol, endpoint: &str) -> (tracing::Dispatch, TelemetryGuard) {
    let (subscriber, guard) = Telemetry::builder()
        .fmt(false)
        .otlp(protocol)
        .otlp_endpoint(endpoint)
        .otlp_timeout(EXPORT_TIMEOUT)
        .metrics_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    (tracing::Dispatch::new(subscriber), guard)
}

/// A span of map `name`, and a call of it to export as metrics (the SDK
/// sends no metrics without one).
pub fn span(dispatch: &tracing::Dispatch, name: &'static str) {
    tracing::dispatcher::with_default(dispatch, || {
        tracing::debug_span!(target: "snapview", "snapview.snapshot", map = name, version = 1u64).in_scope(|| {});
    });
    MapProbe::new(name).sample_every(1).start(Op::Get).finish();
}

/// Flushes, asserting that the flush took less than [`BOUND`].
pub fn flush_within_bound(guard: &TelemetryGuard, when: &str) {
    let start = Instant::now();
    guard.flush();
    assert!(start.elapsed() < BOUND, "{when}: the flush took {:?}", start.elapsed());
}
