//! The maps OTLP export covers are the first `MAX_OTLP_MAPS` map names
//! registered, idle ones included, so the set never changes: a map that was
//! exported is never dropped when a map registered before it, idle until
//! then, records its first call. Before, the set was the first
//! `MAX_OTLP_MAPS` names that had recorded something, and such a first call
//! pushed the last of them out for good (its series simply stopped).
//!
//! Registration order is process-wide: a map another test of the process
//! built first would take a place among the first `MAX_OTLP_MAPS`. So the
//! case runs in a child process of its own (this test binary running only
//! the ignored `child_*` test, `tests/support/child.rs`), where its maps
//! are the only ones; the child also starts without the developer's
//! `OTEL_*` variables, which `build()` would read (a temporality
//! preference, headers, an endpoint).
#![cfg(feature = "otlp")]

#[path = "support/child.rs"]
mod child;
#[path = "support/otlp_pipeline.rs"]
mod otlp_pipeline;
#[path = "support/otlp_receiver.rs"]
mod otlp_receiver;

use std::time::Duration;

use opentelemetry_proto::tonic::metrics::v1::Metric;
use otlp_receiver::{ReceiverHandle, counter_points, string_attribute};
use snapview_instrument::probe::MapProbe;
use snapview_instrument::{MAX_OTLP_MAPS, Op, Protocol};

/// Maps registered; the first `IDLE` record nothing until the second export.
const NAMED: usize = MAX_OTLP_MAPS + 16;
const IDLE: usize = 16;

#[test]
fn an_exported_map_stays_exported_when_an_earlier_idle_map_becomes_active() {
    child::run_child("child_keeps_exporting_the_first_maps_registered", &[]);
}

#[test]
#[ignore = "run by an_exported_map_stays_exported_when_an_earlier_idle_map_becomes_active, in a process of its own"]
fn child_keeps_exporting_the_first_maps_registered() {
    if !child::in_child() {
        return;
    }
    let names: Vec<String> = (0..NAMED).map(|m| format!("stable.{m:03}")).collect();
    let probes: Vec<MapProbe> = names.iter().map(|name| MapProbe::new(name).sample_every(1)).collect();
    for probe in &probes[IDLE..] {
        probe.start(Op::Get).finish();
    }
    let (endpoint, receiver) = otlp_receiver::start();
    let (_subscriber, guard) = otlp_pipeline::pipeline(Protocol::Grpc, &endpoint, otlp_pipeline::ONLY_WHEN_FLUSHED);

    guard.flush();
    let first = exported_maps(&receiver, 1);
    assert_eq!(first, names[IDLE..MAX_OTLP_MAPS], "the first MAX_OTLP_MAPS names registered, less the idle ones");

    probes[0].start(Op::Get).finish();
    guard.flush();
    let second = exported_maps(&receiver, 2);
    for map in &first {
        assert!(second.contains(map), "{map} was exported, then dropped: {second:?}");
    }
    let mut wanted = vec![names[0].clone()];
    wanted.extend_from_slice(&names[IDLE..MAX_OTLP_MAPS]);
    assert_eq!(second, wanted, "the idle map registered first joins; nothing else changes");
    drop(guard);
}

/// The maps of the `export`th export's calls counter (from 1), sorted.
fn exported_maps(receiver: &ReceiverHandle, export: usize) -> Vec<String> {
    let counters = |r: &ReceiverHandle| -> Vec<Metric> {
        r.metrics().into_iter().filter(|m| m.name == "snapview.op.calls").collect()
    };
    assert!(receiver.wait_until(Duration::from_secs(10), |r| counters(r).len() >= export), "export {export} arrives");
    let counter = &counters(receiver)[export - 1];
    let mut maps: Vec<String> = counter_points(counter)
        .iter()
        .filter_map(|p| string_attribute(&p.attributes, "map").map(str::to_owned))
        .collect();
    maps.sort();
    maps.dedup();
    maps
}
