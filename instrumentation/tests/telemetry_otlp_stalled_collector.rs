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

#[path = "support/export_bounds.rs"]
mod export_bounds;
#[path = "support/h2_collector.rs"]
mod h2_collector;

use std::time::{Duration, Instant};

use export_bounds::{BOUND, PATIENCE, flush_within_bound, pipeline, span};
use h2_collector::{METRICS, TRACES};
use snapview_instrument::Protocol;

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

#[test]
fn exports_to_a_collector_that_stalls_after_its_headers_give_up() {
    let collector = h2_collector::start();
    collector.stall(true);
    let (dispatch, guard) = pipeline(Protocol::Grpc, &collector.endpoint);

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
