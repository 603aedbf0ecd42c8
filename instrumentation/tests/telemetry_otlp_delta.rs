//! `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=delta` makes every
//! export carry what happened since the one before: the histogram (built by
//! snapview's exporter) and the calls counter (aggregated by the SDK) both
//! come as deltas that add up to the calls made, over several exports, and
//! over several pipelines of one process to one collector, one after the
//! other or alive at once (what an export carried, no later pipeline's
//! export to that collector carries again), while pipelines to two
//! collectors, or with two service names, each send every call.
//! `lowmemory` does so for the histogram, the counter staying cumulative.
//! The histogram's intervals follow one another across the pipelines to
//! one collector, and only a series' first point has its min and max.
//! The environment is process-wide, so the exporting side runs as a child
//! process (this test binary, running one of the ignored `child_*` tests).
#![cfg(feature = "otlp")]

#[path = "support/child.rs"]
mod child;
#[path = "support/otlp_receiver.rs"]
mod otlp_receiver;

use std::time::Duration;

use child::run_child;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, HistogramDataPoint, Metric, metric, number_data_point,
};
use otlp_receiver::{ReceiverHandle, string_attribute};
use snapview_instrument::probe::MapProbe;
use snapview_instrument::{Op, Protocol, Telemetry, TelemetryBuilder, TelemetryGuard};

const MAP: &str = "delta.map";
const BEFORE: u64 = 3;
const AFTER: u64 = 2;

const PREFERENCE: &str = "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE";
const DELTA: AggregationTemporality = AggregationTemporality::Delta;
const CUMULATIVE: AggregationTemporality = AggregationTemporality::Cumulative;

/// The maps of the cases with two pipelines, and their calls: a first
/// batch, then a second.
const IN_TURN: &str = "delta.in_turn";
const AT_ONCE: &str = "delta.at_once";
const FIRST: u64 = 7;
const SECOND: u64 = 3;

/// The map of the cases with two destinations at once, and the variable
/// naming the second collector's endpoint.
const TWO_WAYS: &str = "delta.two_ways";
const OTHER_ENDPOINT: &str = "SNAPVIEW_TEST_OTHER_ENDPOINT";

#[test]
fn histogram_and_calls_come_as_deltas_when_the_environment_asks() {
    let (endpoint, receiver) = otlp_receiver::start();
    run_child("child_exports_deltas", &[(PREFERENCE, "delta"), ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)]);
    let total = |r: &ReceiverHandle| timed(&r.metrics(), MAP).iter().sum::<u64>();
    assert!(
        receiver.wait_until(Duration::from_secs(10), |r| total(r) == BEFORE + AFTER),
        "{:?}",
        timed(&receiver.metrics(), MAP)
    );

    let metrics = receiver.metrics();
    let timed = timed(&metrics, MAP);
    assert!(timed.iter().filter(|&&n| n > 0).count() >= 2, "the calls spread over two exports at least: {timed:?}");
    assert!(timed.contains(&BEFORE) && timed.contains(&AFTER), "each export only its own calls: {timed:?}");
    let calls = calls(&metrics, MAP, DELTA);
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
    let guard = pipeline();
    record(&probe, BEFORE);
    // An export of the first calls alone, whatever the machine's load.
    guard.flush();
    record(&probe, AFTER);
    drop(guard); // the final export
}

/// A pipeline built after another was dropped (a program that rebuilds its
/// telemetry, or the one `install` refused and the one it kept) starts from
/// what the first exported: its first export carries only the calls made
/// since. Before, each new pipeline sent the whole history again, and a
/// collector summing the deltas counted the first calls twice.
#[test]
fn a_second_pipeline_exports_only_the_calls_after_the_first_ones() {
    let deltas = [FIRST, SECOND];
    check_each_preference("child_exports_from_two_pipelines_in_turn", IN_TURN, deltas, [FIRST, FIRST + SECOND]);
}

#[test]
#[ignore = "run by a_second_pipeline_exports_only_the_calls_after_the_first_ones, with its environment"]
fn child_exports_from_two_pipelines_in_turn() {
    if !child::in_child() {
        return;
    }
    let probe = MapProbe::new(IN_TURN).sample_every(1);
    for calls in [FIRST, SECOND] {
        let guard = pipeline();
        record(&probe, calls);
        drop(guard); // the final export
    }
}

/// Two pipelines alive at once (`build` twice, or the window of `install`
/// where a refused pipeline still runs) export to one collector: each call
/// is carried by one export, of whichever pipeline collected first, so the
/// deltas still add up to the calls. Before, each pipeline sent every call
/// it had not sent itself.
#[test]
fn two_pipelines_at_once_export_each_call_once() {
    let deltas = [FIRST, SECOND, 0, 0];
    let cumulative = [FIRST, FIRST + SECOND, FIRST + SECOND, FIRST + SECOND];
    check_each_preference("child_exports_from_two_pipelines_at_once", AT_ONCE, deltas, cumulative);
}

