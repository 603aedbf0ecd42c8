//! `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=delta` makes every
//! export carry what happened since the one before: the histogram (built by
//! snapview's exporter) and the calls counter (aggregated by the SDK) both
//! come as deltas that add up to the calls made, over several exports. The
//! environment is process-wide, so the exporting side runs as a child
//! process (this test binary, running the ignored `child_exports_deltas`).
#![cfg(feature = "otlp")]

#[path = "support/child.rs"]
mod child;
#[path = "support/otlp_receiver.rs"]
mod otlp_receiver;

use std::time::Duration;

use child::run_child;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{AggregationTemporality, Metric, metric, number_data_point};
use otlp_receiver::string_attribute;
use snapview_instrument::probe::MapProbe;
use snapview_instrument::{Op, Protocol, Telemetry};

const MAP: &str = "delta.map";
const BEFORE: u64 = 3;
const AFTER: u64 = 2;

#[test]
fn histogram_and_calls_come_as_deltas_when_the_environment_asks() {
    let (endpoint, receiver) = otlp_receiver::start();
    run_child(
        "child_exports_deltas",
        &[("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta"), ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)],
    );
    let total = |r: &otlp_receiver::ReceiverHandle| timed(&r.metrics()).iter().sum::<u64>();
    assert!(
        receiver.wait_until(Duration::from_secs(10), |r| total(r) == BEFORE + AFTER),
        "{:?}",
        timed(&receiver.metrics())
    );

    let metrics = receiver.metrics();
    let timed = timed(&metrics);
    assert!(timed.iter().filter(|&&n| n > 0).count() >= 2, "the calls spread over two exports at least: {timed:?}");
    assert!(timed.contains(&BEFORE) && timed.contains(&AFTER), "each export only its own calls: {timed:?}");
    let calls = calls(&metrics);
    assert_eq!(calls.iter().sum::<u64>(), BEFORE + AFTER, "{calls:?}");
    assert!(calls.contains(&BEFORE) && calls.contains(&AFTER), "{calls:?}");
}

#[test]
#[ignore = "run by histogram_and_calls_come_as_deltas_when_the_environment_asks, with its environment"]
fn child_exports_deltas() {
    if !child::in_child() {
        return;
    }
    let probe = MapProbe::new(MAP).sample_every(1);
    let (_subscriber, guard) = Telemetry::builder()
        .fmt(false)
        .otlp(Protocol::Grpc)
        // No periodic export: one could come in the middle of `record` and
        // split its calls over two exports. The flush and the final export
        // carry them, one each.
        .metrics_interval(Duration::from_secs(3600))
        .otlp_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    record(&probe, BEFORE);
    // An export of the first calls alone, whatever the machine's load.
    guard.flush();
    record(&probe, AFTER);
    drop(guard); // the final export
}

fn record(probe: &MapProbe, calls: u64) {
    for version in 0..calls {
        let timer = probe.start(Op::Snapshot);
        probe.snapshot_taken(timer, version);
    }
}

fn is_the_maps_snapshots(attributes: &[KeyValue]) -> bool {
    string_attribute(attributes, "map") == Some(MAP) && string_attribute(attributes, "op") == Some("snapshot")
}

/// The map's timed snapshots in each export's histogram, in order; every
/// histogram must be a delta one.
fn timed(metrics: &[Metric]) -> Vec<u64> {
    let of_export = |m: &Metric| match &m.data {
        Some(metric::Data::Histogram(h)) => {
            assert_eq!(h.aggregation_temporality, AggregationTemporality::Delta as i32, "{m:#?}");
            Some(h.data_points.iter().find(|p| is_the_maps_snapshots(&p.attributes))?.count)
        }
        other => panic!("snapview.op.duration is a histogram: {other:?}"),
    };
    metrics.iter().filter(|m| m.name == "snapview.op.duration").filter_map(of_export).collect()
}

/// The map's snapshot calls in each export's counter, in order; every one
/// must be a delta sum.
fn calls(metrics: &[Metric]) -> Vec<u64> {
    let of_export = |m: &Metric| match &m.data {
        Some(metric::Data::Sum(sum)) => {
            assert_eq!(sum.aggregation_temporality, AggregationTemporality::Delta as i32, "{m:#?}");
            match sum.data_points.iter().find(|p| is_the_maps_snapshots(&p.attributes))?.value {
                Some(number_data_point::Value::AsInt(n)) => Some(n as u64),
                ref other => panic!("an integer counter: {other:?}"),
            }
        }
        other => panic!("snapview.op.calls is a sum: {other:?}"),
    };
    metrics.iter().filter(|m| m.name == "snapview.op.calls").filter_map(of_export).collect()
}
