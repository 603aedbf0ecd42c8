//! Every place the `instrument` feature touches, in one module.
//!
//! The rest of the crate calls these hooks unconditionally. With the feature
//! on they call into `snapview-instrument`; with it off they are zero-sized
//! types whose `#[inline(always)]` methods do nothing but run the operation,
//! so the feature-off build compiles to the plain code.

/// What a map's builder says about its instrumentation (kept even when the
/// feature is off, so that code setting it compiles either way).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct HookConfig {
    pub(crate) sample_every: Option<u32>,
    pub(crate) record_get: bool,
}

#[cfg(feature = "instrument")]
pub(crate) use on::*;

#[cfg(not(feature = "instrument"))]
pub(crate) use off::*;

#[cfg(feature = "instrument")]
mod on {
    use core::slice;

    use snapview_instrument::Op;
    use snapview_instrument::probe::{DiffProbe, IterProbe, MapProbe, NextStep, PublishTimer};

    use super::HookConfig;
    use crate::iter::Iter;

    /// One map's probe.
    #[derive(Clone)]
    pub(crate) struct MapHook(MapProbe);

    impl MapHook {
        pub(crate) fn new(name: &str, config: HookConfig) -> Self {
            let mut probe = MapProbe::new(name).record_get(config.record_get);
            if let Some(every) = config.sample_every {
                probe = probe.sample_every(every);
            }
            Self(probe)
        }

        /// Runs `take` (an owned snapshot) as one `snapshot` call.
        #[inline]
        pub(crate) fn snapshot<T>(&self, take: impl FnOnce() -> T, version: impl FnOnce(&T) -> u64) -> T {
            let timer = self.0.start(Op::Snapshot);
            let view = take();
            self.0.snapshot_taken(timer, version(&view));
            view
        }

        /// Runs `take` (a borrowed read) as one `read` call.
        #[inline]
        pub(crate) fn read<T>(&self, take: impl FnOnce() -> T, version: impl FnOnce(&T) -> u64) -> T {
            let timer = self.0.start(Op::Read);
            let view = take();
            self.0.read_taken(timer, version(&view));
            view
        }

        /// Whether the map records `get` calls (`record_get`, opt-in).
        #[inline(always)]
        pub(crate) fn records_get(&self) -> bool {
            self.0.records_get()
        }

        /// Runs `lookup` as one recorded `get` call (counted, and timed when
        /// sampled).
        ///
        /// Out of line and cold, and taken only when [`records_get`](Self::records_get):
        /// an unrecorded `get` is then the plain lookup behind one test. With
        /// a guard started before and finished after the lookup instead, the
        /// lookup's code was laid out around the recording path, and a 1K-map
        /// hit took 1.4-1.6x its time in the build without the feature
        /// (`runtime/benches/overhead.sh get`, session 11), for 4 more
        /// instructions and one more taken jump. (A closure around an
        /// always-recorded lookup, session 5's way, kept the lookup itself
        /// out of line: ~1.5x.)
        #[cold]
        #[inline(never)]
        pub(crate) fn recorded_get<T>(&self, lookup: impl FnOnce() -> T) -> T {
            let timer = self.0.start(Op::Get);
            let found = lookup();
            timer.finish();
            found
        }

        pub(crate) fn start_publish(&self) -> PublishHook<'_> {
            PublishHook(self.0.start_publish())
        }

