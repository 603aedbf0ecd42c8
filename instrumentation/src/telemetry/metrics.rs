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
//! recorded since the previous delta collection of any pipeline of the
//! process that sends to the same [`Destination`]: the same protocol, the
//! same metrics endpoint (as resolved: the builder's, else the
//! environment's, else the default; compared as text) and the same
//! resource attributes (`service.name` among them). The protocol and the
//! endpoint name a collector as spelled, not a stream: a collector tells
//! streams apart by their resource (and scope, metric and attributes), so
//! two pipelines with one resource that reach one collector by two
//! destinations (gRPC on 4317 and HTTP on 4318, or two spellings of its
//! host) each send it every call, and it counts each call twice. The
//! headers do not count. Pipelines to one destination share one record
//! ([`CARRIED`]): one built after another was dropped starts from what that
//! one took, instead of sending the whole history again, and two alive at
//! once (the window in which `install` refuses one, or `build` called
//! twice) split the calls between their exports, each call in one export
//! of either. One exception: `lowmemory` keeps the calls counter
//! cumulative and moves no record of calls, so a `delta` pipeline after a
//! `lowmemory` one to the destination sends again, in its first export,
//! the calls the `lowmemory` one counted: every call since the
//! destination's last `delta` collection, or since the process started
//! (its histogram does not: both take the histograms' deltas from the
//! record). Pipelines to different destinations have a record each, and
//! each sends every call: a destination's first delta collection carries
//! everything the process recorded so far, which that collector never saw.
//!
//! A collection reads its report and takes the calls and the histograms'
//! deltas from it in one hold of its destination's record, when its first
//! reader asks ([`SharedReport`]): so an export's calls are never fewer than
//! its histogram's count even with two pipelines racing, and its
//! histogram's interval starts where the destination's previous collection
//! ended and ends after it starts (at least a nanosecond after, should the
//! wall clock have been set back). A destination's first interval starts
//! at the start of the pipeline that collects first for it, though it
//! carries the calls made before that pipeline was built too: the process
//! keeps no earlier time. The calls counter's own start time is the SDK's:
//! the previous collection of its pipeline, or the pipeline's start (so
//! its first interval may carry calls made before it too); it differs from
//! the histogram's when another pipeline to the destination collected in
//! between. What a collection took is gone from later ones whether or not
//! its export then went through: a failed export's interval is lost, as for
//! the SDK's own delta instruments.

use crate::sync::unmodelled::{AtomicBool, Ordering};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{AsyncInstrument, Meter};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, any_value};
use opentelemetry_proto::tonic::metrics::v1 as proto;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{Instrument, MeterProviderBuilder, Stream, Temporality};

use super::otlp::Protocol;
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
/// provider. `shared` is the one [`Histograms`] reads too.
pub(super) fn register(meter: &Meter, shared: &Arc<SharedReport>) {
    let reader = |index: usize| {
        let shared = Arc::clone(shared);
        move || shared.for_reader(index)
    };
    let [calls, quantiles] = [0, 1].map(reader);
    let counted = CallsObserved::default();
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
        .with_callback(move |observer| observe_each(&quantiles().report, observer, observe_quantiles))
        .build();
}

/// Where a pipeline's metrics go: the protocol, the metrics endpoint as
/// resolved (the builder's, else the environment's, else the default; for
/// HTTP the URL posted to) and the resource's attributes, sorted. The delta
/// collections of the pipelines to one destination take their deltas from
/// one record ([`CARRIED`]).
///
/// The protocol and the endpoint tell collectors apart, as spelled; a
/// collector tells streams apart by the resource alone (with the scope,
/// metric and attributes). The endpoint is compared as text, not by the
/// collector it reaches: `http://localhost:4317` and `http://127.0.0.1:4317`
/// are two destinations, each sent every call, as are a gRPC and an HTTP
/// pipeline to the two ports of one collector: with one resource, that
/// collector takes both for one stream and counts each call twice. The
/// headers are left out: they carry API keys, which a process-wide record
/// should not keep, and a key rotated between two pipelines does not make
/// another stream; so two pipelines alive at once that differ only by a
/// tenant header split the calls between them.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Destination {
    protocol: &'static str,
    endpoint: String,
    resource: Vec<(String, String)>,
}

