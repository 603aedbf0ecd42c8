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
//!
//! All five read one report per collection, so that `count`, `sum` and the
//! `+Inf` bucket of one export agree. They export the first
//! [`MAX_OTLP_MAPS`] map names of the process, and each instrument's
//! cardinality limit holds all their series: past the SDK's default limit
//! (2000 series per instrument, 11 maps' buckets) the SDK would fold the
//! rest into one overflow series, mixing `le` values.

use crate::sync::unmodelled::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{AsyncInstrument, Meter};
use opentelemetry_sdk::metrics::{Instrument, MeterProviderBuilder, Stream};

use crate::{BUCKET_BOUNDS_NS, Op, OpStats, Report, report};

const NANOS_PER_SECOND: f64 = 1e9;

/// How many map names OTLP export covers: the first this many the process
/// named (Prometheus text and the debug endpoint show every map). Each
/// instrument's series table is allocated for them up front, ~0.5 MB in all.
pub const MAX_OTLP_MAPS: usize = 64;

/// The quantiles the `snapview.op.duration` gauge exports per (map, op).
const QUANTILES: usize = 6;

/// The instruments, with how many series each (map, op) takes in it.
const INSTRUMENTS: [(&str, usize); 5] = [
    ("snapview.op.calls", 1),
    ("snapview.op.duration.count", 1),
    ("snapview.op.duration.sum", 1),
    ("snapview.op.duration.bucket", BUCKET_BOUNDS_NS.len() + 1),
    ("snapview.op.duration", QUANTILES),
];

/// Raises each instrument's cardinality limit to what [`MAX_OTLP_MAPS`] maps
/// can fill.
pub(super) fn with_cardinality_limits(builder: MeterProviderBuilder) -> MeterProviderBuilder {
    builder.with_view(|instrument: &Instrument| {
        let &(_, per_op) = INSTRUMENTS.iter().find(|(name, _)| *name == instrument.name())?;
        Stream::builder().with_cardinality_limit(series_limit(per_op)).build().ok()
    })
}

fn series_limit(per_op: usize) -> usize {
    MAX_OTLP_MAPS * Op::ALL.len() * per_op
}

/// Registers the instruments; their callbacks live as long as the meter
/// provider.
pub(super) fn register(meter: &Meter) {
    let shared = Arc::new(SharedReport::default());
    let reader = |index: usize| {
        let shared = Arc::clone(&shared);
        move || shared.for_instrument(index)
    };
    let [calls, count, sum, bucket, quantiles] = [0, 1, 2, 3, 4].map(reader);
    meter
        .u64_observable_counter(INSTRUMENTS[0].0)
        .with_description("Operations on snapview maps, timed or not")
        .with_unit("{call}")
        .with_callback(move |observer| {
            observe_each(&calls(), observer, |o, stats, labels| o.observe(stats.calls, labels))
        })
        .build();
    meter
        .u64_observable_counter(INSTRUMENTS[1].0)
        .with_description("Timed operations on snapview maps")
        .with_unit("{call}")
        .with_callback(move |observer| {
            observe_each(&count(), observer, |o, stats, labels| o.observe(stats.samples, labels))
        })
        .build();
    meter
        .f64_observable_counter(INSTRUMENTS[2].0)
        .with_description("Total duration of the timed operations on snapview maps")
        .with_unit("s")
        .with_callback(move |observer| {
            observe_each(&sum(), observer, |o, stats, labels| o.observe(seconds(stats.sum), labels));
        })
        .build();
    meter
        .u64_observable_counter(INSTRUMENTS[3].0)
        .with_description("Timed operations on snapview maps that took at most `le` seconds")
        .with_unit("{call}")
        .with_callback(move |observer| observe_each(&bucket(), observer, observe_buckets))
        .build();
    meter
        .f64_observable_gauge(INSTRUMENTS[4].0)
        .with_description("Duration quantiles of the timed operations on snapview maps")
        .with_unit("s")
        .with_callback(move |observer| observe_each(&quantiles(), observer, observe_quantiles))
        .build();
}

/// The report of the current collection, shared by the five instruments.
///
/// The SDK runs each instrument's callback once per collection, in an order
/// it does not promise: an instrument that finds it has already read the
/// current report starts the next collection's, which the others then read.
#[derive(Default)]
struct SharedReport(Mutex<Option<(Arc<Report>, [bool; INSTRUMENTS.len()])>>);

impl SharedReport {
    fn for_instrument(&self, index: usize) -> Arc<Report> {
        let mut current = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let fresh = || (Arc::new(report()), [false; INSTRUMENTS.len()]);
        let (shared, read) = match &mut *current {
            Some((_, read)) if read[index] => current.insert(fresh()),
            Some(current) => current,
            None => current.insert(fresh()),
        };
        read[index] = true;
        Arc::clone(shared)
    }
}

type Labels = [KeyValue; 2];

/// Observes every (map, op) of `report` of the first [`MAX_OTLP_MAPS`] map
/// names, labelled with `map` and `op`.
fn observe_each<T>(
    report: &Report,
    observer: &dyn AsyncInstrument<T>,
    observe: impl Fn(&dyn AsyncInstrument<T>, &OpStats, &Labels),
) {
    let mut maps: Vec<&str> = Vec::new();
    for stats in report.iter() {
        // The report lists each map's ops together, maps in the order named.
        if maps.last() != Some(&stats.map.as_str()) {
            if maps.len() == MAX_OTLP_MAPS {
                warn_maps_left_out();
                return;
            }
            maps.push(&stats.map);
        }
        let labels = [KeyValue::new("map", stats.map.clone()), KeyValue::new("op", stats.op.as_str())];
        observe(observer, stats, &labels);
    }
}

#[cold]
fn warn_maps_left_out() {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            max = MAX_OTLP_MAPS,
            "more snapview map names than OTLP export covers: the maps named after the first {MAX_OTLP_MAPS} \
             are not exported over OTLP (Prometheus text and /debug/pprof/histograms show them)"
        );
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
