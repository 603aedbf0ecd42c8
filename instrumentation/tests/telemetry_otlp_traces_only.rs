//! A collector that takes traces but no metrics (Jaeger, the README's
//! example): the spans arrive, and the refused metrics are told once, as a
//! warning, not as an SDK export error at every interval.
#![cfg(feature = "otlp")]

#[path = "support/complaints.rs"]
mod complaints;
#[path = "support/otlp_http_receiver.rs"]
mod otlp_http_receiver;
#[path = "support/otlp_pipeline.rs"]
mod otlp_pipeline;
#[path = "support/otlp_receiver.rs"]
mod otlp_receiver;

use std::time::Duration;

use complaints::Complaints;
use otlp_receiver::spans_named;
use snapview_instrument::probe::MapProbe;
use snapview_instrument::{Op, Protocol};

#[test]
fn a_collector_without_metrics_is_told_once_and_traces_go_on() {
    let complaints = Complaints::collect();

    let (endpoint, grpc) = otlp_receiver::start_traces_only();
    export_a_span_and_metrics(Protocol::Grpc, &endpoint);
    let spans = |r: &otlp_receiver::ReceiverHandle| !spans_named(&r.spans(), "snapview.snapshot").is_empty();
    assert!(grpc.wait_until(Duration::from_secs(10), spans), "the span arrives over gRPC");
    told_once(&complaints, "gRPC (Unimplemented)");

    let http = otlp_http_receiver::start_traces_only();
    export_a_span_and_metrics(Protocol::HttpProtobuf, &http.endpoint);
    assert!(http.wait_for_request("/v1/traces"), "the span arrives over HTTP");
    let told = told_once(&complaints, "HTTP (404)");
    // A 404 is also a wrong path: the warning names the URL it came from.
    let url = format!("{}/v1/metrics", http.endpoint.trim_end_matches('/'));
    assert!(told.contains(&url), "the warning names {url}: {told}");
}

/// One span, then several metrics exports, each refused.
fn export_a_span_and_metrics(protocol: Protocol, endpoint: &str) {
    let probe = MapProbe::new("traces.only").sample_every(1);
    let (subscriber, guard) = otlp_pipeline::pipeline(protocol, endpoint, Duration::from_millis(50));
    tracing::subscriber::with_default(subscriber, || {
        let timer = probe.start(Op::Snapshot);
        probe.snapshot_taken(timer, 1);
    });
    std::thread::sleep(Duration::from_millis(400));
    drop(guard);
}

/// The refusal was told once, and nothing else was complained of; clears,
/// and returns the warning.
fn told_once(complaints: &Complaints, over: &str) -> String {
    let complaints = complaints.take();
    let told: Vec<&String> = complaints.iter().filter(|c| c.contains("takes no metrics")).collect();
    assert_eq!(told.len(), 1, "{over}: {complaints:#?}");
    assert!(complaints.iter().all(|c| c.starts_with("WARN")), "{over}: no export errors: {complaints:#?}");
    told[0].clone()
}