/// The endpoint redacted, as everywhere it is shown: it may carry
/// credentials.
impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Destination")
            .field("protocol", &self.protocol)
            .field("endpoint", &super::transport::redacted(&self.endpoint))
            .field("resource", &self.resource)
            .finish()
    }
}

impl Destination {
    pub(super) fn new(protocol: Protocol, endpoint: String, resource: &Resource) -> Self {
        let protocol = match protocol {
            Protocol::Grpc => "grpc",
            Protocol::HttpProtobuf => "http/protobuf",
        };
        let mut resource: Vec<(String, String)> =
            resource.iter().map(|(key, value)| (key.as_str().to_owned(), value.to_string())).collect();
        resource.sort();
        Self { protocol, endpoint, resource }
    }
}

/// Each [`Destination`]'s record of what the delta collections of the
/// pipelines sending there took so far, which the next one, of whichever
/// of those pipelines, takes its deltas from. Only delta collections move a
/// record: a cumulative export sends everything anyway. A new record is
/// empty, so a destination's first delta collection carries everything
/// recorded since the process started (a map may have recorded before the
/// pipeline was built). A pipeline looks its record up (making it if there
/// is none) at its first collection, so a pipeline whose `build()` failed
/// leaves none. Records are kept for the life of the process, so that a
/// pipeline built later to the destination starts from it: one per
/// destination a delta pipeline collected for, each holding at most the
/// exported series, [`MAX_OTLP_MAPS`] maps of 7 ops (448 series), about
/// half a kilobyte each (mostly the 26 bucket counts): some 200 KB at most.
static CARRIED: Mutex<BTreeMap<Destination, Arc<Mutex<Carried>>>> = Mutex::new(BTreeMap::new());

/// The record of `destination`'s delta collections, shared with every
/// other pipeline sending there.
fn carried_for(destination: Destination) -> Arc<Mutex<Carried>> {
    let mut records = lock(&CARRIED);
    Arc::clone(records.entry(destination).or_default())
}

/// Whether the process has a record of `destination`.
#[cfg(test)]
pub(super) fn has_record(destination: &Destination) -> bool {
    lock(&CARRIED).contains_key(destination)
}

/// What the delta collections to one destination took so far.
#[derive(Debug, Default)]
struct Carried {
    /// Where the last delta collection's interval ended, where the next
    /// one's starts.
    since: Option<SystemTime>,
    /// Each (map, op) series' histogram totals at the last delta collection.
    histograms: BTreeMap<Series, Totals>,
    /// Each (map, op) series' calls at the last collection of a delta calls
    /// counter. With `lowmemory` the counter is cumulative and does not
    /// move this: a `delta` pipeline's collection after `lowmemory` ones
    /// takes again the calls they counted.
    calls: BTreeMap<Series, u64>,
}

/// A (map, op) series.
type Series = (String, Op);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn is_delta(temporality: Temporality) -> bool {
    // As the SDK treats a histogram: `lowmemory` makes it delta too.
    matches!(temporality, Temporality::Delta | Temporality::LowMemory)
}

/// The `snapview.op.duration` histograms, which the exporter adds to each
/// export: those of the collection the SDK's instruments read
/// ([`Collection::histogram`]).
#[derive(Debug)]
pub(super) struct Histograms {
    shared: Arc<SharedReport>,
}

