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
    use std::any::Any;
    use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
    use std::thread;

    use snapview_instrument::Op;
    use snapview_instrument::probe::{DiffProbe, IterProbe, MapProbe, NextStep, PublishTimer};

    use super::HookConfig;
    use crate::iter::Iter;
    use crate::raw::{Finish, HoldsBack, Reader};

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
            PublishHook(Some(self.0.start_publish()))
        }

        pub(crate) fn iteration(&self, version: u64, len: usize) -> IterHook {
            IterHook { watch_at: len, probe: Some(self.0.iteration(version)) }
        }

        pub(crate) fn diff(&self, from_version: u64, version: u64) -> DiffHook {
            DiffHook(self.0.diff(from_version, version))
        }
    }

    /// One write in progress (`None` once told how it ended).
    pub(crate) struct PublishHook<'m>(Option<PublishTimer<'m>>);

    impl PublishHook<'_> {
        /// A tracing layer's panic here is caught and handed back: the
        /// version it records is published, and its subscriptions are still
        /// to be woken (`SnapMap::batch_locked`).
        pub(crate) fn published(mut self, version: u64, changes: usize) -> thread::Result<()> {
            let timer = self.0.take();
            catch_unwind(AssertUnwindSafe(|| timer.map(|timer| timer.published(version, changes))))?;
            Ok(())
        }

        pub(crate) fn unchanged(mut self, version: u64) {
            if let Some(timer) = self.0.take() {
                timer.unchanged(version);
            }
        }
    }

    impl Drop for PublishHook<'_> {
        /// The write unwinds (its closure, or user code it ran, panicked):
        /// the publish span is left and closed here, and a tracing layer's
        /// panic as it is would abort the process, so it is caught and let
        /// go, as the first panic goes on.
        fn drop(&mut self) {
            if let Some(timer) = self.0.take()
                && thread::panicking()
            {
                drop(catch_unwind(AssertUnwindSafe(|| drop(timer))));
            }
        }
    }

    /// One iteration's probe; none for iterations that are not views (a batch's own).
    #[derive(Clone)]
    pub(crate) struct IterHook {
        /// The iterator's `remaining` at the next `next()` the probe watches
        /// (`NEVER`: none), kept beside the probe so that the per-item check
        /// is one comparison, not a walk into the probe's state.
        watch_at: usize,
        probe: Option<IterProbe>,
    }

    /// No `remaining` count reaches it.
    const NEVER: usize = usize::MAX;

    impl IterHook {
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

        /// Whether a later `next()` of this iteration that can yield an
        /// item is watched (then a `fold` walks by `next()`, not by the
        /// plain fold, and a node change ends the window before it). The
        /// `next()` that finds nothing left (`watch_at == 0`) needs
        /// neither: the window runs to the end, and a `fold` ends where the
        /// iterator's drop records the iteration.
        #[inline(always)]
        pub(crate) fn watches_again(&self) -> bool {
            !matches!(self.watch_at, 0 | NEVER)
        }

        /// The hook of a copy of the iterator with `remaining` items left: a
        /// new iteration, watched from its first `next()`.
        pub(crate) fn restarted(&self, remaining: usize) -> Self {
            let probe = self.probe.clone();
            Self { watch_at: if probe.is_some() { remaining } else { NEVER }, probe }
        }

        /// The iterator is dropped with `remaining` items not yielded:
        /// records the iteration. The recording takes the hook by value,
        /// moved out of the iterator, like the two calls below: see
        /// [`Iter::next_watched`].
        #[inline(always)]
        pub(crate) fn dropped(&mut self, remaining: Option<usize>) {
            // Always a count: this build's cursor keeps one (`Held`).
            debug_assert!(remaining.is_some(), "the instrumented cursor counts what is unread");
            if let Some(remaining) = remaining {
                core::mem::replace(self, IterHook::none()).finish(remaining);
            }
        }

        /// A tracing layer's panic here, while the thread unwinds already
        /// (the iterator dropped by another panic), would abort the
        /// process: it is caught and let go, as the first panic goes on.
        #[inline(never)]
        fn finish(self, remaining: usize) {
            if thread::panicking() {
                drop(catch_unwind(AssertUnwindSafe(|| self.record(remaining))));
            } else {
                self.record(remaining);
            }
        }

        fn record(mut self, remaining: usize) {
            if let Some(probe) = self.probe.as_mut() {
                probe.finish(remaining);
            }
        }

        /// Out of line: its code (clock reads, spans, recording) stays out
        /// of the caller's loop, which only holds the call. A tracing
        /// layer's panic is handed back, for the iterator to put the hook
        /// back before it goes on.
        #[cold]
        #[inline(never)]
        fn before_next(&mut self, remaining: usize) -> thread::Result<Option<NextStep>> {
            catch_unwind(AssertUnwindSafe(|| self.probe.as_mut().map(|probe| probe.before_next(remaining))))
        }

        /// Out of line, as [`before_next`](Self::before_next); sets the next
        /// watched `next()`, unless a tracing layer panicked: then it stays
        /// this one, whose item is still to be read.
        #[cold]
        #[inline(never)]
        fn after_next(&mut self, step: Option<NextStep>, yielded: bool, remaining: usize) -> thread::Result<()> {
            let Some(probe) = self.probe.as_mut() else { return Ok(()) };
            let Some(step) = step else { return Ok(()) };
            catch_unwind(AssertUnwindSafe(|| probe.after_next(step, yielded, remaining)))?;
            self.watch_at = probe.next_watch(remaining).unwrap_or(NEVER);
            Ok(())
        }
    }

    /// What an iterator's cursor keeps of the current node's entries that it
    /// holds back, so that its window ends just before a watched `next()`
    /// ([`Iter::cut`]): `next()` then needs no test of its own per entry,
    /// and takes the watched path only once the window runs out.
    pub(crate) type Held = HoldsBack;

    /// Ends the cursor's window after the next `unwatched` of the node's
    /// unread entries, holding the rest back; gives them all back if the
    /// watch falls past them. Writes nothing in the common case: no watch in
    /// this node, none held.
    #[inline(always)]
    pub(crate) fn cut<T, R: Finish>(reader: &mut Reader<'_, T, R, Held>, unwatched: usize) {
        reader.window(unwatched);
    }

    impl<'a, K, V> Iter<'a, K, V> {
        /// A `next()` that the probe watches: the iteration's first, or any
        /// of a sampled or traced iteration.
        ///
        /// Called once the cursor's window ran out ([`Iter::cut`] ends it
        /// before each watched `next()`). Inlined, while the
        /// probe's calls are out of line and get the hook moved out of the
        /// iterator, never the iterator's address: one call in the caller's
        /// loop that might reach the iterator (this function out of line,
        /// or the iterator's drop) made LLVM keep the whole iterator in
        /// memory, and each element waited on the store and reload of its
        /// cursor. The two moves, and the cut after each watched `next()`,
        /// cost one ~8 ns (`on-sample1` in `runtime/benches/overhead.sh`,
        /// where every `next()` is watched).
        ///
        /// The item is read only after both probe calls: a tracing layer
        /// that panics in one of them (as a span is made, entered, left or
        /// closed) unwinds out of this `next()` with the hook back in place
        /// and the item unread, so a caller that catches the panic and goes
        /// on gets every item, in order (`runtime/tests/instrument_panicking_layer.rs`).
        #[inline(always)]
        pub(crate) fn next_watched(&mut self) -> Option<(&'a K, &'a V)> {
            let mut hook = core::mem::replace(self.hook_mut(), IterHook::none());
            let step = match hook.before_next(self.remaining()) {
                Ok(step) => step,
                Err(panic) => self.put_back_and_resume(hook, panic),
            };
            // Under the placeholder hook, what is held back is given back.
            let yields = self.refill();
            if let Err(panic) = hook.after_next(step, yields, self.remaining() - usize::from(yields)) {
                self.put_back_and_resume(hook, panic);
            }
            drop(core::mem::replace(self.hook_mut(), hook));
            let item = self.next_in_window();
            self.cut();
            item
        }

        /// Puts `hook` back, windowed for the watched `next()` it still
        /// waits for, and goes on with a tracing layer's `panic`. Inlined:
        /// no call may get the iterator's address (see `next_watched`).
        #[inline(always)]
        fn put_back_and_resume(&mut self, hook: IterHook, panic: Box<dyn Any + Send>) -> ! {
            drop(core::mem::replace(self.hook_mut(), hook));
            self.cut();
            resume_unwind(panic)
        }
    }

    /// One diff walk's probe.
    pub(crate) struct DiffHook(DiffProbe);

    impl DiffHook {
        #[inline]
        pub(crate) fn before_next(&mut self) {
            self.0.before_next();
        }

        #[inline]
        pub(crate) fn after_next(&mut self, yielded: bool) {
            self.0.after_next(yielded);
        }
    }

    impl Drop for DiffHook {
        /// As for an iteration ([`IterHook::finish`]): a tracing layer's
        /// panic while the thread unwinds already is caught and let go.
        fn drop(&mut self) {
            if thread::panicking() {
                drop(catch_unwind(AssertUnwindSafe(|| self.0.finish())));
            } else {
                self.0.finish();
            }
        }
    }
}

