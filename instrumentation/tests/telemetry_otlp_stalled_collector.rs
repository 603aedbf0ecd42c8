//! A gRPC collector that answers an export's headers and then stalls holds
//! no export past the export timeout. tonic's own timeout ends with the
//! response's headers, and the wait for the message and trailers after them
//! had no bound: the SDK's span-export thread and the metrics reader each
//! stayed in their first export for good, so that every later span was
//! dropped at a full queue, no metrics went out again, and every flush
//! waited its whole timeout for nothing. Here both exports give up and the
//! spans of the stalled one are counted as dropped; once the collector
//! answers again, later spans and metrics reach it.

#![cfg(feature = "otlp")]

#[path = "support/h2_collector.rs"]
mod h2_collector;

use std::time::{Duration, Instant};

use h2_collector::{METRICS, TRACES};
use snapview_instrument::probe::MapProbe;
use snapview_instrument::{Op, Protocol, Telemetry};

/// The export timeout given to the pipeline: long enough for the first
/// exports to connect and be sent within it on a loaded machine, as they
/// must, once (nothing sends them again).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(1);
/// The most a flush, the drop of the guard, or an export the collector
/// stalls may take: the export timeout, with room for a loaded machine.
const BOUND: Duration = Duration::from_secs(3);
/// How long the test waits for what should happen within [`BOUND`]; past
/// it, the export is taken to hang.
const PATIENCE: Duration = Duration::from_secs(10);

/// A span of map `name`, and a call of it to export as metrics (the SDK
/// sends no metrics without one).
fn span(dispatch: &tracing::Dispatch, name: &'static str) {
    tracing::dispatcher::with_default(dispatch, || {
        tracing::debug_span!(target: "snapview", "snapview.snapshot", map = name, version = 1u64).in_scope(|| {});
    });
    MapProbe::new(name).sample_every(1).start(Op::Get).finish();
}

/// Whether a span of map `name` was answered.
fn answered(collector: &h2_collector::H2Collector, name: &str) -> bool {
    let has_map = |span: &opentelemetry_proto::tonic::trace::v1::Span| {
        span.attributes.iter().any(|kv| {
            use opentelemetry_proto::tonic::common::v1::any_value::Value;
            kv.key == "map"
                && matches!(kv.value.as_ref().and_then(|v| v.value.as_ref()), Some(Value::StringValue(s)) if s == name)
        })
    };
    collector.answered_spans().iter().any(has_map)
}

fn flush_within_bound(guard: &snapview_instrument::TelemetryGuard, when: &str) {
    let start = Instant::now();
    guard.flush();
    assert!(start.elapsed() < BOUND, "{when}: the flush took {:?}", start.elapsed());
}

#[test]
fn exports_to_a_collector_that_stalls_after_its_headers_give_up() {
    let collector = h2_collector::start();
    collector.stall(true);
    let (subscriber, guard) = Telemetry::builder()
        .fmt(false)
        .otlp(Protocol::Grpc)
        .otlp_endpoint(&collector.endpoint)
        .otlp_timeout(EXPORT_TIMEOUT)
        .metrics_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    let dispatch = tracing::Dispatch::new(subscriber);

    span(&dispatch, "stalled");
    flush_within_bound(&guard, "stalled");
    let both_stalled = |c: &h2_collector::H2Collector| c.count(TRACES, true) == 1 && c.count(METRICS, true) == 1;
    assert!(
        collector.wait_until(PATIENCE, both_stalled),
        "the exports never reached the collector: {:?}",
        collector.received()
    );
    // Both exports give up, resetting their streams, within the timeout.
    assert!(
        collector.wait_until(PATIENCE, |c| c.given_up().len() == 2),
        "an export the collector stalls still waits after {PATIENCE:?}: {:?}",
        collector.given_up()
    );
    for waited in collector.given_up() {
        assert!(waited < BOUND, "an export the collector stalled gave up after {waited:?}");
    }
    let deadline = Instant::now() + PATIENCE;
    while guard.dropped_spans() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(guard.dropped_spans(), 1, "the stalled batch is counted as dropped");

    // The export threads are free: the next exports go through.
    collector.stall(false);
    span(&dispatch, "answered");
    flush_within_bound(&guard, "answered");
    let through = |c: &h2_collector::H2Collector| {
        let done = answered(c, "answered") && c.count(METRICS, false) >= 1;
        // Flushed again while waiting: that flush may have found the
        // previous one's tasks still finishing, and left without its own.
        if !done {
            guard.flush();
        }
        done
    };
    assert!(collector.wait_until(PATIENCE, through), "no export went through afterwards: {:?}", collector.received());
    assert!(!answered(&collector, "stalled"), "the stalled span was not sent again");
    assert_eq!(guard.dropped_spans(), 1);

    let dropping = Instant::now();
    drop(guard);
    assert!(dropping.elapsed() < BOUND, "dropping the guard took {:?}", dropping.elapsed());
}
