//! The latency histograms as OTLP metrics, read from [`crate::report`] at
//! each collection, all with the attributes `map` and `op`, durations in
//! seconds:
//!
//! | metric | kind | value |
//! |---|---|---|
//! | `snapview.op.calls` | counter | calls, exact (timed or not) |
//! | `snapview.op.duration` | histogram, s | the timed calls: count, sum, min, max and buckets ([`BUCKET_BOUNDS_NS`]) |
//! | `snapview.op.duration.quantile` | gauge, s, extra attribute `quantile` | `0` (min), `0.5`, `0.9`, `0.99`, `0.999`, `1` (max) |
//!
//! The histogram aggregates across processes (a collector's Prometheus
//! exporter turns it into `snapview_op_duration_seconds_bucket`, `_sum` and
//! `_count`, the names of [`crate::Report::to_prometheus`]); the quantile
//! gauges are exact per process but do not.
//!
//! The OpenTelemetry SDK (0.33) builds histogram data points only from
//! measurements it aggregates itself, and has no observable histogram, so
//! the SDK observes the two others and the exporter
//! ([`super::otlp`]) adds the histogram, built here, to each export's request.
//!
//! All three read one report per collection, so that one export's calls and
//! durations agree. They export the maps of the first [`MAX_OTLP_MAPS`] map
//! names registered (in the order the first map of each name was built),
//! counting names that have recorded nothing yet, which have no series until
//! they do: the set never changes, so a map once exported stays exported.
//! Each SDK instrument's cardinality limit holds all their series: past the
//! SDK's default limit (2000 series per instrument) it would fold the rest
//! into one overflow series.
//!
//! With delta temporality every collection takes, for each series, what was
//! recorded since the previous collection of any pipeline of the process
//! ([`CARRIED`]), not of its own pipeline: a new pipeline starts from what
//! earlier ones sent instead of sending the whole history again, and two
//! pipelines alive at once (the window in which `install` refuses one)
//! split the calls between their exports, each call in one export of
//! either. What a collection took is gone from later ones whether or not
//! its export then went through: a failed export's interval is lost, as
//! for the SDK's own delta instruments.

use crate::sync::unmodelled::{AtomicBool, Ordering};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{AsyncInstrument, Meter};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, any_value};
use opentelemetry_proto::tonic::metrics::v1 as proto;
use opentelemetry_sdk::metrics::{Instrument, MeterProviderBuilder, Stream, Temporality};

use crate::{BUCKET_BOUNDS_NS, Op, OpStats, Report, report};

const NANOS_PER_SECOND: f64 = 1e9;

/// How many map names OTLP export covers: the first this many the process
/// registered, whether or not they have recorded anything yet (Prometheus
/// text and the debug endpoint show every map). Each instrument's series
/// table is allocated for them up front.
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub const MAX_OTLP_MAPS: usize = 64;

/// The meter's name: the instrumentation scope of every snapview metric.
pub(super) const SCOPE: &str = "snapview";

/// The quantiles the `snapview.op.duration.quantile` gauge exports per (map, op).
const QUANTILES: usize = 6;

/// The SDK's instruments, with how many series each (map, op) takes in it.
const INSTRUMENTS: [(&str, usize); 2] = [("snapview.op.calls", 1), ("snapview.op.duration.quantile", QUANTILES)];

/// The histogram, which the exporter adds to each request.
const HISTOGRAM: &str = "snapview.op.duration";

/// The readers of one collection's report: the SDK's instruments, then the
/// exporter's histogram.
const READERS: usize = INSTRUMENTS.len() + 1;

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
/// provider. `shared` is the one [`Histograms`] reads too; `temporality`
/// the one the exporter asks of the SDK.
pub(super) fn register(meter: &Meter, shared: &Arc<SharedReport>, temporality: Temporality) {
    let reader = |index: usize| {
        let shared = Arc::clone(shared);
        move || shared.for_reader(index)
    };
    let [calls, quantiles] = [0, 1].map(reader);
    let counted = CallsObserved::new(temporality);
    meter
        .u64_observable_counter(INSTRUMENTS[0].0)
        .with_description("Operations on snapview maps, timed or not")
        .with_unit("{call}")
        .with_callback(move |observer| counted.observe(&calls(), observer))
        .build();
    meter
        .f64_observable_gauge(INSTRUMENTS[1].0)
        .with_description("Duration quantiles of the timed operations on snapview maps")
        .with_unit("s")
        .with_callback(move |observer| observe_each(&quantiles(), observer, observe_quantiles))
        .build();
}

