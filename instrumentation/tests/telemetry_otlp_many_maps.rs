//! OTLP export of many maps: each of the first `MAX_OTLP_MAPS` map names
//! exports every series (a histogram per op, every quantile), with no SDK
//! overflow series mixing them (the SDK's default limit is 2000 series per
//! instrument; the quantiles of 64 maps are 64 x 7 x 6); the maps named
//! later are left out whole.

#![cfg(feature = "otlp")]

#[path = "support/otlp_receiver.rs"]
mod otlp_receiver;

use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::Metric;
use otlp_receiver::{attribute, counter_points, gauge_points, histogram_points, string_attribute};
use snapview_instrument::probe::MapProbe;
use snapview_instrument::{MAX_OTLP_MAPS, Op, Protocol, Telemetry};

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
        // The final export must arrive whole, however loaded the machine.
        Telemetry::builder().fmt(false).otlp(Protocol::Grpc).otlp_endpoint(endpoint).otlp_timeout(Duration::from_secs(10)).build().unwrap();
    drop(guard);
    let latest = |metrics: &[Metric], name: &str| metrics.iter().rev().find(|m| m.name == name).cloned();
    let exported = receiver.wait_until(Duration::from_secs(10), |r| {
        ["snapview.op.duration", "snapview.op.duration.quantile", "snapview.op.calls"]
            .iter()
            .all(|name| latest(&r.metrics(), name).is_some())
    });
    assert!(exported, "the final export arrives");
    let metrics = receiver.metrics();
    let of = |attributes: &[KeyValue], name: &str, op: Op| {
        string_attribute(attributes, "map") == Some(name) && string_attribute(attributes, "op") == Some(op.as_str())
    };

    let quantiles = latest(&metrics, "snapview.op.duration.quantile").unwrap();
    let points = gauge_points(&quantiles);
    assert!(points.iter().all(|p| attribute(&p.attributes, "otel.metric.overflow").is_none()), "an overflow series");
    assert_eq!(points.len(), MAX_OTLP_MAPS * Op::ALL.len() * 6, "six quantiles per map and op");

    let histogram = latest(&metrics, "snapview.op.duration").unwrap();
    let points = histogram_points(&histogram);
    assert_eq!(points.len(), MAX_OTLP_MAPS * Op::ALL.len());
    for name in &names[..MAX_OTLP_MAPS] {
        for op in Op::ALL {
            let point = points.iter().find(|p| of(&p.attributes, name, op));
            assert_eq!(point.map(|p| p.count), Some(1), "the histogram of {name} {op:?}");
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
