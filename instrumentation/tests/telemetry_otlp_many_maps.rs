//! OTLP export of many maps: each of the first `MAX_OTLP_MAPS` map names
//! exports every series (all `le` buckets up to `+Inf`), with no SDK overflow
//! series mixing them (the SDK's default limit, 2000 series per instrument,
//! held the buckets of 11 maps); the maps named later are left out whole.

#![cfg(feature = "otlp")]

#[path = "support/otlp_receiver.rs"]
mod otlp_receiver;

use std::time::Duration;

use opentelemetry_proto::tonic::metrics::v1::Metric;
use otlp_receiver::{attribute, counter_points, string_attribute};
use snapview_instrument::probe::MapProbe;
use snapview_instrument::{BUCKET_BOUNDS_NS, MAX_OTLP_MAPS, Op, Protocol, Telemetry};

const NAMED: usize = MAX_OTLP_MAPS + 6;

#[test]
fn the_first_max_otlp_maps_export_every_series_and_no_overflow() {
    let names: Vec<String> = (0..NAMED).map(|m| format!("many.{m:03}")).collect();
    for name in &names {
        let probe = MapProbe::new(name).sample_every(1);
        for op in Op::ALL {
            probe.start(op).finish();
        }
    }
    let (endpoint, receiver) = otlp_receiver::start();
    let (_subscriber, guard) =
        Telemetry::builder().fmt(false).otlp(Protocol::Grpc).otlp_endpoint(endpoint).build().unwrap();
    drop(guard);
    let latest = |metrics: &[Metric], name: &str| metrics.iter().rev().find(|m| m.name == name).cloned();
    let exported = receiver.wait_until(Duration::from_secs(10), |r| {
        latest(&r.metrics(), "snapview.op.duration.bucket").is_some()
            && latest(&r.metrics(), "snapview.op.calls").is_some()
    });
    assert!(exported, "the final export arrives");
    let metrics = receiver.metrics();

    let buckets = latest(&metrics, "snapview.op.duration.bucket").unwrap();
    let points = counter_points(&buckets);
    assert!(points.iter().all(|p| attribute(&p.attributes, "otel.metric.overflow").is_none()), "an overflow series");
    assert_eq!(points.len(), MAX_OTLP_MAPS * Op::ALL.len() * (BUCKET_BOUNDS_NS.len() + 1));
    for name in &names[..MAX_OTLP_MAPS] {
        for op in Op::ALL {
            let inf = points.iter().find(|p| {
                string_attribute(&p.attributes, "map") == Some(name)
                    && string_attribute(&p.attributes, "op") == Some(op.as_str())
                    && string_attribute(&p.attributes, "le") == Some("+Inf")
            });
            assert!(inf.is_some(), "no +Inf bucket for {name} {op:?}");
        }
    }

    let calls = latest(&metrics, "snapview.op.calls").unwrap();
    let maps_exported = |metric: &Metric| {
        let mut maps: Vec<String> = counter_points(metric)
            .iter()
            .filter_map(|p| string_attribute(&p.attributes, "map").map(str::to_owned))
            .collect();
        maps.dedup();
        maps
    };
    let mut maps = maps_exported(&calls);
    maps.sort();
    maps.dedup();
    assert_eq!(maps, names[..MAX_OTLP_MAPS], "the first MAX_OTLP_MAPS names, and only them");
}
