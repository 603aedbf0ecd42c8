//! The recording side, for a map implementation: what to call around each
//! operation. A map keeps one [`MapProbe`]; each call site asks it for a
//! short-lived handle that counts the call, times it if this call is sampled,
//! and opens the operation's span if its level is enabled.

use core::marker::PhantomData;
use std::sync::OnceLock;

use tracing::Span;
use tracing::span::EnteredSpan;

use crate::op::Op;
use crate::registry::{MapStats, OpShard, stats_for};
use crate::spans::{self, int};

/// The clock of every timing: the TSC where it is reliable (about half the cost
/// of `Instant::now()`), the OS monotonic clock otherwise.
fn clock() -> &'static quanta::Clock {
    static CLOCK: OnceLock<quanta::Clock> = OnceLock::new();
    CLOCK.get_or_init(quanta::Clock::new)
}

fn now() -> u64 {
    clock().raw()
}

fn nanos_since(start: u64) -> u64 {
    clock().delta_as_nanos(start, clock().raw())
}

/// One map's recording handle: its name's stats and its sampling settings.
///
/// `Copy`: an iteration's and a diff's probes carry their own copy rather
/// than borrow the map's, so that they borrow nothing and the iterators that
/// hold them have a `Drop` that outlives no borrow (see [`IterProbe`]).
///
/// 16 bytes: `sample_every` and whether it overrides the default are two
/// fields, not an `Option<u32>` (8 bytes, its tag padded to 4, which with
/// the `bool` made the struct 24), so that an iterator's probe stays within
/// the size an iterator moves inline (`snapview`'s `hooks::IterHook`).
#[derive(Clone, Copy)]
pub struct MapProbe {
    stats: &'static MapStats,
    sample_every: u32,
    /// `sample_every` is this map's own, not the global default.
    own_sampling: bool,
    records_get: bool,
}

impl MapProbe {
    /// The probe of the map called `name`. Maps sharing a name share their stats.
    pub fn new(name: &str) -> Self {
        // The clock calibrates once per process (quanta spins ~0.6 ms here):
        // at a map's creation, not in whichever call is timed first.
        clock();
        #[cfg(debug_assertions)]
        crate::interest::keep_two_dispatchers();
        let stats = stats_for(name);
        // This thread's shard is allocated on its first call; taken here, so
        // that the thread that builds a map and reads it never sees a read
        // allocate.
        stats.shard();
        Self { stats, sample_every: 0, own_sampling: false, records_get: false }
    }

    /// Times one call in `every` (`1`: all, `0`: none) instead of the global
    /// default ([`set_default_sample_every`](crate::set_default_sample_every)).
    pub fn sample_every(mut self, every: u32) -> Self {
        (self.sample_every, self.own_sampling) = (every, true);
        self
    }

    /// This map's sampling interval, if it has its own.
    #[inline]
    fn sampling(&self) -> Option<u32> {
        self.own_sampling.then_some(self.sample_every)
    }

    /// Also records look-ups ([`Op::Get`]); off by default.
    pub fn record_get(mut self, on: bool) -> Self {
        self.records_get = on;
        self
    }

    /// The map's name, as every label and span field carries it.
    pub fn name(&self) -> &'static str {
        self.stats.name
    }

    /// Whether look-ups are recorded.
    #[inline]
    pub fn records_get(&self) -> bool {
        self.records_get
    }

    /// Starts one call of `op`: counts it when [`finish`](OpTimer::finish)ed,
    /// and times it if this call is sampled.
    #[inline]
    pub fn start(&self, op: Op) -> OpTimer<'_> {
        let shard = &self.stats.shard().ops[op.index()];
        let start = shard.should_time(self.sampling()).then(now);
        OpTimer { probe: self, shard, op, start, _owner_thread: PhantomData }
    }

    /// Records an owned snapshot of `version` that `timer` measured.
    #[inline]
    pub fn snapshot_taken(&self, timer: OpTimer<'_>, version: u64) {
        timer.finish();
        spans::snapshot(self.name(), version);
    }

    /// Records a borrowed read of `version` that `timer` measured.
    #[inline]
    pub fn read_taken(&self, timer: OpTimer<'_>, version: u64) {
        timer.finish();
        spans::read(self.name(), version);
    }

    /// Starts a write: its span is entered until the returned handle is
    /// finished or dropped (a panicking write drops it, and counts nothing).
    pub fn start_publish(&self) -> PublishTimer<'_> {
        PublishTimer { span: spans::publish(self.name()).entered(), timer: self.start(Op::Publish) }
    }

    /// Starts watching an iteration over `version`; nothing happens until its first `next()`.
    pub fn iteration(&self, version: u64) -> IterProbe {
        IterProbe { probe: *self, version, state: IterState::Idle }
    }

    /// Starts watching a diff from `from_version` to `version`; nothing happens until its first `next()`.
    pub fn diff(&self, from_version: u64, version: u64) -> DiffProbe {
        DiffProbe { probe: *self, from_version, version, state: DiffState::Idle }
    }

    fn shard(&self, op: Op) -> &'static OpShard {
        &self.stats.shard().ops[op.index()]
    }

    fn record(&self, shard: &OpShard, op: Op, nanos: u64) {
        shard.push(nanos, self.stats.timings(op));
    }
}

