//! Where measurements go: one [`MapStats`] per map name, with one [`Shard`]
//! per recording thread, merged only when somebody reads them.
//!
//! The recording path never touches a line another thread writes: a thread
//! counts calls in its own shard (a plain load and store, no read-modify-write),
//! decides whether to time a call with its own countdown, and puts a timed
//! call's duration into its own small ring. Only when the ring is full does it
//! take the (map, operation) lock, once per [`RING`] samples, to move them into
//! the HdrHistogram; [`report`](crate::report()) drains the rings the same way.

use std::cell::Cell;
use std::panic::AssertUnwindSafe;
use std::sync::PoisonError;

use hdrhistogram::Histogram;
use thread_local::ThreadLocal;

use crate::op::Op;
use crate::report::BUCKET_BOUNDS_NS;
use crate::sync::{AtomicU32, AtomicU64, Mutex, MutexGuard, Ordering, unmodelled};

/// Significant figures kept by every histogram.
pub(crate) const SIGNIFICANT_FIGURES: u8 = 3;

/// Samples a thread buffers per (map, operation) before it takes the lock
/// (two under loom, so that a model reaches a full ring in a few steps).
const RING: usize = if cfg!(snapview_loom) { 2 } else { 64 };

/// Maps whose shard a thread finds through its own cache; later ones take the
/// (still lock-free) `ThreadLocal` look-up.
const CACHED_MAPS: usize = 64;

/// The sampling interval of maps that set none: one call in this many is timed.
pub const DEFAULT_SAMPLE_EVERY: u32 = 64;

/// A setting, not part of any protocol: std's atomic even under loom.
static DEFAULT_EVERY: unmodelled::AtomicU32 = unmodelled::AtomicU32::new(DEFAULT_SAMPLE_EVERY);

/// Every map name's stats. A std lock even under loom: it is not on the
/// recording path, and a static needs a `const` constructor.
static REGISTRY: std::sync::Mutex<Vec<&'static MapStats>> = std::sync::Mutex::new(Vec::new());

thread_local! {
    /// This thread's shard of each of the first `CACHED_MAPS` maps: a constant
    /// initializer and no destructor make it a plain thread-relative load.
    static SHARD_CACHE: [Cell<Option<&'static Shard>>; CACHED_MAPS] = const { [const { Cell::new(None) }; CACHED_MAPS] };
    /// Set once this thread's [`TeardownGuard`] has run: the thread is
    /// ending and its shards may already belong to a new thread. No
    /// destructor, so it can be read at any point of the thread's end.
    static ENDING: Cell<bool> = const { Cell::new(false) };
    /// Registered right after the `ThreadLocal` look-up first runs on a
    /// thread, so that its destructor runs just before `thread_local`'s own
    /// (they run in the reverse order of registration), which hands this
    /// thread's id, and with it its shards, to the next thread that starts.
    static TEARDOWN_GUARD: TeardownGuard = const { TeardownGuard };
}

/// Forgets this thread's cached shards when its thread-locals are being
/// destroyed. A destructor that runs later (a thread-local of the
/// application's, registered earlier, that flushes into a map) would
/// otherwise write through the cache into a shard a new thread owns, or ask
/// `thread_local` for a shard after its guard is gone, which panics, and a
/// panic in a thread-local destructor aborts the process.
struct TeardownGuard;

impl Drop for TeardownGuard {
    fn drop(&mut self) {
        let _ = ENDING.try_with(|ending| ending.set(true));
        let _ = SHARD_CACHE.try_with(|cache| cache.iter().for_each(|slot| slot.set(None)));
        restart_countdowns_for_the_next_owner();
    }
}

/// Makes the next call of each of this thread's countdowns a timed one:
/// the next thread to start takes this one's id, and its shards with it, and
/// must time its first calls as any new thread does (a short-lived worker of
/// a pool would otherwise go on from where an ended one stopped, and perhaps
/// time nothing). The thread still owns its shards here: `thread_local`
/// hands them over after this guard, under a lock the next owner takes too.
fn restart_countdowns_for_the_next_owner() {
    // In a thread-local's destructor, where a panic would abort the process.
    let _ = std::panic::catch_unwind(|| {
        for stats in all_stats() {
            if let Some(shard) = stats.shards.get() {
                shard.ops.iter().for_each(OpShard::give_back_sample);
            }
        }
    });
}

/// While timing is off, how many calls a thread makes before it looks at
/// the default interval again.
const RECHECK_WHEN_OFF: u32 = 1024;

/// Sets how many calls share one timed call, for every map that does not set
/// its own: `1` times every call, `0` times none (calls are still counted).
///
/// Each thread's count of each (map, operation) takes the new interval when
/// its current one runs out: after at most the old interval's calls, or 1024
/// when timing was off.
pub fn set_default_sample_every(every: u32) {
    DEFAULT_EVERY.store(every, Ordering::Relaxed);
}

/// The interval set by [`set_default_sample_every`] ([`DEFAULT_SAMPLE_EVERY`] until then).
pub fn default_sample_every() -> u32 {
    DEFAULT_EVERY.load(Ordering::Relaxed)
}

/// Everything recorded under one map name. Lives for the rest of the process:
/// counters must stay monotonic for exporters even after the map is dropped,
/// and names are few (they are labels, like any metric label).
pub(crate) struct MapStats {
    pub(crate) name: &'static str,
    index: usize,
    shards: ThreadLocal<Shard>,
    /// Where ending threads record (see `TeardownGuard`): shared by them
    /// all, read by no report, its samples dropped.
    ending: Shard,
    timings: [Mutex<Timings>; Op::ALL.len()],
}

/// The stats registered under `name`, created on first use.
pub(crate) fn stats_for(name: &str) -> &'static MapStats {
    let mut registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(stats) = registry.iter().find(|stats| stats.name == name) {
        return stats;
    }
    let stats: &'static MapStats = Box::leak(Box::new(MapStats {
        name: Box::leak(name.into()),
        index: registry.len(),
        shards: ThreadLocal::new(),
        ending: Shard::discarding(),
        timings: core::array::from_fn(|_| Mutex::default()),
    }));
    registry.push(stats);
    stats
}

