//! End to end over OTLP: a real `SnapMap`'s spans and call counts reach an
//! in-process OTLP gRPC receiver through `snapview::instrument::Telemetry`,
//! nested under the application's span; and a collector that is absent
//! costs the application no more than the bounded shutdown.

#![cfg(feature = "otlp")]

#[path = "../../instrumentation/tests/support/otlp_receiver.rs"]
mod otlp_receiver;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{Metric, number_data_point};
use opentelemetry_proto::tonic::trace::v1::Span;
use otlp_receiver::{ReceiverHandle, counter_points, integer_attribute, spans_named, string_attribute};
use snapview::SnapMap;
use snapview::instrument::{Protocol, Telemetry};

/// How often the receiver gets the metrics in these tests.
const METRICS_INTERVAL: Duration = Duration::from_millis(100);

/// What the workload did, for the assertions.
#[derive(Debug)]
struct Workload {
    snapshots: u64,
    /// The version the batch published, and its effective changes.
    batch_version: u64,
    batch_changes: usize,
    /// Items the full iteration yielded (the map's length).
    items: usize,
    /// The versions the diff went from and to, and the changes it yielded.
    diff_from: u64,
    diff_to: u64,
    diff_changes: usize,
}

/// A request handler's work on a real map called `name`, inside an INFO app
/// span `request`: three inserts, a batch, snapshots, a full iteration, a
/// diff, and `extra_snapshots` more snapshots.
fn workload(name: &str, extra_snapshots: u64) -> Workload {
    let request = tracing::info_span!("request", route = "/routes");
    let _in_request = request.enter();
    let map = SnapMap::<String, u64>::builder().name(name).sample_every(1).build();
    for (i, route) in ["/a", "/b", "/c"].into_iter().enumerate() {
        map.insert(route.to_owned(), i as u64);
    }
    let before = map.snapshot();
    assert_eq!(before.version(), 3);
    // Two inserts, one replacement, one removal: four effective changes.
    map.update(|tx| {
        tx.insert("/d".to_owned(), 3);
        tx.insert("/e".to_owned(), 4);
        tx.insert("/a".to_owned(), 10);
        tx.remove("/b");
    });
    let after = map.snapshot();
    assert_eq!(after.version(), 4);
    let mut items = 0;
    for (_route, _value) in after.iter() {
        items += 1;
    }
    assert_eq!(items, map.len());
    let diff_changes = before.diff(&after).count();
    assert_eq!(diff_changes, 4, "added /d and /e, updated /a, removed /b");
    for _ in 0..extra_snapshots {
        drop(map.snapshot());
    }
    Workload {
        snapshots: 2 + extra_snapshots,
        batch_version: 4,
        batch_changes: 4,
        items,
        diff_from: before.version(),
        diff_to: after.version(),
        diff_changes,
    }
}

fn the_span<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    match spans_named(spans, name)[..] {
        [span] => span,
        ref found => panic!("one {name} span, found {}: {spans:#?}", found.len()),
    }
}

fn int(span: &Span, key: &str) -> Option<String> {
    integer_attribute(&span.attributes, key)
}

fn labels_are(attributes: &[KeyValue], map: &str, op: &str) -> bool {
    string_attribute(attributes, "map") == Some(map) && string_attribute(attributes, "op") == Some(op)
}

/// The calls of `op` on `map` in the latest export of `snapview.op.calls`
/// that has them.
fn exported_calls(metrics: &[Metric], map: &str, op: &str) -> Option<i64> {
    metrics.iter().rev().filter(|m| m.name == "snapview.op.calls").find_map(|metric| {
        let point = counter_points(metric).iter().find(|p| labels_are(&p.attributes, map, op))?;
        match point.value {
            Some(number_data_point::Value::AsInt(calls)) => Some(calls),
            ref other => panic!("snapview.op.calls counts in integers: {other:?}"),
        }
    })
}

fn snapshot_calls(receiver: &ReceiverHandle, map: &str) -> Option<i64> {
    exported_calls(&receiver.metrics(), map, "snapshot")
}