/// What the delta collections of every pipeline of the process took so
/// far, which the next one, of whichever pipeline, takes its deltas from.
/// Only delta collections move it: a cumulative export sends everything
/// anyway. Before any delta collection it is empty, so the first carries
/// everything recorded since the process started (a map may have recorded
/// before the pipeline was built).
static CARRIED: Mutex<Carried> =
    Mutex::new(Carried { since: None, histograms: BTreeMap::new(), calls: BTreeMap::new() });

#[derive(Debug)]
struct Carried {
    /// When the last delta histogram was taken, where the next one's
    /// interval starts.
    since: Option<SystemTime>,
    /// Each (map, op) series' histogram totals at the last delta collection.
    histograms: BTreeMap<(String, Op), Totals>,
    /// Each (map, op) series' calls at the last collection of a delta calls
    /// counter (with `lowmemory` it is cumulative, and does not move this).
    calls: BTreeMap<(String, Op), u64>,
}

fn carried() -> MutexGuard<'static, Carried> {
    CARRIED.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The `snapview.op.duration` histograms, built for each export from the
/// report its collection read, cumulative or, when the exporter's
/// temporality asks for it, as deltas since the previous delta collection
/// of the process ([`CARRIED`]).
#[derive(Debug)]
pub(super) struct Histograms {
    shared: Arc<SharedReport>,
    temporality: Temporality,
    /// The pipeline's start, where the cumulative counts start as far as the
    /// collector knows, and the delta ones of the process's first delta
    /// collection.
    start: SystemTime,
}

/// One series' totals at an export: the timed calls, their sum in
/// nanoseconds, and the cumulative bucket counts.
#[derive(Clone, Debug, Default)]
struct Totals {
    count: u64,
    sum: u64,
    buckets: Vec<u64>,
}

impl Totals {
    fn of(stats: &OpStats) -> Self {
        Self { count: stats.samples, sum: stats.sum, buckets: stats.buckets().map(|(_, count)| count).collect() }
    }

    /// The later of two readings of a series, field by field (each only
    /// grows): a report read by one of two pipelines alive at once may be
    /// older than what the other's collection already took, and taking it
    /// as the new totals would make the next collection send that
    /// difference a second time.
    fn latest(&self, other: &Totals) -> Totals {
        let bucket =
            |i: usize| self.buckets.get(i).copied().unwrap_or(0).max(other.buckets.get(i).copied().unwrap_or(0));
        Totals {
            count: self.count.max(other.count),
            sum: self.sum.max(other.sum),
            buckets: (0..self.buckets.len().max(other.buckets.len())).map(bucket).collect(),
        }
    }
}

impl Histograms {
    /// Histograms in `temporality`: deltas for `Delta` and `LowMemory` (as the
    /// SDK treats a histogram), cumulative otherwise.
    pub(super) fn new(shared: Arc<SharedReport>, temporality: Temporality) -> Self {
        Self { shared, temporality, start: SystemTime::now() }
    }

    fn is_delta(&self) -> bool {
        matches!(self.temporality, Temporality::Delta | Temporality::LowMemory)
    }

    /// The temporality the exporter asks of the SDK's instruments.
    pub(super) fn temporality(&self) -> Temporality {
        self.temporality
    }

    /// Adds the histograms of this collection's report to `request`, in the
    /// `snapview` scope beside the SDK's instruments.
    pub(super) fn add_to(&self, request: &mut ExportMetricsServiceRequest) {
        let report = self.shared.for_reader(INSTRUMENTS.len());
        let Some(metric) = self.metric(&report, SystemTime::now()) else { return };
        let Some(resource) = request.resource_metrics.first_mut() else { return };
        let is_ours = |scope: &&mut proto::ScopeMetrics| scope.scope.as_ref().is_some_and(|s| s.name == SCOPE);
        match resource.scope_metrics.iter_mut().find(is_ours) {
            Some(scope) => scope.metrics.push(metric),
            None => resource.scope_metrics.push(proto::ScopeMetrics {
                scope: Some(InstrumentationScope { name: SCOPE.to_owned(), ..Default::default() }),
                metrics: vec![metric],
                schema_url: String::new(),
            }),
        }
    }

