//! OTLP end to end: spans and histograms reach an in-process OTLP gRPC
//! receiver, and a collector that is absent neither blocks nor hangs the
//! application.

#![cfg(feature = "otlp")]

#[path = "support/otlp_receiver.rs"]
mod otlp_receiver;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{Metric, number_data_point};
use otlp_receiver::{counter_points, gauge_points, histogram_points, integer_attribute, spans_named, string_attribute};
use snapview_instrument::probe::MapProbe;
use snapview_instrument::{BUCKET_BOUNDS_NS, Op, Protocol, Telemetry};

/// The export timeout toward the live receiver, so that the guard's drop
/// waits for the final export however loaded the machine is.
const LIVE_COLLECTOR_TIMEOUT: Duration = Duration::from_secs(10);

/// The app span with snapview's spans under it, as a request handler using a
/// map would produce them (numbers as `i64`, as snapview records them), and a
/// few iterations' worth of `iter.next` spans.
fn emit_spans() {
    let request = tracing::info_span!("handle_request", route = "/api");
    let _request = request.enter();
    tracing::debug_span!(target: "snapview", "snapview.snapshot", map = "routes", version = 3i64).in_scope(|| {});
    tracing::debug_span!(target: "snapview", "snapview.iter", map = "routes", version = 3i64).in_scope(|| {
        for _ in 0..3 {
            tracing::trace_span!(target: "snapview", "snapview.iter.next", map = "routes", version = 3i64)
                .in_scope(|| {});
        }
    });
}

/// Real stats for the histogram metrics, through the recording API.
fn record_stats(map: &str) {
    let probe = MapProbe::new(map).sample_every(1);
    for version in 0..10 {
        let timer = probe.start(Op::Snapshot);
        probe.snapshot_taken(timer, version);
    }
}

#[test]
fn spans_and_histograms_reach_the_collector() {
    let (endpoint, receiver) = otlp_receiver::start();
    let (subscriber, guard) = Telemetry::builder()
        .service_name("telemetry-otlp-test")
        .fmt(false)
        .otlp(Protocol::Grpc)
        .otlp_endpoint(endpoint)
        // The final export must arrive whole: a loaded 2-core machine can
        // overrun the default 2 s, and the drop then cuts the export off.
        .otlp_timeout(LIVE_COLLECTOR_TIMEOUT)
        .build()
        .unwrap();
    tracing::subscriber::with_default(subscriber, || {
        emit_spans();
        record_stats("otlp-test-map");
    });
    drop(guard);
    let exported = receiver.wait_until(Duration::from_secs(10), |r| {
        !spans_named(&r.spans(), "handle_request").is_empty() && snapshot_calls(&r.metrics()).is_some()
    });
    assert!(exported, "the app span and the call counts reach the collector");

    let spans = receiver.spans();
    let request = spans_named(&spans, "handle_request");
    assert_eq!(request.len(), 1, "the app span: {spans:#?}");
    for name in ["snapview.snapshot", "snapview.iter"] {
        let exported = spans_named(&spans, name);
        let span = exported.iter().find(|s| string_attribute(&s.attributes, "map") == Some("routes")).unwrap();
        assert_eq!(integer_attribute(&span.attributes, "version").as_deref(), Some("3"), "{name}: {span:#?}");
        assert_eq!(span.parent_span_id, request[0].span_id, "{name} is a child of the app span");
        assert_eq!(span.trace_id, request[0].trace_id);
    }
    assert!(spans_named(&spans, "snapview.iter.next").is_empty(), "TRACE spans are not exported by default");
    assert!(receiver.service_names().iter().all(|name| name == "telemetry-otlp-test"));

    let metrics = receiver.metrics();
    let metric =
        |name: &str| metrics.iter().rev().find(|m| m.name == name).unwrap_or_else(|| panic!("{name} exported"));
    assert_eq!(snapshot_calls(&metrics), Some(number_data_point::Value::AsInt(10)));
    let histogram = metric("snapview.op.duration");
    assert_eq!(histogram.unit, "s");
    let point = histogram_points(histogram)
        .iter()
        .find(|p| labels_are(&p.attributes, "otlp-test-map", "snapshot"))
        .unwrap_or_else(|| panic!("{histogram:#?}"));
    assert_eq!(point.count, 10, "every timed call");
    let bounds: Vec<f64> = BUCKET_BOUNDS_NS.iter().map(|&ns| ns as f64 / 1e9).collect();
    assert_eq!(point.explicit_bounds, bounds);
    assert_eq!(point.bucket_counts.len(), bounds.len() + 1, "one bucket past the last bound");
    assert_eq!(point.bucket_counts.iter().sum::<u64>(), 10, "each sample in one bucket: {point:#?}");
    let (min, max, sum) = (point.min.unwrap(), point.max.unwrap(), point.sum.unwrap());
    assert!(0.0 < min && min <= max && min * 10.0 <= sum && sum <= max * 10.0, "{point:#?}");
    // The samples' buckets lie between the ones of min and max. (A max just
    // past a bound may be counted under it: HdrHistogram reports the top of
    // its 0.1% sub-bucket, and counts the sub-bucket holding the bound whole.)
    let bucket_of = |seconds: f64| bounds.iter().position(|&bound| seconds <= bound).unwrap_or(bounds.len());
    let used: Vec<usize> = (0..point.bucket_counts.len()).filter(|&i| point.bucket_counts[i] > 0).collect();
    let (first, last) = (used[0], used[used.len() - 1]);
    assert_eq!(first, bucket_of(min), "{point:#?}");
    assert!(last == bucket_of(max) || last + 1 == bucket_of(max), "{point:#?}");
    assert!(point.start_time_unix_nano > 0 && point.start_time_unix_nano <= point.time_unix_nano);

    let quantiles = metric("snapview.op.duration.quantile");
    assert_eq!(quantiles.unit, "s");
    let p50 = gauge_points(quantiles).iter().find(|p| {
        labels_are(&p.attributes, "otlp-test-map", "snapshot")
            && string_attribute(&p.attributes, "quantile") == Some("0.5")
    });
    assert!(p50.is_some(), "{quantiles:#?}");
}

