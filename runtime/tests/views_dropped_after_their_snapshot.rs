//! Iterators and diffs may be dropped after the snapshots (and the map) they
//! borrow, with the `instrument` feature as without it. Features unify: if
//! any crate in a build turns `instrument` on, every crate's code must still
//! compile, and none of it was written to drop its iterators first. Until
//! session 36 an iterator's `Drop`, which records its iteration, borrowed the
//! map's probe and was an `impl Drop` on the borrowing type, so this file
//! failed to compile with the feature (`E0597`: the borrowck asks a type with
//! a `Drop` to go before what it borrows). The iterator now records from a
//! part that borrows nothing and reads only the cursor's addresses.
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
/// as any other: one iteration, its `next()`s exactly.
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
