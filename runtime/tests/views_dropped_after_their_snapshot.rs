//! Iterators and diffs may be dropped after the snapshots (and the map) they
//! borrow, with the `instrument` feature as without it. Features unify: if
//! any crate in a build turns `instrument` on, every crate's code must still
//! compile, and none of it was written to drop its iterators first. Until
//! session 36 an iterator's `Drop`, which records its iteration, borrowed the
//! map's probe and was an `impl Drop` on the borrowing type, so this file
//! failed to compile with the feature (`E0597`: the borrowck keeps every
//! lifetime in a `Drop` type's parameters alive until its drop). The
//! iterator now records from a part that needs nothing alive (no lifetime,
//! no key or value type) and reads only the cursor's addresses.
//!
//! `runtime/tests/edition2021` holds the common form of the same thing, in
//! edition-2021 code: a temporary iterator in a tail expression.

#![cfg_attr(not(feature = "instrument"), allow(unused))]

mod common;

use snapview::SnapMap;

#[test]
fn iterators_and_diffs_may_outlive_their_snapshots() {
    let old_map: SnapMap<u64, u64> = (0..100).map(|i| (i, i)).collect();
    let old = old_map.snapshot();
    // Declared before the snapshot they borrow, so dropped after it.
    let (mut iter, mut keys, mut values, mut diff);
    let new = {
        old_map.insert(1000, 1);
        old_map.remove(&7);
        old_map.snapshot()
    };
    iter = new.iter();
    keys = new.keys();
    values = new.values();
    diff = old.diff(&new);
    assert_eq!(iter.next().map(|(k, v)| k == v || *k == 1000), Some(true));
    assert!(keys.next().is_some());
    assert!(values.next().is_some());
    assert!(diff.next().is_some());
    assert_eq!(iter.len(), 99);
}

#[test]
fn an_iterator_dropped_after_its_map_is_gone_reads_no_freed_memory() {
    // Dropped last: after `snap` and `map`, which free every node (under
    // valgrind and ASan in CI, a read of the entries here would be reported).
    let mut iter;
    let map: SnapMap<String, String> = (0..64).map(|i| (i.to_string(), i.to_string())).collect();
    let snap = map.snapshot();
    iter = snap.iter();
    assert!(iter.next().is_some());
    drop(map);
    drop(snap);
}

/// With the feature, the iteration dropped after its snapshot is recorded
/// as any other: one iteration, its `next()`s exactly (every `next()` timed
/// here, so counted as it is made; the two tests below count at the drop).
#[cfg(feature = "instrument")]
#[test]
fn an_iteration_dropped_after_its_snapshot_is_recorded() {
    use snapview::instrument::Op;

    let name = "views_dropped_after_their_snapshot";
    let map = common::sampled_map(name, 1, 50);
    {
        let mut iter;
        let snap = map.snapshot();
        iter = snap.iter();
        for _ in 0..20 {
            iter.next();
        }
    }
    {
        let mut rest;
        let snap = map.snapshot();
        rest = snap.iter();
        rest.next();
        let _ = rest.by_ref().take(4).count();
    }
    assert_eq!(common::calls_and_samples(name, Op::Iter).0, 2);
    assert_eq!(common::calls_and_samples(name, Op::IterNext).0, 20 + 5);
}

/// Keys and values that borrow: an iterator over them may outlive what they
/// borrow, as it may outlive its snapshot (its drop reads no key or value).
/// Without the feature this compiled before session 36 (no `Drop` at all);
/// with it, the old iterator's `Drop` needed its key type alive.
#[test]
fn iterators_over_borrowed_keys_may_outlive_what_the_keys_borrow() {
    // Declared first, so dropped after `owner`, which the keys borrow.
    let (mut keys, mut values, mut diff);
    let owner = [String::from("a"), String::from("b"), String::from("c")];
    let map: SnapMap<&str, &str> = SnapMap::new();
    map.insert(owner[0].as_str(), owner[1].as_str());
    let old = map.snapshot();
    map.insert(owner[2].as_str(), owner[0].as_str());
    let new = map.snapshot();
    keys = new.keys();
    values = new.values();
    diff = old.diff(&new);
    assert!(keys.next().is_some());
    assert!(values.next().is_some());
    assert!(matches!(diff.next(), Some(snapview::Change::Added(&"c", &"a"))));
    drop((new, old, map));
}

/// Iterations that are neither sampled nor traced are counted when dropped,
/// from the items they had left: exactly, whenever they stop.
#[cfg(feature = "instrument")]
#[test]
fn unsampled_iterations_are_counted_exactly_when_dropped() {
    use snapview::instrument::Op;

    let name = "views_dropped_unsampled";
    let map = common::sampled_map(name, 0, 50);
    let stops = [0usize, 1, 2, 3, 17, 49, 50];
    for &stop in &stops {
        let mut iter;
        let snap = map.snapshot();
        iter = snap.iter();
        for _ in 0..stop {
            assert!(iter.next().is_some());
        }
    }
    let started = stops.iter().filter(|&&stop| stop > 0).count() as u64;
    assert_eq!(common::calls_and_samples(name, Op::Iter), (started, 0));
    assert_eq!(common::calls_and_samples(name, Op::IterNext).0, stops.iter().sum::<usize>() as u64);
}

/// A sampled iteration holds the entries after its next watched `next()`
/// back; dropped with some held (mid-node, between watches), its count
/// still takes them as unread.
#[cfg(feature = "instrument")]
#[test]
fn sampled_iterations_dropped_between_watches_are_counted_exactly() {
    use snapview::instrument::Op;

    let name = "views_dropped_sampled";
    let map = common::sampled_map(name, 3, 200);
    let mut nexts = 0;
    let mut started = 0;
    for stop in 1..=60 {
        let mut iter;
        let snap = map.snapshot();
        iter = snap.iter();
        for _ in 0..stop {
            assert!(iter.next().is_some());
        }
        nexts += stop as u64;
        started += 1;
    }
    let (iterations, _) = common::calls_and_samples(name, Op::Iter);
    let (calls, samples) = common::calls_and_samples(name, Op::IterNext);
    assert_eq!(iterations, started);
    assert_eq!(calls, nexts);
    assert!(samples > 0 && samples < calls, "one in 3 sampled: {samples} of {calls}");
}