impl core::fmt::Debug for MapProbe {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MapProbe")
            .field("name", &self.name())
            .field("sample_every", &self.sampling())
            .field("records_get", &self.records_get)
            .finish()
    }
}

/// One call in progress. Dropping it without [`finish`](Self::finish) records nothing.
///
/// Not `Send`: it holds the starting thread's shard, which only that thread
/// may write (finished on another thread, it would race with the owner).
///
/// ```compile_fail
/// use snapview_instrument::{Op, probe::MapProbe};
/// let probe: &'static MapProbe = Box::leak(Box::new(MapProbe::new("routes")));
/// let timer = probe.start(Op::Get);
/// std::thread::spawn(move || timer.finish());
/// ```
#[must_use = "a call is counted only when finished"]
pub struct OpTimer<'p> {
    probe: &'p MapProbe,
    shard: &'static OpShard,
    op: Op,
    start: Option<u64>,
    _owner_thread: PhantomData<*const ()>,
}

impl core::fmt::Debug for OpTimer<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OpTimer")
            .field("probe", &self.probe)
            .field("op", &self.op)
            .field("sampled", &self.start.is_some())
            .finish_non_exhaustive()
    }
}

impl OpTimer<'_> {
    /// Counts the call, and records its duration if it was sampled.
    #[inline]
    pub fn finish(self) {
        self.shard.add_calls(1);
        if let Some(start) = self.start {
            self.probe.record(self.shard, self.op, nanos_since(start));
        }
    }
}

/// One write in progress, inside its `snapview.publish` span.
#[must_use = "a write is counted only when finished"]
pub struct PublishTimer<'p> {
    span: EnteredSpan,
    timer: OpTimer<'p>,
}

impl core::fmt::Debug for PublishTimer<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PublishTimer").field("timer", &self.timer).finish_non_exhaustive()
    }
}

impl PublishTimer<'_> {
    /// The write published `version` with `changes` effective changes.
    pub fn published(self, version: u64, changes: usize) {
        self.timer.finish();
        self.span.record("version", int(version)).record("changes", int(changes));
    }

    /// The write changed nothing, so the map stays at `version`: it is not a
    /// publish and is not counted, but its span says so. If it was the
    /// sampled call, the next write is timed instead.
    pub fn unchanged(self, version: u64) {
        if self.timer.start.is_some() {
            self.timer.shard.give_back_sample();
        }
        self.span.record("version", int(version)).record("changes", 0_i64);
    }
}

/// Watches one iteration for its iterator. The iterator wraps its first
/// `next()`, and each later one that [`next_watch`](Self::next_watch) names,
/// in [`before_next`](Self::before_next) / [`after_next`](Self::after_next);
/// it calls [`finish`](Self::finish) on drop. Every other `next()` costs one
/// predictable comparison, and the items are counted from the iterator's
/// length.
///
/// It borrows nothing (it holds a copy of the [`MapProbe`]): an iterator
/// records its iteration when dropped, and a `Drop` that borrowed from the
/// map would make the borrow checker ask the iterator to go before the
/// snapshot it borrows, which code written for the feature-off build need not
/// do (an edition-2021 tail expression such as `snap.values().any(..)`).
pub struct IterProbe {
    probe: MapProbe,
    version: u64,
    state: IterState,
}

// A `tracing::Span` is not `UnwindSafe` (its dispatcher is a `dyn Subscriber`:
// tokio-rs/tracing#1642), which would make every iterator and diff lose the
// auto trait the feature-off build has, and `catch_unwind(move || it.count())`
// stop compiling when `instrument` is turned on. A probe seen again after a
// caught panic only records what its iteration did and closes its span.
impl std::panic::UnwindSafe for IterProbe {}
impl std::panic::RefUnwindSafe for IterProbe {}
impl std::panic::UnwindSafe for DiffProbe {}
impl std::panic::RefUnwindSafe for DiffProbe {}

enum IterState {
    /// No `next()` yet.
    Idle,
    /// Neither timed nor traced: only counted, when the iterator ends.
    Counting { started_with: usize },
    /// Timed or traced: the `next()`s that [`IterProbe::next_watch`] names
    /// are watched.
    Watching(Watch),
    /// Recorded already.
    Done,
}