#[test]
#[ignore = "run by two_pipelines_at_once_export_each_call_once, with its environment"]
fn child_exports_from_two_pipelines_at_once() {
    if !child::in_child() {
        return;
    }
    exports_two_ways(AT_ONCE, pipeline(), pipeline());
}

/// Two pipelines alive at once that send to two collectors (two backends,
/// or a test harness's pipeline beside the program's) each send every call
/// to theirs: each collector gets a complete stream, the first export of
/// the one whose pipeline flushed later carrying the calls the other
/// already sent elsewhere. Before, the two pipelines split the calls, as
/// they do toward one collector, and neither collector got them all.
#[test]
fn two_pipelines_at_once_to_two_collectors_each_export_every_call() {
    let (endpoint, one) = otlp_receiver::start();
    let (other_endpoint, other) = otlp_receiver::start();
    run_child(
        "child_exports_to_two_collectors_at_once",
        &[(PREFERENCE, "delta"), ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint), (OTHER_ENDPOINT, &other_endpoint)],
    );
    for receiver in [&one, &other] {
        wait_for_exports(receiver, ReceiverHandle::metrics, TWO_WAYS, DELTA, 2);
    }
    assert_each_got_every_call(&one.metrics(), &other.metrics());
}

#[test]
#[ignore = "run by two_pipelines_at_once_to_two_collectors_each_export_every_call, with its environment"]
fn child_exports_to_two_collectors_at_once() {
    if !child::in_child() {
        return;
    }
    let other_endpoint = std::env::var(OTHER_ENDPOINT).unwrap();
    exports_two_ways(TWO_WAYS, pipeline(), pipeline_with(|builder| builder.otlp_endpoint(other_endpoint)));
}

/// So do two pipelines to one collector under two service names: the
/// collector keeps a stream per resource.
#[test]
fn two_pipelines_at_once_with_two_service_names_each_export_every_call() {
    let (endpoint, receiver) = otlp_receiver::start();
    run_child(
        "child_exports_as_two_services_at_once",
        &[(PREFERENCE, "delta"), ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)],
    );
    for service in ["delta-one", "delta-other"] {
        wait_for_exports(&receiver, |r| r.metrics_of_service(service), TWO_WAYS, DELTA, 2);
    }
    assert_each_got_every_call(&receiver.metrics_of_service("delta-one"), &receiver.metrics_of_service("delta-other"));
}

#[test]
#[ignore = "run by two_pipelines_at_once_with_two_service_names_each_export_every_call, with its environment"]
fn child_exports_as_two_services_at_once() {
    if !child::in_child() {
        return;
    }
    exports_two_ways(
        TWO_WAYS,
        pipeline_with(|builder| builder.service_name("delta-one")),
        pipeline_with(|builder| builder.service_name("delta-other")),
    );
}

/// The first calls of `map`, `one` flushed, the second calls, `other`
/// flushed, then their final exports, with nothing recorded since
/// `other`'s flush.
fn exports_two_ways(map: &str, one: TelemetryGuard, other: TelemetryGuard) {
    let probe = MapProbe::new(map).sample_every(1);
    record(&probe, FIRST);
    one.flush();
    record(&probe, SECOND);
    other.flush();
    drop(one);
    drop(other);
}

/// Runs `child` under each preference whose histogram is a delta one, to a
/// collector of its own, and checks `map`'s exports, in order: `deltas` in
/// the histogram, and in the calls counter under `delta`; under
/// `lowmemory`, whose calls counter is cumulative, `cumulative` there. The
/// intervals follow on, across the child's pipelines too.
fn check_each_preference<const N: usize>(child: &str, map: &str, deltas: [u64; N], cumulative: [u64; N]) {
    for (preference, calls_temporality, calls_exported) in
        [("delta", DELTA, deltas), ("lowmemory", CUMULATIVE, cumulative)]
    {
        let (endpoint, receiver) = otlp_receiver::start();
        run_child(child, &[(PREFERENCE, preference), ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)]);
        wait_for_exports(&receiver, ReceiverHandle::metrics, map, calls_temporality, N);
        let metrics = receiver.metrics();
        assert_eq!(timed(&metrics, map), deltas, "{preference}: the histogram of each export");
        assert_intervals_follow_on(&points(&metrics, map), preference);
        let calls = calls(&metrics, map, calls_temporality);
        assert_eq!(calls, calls_exported, "{preference}: the calls counter of each export");
    }
}

/// What [`exports_two_ways`] sent to two destinations that each get every
/// call: `one`, flushed after the first calls, each batch in an export of
/// its own; `other`, flushed after the second only, both in its first.
fn assert_each_got_every_call(one: &[Metric], other: &[Metric]) {
    assert_eq!(timed(one, TWO_WAYS), [FIRST, SECOND], "the first destination's histograms");
    assert_eq!(calls(one, TWO_WAYS, DELTA), [FIRST, SECOND], "the first destination's calls");
    assert_eq!(timed(other, TWO_WAYS), [FIRST + SECOND, 0], "the second destination's histograms");
    assert_eq!(calls(other, TWO_WAYS, DELTA), [FIRST + SECOND, 0], "the second destination's calls");
}