        pub(crate) fn iteration(&self, version: u64, len: usize) -> IterHook<'_> {
            IterHook { watch_at: len, probe: Some(self.0.iteration(version)) }
        }

        pub(crate) fn diff(&self, from_version: u64, version: u64) -> DiffHook<'_> {
            DiffHook(self.0.diff(from_version, version))
        }
    }

    /// One write in progress.
    pub(crate) struct PublishHook<'m>(PublishTimer<'m>);

    impl PublishHook<'_> {
        pub(crate) fn published(self, version: u64, changes: usize) {
            self.0.published(version, changes);
        }

        pub(crate) fn unchanged(self, version: u64) {
            self.0.unchanged(version);
        }
    }

    /// One iteration's probe; none for iterations that are not views (a batch's own).
    #[derive(Clone)]
    pub(crate) struct IterHook<'m> {
        /// The iterator's `remaining` at the next `next()` the probe watches
        /// (`NEVER`: none), kept beside the probe so that the per-item check
        /// is one comparison, not a walk into the probe's state.
        watch_at: usize,
        probe: Option<IterProbe<'m>>,
    }

    /// No `remaining` count reaches it.
    const NEVER: usize = usize::MAX;

    impl IterHook<'_> {
        pub(crate) fn none() -> Self {
            Self { watch_at: NEVER, probe: None }
        }

        /// Whether the `next()` made with `remaining` items left goes through
        /// [`Iter::next_watched`].
        #[inline(always)]
        pub(crate) fn watching(&self, remaining: usize) -> bool {
            remaining == self.watch_at
        }

        /// How many `next()`s from the one made with `remaining` items left
        /// go unwatched before the next watched one; more than `remaining`
        /// if none is (the subtraction wraps: one instruction, no test).
        #[inline(always)]
        pub(crate) fn unwatched_ahead(&self, remaining: usize) -> usize {
            remaining.wrapping_sub(self.watch_at)
        }

        /// Whether any later `next()` of this iteration is watched (then a
        /// `fold` walks by `next()`, not by the plain fold).
        #[inline(always)]
        pub(crate) fn watches_again(&self) -> bool {
            self.watch_at != NEVER
        }

        /// The hook of a copy of the iterator with `remaining` items left: a
        /// new iteration, watched from its first `next()`.
        pub(crate) fn restarted(&self, remaining: usize) -> Self {
            let probe = self.probe.clone();
            Self { watch_at: if probe.is_some() { remaining } else { NEVER }, probe }
        }

        /// Records the iteration, with `remaining` items not yielded. Takes
        /// the hook by value, moved out of the iterator, like the two calls
        /// below: see [`Iter::next_watched`].
        #[inline(never)]
        fn finish(mut self, remaining: usize) {
            if let Some(probe) = self.probe.as_mut() {
                probe.finish(remaining);
            }
        }

        /// Out of line: its code (clock reads, spans, recording) stays out
        /// of the caller's loop, which only holds the call.
        #[cold]
        #[inline(never)]
        fn before_next(&mut self, remaining: usize) -> Option<NextStep> {
            self.probe.as_mut().map(|probe| probe.before_next(remaining))
        }

        /// Out of line, as [`before_next`](Self::before_next); sets the next watched `next()`.
        #[cold]
        #[inline(never)]
        fn after_next(&mut self, step: Option<NextStep>, yielded: bool, remaining: usize) {
            if let (Some(probe), Some(step)) = (self.probe.as_mut(), step) {
                probe.after_next(step, yielded, remaining);
                self.watch_at = probe.next_watch(remaining).unwrap_or(NEVER);
            }
        }
    }

    /// The current node's entries that an iterator holds back so that its
    /// `entries` end just before a watched `next()` ([`Iter::cut`]): `next()`
    /// then needs no test of its own per entry, and takes the watched path
    /// only once `entries` runs out.
    pub(crate) struct Held<'a, T> {
        /// The node's unyielded entries as of the last cut; the iterator's
        /// `entries` is what is left of `cut[..split]`.
        cut: &'a [T],
        split: usize,
    }

    // Not derived: that would ask `T: Copy`.
    impl<T> Clone for Held<'_, T> {
        fn clone(&self) -> Self {
            *self
        }
    }

    impl<T> Copy for Held<'_, T> {}

    impl<'a, T> Held<'a, T> {
        pub(crate) fn none() -> Self {
            Self { cut: &[], split: 0 }
        }

        /// Whether anything is held back (else `cut` and `split` are stale).
        #[inline(always)]
        pub(crate) fn any(&self) -> bool {
            self.split < self.cut.len()
        }

        /// How many entries are held back (`split` never passes `cut`'s end).
        #[inline(always)]
        pub(crate) fn len(&self) -> usize {
            self.cut.len() - self.split
        }

        /// Ends `entries` after the next `unwatched` of the node's unyielded
        /// entries (`entries`, then what is held) and holds the rest back;
        /// gives them all back to `entries` if the watch falls past them.
        /// Writes nothing in the common case: no watch in this node, none held.
        #[inline(always)]
        pub(crate) fn cut(&mut self, entries: &mut slice::Iter<'a, T>, unwatched: usize) {
            let holding = self.any();
            let all = match holding {
                true => &self.cut[self.split - entries.len()..],
                false => entries.as_slice(),
            };
            if unwatched < all.len() {
                self.cut = all;
                self.split = unwatched;
                *entries = all[..unwatched].iter();
            } else if holding {
                self.split = self.cut.len();
                *entries = all.iter();
            }
        }
    }

    impl<'a, K, V> Iter<'a, K, V> {
        /// A `next()` that the probe watches: the iteration's first, or any
        /// of a sampled or traced iteration.
        ///
        /// Called once the current node's `entries` ran out ([`Iter::cut`]
        /// ends them before each watched `next()`). Inlined, while the
        /// probe's calls are out of line and get the hook moved out of the
        /// iterator, never the iterator's address: one call in the caller's
        /// loop that might reach the iterator (this function out of line,
        /// or the iterator's drop) made LLVM keep the whole iterator in
        /// memory, and each element waited on the store and reload of its
        /// cursor. The two moves, and the cut after each watched `next()`,
        /// cost one ~8 ns (`on-sample1` in `runtime/benches/overhead.sh`,
        /// where every `next()` is watched).
        #[inline(always)]
        pub(crate) fn next_watched(&mut self) -> Option<(&'a K, &'a V)> {
            let mut hook = core::mem::replace(&mut self.hook, IterHook::none());
            let step = hook.before_next(self.remaining());
            // Under the placeholder hook, what is held back is given back.
            let item = self.next_refill();
            hook.after_next(step, item.is_some(), self.remaining());
            drop(core::mem::replace(&mut self.hook, hook));
            self.cut();
            item
        }
    }

    impl<K, V> Drop for Iter<'_, K, V> {
        #[inline(always)]
        fn drop(&mut self) {
            core::mem::replace(&mut self.hook, IterHook::none()).finish(self.remaining());
        }
    }

    /// One diff walk's probe.
    pub(crate) struct DiffHook<'m>(DiffProbe<'m>);

    impl DiffHook<'_> {
        #[inline]
        pub(crate) fn before_next(&mut self) {
            self.0.before_next();
        }

        #[inline]
        pub(crate) fn after_next(&mut self, yielded: bool) {
            self.0.after_next(yielded);
        }
    }

    impl Drop for DiffHook<'_> {
        fn drop(&mut self) {
            self.0.finish();
        }
    }
}

