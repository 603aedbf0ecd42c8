//! Reading what was recorded: a [`Report`] of every (map, operation).

use core::fmt;

use serde::Serialize;

use crate::op::Op;
use crate::registry::{Timings, all_stats};

/// Upper bounds of the exported histogram buckets, in nanoseconds: 1-2.5-5
/// steps from 10 ns (a cached read) to 1 s (a huge batch or a long scan).
pub const BUCKET_BOUNDS_NS: [u64; 25] = [
    10,
    25,
    50,
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
];

/// Everything recorded so far in this process: one [`OpStats`] per (map,
/// operation) that was called at least once, ordered by map registration, then operation.
pub fn report() -> Report {
    let mut ops = Vec::new();
    for stats in all_stats() {
        for op in Op::ALL {
            // Read under the lock, not copied out: a recording thread waits.
            let read = |calls, timings: &Timings| {
                (calls > 0 || !timings.histogram.is_empty())
                    .then(|| OpStats::new(stats.name, stats.registration(), op, calls, timings))
            };
            ops.extend(stats.collect(op, read));
        }
    }
    Report { ops }
}

/// A point-in-time copy of every (map, operation)'s counts and latency
/// quantiles. `Display` prints a table; `Serialize` gives `{"ops": [...]}`.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    ops: Vec<OpStats>,
}

impl Report {
    /// The stats of `op` (an [`Op`] or its name, such as `"iter.next"`) on the map called `map`.
    pub fn get(&self, map: &str, op: impl AsRef<str>) -> Option<&OpStats> {
        let op = op.as_ref();
        self.ops.iter().find(|stats| stats.map == map && stats.op.as_str() == op)
    }

    /// Every (map, operation) in the report.
    pub fn iter(&self) -> impl Iterator<Item = &OpStats> {
        self.ops.iter()
    }

    /// The Prometheus text exposition of this report (see [`crate::prometheus`]).
    pub fn to_prometheus(&self) -> String {
        crate::prometheus::render(self)
    }
}

#[cfg(all(test, feature = "otlp"))]
impl Report {
    /// A report of one (map, op), the first map name registered, with
    /// `calls` calls of which the timed ones took `samples` (nanoseconds).
    pub(crate) fn of_one(map: &str, op: Op, calls: u64, samples: &[u64]) -> Report {
        let mut timings = Timings::default();
        for &nanos in samples {
            timings.record(nanos);
        }
        Report { ops: vec![OpStats::new(map, 0, op, calls, &timings)] }
    }
}

impl<'a> IntoIterator for &'a Report {
    type Item = &'a OpStats;
    type IntoIter = core::slice::Iter<'a, OpStats>;

    fn into_iter(self) -> Self::IntoIter {
        self.ops.iter()
    }
}

/// One (map, operation): exact call count, and quantiles of the timed calls in nanoseconds.
///
/// Durations are those of the sampled calls only (see
/// [`set_default_sample_every`](crate::set_default_sample_every)); with no
/// samples every duration is 0.
#[derive(Clone, Debug, Serialize)]
pub struct OpStats {
    /// The map's name.
    pub map: String,
    /// The operation.
    pub op: Op,
    /// Every call, timed or not.
    pub calls: u64,
    /// The calls that were timed.
    pub samples: u64,
    /// Sum of the timed calls' durations.
    pub sum: u64,
    /// Shortest timed call.
    pub min: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Longest timed call.
    pub max: u64,
    /// Mean of the timed calls.
    pub mean: f64,
    #[serde(skip)]
    cumulative: [u64; BUCKET_BOUNDS_NS.len()],
    /// How many map names were registered before this one's: OTLP export
    /// chooses its maps by it, which no map becoming active can change.
    #[serde(skip)]
    registration: usize,
}

impl OpStats {
    fn new(map: &str, registration: usize, op: Op, calls: u64, timings: &Timings) -> Self {
        let h = &timings.histogram;
        // The histogram answers with the top of a sub-bucket (0.1% wide):
        // kept within the exact extremes, so that p999 <= max.
        let quantile = |q: f64| if h.is_empty() { 0 } else { h.value_at_quantile(q).clamp(timings.min, timings.max) };
        Self {
            map: map.to_owned(),
            op,
            calls,
            samples: h.len(),
            sum: timings.sum,
            min: if h.is_empty() { 0 } else { timings.min },
            p50: quantile(0.5),
            p90: quantile(0.9),
            p99: quantile(0.99),
            p999: quantile(0.999),
            max: timings.max,
            mean: if h.is_empty() { 0.0 } else { timings.sum as f64 / h.len() as f64 },
            cumulative: cumulative(&timings.in_bucket),
            registration,
        }
    }

    /// The map name's place in registration order, from 0.
    #[cfg_attr(not(feature = "otlp"), allow(dead_code))]
    pub(crate) fn registration(&self) -> usize {
        self.registration
    }

    /// Cumulative histogram buckets: (upper bound in seconds, timed calls at
    /// or under it), ending with `(f64::INFINITY, samples)`.
    pub fn buckets(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        let finite = BUCKET_BOUNDS_NS.iter().zip(self.cumulative).map(|(&ns, count)| (ns as f64 / 1e9, count));
        finite.chain([(f64::INFINITY, self.samples)])
    }
}

