//! A tracing layer that panics while the instrumentation watches a `next()`
//! (here, as that `next()`'s span is created) unwinds out of `next()`; a
//! caller that catches the panic and goes on with the same iterator still
//! gets every item it had left, by `next()` or by `fold`, and as many as
//! its `len()` said.
//!
//! (The watched path moves the hook out of the iterator and holds the node's
//! other entries back; a panic there leaves them held back under a
//! placeholder hook. Before session 37, a `fold` taken after it dropped them:
//! `count()` came out short of `len()`, or, in a debug build, tripped an
//! assertion.)
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

thread_local! {
    /// Armed: the next `snapview.iter.next` span this thread makes has the
    /// layer panic, once. (Per thread: the tests run side by side.)
    static ARMED: Cell<bool> = const { Cell::new(false) };
}

struct PanicsOnceOnNextSpan;

impl<S: Subscriber> Layer<S> for PanicsOnceOnNextSpan {
    fn on_new_span(&self, attrs: &Attributes<'_>, _id: &Id, _ctx: Context<'_, S>) {
        if attrs.metadata().name() == "snapview.iter.next" && ARMED.replace(false) {
            panic!("the layer panics");
        }
    }
}

/// Traces at TRACE, so that every `next()` of an iteration is watched and
/// has a span, through the global default (a scoped default would leave
/// the callsites' interest to whichever thread reaches them first:
/// tokio-rs/tracing#3611).
fn traced() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let subscriber = tracing_subscriber::registry().with(PanicsOnceOnNextSpan.with_filter(LevelFilter::TRACE));
        tracing::subscriber::set_global_default(subscriber).expect("the only global default");
    });
}

fn map(name: &str) -> SnapMap<u64, u64> {
    let mut map = SnapMap::builder().name(name).build();
    map.extend((0..1000).map(|k| (k, 10 * k)));
    map
}

/// Takes `before` items, then makes the next `next()` panic in the layer
/// and catches it; returns the keys taken and the iterator's `len()` after.
fn panic_after<'a>(it: &mut impl ExactSizeIterator<Item = (&'a u64, &'a u64)>, before: usize) -> (Vec<u64>, usize) {
    let taken: Vec<u64> = it.by_ref().take(before).map(|(k, _)| *k).collect();
    ARMED.set(true);
    let caught = catch_unwind(AssertUnwindSafe(|| it.next()));
    assert!(caught.is_err(), "the layer's panic unwinds out of `next()`");
    assert!(!ARMED.get(), "the watched `next()` made a span");
    (taken, it.len())
}

fn assert_every_key(taken: Vec<u64>, rest: Vec<u64>, len_after: usize) {
    assert_eq!(rest.len(), len_after, "as many items as `len()` said after the panic");
    let all: BTreeSet<u64> = taken.iter().chain(&rest).copied().collect();
    assert_eq!(all.len(), taken.len() + rest.len(), "no item twice");
    assert_eq!(all, (0..1000).collect(), "every key");
}

#[test]
fn a_fold_after_a_caught_panic_yields_every_item_left() {
    traced();
    let map = map("panicking_layer.fold");
    let snap = map.snapshot();
    for before in [0, 1, 5, 37] {
        let mut it = snap.iter();
        let (taken, len_after) = panic_after(&mut it, before);
        let rest = it.fold(Vec::new(), |mut keys, (k, _)| {
            keys.push(*k);
            keys
        });
        assert_every_key(taken, rest, len_after);
    }
}

#[test]
fn next_after_a_caught_panic_yields_every_item_left() {
    traced();
    let map = map("panicking_layer.next");
    let snap = map.snapshot();
    let mut it = snap.iter();
    let (taken, len_after) = panic_after(&mut it, 5);
    let mut rest = Vec::new();
    for (k, _) in it {
        rest.push(*k);
    }
    assert_every_key(taken, rest, len_after);
}

#[test]
fn keys_counted_after_a_caught_panic_match_their_len() {
    traced();
    let map = map("panicking_layer.count");
    let snap = map.snapshot();
    let mut keys = snap.keys();
    keys.nth(2);
    ARMED.set(true);
    assert!(catch_unwind(AssertUnwindSafe(|| keys.next())).is_err());
    let len = keys.len();
    assert_eq!(keys.count(), len);
}