#[test]
fn a_real_maps_spans_and_calls_reach_the_collector() {
    let (endpoint, receiver) = otlp_receiver::start();
    let (subscriber, guard) = Telemetry::builder()
        .fmt(false)
        .otlp(Protocol::Grpc)
        .otlp_endpoint(endpoint)
        .metrics_interval(METRICS_INTERVAL)
        .build()
        .unwrap();
    let done = tracing::subscriber::with_default(subscriber, || workload("routes", 3));
    let snapshots = done.snapshots as i64;

    // The periodic export, with the guard still alive, brings the final count.
    let exported = receiver.wait_until(Duration::from_secs(10), |r| snapshot_calls(r, "routes") == Some(snapshots));
    assert!(exported, "snapshot calls exported periodically: {:?}", snapshot_calls(&receiver, "routes"));
    drop(guard);
    assert!(
        receiver.wait_until(Duration::from_secs(5), |r| !spans_named(&r.spans(), "request").is_empty()),
        "dropping the guard flushes the spans: {:#?}",
        receiver.spans()
    );
    assert_eq!(snapshot_calls(&receiver, "routes"), Some(snapshots), "the final export agrees");

    let spans = receiver.spans();
    let request = the_span(&spans, "request");
    let ours: Vec<&Span> = spans.iter().filter(|s| s.name.starts_with("snapview.")).collect();
    for span in &ours {
        assert_eq!(string_attribute(&span.attributes, "map"), Some("routes"), "{span:#?}");
        assert_eq!(span.parent_span_id, request.span_id, "{} is a child of the app span", span.name);
        assert_eq!(span.trace_id, request.trace_id, "{}", span.name);
    }

    let snapshot_spans = spans_named(&spans, "snapview.snapshot");
    assert_eq!(snapshot_spans.len() as u64, done.snapshots, "one span per snapshot()");
    let versions: Vec<_> = snapshot_spans.iter().map(|s| int(s, "version")).collect();
    assert_eq!(versions[..2], [Some("3".to_owned()), Some("4".to_owned())], "{versions:?}");

    let publishes = spans_named(&spans, "snapview.publish");
    assert_eq!(publishes.len(), 4, "three inserts and a batch: {publishes:#?}");
    let batch_version = done.batch_version.to_string();
    let batch = publishes.iter().find(|s| int(s, "version").as_deref() == Some(&batch_version)).unwrap();
    assert_eq!(int(batch, "changes"), Some(done.batch_changes.to_string()), "{batch:#?}");
    for insert in publishes.iter().filter(|s| int(s, "version").as_deref() != Some(&batch_version)) {
        assert_eq!(int(insert, "changes").as_deref(), Some("1"), "{insert:#?}");
    }

    let iter = the_span(&spans, "snapview.iter");
    assert_eq!(int(iter, "items"), Some(done.items.to_string()));
    assert_eq!(int(iter, "version"), Some("4".to_owned()));
    let nanos = |key| int(iter, key).and_then(|n| n.parse::<u64>().ok()).unwrap_or_else(|| panic!("{key}: {iter:#?}"));
    assert!(nanos("max_next_ns") <= nanos("duration_ns"), "{iter:#?}");

    let diff = the_span(&spans, "snapview.diff");
    assert_eq!(int(diff, "version"), Some(done.diff_to.to_string()), "{diff:#?}");
    assert_eq!(int(diff, "from_version"), Some(done.diff_from.to_string()));
    assert_eq!(int(diff, "changes"), Some(done.diff_changes.to_string()));

    assert!(spans_named(&spans, "snapview.iter.next").is_empty(), "TRACE spans are not exported by default");
    let expected = done.snapshots as usize + publishes.len() + 2;
    assert_eq!(ours.len(), expected, "snapshots, publishes, one iter, one diff and nothing else: {ours:#?}");
}

/// A port nothing listens on: bound, then released.
fn dead_endpoint() -> String {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    format!("http://127.0.0.1:{port}")
}

#[test]
fn an_absent_collector_costs_the_workload_nothing() {
    let start = Instant::now();
    let (subscriber, guard) = Telemetry::builder()
        .fmt(false)
        .otlp(Protocol::Grpc)
        .otlp_endpoint(dead_endpoint())
        .metrics_interval(METRICS_INTERVAL)
        .build()
        .unwrap();
    // Its own map name: the call counts are per name and process-wide.
    let done = tracing::subscriber::with_default(subscriber, || workload("routes-offline", 1000));
    let worked = start.elapsed();
    assert_eq!(done.snapshots, 1002);
    drop(guard);
    let total = start.elapsed();
    assert!(total < Duration::from_secs(5), "workload {worked:?}, with the guard's drop {total:?}");
}
