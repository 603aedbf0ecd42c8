//! OTLP over HTTP/protobuf, end to end, configured the way deployments do it,
//! by the environment alone: the spans reach `<endpoint>/v1/traces` and the
//! metrics, the latency histogram among them, `<endpoint>/v1/metrics`, both
//! with the headers of `OTEL_EXPORTER_OTLP_HEADERS` (an API key, say). The
//! environment is process-wide, so the exporting side runs as a child
//! process (this test binary, running the ignored `child_exports_over_http`).
#![cfg(feature = "otlp")]

#[path = "support/child.rs"]
mod child;
#[path = "support/otlp_http_receiver.rs"]
mod otlp_http_receiver;

use std::time::Duration;

use child::run_child;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{HistogramDataPoint, metric, number_data_point};
use otlp_http_receiver::metrics_of;
use snapview_instrument::probe::MapProbe;
use snapview_instrument::{Op, Protocol, Telemetry};

const MAP: &str = "http.map";
const SNAPSHOTS: u64 = 5;

#[test]
fn spans_and_metrics_reach_an_http_collector_with_the_configured_headers() {
    let receiver = otlp_http_receiver::start();
    run_child(
        "child_exports_over_http",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=secret%20key, x-tenant=blue"),
            ("OTEL_SERVICE_NAME", "http-exporting-service"),
        ],
    );
    let has_histogram =
        |r: &otlp_http_receiver::HttpReceiver| r.metrics_requests().iter().any(|(_, m)| histogram(m).is_some());
    assert!(receiver.wait_until(Duration::from_secs(10), has_histogram), "{:#?}", receiver.requests());

    let requests = receiver.requests();
    let traces: Vec<_> = requests.iter().filter(|r| r.path == "/v1/traces").collect();
    assert!(!traces.is_empty(), "the span reached /v1/traces: {requests:#?}");
    for request in traces.iter().copied().chain(requests.iter().filter(|r| r.path == "/v1/metrics")) {
        assert_eq!(request.headers["content-type"], "application/x-protobuf", "{request:?}");
        assert_eq!(request.headers["x-api-key"], "secret key", "{request:?}");
        assert_eq!(request.headers["x-tenant"], "blue", "{request:?}");
    }

    let metrics = receiver.metrics_requests();
    let (_, request) = metrics.iter().rev().find(|(_, m)| histogram(m).is_some()).unwrap();
    let point = histogram(request).unwrap();
    assert_eq!(point.count, SNAPSHOTS);
    assert_eq!(point.bucket_counts.iter().sum::<u64>(), SNAPSHOTS, "{point:#?}");
    assert_eq!(calls(request), Some(SNAPSHOTS as i64), "the calls counter, in the same request");
    let resource = request.resource_metrics[0].resource.as_ref().unwrap();
    assert_eq!(string(&resource.attributes, "service.name"), Some("http-exporting-service"));
}

#[test]
#[ignore = "run by spans_and_metrics_reach_an_http_collector_with_the_configured_headers, with its environment"]
fn child_exports_over_http() {
    if !child::in_child() {
        return;
    }
    let probe = MapProbe::new(MAP).sample_every(1);
    // The endpoint and headers come from the environment; the timeout is
    // long so that the final export arrives whole however loaded the machine.
    let (subscriber, guard) = Telemetry::builder()
        .fmt(false)
        .otlp(Protocol::HttpProtobuf)
        .otlp_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    tracing::subscriber::with_default(subscriber, || {
        for version in 0..SNAPSHOTS {
            let timer = probe.start(Op::Snapshot);
            probe.snapshot_taken(timer, version);
        }
    });
    drop(guard); // the final export of both
}

/// reqwest's blocking client runs a runtime of its own, which may not start
/// on a thread of the application's runtime (tokio panics): an HTTP pipeline
/// built in an async `main` exports, and is dropped there.
#[test]
fn an_http_pipeline_built_inside_an_async_runtime_exports() {
    let receiver = otlp_http_receiver::start();
    let application = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    application.block_on(async {
        let probe = MapProbe::new("http.async").sample_every(1);
        let (subscriber, guard) = Telemetry::builder()
            .fmt(false)
            .otlp(Protocol::HttpProtobuf)
            .otlp_endpoint(&receiver.endpoint)
            .otlp_timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        tracing::subscriber::with_default(subscriber, || probe.start(Op::Get).finish());
        drop(guard); // the final export
        tokio::time::sleep(Duration::from_millis(1)).await; // the runtime goes on
    });
    let exported = |r: &otlp_http_receiver::HttpReceiver| {
        r.metrics_requests().iter().any(|(_, m)| metrics_of(m).any(|m| m.name == "snapview.op.duration"))
    };
    assert!(receiver.wait_until(Duration::from_secs(10), exported), "{:#?}", receiver.requests());
}

fn string<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(value) => Some(value),
        _ => None,
    }
}

fn is_the_maps_snapshots(attributes: &[KeyValue]) -> bool {
    string(attributes, "map") == Some(MAP) && string(attributes, "op") == Some("snapshot")
}

/// The map's snapshot histogram in `request`, if it has one.
fn histogram(request: &ExportMetricsServiceRequest) -> Option<&HistogramDataPoint> {
    metrics_of(request).filter(|m| m.name == "snapview.op.duration").find_map(|m| match &m.data {
        Some(metric::Data::Histogram(h)) => h.data_points.iter().find(|p| is_the_maps_snapshots(&p.attributes)),
        other => panic!("snapview.op.duration is a histogram: {other:?}"),
    })
}

/// The map's snapshot calls in `request`, if it has them.
fn calls(request: &ExportMetricsServiceRequest) -> Option<i64> {
    metrics_of(request).filter(|m| m.name == "snapview.op.calls").find_map(|m| match &m.data {
        Some(metric::Data::Sum(sum)) => {
            sum.data_points.iter().find(|p| is_the_maps_snapshots(&p.attributes)).and_then(|p| match p.value {
                Some(number_data_point::Value::AsInt(n)) => Some(n),
                _ => None,
            })
        }
        _ => None,
    })
}