#[cfg(not(feature = "instrument"))]
mod off {
    use core::marker::PhantomData;

    use super::HookConfig;

    #[derive(Clone)]
    pub(crate) struct MapHook;

    impl MapHook {
        pub(crate) fn new(_name: &str, _config: HookConfig) -> Self {
            Self
        }

        #[inline(always)]
        pub(crate) fn snapshot<T>(&self, take: impl FnOnce() -> T, _version: impl FnOnce(&T) -> u64) -> T {
            take()
        }

        #[inline(always)]
        pub(crate) fn read<T>(&self, take: impl FnOnce() -> T, _version: impl FnOnce(&T) -> u64) -> T {
            take()
        }

        #[inline(always)]
        pub(crate) fn records_get(&self) -> bool {
            false
        }

        #[inline(always)]
        pub(crate) fn recorded_get<T>(&self, lookup: impl FnOnce() -> T) -> T {
            lookup()
        }

        #[inline(always)]
        pub(crate) fn start_publish(&self) -> PublishHook<'_> {
            PublishHook(PhantomData)
        }

        #[inline(always)]
        pub(crate) fn iteration(&self, _version: u64, _len: usize) -> IterHook<'_> {
            IterHook(PhantomData)
        }

        #[inline(always)]
        pub(crate) fn diff(&self, _from_version: u64, _version: u64) -> DiffHook<'_> {
            DiffHook(PhantomData)
        }
    }

    pub(crate) struct PublishHook<'m>(PhantomData<&'m ()>);

    impl PublishHook<'_> {
        #[inline(always)]
        pub(crate) fn published(self, _version: u64, _changes: usize) {}

        #[inline(always)]
        pub(crate) fn unchanged(self, _version: u64) {}
    }

    #[derive(Clone)]
    pub(crate) struct IterHook<'m>(PhantomData<&'m ()>);

    impl IterHook<'_> {
        #[inline(always)]
        pub(crate) fn none() -> Self {
            Self(PhantomData)
        }

        #[inline(always)]
        pub(crate) fn watching(&self, _remaining: usize) -> bool {
            false
        }

        #[inline(always)]
        pub(crate) fn watches_again(&self) -> bool {
            false
        }

        #[inline(always)]
        pub(crate) fn unwatched_ahead(&self, _remaining: usize) -> usize {
            usize::MAX
        }

        #[inline(always)]
        pub(crate) fn restarted(&self, _remaining: usize) -> Self {
            Self(PhantomData)
        }
    }

    /// Nothing is held back without the feature.
    pub(crate) struct Held<'a, T>(PhantomData<&'a [T]>);

    impl<T> Clone for Held<'_, T> {
        fn clone(&self) -> Self {
            *self
        }
    }

    impl<T> Copy for Held<'_, T> {}

    impl<T> Held<'_, T> {
        #[inline(always)]
        pub(crate) fn none() -> Self {
            Self(PhantomData)
        }

        #[inline(always)]
        pub(crate) fn any(&self) -> bool {
            false
        }

        #[inline(always)]
        pub(crate) fn len(&self) -> usize {
            0
        }

        #[inline(always)]
        pub(crate) fn cut(&mut self, _entries: &mut core::slice::Iter<'_, T>, _unwatched: usize) {}
    }

    impl<'a, K, V> crate::iter::Iter<'a, K, V> {
        #[inline(always)]
        pub(crate) fn next_watched(&mut self) -> Option<(&'a K, &'a V)> {
            self.next_refill()
        }
    }

    pub(crate) struct DiffHook<'m>(PhantomData<&'m ()>);

    impl DiffHook<'_> {
        #[inline(always)]
        pub(crate) fn before_next(&mut self) {}

        #[inline(always)]
        pub(crate) fn after_next(&mut self, _yielded: bool) {}
    }
}