/// What a watched iteration keeps. No shard: an iterator is `Send`, and a
/// shard is written only by its own thread, so each call takes the shard of
/// the thread that makes it.
struct Watch {
    started_with: usize,
    start: u64,
    /// This iteration is a sample: its duration is recorded, and its
    /// `next()`s are sampled.
    sampled: bool,
    span: Span,
    /// The span is enabled: every `next()` is timed for `max_next_ns`.
    traced: bool,
    next_spans: bool,
    max_next_ns: u64,
    /// Sampled: the iterator's `remaining` when it went on with plain
    /// `next()`s, which sampling must count as untimed calls (see
    /// [`IterProbe::next_watch`]).
    plain_from: Option<usize>,
    /// The `next()`s already added to `iter.next`'s calls: those up to the
    /// last sampled one, counted before its sample is recorded, so that no
    /// report shows more samples than calls while the iteration goes on.
    counted: usize,
}

impl Watch {
    /// Counts the plain `next()`s made since `plain_from` down from the
    /// sampling countdown in `next_shard`, as if each had asked whether to
    /// be timed: the `next()`s timed are the same as when every call asks.
    #[inline]
    fn count_plain_nexts(&mut self, next_shard: &OpShard, remaining: usize) {
        if let Some(from) = self.plain_from.take() {
            let plain = u32::try_from(from - remaining).unwrap_or(u32::MAX);
            next_shard.skip_untimed(plain);
        }
    }
}

/// What [`IterProbe::before_next`] started, for [`IterProbe::after_next`].
pub struct NextStep {
    /// The clock when the `next()` is timed: sampled, or traced (for `max_next_ns`).
    start: Option<u64>,
    /// Whether its time goes into the `iter.next` histogram.
    sampled: bool,
    _span: Option<EnteredSpan>,
}

impl core::fmt::Debug for IterProbe {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IterProbe").field("probe", &self.probe).field("version", &self.version).finish_non_exhaustive()
    }
}

impl core::fmt::Debug for NextStep {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NextStep").field("sampled", &self.start.is_some()).finish_non_exhaustive()
    }
}

impl IterProbe {
    /// When the iterator must call [`before_next`](Self::before_next) and
    /// [`after_next`](Self::after_next) again: at the `next()` made when it has
    /// this many items left (`remaining`, as passed to `after_next`); `None`:
    /// not again in this iteration ([`finish`](Self::finish) accounts for the
    /// rest). Its plain `next()`s in between cost the probe nothing.
    ///
    /// The first `next()` is always watched. After it, a traced iteration
    /// watches every `next()` (each is timed for `max_next_ns`, and may have a
    /// span); a sampled one only the `next()` that its sampling will time, or
    /// if that falls past the end, the `next()` that finds nothing left (`0`);
    /// an iteration that is neither none.
    #[inline]
    pub fn next_watch(&mut self, remaining: usize) -> Option<usize> {
        let probe = self.probe;
        match &mut self.state {
            IterState::Idle => Some(remaining),
            IterState::Counting { .. } | IterState::Done => None,
            IterState::Watching(watch) if watch.traced => Some(remaining),
            IterState::Watching(watch) => {
                let untimed = probe.shard(Op::IterNext).untimed_ahead() as usize;
                if untimed > 0 {
                    watch.plain_from = Some(remaining);
                }
                // No `next()` left to time: the one that finds nothing
                // left is still watched, so that the iteration's time ends
                // there and not at the iterator's drop, which a `while let`
                // loop, or an iterator kept in a struct, may put off.
                Some(remaining.saturating_sub(untimed))
            }
        }
    }

    /// Called before a watched `next()`, with the items the iterator has left.
    #[inline]
    pub fn before_next(&mut self, remaining: usize) -> NextStep {
        if let IterState::Idle = self.state {
            self.begin(remaining);
        }
        let IterState::Watching(watch) = &mut self.state else {
            return NextStep { start: None, sampled: false, _span: None };
        };
        let next_shard = self.probe.shard(Op::IterNext);
        watch.count_plain_nexts(next_shard, remaining);
        // An exact-size iterator with nothing left yields nothing: no span,
        // and no tick of the sampling countdown, for that call.
        let yields = remaining > 0;
        let span = (watch.next_spans && yields)
            .then(|| spans::iter_next(&watch.span, self.probe.name(), self.version).entered());
        // A sampled iteration samples its `next()`s like any other call (all
        // of them with `sample_every(1)`), asking at each whether this one is
        // timed, traced or not; a traced one times each for `max_next_ns`.
        let sampled = yields && watch.sampled && next_shard.should_time(self.probe.sampling());
        let timed = sampled || watch.traced;
        NextStep { start: timed.then(now), sampled, _span: span }
    }

