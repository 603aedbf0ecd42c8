//! `len()` of an iteration is exact at every step, with or without the
//! `instrument` feature. The iterator counts what is left per node, not per
//! item (so that `next()`'s fast path is the slice cursor alone), and the
//! length is that count plus what is left of the current node: it must be
//! right inside a node, at node changes, at every depth, in collision
//! nodes, and in copies taken anywhere.

mod common;

use common::Grouped;
use snapview::{SnapMap, Snapshot};

/// Walks `it` by `next()`, checking `len()` and `size_hint()` before each
/// step against `total` minus what was yielded; returns what it yielded.
fn walk_checking_len<I: ExactSizeIterator>(mut it: I, total: usize) -> Vec<I::Item> {
    let mut out = Vec::new();
    loop {
        let left = total - out.len();
        assert_eq!(it.len(), left, "len() after {} of {total}", out.len());
        assert_eq!(it.size_hint(), (left, Some(left)));
        match it.next() {
            Some(item) => out.push(item),
            None => break,
        }
    }
    assert_eq!(out.len(), total);
    assert!(it.next().is_none(), "fused");
    assert_eq!(it.len(), 0);
    out
}

fn loaded(n: u64) -> Snapshot<u64, u64> {
    let map: SnapMap<u64, u64> = (0..n).map(|i| (i, 10 * i)).collect();
    map.snapshot()
}

/// Sizes around a node's width (64), maps of two and three levels, and one
/// above the size from which iteration prefetches (16K entries).
const SIZES: [u64; 9] = [0, 1, 2, 63, 64, 65, 1000, 5000, 20_000];

#[test]
fn len_is_exact_at_every_step() {
    for n in SIZES {
        let snap = loaded(n);
        let walked = walk_checking_len(snap.iter(), snap.len());
        let mut keys: Vec<u64> = walked
            .iter()
            .map(|(k, v)| {
                assert_eq!(**v, 10 * **k);
                **k
            })
            .collect();
        keys.sort_unstable();
        assert_eq!(keys, (0..n).collect::<Vec<_>>(), "every key once, n = {n}");
        walk_checking_len(snap.keys(), snap.len());
        walk_checking_len(snap.values(), snap.len());
    }
}

#[test]
fn len_is_exact_in_a_map_grown_by_single_writes() {
    // Single inserts and removes leave another layout than a bulk load:
    // nodes in write order, some emptied of entries.
    let map = SnapMap::new();
    for i in 0..3000u64 {
        map.insert(i.wrapping_mul(0x9E37_79B9_7F4A_7C15), i);
        if i % 3 == 0 {
            map.remove(&(i / 2).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        }
    }
    let snap = map.snapshot();
    assert_eq!(walk_checking_len(snap.iter(), snap.len()).len(), map.len());
}

#[test]
fn a_copy_taken_anywhere_has_the_exact_len_of_the_rest() {
    let snap = loaded(1000);
    let total = snap.len();
    for at in [0, 1, 7, 15, 16, 17, 500, 999, 1000] {
        let mut it = snap.iter();
        it.by_ref().take(at).for_each(drop);
        assert_eq!(it.len(), total - at);
        let rest = walk_checking_len(it.clone(), total - at);
        let folded = it.fold(Vec::new(), |mut acc, item| {
            acc.push(item);
            acc
        });
        assert_eq!(rest, folded, "after {at}");
    }
}

#[test]
fn len_is_exact_through_collision_nodes() {
    let map: SnapMap<Grouped, u64> = (0..500).map(|i| (Grouped(i), i)).collect();
    let snap = map.snapshot();
    let walked = walk_checking_len(snap.iter(), 500);
    let mut keys: Vec<u64> = walked.iter().map(|(k, _)| k.0).collect();
    keys.sort_unstable();
    assert_eq!(keys, (0..500).collect::<Vec<_>>());
}