/// A pipeline to the environment's collector that exports only when flushed
/// or dropped: a periodic export could come in the middle of `record` and
/// split its calls over two exports.
fn pipeline() -> TelemetryGuard {
    pipeline_with(|builder| builder)
}

/// [`pipeline`], with what `configure` adds to its builder.
fn pipeline_with(configure: impl FnOnce(TelemetryBuilder) -> TelemetryBuilder) -> TelemetryGuard {
    let builder = Telemetry::builder()
        .fmt(false)
        .otlp(Protocol::Grpc)
        .metrics_interval(Duration::from_secs(3600))
        .otlp_timeout(Duration::from_secs(10));
    let (_subscriber, guard) = configure(builder).build().unwrap();
    guard
}

/// Waits until `receiver` has `exports` exports of `map`'s histogram and
/// of its calls counter (a sum of `temporality`) among the metrics `of`
/// reads: the child's guards waited for their final exports, but within
/// their timeout only.
fn wait_for_exports(
    receiver: &ReceiverHandle,
    of: impl Fn(&ReceiverHandle) -> Vec<Metric>,
    map: &str,
    temporality: AggregationTemporality,
    exports: usize,
) {
    let arrived = |r: &ReceiverHandle| {
        let metrics = of(r);
        timed(&metrics, map).len().min(calls(&metrics, map, temporality).len())
    };
    assert!(
        receiver.wait_until(Duration::from_secs(10), |r| arrived(r) >= exports),
        "{exports} exports of {map}: {:?}",
        receiver.metrics()
    );
}

fn record(probe: &MapProbe, calls: u64) {
    for version in 0..calls {
        let timer = probe.start(Op::Snapshot);
        probe.snapshot_taken(timer, version);
    }
}

fn is_the_maps_snapshots(attributes: &[KeyValue], map: &str) -> bool {
    string_attribute(attributes, "map") == Some(map) && string_attribute(attributes, "op") == Some("snapshot")
}

/// `map`'s timed snapshots in each export's histogram, in order; every
/// histogram must be a delta one.
fn timed(metrics: &[Metric], map: &str) -> Vec<u64> {
    points(metrics, map).iter().map(|p| p.count).collect()
}

/// `map`'s snapshot point in each export's histogram, in order; every
/// histogram must be a delta one.
fn points(metrics: &[Metric], map: &str) -> Vec<HistogramDataPoint> {
    let of_export = |m: &Metric| match &m.data {
        Some(metric::Data::Histogram(h)) => {
            assert_eq!(h.aggregation_temporality, DELTA as i32, "{m:#?}");
            h.data_points.iter().find(|p| is_the_maps_snapshots(&p.attributes, map)).cloned()
        }
        other => panic!("snapview.op.duration is a histogram: {other:?}"),
    };
    metrics.iter().filter(|m| m.name == "snapview.op.duration").filter_map(of_export).collect()
}

/// The delta points of one series to one collector, across pipelines: each interval starts where the one before
/// ended and ends after it starts; the series' first point has its min and
/// max (those of its first interval are the all-time ones), and no later
/// point has either (an interval's own are not known).
fn assert_intervals_follow_on(points: &[HistogramDataPoint], context: &str) {
    // In the order of their intervals: a pipeline's final export that outran
    // its drop's wait can reach the receiver after the next pipeline's.
    let mut points = points.to_vec();
    points.sort_by_key(|point| point.start_time_unix_nano);
    let points = &points[..];
    for point in points {
        assert!(point.start_time_unix_nano < point.time_unix_nano, "{context}: {points:#?}");
    }
    for (i, pair) in points.windows(2).enumerate() {
        let (before, after) = (&pair[0], &pair[1]);
        assert_eq!(after.start_time_unix_nano, before.time_unix_nano, "{context}: point {} starts late", i + 1);
    }
    let (first, later) = points.split_first().expect("a point");
    assert!(first.min.is_some() && first.max.is_some(), "{context}: the first point's min and max: {first:#?}");
    assert!(later.iter().all(|p| p.min.is_none() && p.max.is_none()), "{context}: later min or max: {later:#?}");
}

/// `map`'s snapshot calls in each export's counter, in order; every one
/// must be a sum of `temporality`.
fn calls(metrics: &[Metric], map: &str, temporality: AggregationTemporality) -> Vec<u64> {
    let of_export = |m: &Metric| match &m.data {
        Some(metric::Data::Sum(sum)) => {
            assert_eq!(sum.aggregation_temporality, temporality as i32, "{m:#?}");
            match sum.data_points.iter().find(|p| is_the_maps_snapshots(&p.attributes, map))?.value {
                Some(number_data_point::Value::AsInt(n)) => Some(n as u64),
                ref other => panic!("an integer counter: {other:?}"),
            }
        }
        other => panic!("snapview.op.calls is a sum: {other:?}"),
    };
    metrics.iter().filter(|m| m.name == "snapview.op.calls").filter_map(of_export).collect()
}
