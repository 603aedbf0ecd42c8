//! The latency histograms as OTLP metrics, read from [`crate::report`] at
//! each collection.
//!
//! The OpenTelemetry SDK (0.33) builds histogram data points only from
//! measurements it aggregates itself, and offers no observable histogram, so a
//! histogram aggregated elsewhere cannot be exported as one. It is exported
//! the way Prometheus exposes a histogram and a summary instead, all with the
//! attributes `map` and `op`, durations in seconds:
//!
//! | metric | kind | value |
//! |---|---|---|
//! | `snapview.op.calls` | counter | calls, exact (timed or not) |
//! | `snapview.op.duration.count` | counter | timed calls (samples) |
//! | `snapview.op.duration.sum` | counter, s | total time of the samples |
//! | `snapview.op.duration.bucket` | counter, extra attribute `le` | samples ≤ `le` seconds (cumulative, last `+Inf`) |
//! | `snapview.op.duration` | gauge, s, extra attribute `quantile` | `0` (min), `0.5`, `0.9`, `0.99`, `0.999`, `1` (max) |
//!
//! The bucket counters aggregate across processes (`histogram_quantile` over
//! `le` works on them); the quantile gauges are exact per process but do not.

use opentelemetry::KeyValue;
use opentelemetry::metrics::{AsyncInstrument, Meter};

use crate::{OpStats, report};

const NANOS_PER_SECOND: f64 = 1e9;

/// Registers the instruments; their callbacks live as long as the meter
/// provider.
pub(super) fn register(meter: &Meter) {
    meter
        .u64_observable_counter("snapview.op.calls")
        .with_description("Operations on snapview maps, timed or not")
        .with_unit("{call}")
        .with_callback(|observer| observe_each(observer, |o, stats, labels| o.observe(stats.calls, labels)))
        .build();
    meter
        .u64_observable_counter("snapview.op.duration.count")
        .with_description("Timed operations on snapview maps")
        .with_unit("{call}")
        .with_callback(|observer| observe_each(observer, |o, stats, labels| o.observe(stats.samples, labels)))
        .build();
    meter
        .f64_observable_counter("snapview.op.duration.sum")
        .with_description("Total duration of the timed operations on snapview maps")
        .with_unit("s")
        .with_callback(|observer| observe_each(observer, |o, stats, labels| o.observe(seconds(stats.sum), labels)))
        .build();
    meter
        .u64_observable_counter("snapview.op.duration.bucket")
        .with_description("Timed operations on snapview maps that took at most `le` seconds")
        .with_unit("{call}")
        .with_callback(|observer| observe_each(observer, observe_buckets))
        .build();
    meter
        .f64_observable_gauge("snapview.op.duration")
        .with_description("Duration quantiles of the timed operations on snapview maps")
        .with_unit("s")
        .with_callback(|observer| observe_each(observer, observe_quantiles))
        .build();
}

type Labels = [KeyValue; 2];

/// Observes every (map, op) recorded so far, labelled with `map` and `op`.
fn observe_each<T>(observer: &dyn AsyncInstrument<T>, observe: impl Fn(&dyn AsyncInstrument<T>, &OpStats, &Labels)) {
    for stats in report().iter() {
        let labels = [KeyValue::new("map", stats.map.clone()), KeyValue::new("op", stats.op.as_str())];
        observe(observer, stats, &labels);
    }
}

fn observe_buckets(observer: &dyn AsyncInstrument<u64>, stats: &OpStats, labels: &Labels) {
    for (bound, count) in stats.buckets() {
        observer.observe(count, &with(labels, KeyValue::new("le", le(bound))));
    }
}

fn observe_quantiles(observer: &dyn AsyncInstrument<f64>, stats: &OpStats, labels: &Labels) {
    if stats.samples == 0 {
        return; // calls counted, none timed: there is no duration to report
    }
    let quantiles = [
        ("0", stats.min),
        ("0.5", stats.p50),
        ("0.9", stats.p90),
        ("0.99", stats.p99),
        ("0.999", stats.p999),
        ("1", stats.max),
    ];
    for (quantile, nanos) in quantiles {
        observer.observe(seconds(nanos), &with(labels, KeyValue::new("quantile", quantile)));
    }
}

fn with(labels: &Labels, extra: KeyValue) -> [KeyValue; 3] {
    let [map, op] = labels.clone();
    [map, op, extra]
}

/// A bucket bound as Prometheus writes `le`: `0.001`, `+Inf`.
fn le(bound: f64) -> String {
    if bound.is_infinite() { "+Inf".to_owned() } else { bound.to_string() }
}

fn seconds(nanos: u64) -> f64 {
    nanos as f64 / NANOS_PER_SECOND
}
