//! The five OTLP instruments of one export read one report: while a thread
//! keeps recording, each export's `snapview.op.duration.count` equals its
//! `+Inf` bucket (each instrument read its own report, a moment apart).

#![cfg(feature = "otlp")]

#[path = "support/otlp_receiver.rs"]
mod otlp_receiver;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry_proto::tonic::metrics::v1::Metric;
use otlp_receiver::{counter_points, string_attribute};
use snapview_instrument::probe::MapProbe;
use snapview_instrument::{Op, Protocol, Telemetry};

const EXPORTS: usize = 20;

#[test]
fn count_and_the_inf_bucket_agree_in_every_export_while_recording() {
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
    let (_subscriber, guard) = Telemetry::builder()
        .fmt(false)
        .otlp(Protocol::Grpc)
        .otlp_endpoint(endpoint)
        .metrics_interval(Duration::from_millis(20))
        .build()
        .unwrap();
    let enough = |metrics: &[Metric]| series(metrics, "snapview.op.duration.count").len() >= EXPORTS;
    assert!(receiver.wait_until(Duration::from_secs(30), |r| enough(&r.metrics())), "{EXPORTS} exports arrive");
    stop.store(true, Ordering::Relaxed);
    recorder.join().unwrap();
    drop(guard);

    let metrics = receiver.metrics();
    let counts = series(&metrics, "snapview.op.duration.count");
    let infs = series(&metrics, "snapview.op.duration.bucket");
    let exports = counts.len().min(infs.len());
    assert!(exports >= EXPORTS);
    let moving = counts.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(moving > EXPORTS / 2, "the recorder kept recording between exports: {counts:?}");
    assert_eq!(counts[..exports], infs[..exports], "count and +Inf bucket, export by export");
}

/// The value for map `one.report`, op `get` (the `+Inf` bucket of the bucket
/// metric) in each export of `name`, in order; exports without it skipped.
fn series(metrics: &[Metric], name: &str) -> Vec<u64> {
    metrics
        .iter()
        .filter(|m| m.name == name)
        .filter_map(|m| {
            counter_points(m).iter().find(|p| {
                string_attribute(&p.attributes, "map") == Some("one.report")
                    && string_attribute(&p.attributes, "op") == Some("get")
                    && string_attribute(&p.attributes, "le").is_none_or(|le| le == "+Inf")
            })
        })
        .map(|p| match p.value {
            Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(n)) => n as u64,
            ref other => panic!("an integer counter: {other:?}"),
        })
        .collect()
}