/// One series' totals at a collection: the timed calls, their sum in
/// nanoseconds, and the cumulative bucket counts.
#[derive(Clone, Debug, Default, PartialEq)]
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
    /// grows). The collections of one destination read their reports in
    /// turn, under its record's lock, so a report is never older than what
    /// the record holds; were one older, taking it as the new totals would
    /// make the next collection send the difference a second time.
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
    pub(super) fn new(shared: Arc<SharedReport>) -> Self {
        Self { shared }
    }

    /// The temporality the exporter asks of the SDK's instruments.
    pub(super) fn temporality(&self) -> Temporality {
        self.shared.temporality
    }

    /// Adds the histograms of this collection to `request`, in the
    /// `snapview` scope beside the SDK's instruments.
    pub(super) fn add_to(&self, request: &mut ExportMetricsServiceRequest) {
        let collection = self.shared.for_reader(INSTRUMENTS.len());
        // Here, in the export, which the SDK calls with none of its locks
        // held, and with none of this pipeline's: not while the collection
        // is taken, under them, where a subscriber's layer that touched
        // snapview's telemetry could wait on them for good.
        if collection.left_out {
            warn_maps_left_out();
        }
        let Some(metric) = collection.histogram.clone() else { return };
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
}

/// One collection of a pipeline: the report each of its readers reads, and
/// what the delta instruments take of it.
#[derive(Debug)]
struct Collection {
    report: Report,
    /// With a delta calls counter (`delta`; `lowmemory` keeps it
    /// cumulative), what this collection took of each exported series'
    /// calls from its destination's record.
    calls_taken: Option<HashMap<Series, u64>>,
    /// The `snapview.op.duration` metric, or `None` if no series is
    /// exported yet.
    histogram: Option<proto::Metric>,
    /// Whether the report has series of maps OTLP export leaves out: the
    /// exporter warns of it ([`Histograms::add_to`]), outside the locks
    /// the collection was taken under.
    left_out: bool,
}

impl Collection {
    /// The collection of `report` at `now`. With `carried`, the record of
    /// the pipeline's destination (which delta temporality needs), the
    /// histograms' deltas and, for `Temporality::Delta`, the calls' are
    /// taken from it, and it then holds this collection's totals and
    /// `now`; the caller holds it from before `report` was read. Without,
    /// cumulative histograms since `start`, the pipeline's start (also
    /// where the delta interval starts at a destination's first
    /// collection).
    fn take(
        report: Report,
        temporality: Temporality,
        mut carried: Option<&mut Carried>,
        start: SystemTime,
        now: SystemTime,
    ) -> Self {
        debug_assert_eq!(carried.is_some(), is_delta(temporality), "a record for delta temporality only");
        let since = carried.as_deref().and_then(|carried| carried.since).unwrap_or(start);
        // An interval ends after it starts, and the record's next one starts
        // where this one ended: the wall clock may have been set back since
        // the previous collection, and some collectors drop a point whose
        // time does not advance. Until the clock catches up, each interval
        // is a nanosecond long, its counts all there.
        let time = now.max(since.checked_add(Duration::from_nanos(1)).unwrap_or(since));
        let (start_nanos, time_nanos) = (unix_nanos(since), unix_nanos(time));
        let mut calls_taken = (carried.is_some() && temporality == Temporality::Delta).then(HashMap::new);
        let explicit_bounds: Vec<f64> = BUCKET_BOUNDS_NS.iter().map(|&ns| seconds(ns)).collect();
        let mut data_points = Vec::new();
        let left_out = for_each_exported(&report, |stats| {
            let now_totals = Totals::of(stats);
            let point = match carried.as_deref_mut() {
                Some(carried) => {
                    let series = (stats.map.clone(), stats.op);
                    if let Some(calls_taken) = &mut calls_taken {
                        let before = carried.calls.get(&series).copied().unwrap_or(0);
                        let after = before.max(stats.calls);
                        carried.calls.insert(series.clone(), after);
                        calls_taken.insert(series.clone(), after - before);
                    }
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
                start_time_unix_nano: start_nanos,
                time_unix_nano: time_nanos,
                explicit_bounds: explicit_bounds.clone(),
                ..point
            });
        });
        if let Some(carried) = carried {
            carried.since = Some(time);
        }
        let histogram = (!data_points.is_empty()).then(|| histogram_metric(data_points, temporality));
        Collection { report, calls_taken, histogram, left_out }
    }
}