/// The latest exported count of the test map's snapshots.
fn snapshot_calls(metrics: &[Metric]) -> Option<number_data_point::Value> {
    let calls = metrics.iter().rev().find(|m| m.name == "snapview.op.calls")?;
    let point = counter_points(calls).iter().find(|p| labels_are(&p.attributes, "otlp-test-map", "snapshot"))?;
    point.value
}

fn labels_are(attributes: &[KeyValue], map: &str, op: &str) -> bool {
    string_attribute(attributes, "map") == Some(map) && string_attribute(attributes, "op") == Some(op)
}

/// A port nothing listens on: bound, then released.
fn dead_endpoint() -> String {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    format!("http://127.0.0.1:{port}")
}

#[test]
fn an_absent_collector_neither_blocks_nor_hangs() {
    let (subscriber, guard) =
        Telemetry::builder().fmt(false).otlp(Protocol::Grpc).otlp_endpoint(dead_endpoint()).build().unwrap();
    let start = Instant::now();
    tracing::subscriber::with_default(subscriber, || {
        for _ in 0..100 {
            emit_spans();
        }
    });
    assert!(start.elapsed() < Duration::from_secs(1), "emitting never waits for the collector");

    guard.flush();
    // The flush waits at most the export timeout; on a loaded machine the
    // failing export (connect, three retries) may settle a little later.
    let counted = Instant::now() + Duration::from_secs(5);
    while guard.dropped_spans() < 300 && Instant::now() < counted {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(guard.dropped_spans(), 300, "the app span, snapshot and iter of each round are lost and counted");
    let dropping = Instant::now();
    drop(guard);
    assert!(dropping.elapsed() < Duration::from_secs(4), "shutdown is bounded: {:?}", dropping.elapsed());
}

#[test]
fn a_full_queue_drops_and_counts_instead_of_growing() {
    let (subscriber, guard) =
        Telemetry::builder().fmt(false).otlp(Protocol::Grpc).otlp_endpoint(dead_endpoint()).build().unwrap();
    tracing::subscriber::with_default(subscriber, || {
        for _ in 0..10_000 {
            tracing::info_span!("burst").in_scope(|| {});
        }
    });
    // At most 2048 spans wait; a failed batch frees its places only after the
    // exporter's retries, long after this loop.
    let dropped = guard.dropped_spans();
    assert!(dropped >= 10_000 - 2 * 2048, "the queue is bounded: {dropped} dropped");
}

#[test]
fn otlp_over_http_builds_without_a_runtime() {
    let start = Instant::now();
    let (subscriber, guard) =
        Telemetry::builder().fmt(false).otlp(Protocol::HttpProtobuf).otlp_endpoint(dead_endpoint()).build().unwrap();
    tracing::subscriber::with_default(subscriber, emit_spans);
    drop(guard);
    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
}

#[test]
fn a_bad_otlp_filter_is_an_error() {
    let error =
        Telemetry::builder().fmt(false).otlp(Protocol::Grpc).otlp_filter("snapview=loud").build().err().unwrap();
    assert!(error.to_string().contains("snapview=loud"), "{error}");
}