    /// Called after a watched `next()`; `yielded` is whether it returned an item.
    ///
    /// The `next()`'s span is left and closed before anything is counted: a
    /// tracing layer that panics there then leaves the iteration as it was,
    /// and the iterator, which reads its item only after this call, keeps
    /// the item for its next `next()`.
    #[inline]
    pub fn after_next(&mut self, step: NextStep, yielded: bool, remaining: usize) {
        let NextStep { start, sampled, _span: span } = step;
        let nanos = start.map(nanos_since);
        drop(span);
        let IterState::Watching(watch) = &mut self.state else { return };
        if !yielded {
            self.finish(remaining);
            return;
        }
        let Some(nanos) = nanos else { return };
        watch.max_next_ns = watch.max_next_ns.max(nanos);
        if sampled {
            let next_shard = self.probe.shard(Op::IterNext);
            let items = watch.started_with - remaining;
            next_shard.add_calls((items - watch.counted) as u64);
            watch.counted = items;
            self.probe.record(next_shard, Op::IterNext, nanos);
        }
    }

    /// Records the iteration, if it started and is not recorded yet; `remaining`
    /// is what the iterator had left.
    pub fn finish(&mut self, remaining: usize) {
        match core::mem::replace(&mut self.state, IterState::Done) {
            IterState::Idle | IterState::Done => {}
            IterState::Counting { started_with } => self.count(started_with - remaining),
            IterState::Watching(mut watch) => {
                watch.count_plain_nexts(self.probe.shard(Op::IterNext), remaining);
                let items = watch.started_with - remaining;
                self.count(items - watch.counted);
                let nanos = nanos_since(watch.start);
                if watch.sampled {
                    self.probe.record(self.probe.shard(Op::Iter), Op::Iter, nanos);
                }
                watch
                    .span
                    .record("items", int(items))
                    .record("duration_ns", int(nanos))
                    .record("max_next_ns", int(watch.max_next_ns));
            }
        }
    }

    fn begin(&mut self, remaining: usize) {
        let sampled = self.probe.shard(Op::Iter).should_time(self.probe.sampling());
        let span = spans::iter(self.probe.name(), self.version);
        let traced = !span.is_disabled();
        self.state = if sampled || traced {
            let next_spans = traced && spans::iter_next_enabled();
            let watch = Watch {
                started_with: remaining,
                start: now(),
                sampled,
                span,
                traced,
                next_spans,
                max_next_ns: 0,
                plain_from: None,
                counted: 0,
            };
            IterState::Watching(watch)
        } else {
            IterState::Counting { started_with: remaining }
        };
    }

    /// Counts the iteration and its `next()`s not counted yet.
    fn count(&self, uncounted_nexts: usize) {
        self.probe.shard(Op::Iter).add_calls(1);
        self.probe.shard(Op::IterNext).add_calls(uncounted_nexts as u64);
    }
}

impl Clone for IterProbe {
    /// A clone of an iterator is a new iteration.
    fn clone(&self) -> Self {
        Self { probe: self.probe, version: self.version, state: IterState::Idle }
    }
}

/// Watches one diff walk for its iterator, which calls
/// [`before_next`](Self::before_next) and [`after_next`](Self::after_next)
/// around every `next()` and [`finish`](Self::finish) on drop.
///
/// It borrows nothing, for the reason [`IterProbe`] gives.
pub struct DiffProbe {
    probe: MapProbe,
    from_version: u64,
    version: u64,
    state: DiffState,
}

enum DiffState {
    Idle,
    Walking { start: Option<u64>, span: Span, changes: usize },
    Done,
}

impl core::fmt::Debug for DiffProbe {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DiffProbe")
            .field("probe", &self.probe)
            .field("from_version", &self.from_version)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl DiffProbe {
    /// Called before each `next()`: the first one starts the clock and the span.
    #[inline]
    pub fn before_next(&mut self) {
        if let DiffState::Idle = self.state {
            self.begin();
        }
    }

    /// Called after each `next()`; `yielded` is whether it returned a change.
    #[inline]
    pub fn after_next(&mut self, yielded: bool) {
        match &mut self.state {
            DiffState::Walking { changes, .. } if yielded => *changes += 1,
            DiffState::Walking { .. } => self.finish(),
            DiffState::Idle | DiffState::Done => {}
        }
    }

    fn begin(&mut self) {
        let start = self.probe.shard(Op::Diff).should_time(self.probe.sampling()).then(now);
        let span = spans::diff(self.probe.name(), self.from_version, self.version);
        self.state = DiffState::Walking { start, span, changes: 0 };
    }

    /// Records the diff, if it started and is not recorded yet.
    pub fn finish(&mut self) {
        if let DiffState::Walking { start, span, changes } = core::mem::replace(&mut self.state, DiffState::Done) {
            let shard = self.probe.shard(Op::Diff);
            shard.add_calls(1);
            if let Some(start) = start {
                self.probe.record(shard, Op::Diff, nanos_since(start));
            }
            span.record("changes", int(changes));
        }
    }
}