    /// The histogram metric of `report` at `now`, or `None` if it has no
    /// (map, op) yet.
    fn metric(&self, report: &Report, now: SystemTime) -> Option<proto::Metric> {
        // Held for the whole collection: another pipeline's, at once, then
        // takes its deltas after all of this one's.
        let mut carried = self.is_delta().then(carried);
        let since = carried.as_ref().and_then(|carried| carried.since).unwrap_or(self.start);
        let (start, time) = (unix_nanos(since), unix_nanos(now));
        let explicit_bounds: Vec<f64> = BUCKET_BOUNDS_NS.iter().map(|&ns| seconds(ns)).collect();
        let mut data_points = Vec::new();
        for_each_exported(report, |stats| {
            let now_totals = Totals::of(stats);
            let point = match carried.as_mut() {
                Some(carried) => {
                    let series = (stats.map.clone(), stats.op);
                    let before = carried.histograms.remove(&series).unwrap_or_default();
                    let after = before.latest(&now_totals);
                    let point = delta_point(stats, &before, &after);
                    carried.histograms.insert(series, after);
                    point
                }
                None => cumulative_point(stats, &now_totals),
            };
            data_points.push(proto::HistogramDataPoint {
                attributes: vec![string_attribute("map", &stats.map), string_attribute("op", stats.op.as_str())],
                start_time_unix_nano: start,
                time_unix_nano: time,
                explicit_bounds: explicit_bounds.clone(),
                ..point
            });
        });
        if let Some(carried) = carried.as_mut() {
            carried.since = Some(now);
        }
        if data_points.is_empty() {
            return None;
        }
        let temporality = if self.is_delta() {
            proto::AggregationTemporality::Delta
        } else {
            proto::AggregationTemporality::Cumulative
        };
        Some(proto::Metric {
            name: HISTOGRAM.to_owned(),
            description: "Duration of the timed operations on snapview maps".to_owned(),
            unit: "s".to_owned(),
            data: Some(proto::metric::Data::Histogram(proto::Histogram {
                data_points,
                aggregation_temporality: temporality.into(),
            })),
            ..Default::default()
        })
    }
}

/// The counts of a cumulative point, with the all-time min and max.
fn cumulative_point(stats: &OpStats, totals: &Totals) -> proto::HistogramDataPoint {
    let timed = stats.samples > 0;
    proto::HistogramDataPoint {
        count: totals.count,
        sum: Some(seconds(totals.sum)),
        bucket_counts: own_counts(&totals.buckets),
        min: timed.then(|| seconds(stats.min)),
        max: timed.then(|| seconds(stats.max)),
        ..Default::default()
    }
}

/// The counts of a delta point: what `now` added to `before`. The min and
/// max of the interval are not known (the report has only all-time ones),
/// except in a series' first interval, where they are the all-time ones.
fn delta_point(stats: &OpStats, before: &Totals, now: &Totals) -> proto::HistogramDataPoint {
    let first = before.count == 0 && now.count > 0;
    let added: Vec<u64> = now
        .buckets
        .iter()
        .enumerate()
        .map(|(i, &c)| c.saturating_sub(before.buckets.get(i).copied().unwrap_or(0)))
        .collect();
    proto::HistogramDataPoint {
        count: now.count.saturating_sub(before.count),
        sum: Some(seconds(now.sum.saturating_sub(before.sum))),
        bucket_counts: own_counts(&added),
        min: first.then(|| seconds(stats.min)),
        max: first.then(|| seconds(stats.max)),
        ..Default::default()
    }
}

/// Each bucket's own count from cumulative ones (OTLP's are not
/// cumulative), the last one past the last bound.
fn own_counts(cumulative: &[u64]) -> Vec<u64> {
    let mut below = 0;
    cumulative
        .iter()
        .map(|&at_most| {
            let count = at_most.saturating_sub(below);
            below = at_most;
            count
        })
        .collect()
}

