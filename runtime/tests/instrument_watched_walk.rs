//! A watched iteration (one the instrumentation samples, so that it watches
//! some of its `next()`s) yields exactly what an unwatched one does: to keep
//! its per-entry path free of the watch, the iterator ends each node's
//! entries before a watched `next()` and holds the rest back, and nothing
//! may be lost, repeated or reordered there, whatever the sampling period,
//! wherever a clone is taken, and however the rest is walked.
#![cfg(feature = "instrument")]

mod common;

use common::Grouped;
use snapview::{SnapMap, Snapshot};

/// A map holding `0..n` (value `10 * key`) that samples one call in `every`.
fn sampled(n: u64, every: u32) -> SnapMap<u64, u64> {
    let map = SnapMap::builder().name(format!("watched.{n}.{every}")).sample_every(every).build();
    map.update(|tx| {
        for i in 0..n {
            tx.insert(i, 10 * i);
        }
    });
    map
}

/// Walks by `next()`, checking the exact length at each step.
fn by_next(snap: &Snapshot<u64, u64>) -> Vec<(u64, u64)> {
    let mut it = snap.iter();
    let mut out = Vec::new();
    loop {
        assert_eq!(it.len(), snap.len() - out.len());
        match it.next() {
            Some((k, v)) => out.push((*k, *v)),
            None => break,
        }
    }
    assert!(it.next().is_none(), "fused");
    out
}

fn assert_is_the_map(walk: &[(u64, u64)], n: u64) {
    let mut keys: Vec<u64> = walk
        .iter()
        .map(|&(k, v)| {
            assert_eq!(v, 10 * k);
            k
        })
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, (0..n).collect::<Vec<_>>(), "every key once");
}

const SIZES: [u64; 6] = [0, 1, 2, 9, 300, 5000];
const PERIODS: [u32; 6] = [1, 2, 3, 5, 16, 64];

#[test]
fn a_sampled_walk_yields_what_an_unsampled_one_does() {
    for n in SIZES {
        for every in PERIODS {
            let snap = sampled(n, every).snapshot();
            // A map's first iteration is sampled (its next()s one in
            // `every`); the ones after it, up to the next sample, are not.
            let watched = by_next(&snap);
            let plain = by_next(&snap);
            assert_is_the_map(&watched, n);
            assert_eq!(watched, plain, "n = {n}, every = {every}");
        }
    }
}

#[test]
fn a_clone_taken_anywhere_in_a_sampled_walk_yields_the_rest() {
    for n in [9, 300] {
        for every in PERIODS {
            let snap = sampled(n, every).snapshot();
            let whole: Vec<(u64, u64)> = snap.iter().map(|(k, v)| (*k, *v)).collect();
            for at in 0..=whole.len() {
                // Every iteration here starts sampled or not as the map's
                // countdown goes, so cuts fall at every offset.
                let mut it = snap.iter();
                it.by_ref().take(at).for_each(drop);
                let copy = it.clone();
                let rest: Vec<(u64, u64)> = copy.map(|(k, v)| (*k, *v)).collect();
                assert_eq!(rest, whole[at..], "clone after {at}, n = {n}, every = {every}");
                let folded = it.fold(Vec::new(), |mut acc, (k, v)| {
                    acc.push((*k, *v));
                    acc
                });
                assert_eq!(folded, whole[at..], "fold after {at}, n = {n}, every = {every}");
            }
        }
    }
}

#[test]
fn debug_of_a_sampled_iterator_lists_what_is_left() {
    let snap = sampled(300, 3).snapshot();
    let mut it = snap.iter();
    it.by_ref().take(100).for_each(drop);
    let listed = format!("{it:?}");
    let rest: Vec<(u64, u64)> = it.map(|(k, v)| (*k, *v)).collect();
    let expected = format!("{:?}", rest.iter().map(|(k, v)| (k, v)).collect::<Vec<_>>());
    assert_eq!(listed, expected);
}

#[test]
fn collision_nodes_are_cut_like_any_node() {
    for every in PERIODS {
        let mut map = SnapMap::builder().name(format!("watched.grouped.{every}")).sample_every(every).build();
        map.extend((0..600).map(|i| (Grouped(i), 10 * i)));
        let snap = map.snapshot();
        let mut by_next = Vec::new();
        for (k, v) in snap.iter() {
            by_next.push((k.0, *v));
        }
        assert_is_the_map(&by_next, 600);
        let folded: Vec<(u64, u64)> = snap.iter().map(|(k, v)| (k.0, *v)).collect();
        assert_eq!(by_next, folded, "every = {every}");
    }
}
