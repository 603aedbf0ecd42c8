//! A tracing layer that panics while the instrumentation watches a `next()`
//! (as that `next()`'s span is created, entered, left or closed) unwinds out
//! of `next()`; a caller that catches the panic and goes on with the same
//! iterator still gets every item it had left, in order, by `next()` or by
//! `fold`, and as many as its `len()` said.
//!
//! (The watched path moves the hook out of the iterator while it calls the
//! probe, with the node's other entries held back. Until session 43 a panic
//! there left them held back under a placeholder hook; before session 37 a
//! `fold` taken after it dropped them: `count()` came out short of `len()`,
//! or, in a debug build, tripped an assertion. Until session 43 a panic as
//! the span was left or closed came after the `next()` had read its item,
//! which was lost with the unwind. Now the hook is put back and the item is
//! read after the probe's calls.)
#![cfg(feature = "instrument")]

use std::cell::Cell;
use std::collections::BTreeSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

use snapview::SnapMap;
use tracing::Subscriber;
use tracing::span::{Attributes, Id};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// Where in a `snapview.iter.next` span's life the layer panics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    New,
    Enter,
    Exit,
    Close,
}

thread_local! {
    /// Armed: the layer panics once, at this phase of the next
    /// `snapview.iter.next` span this thread makes. (Per thread: the tests
    /// run side by side.)
    static ARMED: Cell<Option<Phase>> = const { Cell::new(None) };
}

fn panic_if_armed(phase: Phase, name: Option<&str>) {
    if name == Some("snapview.iter.next") && ARMED.get() == Some(phase) {
        ARMED.set(None);
        panic!("the layer panics");
    }
}

struct PanicsOnceInNextSpan;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for PanicsOnceInNextSpan {
    fn on_new_span(&self, attrs: &Attributes<'_>, _id: &Id, _ctx: Context<'_, S>) {
        panic_if_armed(Phase::New, Some(attrs.metadata().name()));
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        panic_if_armed(Phase::Enter, ctx.metadata(id).map(|m| m.name()));
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        panic_if_armed(Phase::Exit, ctx.metadata(id).map(|m| m.name()));
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        panic_if_armed(Phase::Close, ctx.metadata(&id).map(|m| m.name()));
    }
}

/// Traces at TRACE, so that every `next()` of an iteration is watched and
/// has a span, through the global default (a scoped default would leave
/// the callsites' interest to whichever thread reaches them first:
/// tokio-rs/tracing#3611).
fn traced() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let subscriber = tracing_subscriber::registry().with(PanicsOnceInNextSpan.with_filter(LevelFilter::TRACE));
        tracing::subscriber::set_global_default(subscriber).expect("the only global default");
    });
}

fn map(name: &str) -> SnapMap<u64, u64> {
    let mut map = SnapMap::builder().name(name).build();
    map.extend((0..1000).map(|k| (k, 10 * k)));
    map
}

/// Takes `before` items, then makes the next `next()` panic in the layer at
/// `phase` and catches it; returns the keys taken and the iterator's
/// `len()` after.
fn panic_after<'a>(
    it: &mut impl ExactSizeIterator<Item = (&'a u64, &'a u64)>,
    before: usize,
    phase: Phase,
) -> (Vec<u64>, usize) {
    let taken: Vec<u64> = it.by_ref().take(before).map(|(k, _)| *k).collect();
    let len_before = it.len();
    ARMED.set(Some(phase));
    let caught = catch_unwind(AssertUnwindSafe(|| it.next()));
    assert!(caught.is_err(), "the layer's panic at {phase:?} unwinds out of `next()`");
    assert_eq!(ARMED.get(), None, "the watched `next()` made a span");
    assert_eq!(it.len(), len_before, "a `next()` that panicked took no item");
    (taken, it.len())
}

const PHASES: [Phase; 4] = [Phase::New, Phase::Enter, Phase::Exit, Phase::Close];

/// The keys taken before the panic and after it are the snapshot's keys in
/// its own order: none skipped, none twice.
fn assert_every_key_in_order(snap_order: &[u64], taken: Vec<u64>, rest: Vec<u64>, len_after: usize, phase: Phase) {
    assert_eq!(rest.len(), len_after, "as many items as `len()` said after the panic at {phase:?}");
    let all: Vec<u64> = taken.into_iter().chain(rest).collect();
    assert_eq!(all, snap_order, "every key once, in order, after a panic at {phase:?}");
    assert_eq!(all.iter().copied().collect::<BTreeSet<u64>>(), (0..1000).collect(), "every key");
}

#[test]
fn a_fold_after_a_caught_panic_yields_every_item_left() {
    traced();
    let map = map("panicking_layer.fold");
    let snap = map.snapshot();
    let order: Vec<u64> = snap.keys().copied().collect();
    for phase in PHASES {
        for before in [0, 1, 5, 37] {
            let mut it = snap.iter();
            let (taken, len_after) = panic_after(&mut it, before, phase);
            let rest = it.fold(Vec::new(), |mut keys, (k, _)| {
                keys.push(*k);
                keys
            });
            assert_every_key_in_order(&order, taken, rest, len_after, phase);
        }
    }
}

#[test]
fn next_after_a_caught_panic_yields_every_item_left() {
    traced();
    let map = map("panicking_layer.next");
    let snap = map.snapshot();
    let order: Vec<u64> = snap.keys().copied().collect();
    for phase in PHASES {
        let mut it = snap.iter();
        let (taken, len_after) = panic_after(&mut it, 5, phase);
        let mut rest = Vec::new();
        for (k, _) in it {
            rest.push(*k);
        }
        assert_every_key_in_order(&order, taken, rest, len_after, phase);
    }
}

#[test]
fn keys_counted_after_a_caught_panic_match_their_len() {
    traced();
    let map = map("panicking_layer.count");
    let snap = map.snapshot();
    for phase in PHASES {
        let mut keys = snap.keys();
        keys.nth(2);
        ARMED.set(Some(phase));
        assert!(catch_unwind(AssertUnwindSafe(|| keys.next())).is_err());
        let len = keys.len();
        assert_eq!(len, 997, "the panicking `next()` at {phase:?} took nothing");
        assert_eq!(keys.count(), len);
    }
}

/// With every `next()` timed, one whose span's layer panicked as the span
/// was left or closed counts nothing: neither a call nor a sample for an
/// item the iterator kept, whether the caller drops the iterator then or
/// goes on with it. (Counted before the span closed, such a `next()` made
/// the dropped iterator's count underflow, and the retried one sampled its
/// item twice.)
#[test]
fn a_next_that_panicked_counts_nothing() {
    use snapview::instrument::{Op, report};

    traced();
    let name = "panicking_layer.sampled";
    let mut map = SnapMap::builder().name(name).sample_every(1).build();
    map.extend((0..1000).map(|k| (k, 10 * k)));
    let snap = map.snapshot();
    for phase in [Phase::Exit, Phase::Close] {
        let mut dropped = snap.iter();
        panic_after(&mut dropped, 5, phase);
        drop(dropped);
        let mut resumed = snap.iter();
        panic_after(&mut resumed, 5, phase);
        assert_eq!(resumed.count(), 995);
    }
    let report = report();
    let iterations = report.get(name, Op::Iter).expect("iterations recorded");
    assert_eq!(iterations.calls, 4);
    let nexts = report.get(name, Op::IterNext).expect("`next()`s recorded");
    assert_eq!((nexts.calls, nexts.samples), (2 * (5 + 1000), 2 * (5 + 1000)), "{nexts:?}");
}