fn string_attribute(key: &str, value: &str) -> opentelemetry_proto::tonic::common::v1::KeyValue {
    opentelemetry_proto::tonic::common::v1::KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.to_owned())) }),
        ..Default::default()
    }
}

fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |since| u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
}

/// The report of the current collection, shared by its readers.
///
/// The SDK runs each instrument's callback once per collection, in an order
/// it does not promise, and the exporter reads it last: a reader that finds
/// it has already read the current report starts the next collection's,
/// which the others then read.
#[derive(Debug, Default)]
pub(super) struct SharedReport(Mutex<Option<(Arc<Report>, [bool; READERS])>>);

impl SharedReport {
    fn for_reader(&self, index: usize) -> Arc<Report> {
        let mut current = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let fresh = || (Arc::new(report()), [false; READERS]);
        let (shared, read) = match &mut *current {
            Some((_, read)) if read[index] => current.insert(fresh()),
            Some(current) => current,
            None => current.insert(fresh()),
        };
        read[index] = true;
        Arc::clone(shared)
    }
}

/// What the calls counter observes of each series.
///
/// Cumulative (and `lowmemory`, for which the SDK exports an observable
/// counter cumulative): the series' calls. Delta: the SDK subtracts this
/// pipeline's previous observation from each new one, so the counter
/// observes the running sum of what this pipeline's collections took from
/// [`CARRIED`], and the SDK's delta is what this collection took: the calls
/// since the previous delta collection of any pipeline.
struct CallsObserved {
    /// `None` unless the counter is a delta one.
    taken: Option<Mutex<HashMap<(String, Op), u64>>>,
}

impl CallsObserved {
    fn new(temporality: Temporality) -> Self {
        Self { taken: (temporality == Temporality::Delta).then(Mutex::default) }
    }

    fn observe(&self, report: &Report, observer: &dyn AsyncInstrument<u64>) {
        let Some(taken) = &self.taken else {
            return observe_each(report, observer, |o, stats, labels| o.observe(stats.calls, labels));
        };
        let mut carried = carried();
        let mut taken = taken.lock().unwrap_or_else(PoisonError::into_inner);
        observe_each(report, observer, |o, stats, labels| {
            let series = (stats.map.clone(), stats.op);
            let before = carried.calls.get(&series).copied().unwrap_or(0);
            carried.calls.insert(series.clone(), before.max(stats.calls));
            let taken = taken.entry(series).or_default();
            *taken += stats.calls.saturating_sub(before);
            o.observe(*taken, labels);
        });
    }
}

type Labels = [KeyValue; 2];

/// Observes every (map, op) of `report` that OTLP export covers, labelled
/// with `map` and `op`.
fn observe_each<T>(
    report: &Report,
    observer: &dyn AsyncInstrument<T>,
    mut observe: impl FnMut(&dyn AsyncInstrument<T>, &OpStats, &Labels),
) {
    for_each_exported(report, |stats| {
        let labels = [KeyValue::new("map", stats.map.clone()), KeyValue::new("op", stats.op.as_str())];
        observe(observer, stats, &labels);
    });
}

/// Calls `f` with every (map, op) of `report` whose map name is among the
/// first [`MAX_OTLP_MAPS`] registered.
fn for_each_exported(report: &Report, mut f: impl FnMut(&OpStats)) {
    for stats in report.iter() {
        // The report lists maps in registration order: the rest are out too.
        if stats.registration() >= MAX_OTLP_MAPS {
            warn_maps_left_out();
            return;
        }
        f(stats);
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

fn seconds(nanos: u64) -> f64 {
    nanos as f64 / NANOS_PER_SECOND
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_counts_undo_the_cumulation_and_keep_the_last_bucket() {
        assert_eq!(own_counts(&[0, 2, 2, 5, 9]), [0, 2, 0, 3, 4]);
        assert_eq!(own_counts(&[]), [] as [u64; 0]);
        // A later bound never holds fewer; were it to, no count goes negative.
        assert_eq!(own_counts(&[3, 1]), [3, 0]);
    }
}