/// Every map name registered so far, in registration order.
pub(crate) fn all_stats() -> Vec<&'static MapStats> {
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

impl MapStats {
    /// How many map names were registered before this one.
    pub(crate) fn registration(&self) -> usize {
        self.index
    }

    /// This thread's shard.
    #[inline]
    pub(crate) fn shard(&'static self) -> &'static Shard {
        let cached = SHARD_CACHE.with(|cache| cache.get(self.index).and_then(Cell::get));
        match cached {
            Some(shard) => shard,
            None => self.shard_slow(),
        }
    }

    #[cold]
    fn shard_slow(&'static self) -> &'static Shard {
        // The thread is ending (see `TeardownGuard`): what it records now
        // goes to the map's discarding shard rather than into one another
        // thread owns.
        let shard = self.thread_shard().unwrap_or(&self.ending);
        let _ = SHARD_CACHE.try_with(|cache| {
            if let Some(slot) = cache.get(self.index) {
                slot.set(Some(shard));
            }
        });
        shard
    }

    /// This thread's shard in `shards`, unless the thread is ending.
    fn thread_shard(&'static self) -> Option<&'static Shard> {
        if ENDING.try_with(Cell::get).unwrap_or(true) {
            return None;
        }
        // `thread_local` panics when asked after its guard is gone and ours
        // never ran (its guard was registered by an earlier user, say
        // `tracing-subscriber`, and this is the thread's first shard, asked
        // from a later destructor): caught here, or it would abort.
        // The panic hook still runs (a message on stderr), and with
        // `panic = "abort"` this cannot help.
        let Ok(shard) = std::panic::catch_unwind(AssertUnwindSafe(|| self.shards.get_or(Shard::default))) else {
            // The thread is ending: every later look-up on it too.
            let _ = ENDING.try_with(|ending| ending.set(true));
            return None;
        };
        TEARDOWN_GUARD.try_with(|_| ()).ok()?;
        Some(shard)
    }

    /// The merged durations of `op`, behind the lock every drain takes.
    pub(crate) fn timings(&self, op: Op) -> &Mutex<Timings> {
        &self.timings[op.index()]
    }

    /// Reads the exact calls and the durations (with every buffered sample)
    /// of `op`, over all threads, with `read`, which runs under the lock that
    /// a recording thread with a full ring waits for: it should read what it
    /// needs, not copy the histogram (hundreds of KB once it has seen seconds).
    pub(crate) fn collect<R>(&self, op: Op, read: impl FnOnce(u64, &Timings) -> R) -> R {
        let mut timings = lock(&self.timings[op.index()]);
        let mut calls = 0;
        for shard in self.shards.iter() {
            let op_shard = &shard.ops[op.index()];
            // Drained first: the drain's Acquire of `written` makes visible
            // the calls counted before each sample it takes, so a report
            // never holds more samples than calls.
            op_shard.drain_into(&mut timings);
            calls += op_shard.calls.load(Ordering::Relaxed);
        }
        read(calls, &timings)
    }
}

/// One thread's measurements of one map.
#[derive(Default)]
pub(crate) struct Shard {
    pub(crate) ops: [OpShard; Op::ALL.len()],
}

impl Shard {
    /// A shard whose samples are dropped instead of merged, and that no
    /// report reads: any number of ending threads may write it at once
    /// (atomics, so only its own meaningless contents suffer).
    fn discarding() -> Self {
        Self { ops: core::array::from_fn(|_| OpShard { discards: true, ..OpShard::default() }) }
    }
}

/// One thread's measurements of one operation on one map. Only its owner
/// thread writes `calls`, `countdown`, `slots` and `written`; only a holder of
/// the (map, op) timings lock writes `drained`.
pub(crate) struct OpShard {
    calls: AtomicU64,
    countdown: AtomicU32,
    slots: [AtomicU64; RING],
    written: AtomicU64,
    drained: AtomicU64,
    /// Samples are dropped when the ring is full, never merged (`Shard::discarding`).
    discards: bool,
}

impl Default for OpShard {
    fn default() -> Self {
        Self {
            calls: AtomicU64::new(0),
            countdown: AtomicU32::new(0),
            slots: core::array::from_fn(|_| AtomicU64::new(0)),
            written: AtomicU64::new(0),
            drained: AtomicU64::new(0),
            discards: false,
        }
    }
}

impl OpShard {
    /// Counts `n` calls. Owner thread only: a load and a store, because no
    /// other thread writes the counter (readers may see it a little late).
    #[inline]
    pub(crate) fn add_calls(&self, n: u64) {
        self.calls.store(self.calls.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }

    /// Whether to time this call: true once every `every` calls, starting with
    /// the first (so a short test sees a sample). Owner thread only.
    #[inline]
    pub(crate) fn should_time(&self, every: Option<u32>) -> bool {
        let left = self.countdown.load(Ordering::Relaxed);
        if left > 1 {
            self.countdown.store(left - 1, Ordering::Relaxed);
            return false;
        }
        self.restart_countdown(every)
    }

    /// How many calls [`should_time`](Self::should_time) will refuse before
    /// it times one. Owner thread only.
    #[inline]
    pub(crate) fn untimed_ahead(&self) -> u32 {
        self.countdown.load(Ordering::Relaxed).saturating_sub(1)
    }

    /// Counts down `n` calls made without asking [`should_time`](Self::should_time),
    /// as if each had asked; `n` is at most [`untimed_ahead`](Self::untimed_ahead).
    /// Owner thread only.
    #[inline]
    pub(crate) fn skip_untimed(&self, n: u32) {
        let left = self.countdown.load(Ordering::Relaxed);
        self.countdown.store(left.saturating_sub(n), Ordering::Relaxed);
    }

    /// Makes the next call [`should_time`](Self::should_time) asks about a
    /// timed one: the timed call that asked last turned out not to count (a
    /// write that published nothing), and its sample goes to the next one.
    /// Without it, a no-op write every other call could take every sample of
    /// an even interval, and leave the histogram of the ones that publish
    /// empty for good. Owner thread only.
    #[inline]
    pub(crate) fn give_back_sample(&self) {
        self.countdown.store(0, Ordering::Relaxed);
    }

    #[cold]
    fn restart_countdown(&self, every: Option<u32>) -> bool {
        match every.unwrap_or_else(default_sample_every) {
            0 => {
                // Timing off: look again after a while, in case it was turned
                // back on (a cold call per `RECHECK_WHEN_OFF` calls).
                self.countdown.store(RECHECK_WHEN_OFF, Ordering::Relaxed);
                false
            }
            every => {
                self.countdown.store(every, Ordering::Relaxed);
                true
            }
        }
    }

    /// Buffers one duration; moves the buffer into `timings` first if it is
    /// full. Owner thread only.
    #[inline]
    pub(crate) fn push(&self, nanos: u64, timings: &Mutex<Timings>) {
        let written = self.written.load(Ordering::Relaxed);
        // Acquire: pairs with the Release store of `drained` in `drain_into`,
        // so the drainer's reads of the slots we are about to reuse are done.
        // Wrapping: the same instruction as `-` in a release build, and no
        // overflow check in a debug one, where the discarding shard that
        // ending threads share can see `written` fall behind `drained`.
        if written.wrapping_sub(self.drained.load(Ordering::Acquire)) == RING as u64 {
            self.flush(timings);
        }
        self.slots[written as usize % RING].store(nanos, Ordering::Relaxed);
        // Release: pairs with the Acquire load in `drain_into`, which then
        // sees the slot's value before it sees the new count.
        self.written.store(written + 1, Ordering::Release);
    }

    #[cold]
    fn flush(&self, timings: &Mutex<Timings>) {
        if self.discards {
            // Its calls are not counted anywhere: its samples must not be either.
            // Relaxed: no report reads this shard's slots, so there is no
            // read to order before their reuse (the Release that `drain_into`
            // needs orders exactly that).
            self.drained.store(self.written.load(Ordering::Relaxed), Ordering::Relaxed);
            return;
        }
        self.drain_into(&mut lock(timings));
    }

    /// Moves the buffered samples into `timings`. The caller holds the (map,
    /// op) timings lock, so drains never overlap.
    fn drain_into(&self, timings: &mut Timings) {
        // Acquire: pairs with the Release store in `push` (see there).
        let written = self.written.load(Ordering::Acquire);
        let drained = self.drained.load(Ordering::Relaxed);
        for i in drained..written {
            timings.record(self.slots[i as usize % RING].load(Ordering::Relaxed));
        }
        // Release: pairs with the Acquire load in `push`, which may then reuse the slots.
        self.drained.store(written, Ordering::Release);
    }
}

/// The merged durations of one (map, operation).
#[derive(Clone)]
pub(crate) struct Timings {
    pub(crate) histogram: Histogram<u64>,
    /// Sum of every sample in nanoseconds (the histogram keeps only buckets).
    pub(crate) sum: u64,
    /// The shortest and longest samples, exactly (`u64::MAX` and 0 before the
    /// first): the histogram's own `min()`/`max()` give the edges of the
    /// sub-bucket holding them, up to 0.1% off, which could put a maximum
    /// above the `le` bucket that holds every sample.
    pub(crate) min: u64,
    pub(crate) max: u64,
    /// Samples per exported bucket: `in_bucket[i]` counts those in
    /// `(BUCKET_BOUNDS_NS[i - 1], BUCKET_BOUNDS_NS[i]]`. Counted exactly,
    /// because the histogram's own count up to a bound takes in the whole
    /// sub-bucket holding it (up to 0.1% above), and a Prometheus `le` bucket
    /// promises "at or under".
    pub(crate) in_bucket: [u64; BUCKET_BOUNDS_NS.len()],
}

impl Default for Timings {
    fn default() -> Self {
        // Auto-resizing from a tiny range: memory follows the largest value
        // actually seen, and no value is ever out of range.
        let histogram = Histogram::new(SIGNIFICANT_FIGURES).expect("3 significant figures are valid");
        Self { histogram, sum: 0, min: u64::MAX, max: 0, in_bucket: [0; BUCKET_BOUNDS_NS.len()] }
    }
}

impl Timings {
    pub(crate) fn record(&mut self, nanos: u64) {
        // Auto-resize grows the histogram to fit; only a value beyond what
        // any histogram can track fails, and that one is clamped (never a panic).
        if self.histogram.record(nanos).is_err() {
            self.histogram.saturating_record(nanos);
        }
        self.sum = self.sum.saturating_add(nanos);
        self.min = self.min.min(nanos);
        self.max = self.max.max(nanos);
        // Above the last bound a sample is only in `+Inf`, the sample count.
        if let Some(count) = self.in_bucket.get_mut(BUCKET_BOUNDS_NS.partition_point(|&bound| bound < nanos)) {
            *count = count.saturating_add(1);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its data consistent (a recorded sample is
    // a complete update), so a panic elsewhere does not spoil it.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(all(test, not(snapview_loom)))]
mod tests {
    use super::*;

    #[test]
    fn one_name_one_stats() {
        let a = stats_for("registry.test.a");
        assert!(core::ptr::eq(a, stats_for("registry.test.a")));
        assert!(!core::ptr::eq(a, stats_for("registry.test.b")));
        assert!(all_stats().iter().any(|s| core::ptr::eq(*s, a)));
    }

    #[test]
    fn huge_values_are_clamped_not_panics() {
        let mut timings = Timings::default();
        timings.record(3);
        timings.record(u64::MAX);
        timings.record(10_000_000_000);
        assert_eq!(timings.histogram.len(), 3);
        assert!(timings.histogram.max() >= 10_000_000_000);
        assert_eq!(timings.sum, u64::MAX, "the sum saturates too");
        assert_eq!((timings.min, timings.max), (3, u64::MAX), "the extremes are the samples, not clamped");
    }

    #[test]
    fn extremes_are_the_samples_not_their_buckets() {
        let mut timings = Timings::default();
        timings.record(1_000_000_000);
        timings.record(1_234_567);
        assert_eq!((timings.min, timings.max), (1_234_567, 1_000_000_000));
        assert_ne!(timings.histogram.max(), 1_000_000_000, "the histogram alone rounds this maximum");
    }

    #[test]
    fn a_sample_given_back_times_the_next_call() {
        let shard = OpShard::default();
        let mut timed = Vec::new();
        for call in 0..9 {
            let sampled = shard.should_time(Some(4));
            timed.push(sampled);
            if sampled && call == 0 {
                shard.give_back_sample();
            }
        }
        assert_eq!(timed, [true, true, false, false, false, true, false, false, false]);
    }

    #[test]
    fn countdown_times_first_then_every_nth() {
        let shard = OpShard::default();
        let timed: Vec<bool> = (0..7).map(|_| shard.should_time(Some(3))).collect();
        assert_eq!(timed, [true, false, false, true, false, false, true]);
        let never = OpShard::default();
        assert!((0..100).all(|_| !never.should_time(Some(0))));
    }

    #[test]
    fn skipped_calls_count_down_like_asked_ones() {
        let asked = OpShard::default();
        let skipping = OpShard::default();
        let mut timed = Vec::new();
        for _ in 0..5 {
            assert!(skipping.should_time(Some(4)));
            let ahead = skipping.untimed_ahead();
            assert_eq!(ahead, 3);
            skipping.skip_untimed(ahead);
        }
        for _ in 0..20 {
            timed.push(asked.should_time(Some(4)));
        }
        assert_eq!(timed.iter().filter(|&&t| t).count(), 5);
        assert!(timed.iter().step_by(4).all(|&t| t));
        assert_eq!(OpShard::default().untimed_ahead(), 0, "a fresh shard times its first call");
    }

    #[test]
    fn ring_flushes_when_full_and_collect_drains_the_rest() {
        let stats = stats_for("registry.test.ring");
        let shard = stats.shard();
        let op = &shard.ops[Op::Diff.index()];
        for nanos in 1..=(RING as u64 * 2 + 5) {
            op.add_calls(1);
            op.push(nanos, stats.timings(Op::Diff));
        }
        let (calls, timings) = stats.collect(Op::Diff, |calls, timings| (calls, timings.clone()));
        assert_eq!(calls, RING as u64 * 2 + 5);
        assert_eq!(timings.histogram.len(), RING as u64 * 2 + 5);
        assert_eq!(timings.histogram.max(), RING as u64 * 2 + 5);
        let n = RING as u64 * 2 + 5;
        assert_eq!(timings.sum, n * (n + 1) / 2);
    }
}

/// `RUSTFLAGS="--cfg snapview_loom" cargo test -p snapview-instrument --lib --release loom`
#[cfg(all(test, snapview_loom))]
mod loom_tests {
    use loom::sync::Arc;

    use super::*;

    /// An owner pushing more samples than the ring holds, while a reader
    /// drains concurrently: every sample lands in the histogram exactly once.
    #[test]
    fn loom_ring_loses_and_duplicates_nothing() {
        loom::model(|| {
            let shard = Arc::new(OpShard::default());
            let timings = Arc::new(Mutex::new(Timings::default()));
            let reader = {
                let (shard, timings) = (Arc::clone(&shard), Arc::clone(&timings));
                loom::thread::spawn(move || shard.drain_into(&mut lock(&timings)))
            };
            for nanos in 1..=3 {
                shard.push(nanos, &timings);
            }
            reader.join().unwrap();
            let mut merged = lock(&timings);
            shard.drain_into(&mut merged);
            assert_eq!((merged.histogram.len(), merged.sum), (3, 6));
        });
    }

    /// A call is counted before its sample is pushed, and a report drains
    /// before it reads the count: it never holds more samples than calls.
    #[test]
    fn loom_a_report_never_has_more_samples_than_calls() {
        loom::model(|| {
            let shard = Arc::new(OpShard::default());
            let timings = Arc::new(Mutex::new(Timings::default()));
            let reporter = {
                let shard = Arc::clone(&shard);
                loom::thread::spawn(move || {
                    // As `MapStats::collect`: drain, then read the count.
                    let mut report = Timings::default();
                    shard.drain_into(&mut report);
                    let calls = shard.calls.load(Ordering::Relaxed);
                    assert!(report.histogram.len() <= calls, "{} samples, {calls} calls", report.histogram.len());
                })
            };
            for nanos in 1..=2 {
                shard.add_calls(1);
                shard.push(nanos, &timings);
            }
            reporter.join().unwrap();
        });
    }
}
