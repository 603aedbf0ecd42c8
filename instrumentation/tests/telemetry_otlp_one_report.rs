//! The OTLP metrics of one export read one report: while a thread keeps
//! recording, each export's `snapview.op.calls` (an SDK instrument) is at
//! least its `snapview.op.duration` count (the exporter's histogram), as in
//! any one report; had they read reports a moment apart, the later count
//! would pass the earlier calls.
#![cfg(feature = "otlp")]

#[path = "support/otlp_pipeline.rs"]
mod otlp_pipeline;
#[path = "support/otlp_receiver.rs"]
mod otlp_receiver;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{Metric, number_data_point};
use otlp_receiver::{counter_points, histogram_points, string_attribute};
use snapview_instrument::probe::MapProbe;
use snapview_instrument::{Op, Protocol};

const EXPORTS: usize = 20;

#[test]
fn calls_and_the_histogram_agree_in_every_export_while_recording() {
    let stop = Arc::new(AtomicBool::new(false));
    let recorder = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let probe = MapProbe::new("one.report").sample_every(1);
            while !stop.load(Ordering::Relaxed) {
                probe.start(Op::Get).finish();
            }
        })
    };
    let (endpoint, receiver) = otlp_receiver::start();
    let (_subscriber, guard) = otlp_pipeline::pipeline(Protocol::Grpc, &endpoint, Duration::from_millis(20));
    let enough = |metrics: &[Metric]| timed(metrics).len() >= EXPORTS;
    assert!(receiver.wait_until(Duration::from_secs(30), |r| enough(&r.metrics())), "{EXPORTS} exports arrive");
    stop.store(true, Ordering::Relaxed);
    recorder.join().unwrap();
    drop(guard);

    let metrics = receiver.metrics();
    let (calls, timed) = (calls(&metrics), timed(&metrics));
    let exports = calls.len().min(timed.len());
    assert!(exports >= EXPORTS);
    let moving = timed.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(moving > EXPORTS / 2, "the recorder kept recording between exports: {timed:?}");
    for (export, (made, timed)) in calls.iter().zip(&timed).enumerate() {
        assert!(made >= timed, "export {export}: {made} calls, {timed} timed");
    }
}

fn is_the_recorders(attributes: &[KeyValue]) -> bool {
    string_attribute(attributes, "map") == Some("one.report") && string_attribute(attributes, "op") == Some("get")
}

/// The recorder's calls in each export, in order.
fn calls(metrics: &[Metric]) -> Vec<u64> {
    let of_export = |metric: &Metric| {
        let point = counter_points(metric).iter().find(|p| is_the_recorders(&p.attributes))?;
        match point.value {
            Some(number_data_point::Value::AsInt(n)) => Some(n as u64),
            ref other => panic!("an integer counter: {other:?}"),
        }
    };
    metrics.iter().filter(|m| m.name == "snapview.op.calls").filter_map(of_export).collect()
}

/// The recorder's timed calls (the histogram's count) in each export, in order.
fn timed(metrics: &[Metric]) -> Vec<u64> {
    let of_export =
        |metric: &Metric| Some(histogram_points(metric).iter().find(|p| is_the_recorders(&p.attributes))?.count);
    metrics.iter().filter(|m| m.name == "snapview.op.duration").filter_map(of_export).collect()
}