fn histogram_metric(data_points: Vec<proto::HistogramDataPoint>, temporality: Temporality) -> proto::Metric {
    let temporality = match is_delta(temporality) {
        true => proto::AggregationTemporality::Delta,
        false => proto::AggregationTemporality::Cumulative,
    };
    proto::Metric {
        name: HISTOGRAM.to_owned(),
        description: "Duration of the timed operations on snapview maps".to_owned(),
        unit: "s".to_owned(),
        data: Some(proto::metric::Data::Histogram(proto::Histogram {
            data_points,
            aggregation_temporality: temporality.into(),
        })),
        ..Default::default()
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

/// The current collection of a pipeline, shared by its readers.
///
/// The SDK runs each instrument's callback once per collection, in an order
/// it does not promise, and the exporter reads it last: a reader that finds
/// it has already read the current collection starts the next one, which
/// the others then read. This assumes one `MetricReader` per meter
/// provider, as the pipeline builds it: a second reader's collections would
/// run the callbacks again, and start collections (taking deltas from the
/// record) that the exporter of the first never reads.
///
/// The SDK skips the export of a collection in which its instruments
/// observed nothing, so the exporter does not read that collection. No
/// delta is lost to it only because the calls counter observes exactly the
/// series the histogram has (every exported series of the report, called
/// or only timed, with its delta 0 if it had no calls since): a collection
/// whose histogram has a point has a counter point too, and is exported.
/// Were the counter to leave series out (idle ones, say), the histogram
/// deltas of a collection it left empty would be taken from the record and
/// never sent.
#[derive(Debug)]
pub(super) struct SharedReport {
    current: Mutex<Option<(Arc<Collection>, [bool; READERS])>>,
    temporality: Temporality,
    /// The pipeline's destination with delta temporality; `None` with
    /// cumulative, which takes nothing from a record.
    destination: Option<Destination>,
    /// The destination's record, looked up at the pipeline's first
    /// collection: a pipeline whose build failed never collects, and
    /// leaves no record behind.
    carried: OnceLock<Arc<Mutex<Carried>>>,
    /// The pipeline's start: where its cumulative counts start as far as
    /// the collector knows, and the delta ones of a destination's first
    /// collection.
    start: SystemTime,
}

impl SharedReport {
    /// The collections of a pipeline whose exporter asks for `temporality`;
    /// with delta temporality they take their deltas from the record of
    /// `destination`, shared with the other pipelines sending there.
    pub(super) fn new(temporality: Temporality, destination: impl FnOnce() -> Destination) -> Self {
        Self {
            current: Mutex::new(None),
            temporality,
            destination: is_delta(temporality).then(destination),
            carried: OnceLock::new(),
            start: SystemTime::now(),
        }
    }

    fn for_reader(&self, index: usize) -> Arc<Collection> {
        let mut current = lock(&self.current);
        let fresh = || (Arc::new(self.collect()), [false; READERS]);
        let (shared, read) = match &mut *current {
            Some((_, read)) if read[index] => current.insert(fresh()),
            Some(current) => current,
            None => current.insert(fresh()),
        };
        read[index] = true;
        Arc::clone(shared)
    }

    /// A new collection, from a report read now.
    fn collect(&self) -> Collection {
        let Some(destination) = &self.destination else {
            return Collection::take(report(), self.temporality, None, self.start, SystemTime::now());
        };
        let carried = self.carried.get_or_init(|| carried_for(destination.clone()));
        // Held from before the report is read until the record holds what
        // this collection took: the collections of the destination's
        // pipelines come one after another, each from a report no older
        // than the one before and at a time no earlier, and each takes the
        // calls and the histograms at once (so its calls are never fewer
        // than its histogram's count).
        let mut carried = lock(carried);
        let report = report();
        Collection::take(report, self.temporality, Some(&mut carried), self.start, SystemTime::now())
    }
}

/// What the calls counter observes of each series.
///
/// Cumulative (and `lowmemory`, for which the SDK exports an observable
/// counter cumulative): the series' calls. Delta: the SDK subtracts this
/// pipeline's previous observation from each new one, so the counter
/// observes the running sum of what this pipeline's collections took from
/// their destination's record ([`Collection::calls_taken`]), and the SDK's
/// delta is what this collection took: the calls since the destination's
/// previous delta collection, of whichever pipeline. The SDK stamps that
/// delta with its own interval: since this pipeline's previous collection.
#[derive(Default)]
struct CallsObserved {
    /// Per series, what this pipeline's collections took so far.
    running: Mutex<HashMap<Series, u64>>,
}

impl CallsObserved {
    fn observe(&self, collection: &Collection, observer: &dyn AsyncInstrument<u64>) {
        let Some(taken) = &collection.calls_taken else {
            return observe_each(&collection.report, observer, |o, stats, labels| o.observe(stats.calls, labels));
        };
        let mut running = lock(&self.running);
        observe_each(&collection.report, observer, |o, stats, labels| {
            let series = (stats.map.clone(), stats.op);
            let took = taken.get(&series).copied().unwrap_or(0);
            let running = running.entry(series).or_default();
            *running += took;
            o.observe(*running, labels);
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
    // What is left out is the collection's to tell ([`Collection::left_out`]).
    let _left_out = for_each_exported(report, |stats| {
        let labels = [KeyValue::new("map", stats.map.clone()), KeyValue::new("op", stats.op.as_str())];
        observe(observer, stats, &labels);
    });
}

/// Calls `f` with every (map, op) of `report` whose map name is among the
/// first [`MAX_OTLP_MAPS`] registered; returns whether `report` has others,
/// which it leaves out. It logs nothing: its callers hold locks.
fn for_each_exported(report: &Report, mut f: impl FnMut(&OpStats)) -> bool {
    for stats in report.iter() {
        // The report lists maps in registration order: the rest are out too.
        if stats.registration() >= MAX_OTLP_MAPS {
            return true;
        }
        f(stats);
    }
    false
}

/// Logs, once per process, that some maps are left out of OTLP export: to
/// be called with no lock held (a layer of the subscriber may do anything).
#[cold]
fn warn_maps_left_out() {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            max = MAX_OTLP_MAPS,
            "more snapview map names than OTLP export covers: the maps of the names registered after the first \
             {MAX_OTLP_MAPS} are not exported over OTLP (Prometheus text and /debug/pprof/histograms show them)"
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

    const MAP: &str = "metrics.test";

    /// `Op::Get` of [`MAP`]: `calls` calls, the timed ones lasting `samples`.
    fn report_of(calls: u64, samples: &[u64]) -> Report {
        Report::of_one(MAP, Op::Get, calls, samples)
    }

    fn series() -> Series {
        (MAP.to_owned(), Op::Get)
    }

    /// The pipeline's start, and `secs` seconds after it.
    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
    }

    /// A delta collection of `report` at `now` from `carried`.
    fn delta(report: Report, carried: &mut Carried, now: SystemTime) -> Collection {
        Collection::take(report, Temporality::Delta, Some(carried), at(0), now)
    }

    /// The collection's one histogram point.
    fn point(collection: &Collection) -> &proto::HistogramDataPoint {
        match &collection.histogram.as_ref().expect("a histogram").data {
            Some(proto::metric::Data::Histogram(h)) => {
                assert_eq!(h.data_points.len(), 1, "{h:?}");
                &h.data_points[0]
            }
            other => panic!("a histogram: {other:?}"),
        }
    }

    /// What the collection took of [`MAP`]'s calls.
    fn calls_taken(collection: &Collection) -> u64 {
        collection.calls_taken.as_ref().expect("a delta calls counter")[&series()]
    }

    /// A report older than what the record holds (one of two racing
    /// collections read it first) adds nothing, and leaves the record at
    /// the newer totals: taking it as the new totals would make the next
    /// collection send the difference a second time.
    #[test]
    fn an_older_report_after_a_newer_one_takes_nothing_and_keeps_the_newer_totals() {
        let mut carried = Carried::default();
        let newer = report_of(5, &[100, 2_000, 30_000]);
        let newer_totals = Totals::of(newer.iter().next().unwrap());
        let first = delta(newer, &mut carried, at(1));
        assert_eq!((point(&first).count, calls_taken(&first)), (3, 5));

        let older = delta(report_of(3, &[100, 2_000]), &mut carried, at(2));
        let point = point(&older);
        assert_eq!((point.count, point.sum, calls_taken(&older)), (0, Some(0.0), 0));
        assert!(point.bucket_counts.iter().all(|&n| n == 0), "{point:?}");
        assert_eq!(carried.histograms[&series()], newer_totals, "the record keeps the newer totals");
        assert_eq!(carried.calls[&series()], 5);

        // Only what came after the newer report.
        let next = delta(report_of(6, &[100, 2_000, 30_000, 400_000]), &mut carried, at(3));
        assert_eq!((self::point(&next).count, calls_taken(&next)), (1, 1));
        assert_eq!(self::point(&next).sum, Some(seconds(400_000)));
    }

    /// The calls counter of a pipeline fed collections whose reports came
    /// out of order observes a running sum that never goes back (the SDK
    /// subtracts its previous observation, in unsigned arithmetic), so the
    /// deltas the SDK sends are what each collection took, adding up to
    /// the calls.
    #[test]
    fn the_calls_counter_observes_what_each_collection_took_whatever_the_reports_order() {
        let mut carried = Carried::default();
        let counted = CallsObserved::default();
        let observer = Observer::default();
        for (calls, now) in [(5, 1), (3, 2), (9, 3), (9, 4)] {
            counted.observe(&delta(report_of(calls, &[]), &mut carried, at(now)), &observer);
        }
        assert_eq!(observer.take(), [5, 5, 9, 9], "the SDK sends 5, 0, 4, 0");

        // Cumulative: the calls as the report has them.
        let cumulative = Collection::take(report_of(7, &[]), Temporality::Cumulative, None, at(0), at(1));
        assert!(cumulative.calls_taken.is_none());
        counted.observe(&cumulative, &observer);
        assert_eq!(observer.take(), [7]);
    }

    /// A collection whose clock reads earlier than the destination's
    /// previous collection (the wall clock set back, or a time read before
    /// another collection took the record) neither moves the record's start
    /// back, where the next interval would overlap the last, nor ends its
    /// interval where it starts (some collectors drop a point whose time
    /// does not advance): until the clock catches up, each interval is a
    /// nanosecond long, with its counts.
    #[test]
    fn an_interval_always_ends_after_it_starts_and_starts_where_the_last_ended() {
        let mut carried = Carried::default();
        let nanos = |time| unix_nanos(time);
        let first = delta(report_of(1, &[100]), &mut carried, at(10));
        let first = point(&first);
        assert_eq!((first.start_time_unix_nano, first.time_unix_nano), (nanos(at(0)), nanos(at(10))));

        let mut last_end = nanos(at(10));
        for (timed, now) in [(2, at(5)), (3, at(6)), (4, at(10))] {
            let behind = delta(report_of(timed, &vec![100; timed as usize]), &mut carried, now);
            let behind = point(&behind);
            assert_eq!(behind.start_time_unix_nano, last_end, "from where the last ended");
            assert_eq!(behind.time_unix_nano, last_end + 1, "a nanosecond later, the clock reading {now:?}");
            assert_eq!(behind.count, 1, "its counts are there");
            last_end = behind.time_unix_nano;
        }
        assert_eq!(carried.since.map(nanos), Some(last_end), "the record's start does not go back");

        let next = delta(report_of(5, &[100; 5]), &mut carried, at(20));
        let next = point(&next);
        assert_eq!((next.start_time_unix_nano, next.time_unix_nano), (last_end, nanos(at(20))));

        // A destination's first collection starts at the pipeline's start,
        // and ends after it too; so does a cumulative one.
        let early = delta(report_of(1, &[100]), &mut Carried::default(), SystemTime::UNIX_EPOCH);
        let early = point(&early);
        assert_eq!((early.start_time_unix_nano, early.time_unix_nano), (nanos(at(0)), nanos(at(0)) + 1));
        let cumulative = Collection::take(report_of(1, &[100]), Temporality::Cumulative, None, at(0), at(0));
        let cumulative = point(&cumulative);
        assert_eq!((cumulative.start_time_unix_nano, cumulative.time_unix_nano), (nanos(at(0)), nanos(at(0)) + 1));
    }

    /// Each collection takes the calls and the histogram from one report at
    /// once: its calls are never fewer than its histogram's count, in
    /// whatever order racing collections took their reports.
    #[test]
    fn a_collection_never_takes_fewer_calls_than_timed_calls() {
        let mut carried = Carried::default();
        // (calls, timed): every timed call is a call.
        let reports = [(4, 2), (10, 6), (7, 3), (12, 6), (20, 14), (20, 14)];
        let mut sent = (0, 0);
        for (now, (calls, timed)) in (1..).zip(reports) {
            let collection = delta(report_of(calls, &vec![1_000; timed]), &mut carried, at(now));
            let (calls, timed) = (calls_taken(&collection), point(&collection).count);
            assert!(calls >= timed, "collection {now}: {calls} calls, {timed} timed");
            sent = (sent.0 + calls, sent.1 + timed);
        }
        assert_eq!(sent, (20, 14), "everything, once");
    }

    /// Pipelines to one destination share its record; a pipeline to another
    /// endpoint, by another protocol or with another resource has its own.
    #[test]
    fn the_record_is_the_destinations() {
        let resource = |name: &str| Resource::builder_empty().with_service_name(name.to_owned()).build();
        let to = |protocol, endpoint: &str, name| {
            carried_for(Destination::new(protocol, endpoint.to_owned(), &resource(name)))
        };
        let one = to(Protocol::Grpc, "http://metrics.test:4317", "svc");
        assert!(Arc::ptr_eq(&one, &to(Protocol::Grpc, "http://metrics.test:4317", "svc")), "the same destination");
        for other in [
            to(Protocol::Grpc, "http://other.test:4317", "svc"),
            to(Protocol::HttpProtobuf, "http://metrics.test:4317", "svc"),
            to(Protocol::Grpc, "http://metrics.test:4317", "another"),
        ] {
            assert!(!Arc::ptr_eq(&one, &other));
        }
    }

    /// `lowmemory` moves the record of the histograms but not that of the
    /// calls (its calls counter is cumulative): a `delta` collection after
    /// it takes again the calls `lowmemory` counted, though not the timed
    /// calls its histograms sent.
    #[test]
    fn a_delta_collection_after_lowmemory_ones_takes_their_calls_again() {
        let mut carried = Carried::default();
        let low = Collection::take(report_of(4, &[100; 4]), Temporality::LowMemory, Some(&mut carried), at(0), at(1));
        assert!(low.calls_taken.is_none(), "lowmemory's calls counter is cumulative");
        assert_eq!(point(&low).count, 4);
        let next = delta(report_of(6, &[100; 6]), &mut carried, at(2));
        assert_eq!((point(&next).count, calls_taken(&next)), (2, 6), "the histogram's 2 new, all 6 calls");
    }

    /// A destination's record is made at a pipeline's first collection, not
    /// when its collections are set up, before its exporters are built: a
    /// pipeline whose build failed leaves none.
    #[test]
    fn a_record_is_made_at_the_first_collection() {
        let resource = Resource::builder_empty().with_service_name("metrics.first-collection").build();
        let destination =
            || Destination::new(Protocol::Grpc, "http://first-collection.test:4317".to_owned(), &resource);
        let shared = SharedReport::new(Temporality::Delta, destination);
        assert!(!has_record(&destination()), "no record before a collection");
        shared.for_reader(0);
        assert!(has_record(&destination()));
        // Cumulative pipelines make none.
        let elsewhere = || Destination::new(Protocol::Grpc, "http://cumulative.test:4317".to_owned(), &resource);
        SharedReport::new(Temporality::Cumulative, elsewhere).for_reader(0);
        assert!(!has_record(&elsewhere()));
    }

    /// The warning that maps are left out is logged by the exporter, after
    /// the collection is taken, and not while it is taken: then the SDK's
    /// lock, the pipeline's and the record's are held, and a subscriber's
    /// layer that touched snapview's telemetry (flushed it, built another
    /// pipeline) could wait on them for good. Here the layer sees whether
    /// the pipeline's locks are free when it is told. (The warning is told
    /// once per process: no other test of this binary has an exporter read
    /// a collection.)
    #[test]
    fn the_maps_left_out_are_told_with_no_lock_held() {
        use tracing_subscriber::layer::{Context, SubscriberExt};
        // Process-wide state, which this test alone of the lib's may touch:
        // the warning is told once per process, so no other lib test may
        // export; and the 65 names fill the registry's first 64 places, so a
        // lib test that checks a map's OTLP series must name it before them
        // (none does: the others build reports with `Report::of_one`).

        // One name more than export covers, the last one called.
        let probes: Vec<_> = (0..=MAX_OTLP_MAPS)
            .map(|m| crate::probe::MapProbe::new(&format!("metrics.left_out.{m:03}")).sample_every(1))
            .collect();
        probes.last().unwrap().start(Op::Snapshot).finish();

        let resource = Resource::builder_empty().with_service_name("metrics.left-out").build();
        let destination = || Destination::new(Protocol::Grpc, "http://left-out.test:4317".to_owned(), &resource);
        let shared = Arc::new(SharedReport::new(Temporality::Delta, destination));

        /// Whether the pipeline's and the record's locks were free at each
        /// warning.
        struct LocksAtWarnings(Arc<SharedReport>, Arc<Mutex<Vec<(bool, bool)>>>);
        impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for LocksAtWarnings {
            fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
                if *event.metadata().level() == tracing::Level::WARN {
                    let current = self.0.current.try_lock().is_ok();
                    let record = self.0.carried.get().is_none_or(|carried| carried.try_lock().is_ok());
                    lock(&self.1).push((current, record));
                }
            }
        }
        let warnings = Arc::default();
        let subscriber =
            tracing_subscriber::registry().with(LocksAtWarnings(Arc::clone(&shared), Arc::clone(&warnings)));
        tracing::subscriber::with_default(subscriber, || {
            // The SDK's instruments read the collection, taking it.
            let taken = shared.for_reader(0);
            assert!(taken.left_out);
            assert_eq!(*lock(&warnings), [], "nothing told while the collection is taken");
            // Then the exporter reads it.
            Histograms::new(Arc::clone(&shared)).add_to(&mut ExportMetricsServiceRequest::default());
        });
        assert_eq!(*lock(&warnings), [(true, true)], "told once, by the exporter, with the locks free");
    }

    /// The values a calls counter observed.
    #[derive(Default)]
    struct Observer(Mutex<Vec<u64>>);

    impl Observer {
        fn take(&self) -> Vec<u64> {
            std::mem::take(&mut *lock(&self.0))
        }
    }

    impl AsyncInstrument<u64> for Observer {
        fn observe(&self, measurement: u64, attributes: &[KeyValue]) {
            let labels = [KeyValue::new("map", MAP), KeyValue::new("op", Op::Get.as_str())];
            assert_eq!(attributes, labels);
            lock(&self.0).push(measurement);
        }
    }

    #[test]
    fn own_counts_undo_the_cumulation_and_keep_the_last_bucket() {
        assert_eq!(own_counts(&[0, 2, 2, 5, 9]), [0, 2, 0, 3, 4]);
        assert_eq!(own_counts(&[]), [] as [u64; 0]);
        // A later bound never holds fewer; were it to, no count goes negative.
        assert_eq!(own_counts(&[3, 1]), [3, 0]);
    }
}