#[cfg(not(feature = "instrument"))]
mod off {
    use core::marker::PhantomData;

    use super::HookConfig;
    use crate::raw::{Finish, HoldsNothing, Reader};

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
        pub(crate) fn iteration(&self, _version: u64, _len: usize) -> IterHook {
            IterHook
        }

        #[inline(always)]
        pub(crate) fn diff(&self, _from_version: u64, _version: u64) -> DiffHook {
            DiffHook
        }
    }

    pub(crate) struct PublishHook<'m>(PhantomData<&'m ()>);

    impl PublishHook<'_> {
        #[inline(always)]
        pub(crate) fn published(self, _version: u64, _changes: usize) -> std::thread::Result<()> {
            Ok(())
        }

        #[inline(always)]
        pub(crate) fn unchanged(self, _version: u64) {}
    }

    #[derive(Clone)]
    pub(crate) struct IterHook;

    impl IterHook {
        #[inline(always)]
        pub(crate) fn none() -> Self {
            Self
        }

        #[inline(always)]
        pub(crate) fn dropped(&mut self, _remaining: Option<usize>) {}

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
            Self
        }
    }

    /// Nothing is held back without the feature: the cursor keeps no count.
    pub(crate) type Held = HoldsNothing;

    #[inline(always)]
    pub(crate) fn cut<T, R: Finish>(_reader: &mut Reader<'_, T, R, Held>, _unwatched: usize) {}

    impl<'a, K, V> crate::iter::Iter<'a, K, V> {
        #[inline(always)]
        pub(crate) fn next_watched(&mut self) -> Option<(&'a K, &'a V)> {
            self.next_refill()
        }
    }

    pub(crate) struct DiffHook;

    impl DiffHook {
        #[inline(always)]
        pub(crate) fn before_next(&mut self) {}

        #[inline(always)]
        pub(crate) fn after_next(&mut self, _yielded: bool) {}
    }
}

#[cfg(all(test, feature = "instrument"))]
mod tests {
    use super::IterHook;

    /// A watched `next()` moves the hook out of the iterator and back
    /// ([`Iter::next_watched`](crate::iter::Iter)), and the iterator's drop
    /// moves it out once more. Up to 128 bytes LLVM makes each move a few
    /// inline vector copies on x86-64; past that, a call to `memcpy`. At 144
    /// bytes (session 36's probe, which copied the map's then 24-byte probe)
    /// those calls made every watched `next()` ~11 ns slower (`on-sample1` in
    /// `runtime/benches/overhead.sh`, 51 -> 62 ns per element) and ~37
    /// instructions longer (`instructions.py --instrument --sample-every 1`).
    /// A test, not a compile-time assertion: the hook holds a `tracing::Span`,
    /// whose size a compatible release of `tracing` may change, and that must
    /// not stop an application that turns `instrument` on from building.
    #[test]
    fn an_iterators_hook_moves_inline() {
        assert!(size_of::<IterHook>() <= 128, "{} bytes", size_of::<IterHook>());
    }
}
