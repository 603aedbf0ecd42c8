//! A header whose key ends in `-bin` (`OTEL_EXPORTER_OTLP_HEADERS`) goes
//! with the metrics over gRPC as it goes with the spans: as binary metadata,
//! its value sent as written. The metrics exporter took it for a text key,
//! which gRPC refuses for `-bin` names, and dropped it without a word, so
//! that a collector requiring it (a tenant, a token) refused the metrics
//! while taking the spans. The environment is process-wide, so the
//! exporting side runs as a child process (this test binary, running the
//! ignored `child_exports_with_a_binary_header`).

#![cfg(feature = "otlp")]

#[path = "support/child.rs"]
mod child;
#[path = "support/h2_collector.rs"]
mod h2_collector;

use std::time::Duration;

use h2_collector::{METRICS, TRACES};
use snapview_instrument::probe::MapProbe;
use snapview_instrument::{Op, Protocol, Telemetry};

#[test]
fn a_binary_header_goes_with_spans_and_metrics_alike() {
    let collector = h2_collector::start();
    child::run_child(
        "child_exports_with_a_binary_header",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.endpoint),
            // `AAEC` is base64 for the bytes 0, 1, 2, as gRPC carries them.
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant-bin=AAEC,x-plain=text"),
        ],
    );
    let both = |c: &h2_collector::H2Collector| c.count(TRACES, false) >= 1 && c.count(METRICS, false) >= 1;
    assert!(collector.wait_until(Duration::from_secs(10), both), "{:?}", collector.received());
    for export in collector.received() {
        let header = |name: &str| export.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        assert_eq!(header("x-tenant-bin").as_deref(), Some("AAEC"), "{}: {:?}", export.path, export.headers);
        assert_eq!(header("x-plain").as_deref(), Some("text"), "{}: {:?}", export.path, export.headers);
    }
}

#[test]
#[ignore = "run by a_binary_header_goes_with_spans_and_metrics_alike, with its environment"]
fn child_exports_with_a_binary_header() {
    if !child::in_child() {
        return;
    }
    let (subscriber, guard) = Telemetry::builder().fmt(false).otlp(Protocol::Grpc).build().unwrap();
    tracing::subscriber::with_default(subscriber, || {
        drop(tracing::debug_span!(target: "snapview", "snapview.snapshot", map = "bin", version = 1u64));
    });
    // Something to export as metrics: the SDK sends nothing without.
    MapProbe::new("bin").sample_every(1).start(Op::Get).finish();
    drop(guard); // flushes both signals
}
