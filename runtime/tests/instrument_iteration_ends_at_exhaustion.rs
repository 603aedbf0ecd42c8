//! A sampled iteration's `iter` time runs from its first `next()` to the
//! `next()` that finds nothing left, or to the iterator's drop if that
//! comes first: an exhausted iterator held on to (a `while let` loop's, kept
//! in a struct) does not stretch it.
#![cfg(feature = "instrument")]

mod common;

use std::thread::sleep;
use std::time::Duration;

use common::{calls_and_samples, sampled_map};
use snapview::instrument::{Op, report};

/// Longer than any 100-item iteration takes, even under valgrind.
const HOLD: Duration = Duration::from_millis(300);

fn longest_iteration_ns(map: &str) -> u64 {
    report().get(map, Op::Iter).expect("the iteration was recorded").max
}

#[test]
fn an_exhausted_iterator_held_on_to_is_timed_to_its_end() {
    // One `next()` in 64 is timed: the 1st and the 65th of 100, none after,
    // so no `next()` near the end is watched for sampling's sake.
    let map = sampled_map("exhaustion.held", 64, 100);
    let snapshot = map.snapshot();
    let mut it = snapshot.iter();
    let mut items = 0;
    while it.next().is_some() {
        items += 1;
    }
    assert_eq!(items, 100);
    sleep(HOLD);
    assert_eq!(it.next(), None, "fused");
    drop(it);
    assert_eq!(calls_and_samples("exhaustion.held", Op::Iter), (1, 1), "the thread's first iteration is sampled");
    let longest = longest_iteration_ns("exhaustion.held");
    assert!(longest < HOLD.as_nanos() as u64 / 2, "the iteration took {longest} ns: timed to the drop, not to its end");
}

#[test]
fn an_iterator_dropped_before_its_end_is_timed_to_the_drop() {
    let map = sampled_map("exhaustion.dropped", 64, 100);
    let snapshot = map.snapshot();
    let mut it = snapshot.iter();
    for _ in 0..99 {
        assert!(it.next().is_some());
    }
    sleep(HOLD);
    drop(it);
    assert_eq!(calls_and_samples("exhaustion.dropped", Op::Iter), (1, 1), "the thread's first iteration is sampled");
    let longest = longest_iteration_ns("exhaustion.dropped");
    assert!(longest >= HOLD.as_nanos() as u64, "the iteration took {longest} ns: it ended at the drop, after {HOLD:?}");
}

#[test]
fn an_iteration_is_recorded_once_at_its_end_and_a_clone_is_another() {
    let map = sampled_map("exhaustion.once", 64, 100);
    let snapshot = map.snapshot();
    let mut it = snapshot.iter();
    while it.next().is_some() {}
    assert_eq!(calls_and_samples("exhaustion.once", Op::Iter), (1, 1), "recorded before the drop");
    assert_eq!(it.next(), None);
    let mut copy = it.clone();
    assert_eq!(copy.next(), None);
    drop(it);
    assert_eq!(
        calls_and_samples("exhaustion.once", Op::Iter).0,
        1,
        "neither the fused `next()` nor the drop records again"
    );
    drop(copy);
    assert_eq!(calls_and_samples("exhaustion.once", Op::Iter).0, 2, "a clone is a new iteration, of nothing here");
    assert_eq!(calls_and_samples("exhaustion.once", Op::IterNext).0, 100);
}