/// Running sums of `in_bucket`: the samples at or under each bound.
fn cumulative(in_bucket: &[u64; BUCKET_BOUNDS_NS.len()]) -> [u64; BUCKET_BOUNDS_NS.len()] {
    let mut total = 0u64;
    in_bucket.map(|count| {
        total = total.saturating_add(count);
        total
    })
}

impl fmt::Display for Report {
    /// A table, one row per (map, op), columns as wide as their widest cell,
    /// headed by the [`OpStats`] field names; times in nanoseconds.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HEADER: [&str; 11] = ["map", "op", "calls", "samples", "min", "p50", "p90", "p99", "p999", "max", "mean"];
        let rows: Vec<[String; 11]> = self
            .ops
            .iter()
            .map(|s| {
                let n = |v: u64| v.to_string();
                [
                    // A line break in a name would forge a row.
                    crate::text::printable(&s.map).into_owned(),
                    s.op.to_string(),
                    n(s.calls),
                    n(s.samples),
                    n(s.min),
                    n(s.p50),
                    n(s.p90),
                    n(s.p99),
                    n(s.p999),
                    n(s.max),
                    format!("{:.1}", s.mean),
                ]
            })
            .collect();
        let mut widths = HEADER.map(str::len);
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.len());
            }
        }
        write_row(f, &widths, HEADER.iter().copied())?;
        for row in &rows {
            write_row(f, &widths, row.iter().map(String::as_str))?;
        }
        Ok(())
    }
}

/// Text columns (map, op) left-aligned, numbers right-aligned, two spaces apart.
fn write_row<'a>(f: &mut fmt::Formatter<'_>, widths: &[usize], cells: impl Iterator<Item = &'a str>) -> fmt::Result {
    for (i, (cell, &width)) in cells.zip(widths).enumerate() {
        let gap = if i == 0 { "" } else { "  " };
        if i < 2 { write!(f, "{gap}{cell:<width$}")? } else { write!(f, "{gap}{cell:>width$}")? }
    }
    writeln!(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats_of(samples: &[u64]) -> OpStats {
        let mut timings = Timings::default();
        for &nanos in samples {
            timings.record(nanos);
        }
        OpStats::new("report.test", 0, Op::Get, samples.len() as u64, &timings)
    }

    fn count_under(stats: &OpStats, seconds: f64) -> u64 {
        stats.buckets().find(|&(le, _)| le == seconds).map(|(_, count)| count).expect("a bucket bound")
    }

    /// A bucket counts the samples at or under its bound and none above,
    /// however close: the histogram alone would count 1.0003 s under 1 s
    /// (same sub-bucket).
    #[test]
    fn buckets_count_exactly_at_their_bounds() {
        let stats = stats_of(&[250_000_000, 250_100_000, 1_000_000_000, 1_000_300_000, 7]);
        assert_eq!(count_under(&stats, 0.000_000_01), 1, "7 ns is under 10 ns");
        assert_eq!(count_under(&stats, 0.25), 2, "250 ms is at its bound; 250.1 ms is above");
        assert_eq!(count_under(&stats, 0.5), 3);
        assert_eq!(count_under(&stats, 1.0), 4, "1.0003 s is above 1 s");
        assert_eq!(stats.buckets().last(), Some((f64::INFINITY, 5)));
    }

    #[test]
    fn buckets_are_cumulative_and_end_with_every_sample() {
        let samples: Vec<u64> = (0..2_000u64).map(|i| i * i * 997).collect();
        let stats = stats_of(&samples);
        let buckets: Vec<(f64, u64)> = stats.buckets().collect();
        for (&(bound, count), &ns) in buckets.iter().zip(&BUCKET_BOUNDS_NS) {
            let expected = samples.iter().filter(|&&s| s <= ns).count() as u64;
            assert_eq!(count, expected, "le={bound}");
        }
        assert_eq!(buckets.last(), Some(&(f64::INFINITY, 2_000)));
    }

    /// `min` and `max` are samples, and every quantile lies between them: the
    /// histogram alone gives its sub-bucket's edges (a maximum of 1 s read
    /// 1.00034 s, above the 1 s bucket that held every sample).
    #[test]
    fn extremes_are_exact_and_bound_the_quantiles() {
        let stats = stats_of(&[1_000_000_000]);
        assert_eq!((stats.min, stats.max), (1_000_000_000, 1_000_000_000));
        assert_eq!([stats.p50, stats.p90, stats.p99, stats.p999], [1_000_000_000; 4]);
        let stats = stats_of(&[7, 999_999, 1_234_567_891]);
        assert_eq!((stats.min, stats.max), (7, 1_234_567_891));
        assert!(stats.p999 <= stats.max && stats.p50 >= stats.min, "{stats:?}");
        let empty = stats_of(&[]);
        assert_eq!((empty.min, empty.max, empty.p50), (0, 0, 0));
    }
}
