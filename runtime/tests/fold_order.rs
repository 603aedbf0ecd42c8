//! Internal iteration (`fold`, and what is built on it: `sum`, `count`,
//! `for_each`, `collect` of the projections) walks the trie by recursion,
//! `next` by an explicit stack: whatever point an iterator was advanced to by
//! `next`, folding the rest yields exactly what `next` would have.

mod common;

use common::Grouped;
use snapview::{SnapMap, Snapshot};

fn by_next<K: Clone, V: Clone>(snap: &Snapshot<K, V>) -> Vec<(K, V)> {
    // A `for` loop calls `next`, never `fold`.
    let mut out = Vec::new();
    for (k, v) in snap.iter() {
        out.push((k.clone(), v.clone()));
    }
    out
}

fn check<K: Clone + PartialEq + std::fmt::Debug, V: Clone + PartialEq + std::fmt::Debug>(snap: &Snapshot<K, V>) {
    let all = by_next(snap);
    assert_eq!(all.len(), snap.len());
    let splits = [0, 1, 2, 7, all.len() / 3, all.len() / 2, all.len().saturating_sub(1), all.len()];
    for &at in &splits {
        let mut it = snap.iter();
        let mut seen: Vec<(K, V)> = it.by_ref().take(at).map(|(k, v)| (k.clone(), v.clone())).collect();
        assert_eq!(it.len(), all.len() - seen.len());
        seen = it.fold(seen, |mut acc, (k, v)| {
            acc.push((k.clone(), v.clone()));
            acc
        });
        assert_eq!(seen, all, "fold after {at} items");

        let mut keys = snap.keys();
        keys.by_ref().take(at).for_each(drop);
        assert_eq!(keys.count(), all.len() - at.min(all.len()));

        let mut values = snap.values();
        let head: Vec<V> = values.by_ref().take(at).cloned().collect();
        let tail: Vec<V> = values.cloned().collect();
        let joined: Vec<V> = head.into_iter().chain(tail).collect();
        assert_eq!(joined, all.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>());
    }
}

#[test]
fn fold_after_a_partial_walk_yields_what_next_would() {
    // 1_000 and 20_000 sit on either side of the size (16Ki entries) above
    // which iteration prefetches, so both walks are checked.
    for n in [0u64, 1, 2, 65, 1_000, 20_000] {
        let loaded: SnapMap<u64, u64> = (0..n).map(|k| (k, k * 7)).collect();
        check(&loaded.snapshot());
        // Grown by single writes, then thinned: another layout of nodes.
        let grown: SnapMap<u64, u64> = SnapMap::new();
        for k in 0..n {
            grown.insert(k.wrapping_mul(0x9E37_79B9_7F4A_7C15), k);
        }
        for k in (0..n).step_by(3) {
            grown.remove(&k.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        }
        check(&grown.snapshot());
    }
}

#[test]
fn fold_walks_collision_nodes_like_next() {
    let map: SnapMap<Grouped, u32> = (0..3_000u64).map(|k| (Grouped(k), k as u32)).collect();
    check(&map.snapshot());
}
