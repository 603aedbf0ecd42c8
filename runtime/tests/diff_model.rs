//! Model-based test of `View::diff` and snapshot equality.
//!
//! A random base is written to a map, then random writes follow, with
//! snapshots taken along the way. Every ordered pair of those snapshots is
//! diffed (same map: the structural walk) and compared (`==`) against a diff
//! and an equality computed from two `HashMap`s. The same is done against a
//! second map built from a model (a differently seeded hasher, so the
//! look-up fallback), and every snapshot is diffed with itself. Both hashers
//! are seeded by the case (or are the identity, for keys that place their
//! hashes), so that a saved regression rebuilds its tries.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::{BuildHasher, Hash};

use proptest::collection::vec;
use proptest::prelude::*;
use snapview::{Change, SnapMap, Snapshot, View};

mod common;
use common::Colliding;
use common::placed::{Placing, placed_key};

type Model<K> = HashMap<K, u8>;
/// foldhash, as the default hasher, seeded by the case.
type Hasher = foldhash::fast::FixedState;
/// A snapshot and the model's contents when it was taken.
type Saved<K, S> = (Snapshot<K, u8, S>, Model<K>);

#[derive(Clone, Debug)]
enum Op<K> {
    Insert(K, u8),
    Remove(K),
    /// Several writes published as one version: `Some(v)` inserts, `None` removes.
    Batch(Vec<(K, Option<u8>)>),
    Clear,
    Snapshot,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expected {
    Added(u8),
    Removed(u8),
    Updated(u8, u8),
}

/// The diff from `old` to `new`, computed on the models.
fn model_diff<K: Hash + Eq + Clone>(old: &Model<K>, new: &Model<K>) -> HashMap<K, Expected> {
    let mut out = HashMap::new();
    for (k, &v) in old {
        match new.get(k) {
            None => {
                out.insert(k.clone(), Expected::Removed(v));
            }
            Some(&w) if w != v => {
                out.insert(k.clone(), Expected::Updated(v, w));
            }
            Some(_) => {}
        }
    }
    for (k, &w) in new {
        if !old.contains_key(k) {
            out.insert(k.clone(), Expected::Added(w));
        }
    }
    out
}

/// Collects `old.diff(new)`, checking that each key appears once and that
/// every reference points into the right snapshot; compares with the model.
fn check_diff<K, S>(old: &View<K, u8, S>, new: &View<K, u8, S>, old_model: &Model<K>, new_model: &Model<K>)
where
    K: Hash + Eq + Clone + Debug,
    S: BuildHasher,
{
    let mut got: HashMap<K, Expected> = HashMap::new();
    let mut diff = old.diff(new);
    for change in diff.by_ref() {
        let (key, expected) = match change {
            Change::Added(k, v) => {
                let (sk, sv) = new.get_key_value(k).expect("an added key is in the newer snapshot");
                assert!(std::ptr::eq(k, sk) && std::ptr::eq(v, sv), "Added refers into the newer snapshot");
                assert!(!old.contains_key(k), "an added key is not in the older snapshot");
                (k, Expected::Added(*v))
            }
            Change::Removed(k, v) => {
                let (sk, sv) = old.get_key_value(k).expect("a removed key is in the older snapshot");
                assert!(std::ptr::eq(k, sk) && std::ptr::eq(v, sv), "Removed refers into the older snapshot");
                assert!(!new.contains_key(k), "a removed key is not in the newer snapshot");
                (k, Expected::Removed(*v))
            }
            Change::Updated { key, old: o, new: n } => {
                let (nk, nv) = new.get_key_value(key).expect("an updated key is in the newer snapshot");
                assert!(std::ptr::eq(key, nk), "Updated::key is the newer snapshot's key");
                assert!(std::ptr::eq(n, nv), "Updated::new is the newer snapshot's value");
                let ov = old.get(key).expect("an updated key is in the older snapshot");
                assert!(std::ptr::eq(o, ov), "Updated::old is the older snapshot's value");
                assert_ne!(o, n, "Updated only for unequal values");
                (key, Expected::Updated(*o, *n))
            }
        };
        assert_eq!(change.key(), key);
        if let Some(first) = got.insert(key.clone(), expected) {
            panic!("key {key:?} appeared twice in the diff: {first:?} then {expected:?}");
        }
    }
    assert!(diff.next().is_none(), "Diff is fused");
    assert_eq!(got, model_diff(old_model, new_model), "diff differs from the model's");
}

/// Diffs and compares every ordered pair, and each snapshot with itself.
fn check_all<K, S>(snaps: &[Saved<K, S>])
where
    K: Hash + Eq + Clone + Debug,
    S: BuildHasher,
{
    for (a, am) in snaps {
        assert!(a.diff(a).next().is_none(), "a snapshot's diff with itself is empty");
        for (b, bm) in snaps {
            check_diff(a, b, am, bm);
            assert_eq!(*a == *b, am == bm, "snapshot equality differs from the models'");
            assert_eq!(**a == **b, am == bm, "view equality differs from the models'");
        }
    }
}

/// `hasher` is the map's; `other_hasher` that of the maps it is compared
/// with by look-ups.
fn run<K, S>(base: Vec<(K, u8)>, ops: Vec<Op<K>>, hasher: S, other_hasher: S)
where
    K: Hash + Eq + Clone + Debug,
    S: BuildHasher + Clone,
{
    let map: SnapMap<K, u8, S> = SnapMap::with_hasher(hasher);
    let mut model: Model<K> = HashMap::new();
    let mut snaps = vec![(map.snapshot(), model.clone())];
    model.extend(base.iter().cloned());
    map.update(|tx| tx.extend(base));
    snaps.push((map.snapshot(), model.clone()));

    for op in ops {
        match op {
            Op::Insert(k, v) => {
                map.insert(k.clone(), v);
                model.insert(k, v);
            }
            Op::Remove(k) => {
                map.remove(&k);
                model.remove(&k);
            }
            Op::Batch(writes) => map.update(|tx| {
                for (k, v) in writes {
                    match v {
                        Some(v) => {
                            tx.insert(k.clone(), v);
                            model.insert(k, v);
                        }
                        None => {
                            tx.remove(&k);
                            model.remove(&k);
                        }
                    }
                }
            }),
            Op::Clear => {
                map.clear();
                model.clear();
            }
            Op::Snapshot => snaps.push((map.snapshot(), model.clone())),
        }
    }
    snaps.push((map.snapshot(), model.clone()));

    // Write back the contents of earlier versions, one key at a time: equal
    // contents reached by a different history must still compare equal and
    // diff empty (removals must leave the trie as if the keys never were).
    for target in [1, snaps.len() / 2] {
        let target_model = snaps[target].1.clone();
        let doomed: Vec<K> = model.keys().filter(|k| !target_model.contains_key(*k)).cloned().collect();
        for k in doomed {
            assert!(map.remove(&k).is_some());
        }
        for (k, v) in &target_model {
            if model.get(k) != Some(v) {
                map.insert(k.clone(), *v);
            }
        }
        model = target_model;
        snaps.push((map.snapshot(), model.clone()));
    }

    // Versions of one map: the structural walk.
    check_all(&snaps);

    // Versions of two maps: the look-up fallback (whatever the hashers, which
    // are unrelated but for `Placing`'s). The other map holds the contents
    // of one version in the middle, then of the last one (restored to the
    // base's): equal contents in two maps included.
    for j in [snaps.len() / 2, snaps.len() - 1] {
        let other_model = snaps[j].1.clone();
        let mut other = SnapMap::with_hasher(other_hasher.clone());
        other.extend(other_model.clone());
        let theirs = other.snapshot();
        assert!(theirs.diff(&theirs).next().is_none());
        for (ours, our_model) in &snaps {
            check_diff(ours, &theirs, our_model, &other_model);
            check_diff(&theirs, ours, &other_model, our_model);
            assert_eq!(*ours == theirs, *our_model == other_model, "equality across maps");
            assert_eq!(theirs == *ours, *our_model == other_model, "equality across maps");
        }
    }
}

fn ops<K: Debug + Clone>(key: impl Strategy<Value = K> + Clone) -> impl Strategy<Value = (Vec<(K, u8)>, Vec<Op<K>>)> {
    // Few distinct values, so that re-inserting an equal value (no change) is common.
    let value = 0u8..4;
    let op = prop_oneof![
        8 => (key.clone(), value.clone()).prop_map(|(k, v)| Op::Insert(k, v)),
        6 => key.clone().prop_map(Op::Remove),
        4 => vec((key.clone(), proptest::option::of(value.clone())), 0..10).prop_map(Op::Batch),
        1 => Just(Op::Clear),
        3 => Just(Op::Snapshot),
    ];
    (vec((key, value), 0..200), vec(op, 0..40))
}

fn u16_key() -> impl Strategy<Value = u16> + Clone {
    0u16..300
}

proptest! {
    #[test]
    fn diff_matches_model_integer_keys((base, ops) in ops(u16_key()), seed: u64) {
        run(base, ops, Hasher::with_seed(seed), Hasher::with_seed(!seed));
    }

    /// Four hash groups: diffs between big collision nodes, and between a
    /// collision chain and a single entry.
    #[test]
    fn diff_matches_model_colliding_in_four((base, ops) in ops(u16_key().prop_map(|id| Colliding { id, hash: id % 4 })), seed: u64) {
        run(base, ops, Hasher::with_seed(seed), Hasher::with_seed(!seed));
    }

    /// Groups of three: collision nodes that appear and fold away between versions.
    #[test]
    fn diff_matches_model_colliding_in_threes((base, ops) in ops(u16_key().prop_map(|id| Colliding { id, hash: id / 3 })), seed: u64) {
        run(base, ops, Hasher::with_seed(seed), Hasher::with_seed(!seed));
    }

    /// Hashes sharing long runs of the bits the trie reads first: diffs
    /// down chains of single-child nodes 5 to 10 levels deep, between a
    /// chain and the one entry it folded back into, and equality of equal
    /// contents whose chains were grown and folded by different histories.
    #[test]
    fn diff_matches_model_long_shared_hash_prefixes((base, ops) in ops(placed_key())) {
        run(base, ops, Placing::default(), Placing::default());
    }
}

/// A fixed case: one big map, a few writes, every kind of change once.
#[test]
fn diff_of_a_few_writes_to_a_big_map() {
    let map: SnapMap<u32, u32> = (0..50_000).map(|i| (i, i)).collect();
    let old = map.snapshot();
    map.update(|tx| {
        tx.insert(7, 70); // updated
        tx.insert(8, 8); // same value: no change
        tx.remove(&9); // removed
        tx.insert(1_000_000, 1); // added
    });
    let new = map.snapshot();
    let mut changes: Vec<_> = old.diff(&new).collect();
    changes.sort_by_key(|c| *c.key());
    assert_eq!(
        changes,
        vec![Change::Updated { key: &7, old: &7, new: &70 }, Change::Removed(&9, &9), Change::Added(&1_000_000, &1),]
    );
    let mut back: Vec<_> = new.diff(&old).collect();
    back.sort_by_key(|c| *c.key());
    assert_eq!(
        back,
        vec![Change::Updated { key: &7, old: &70, new: &7 }, Change::Added(&9, &9), Change::Removed(&1_000_000, &1),]
    );
    assert_ne!(old, new);
    map.update(|tx| {
        tx.insert(7, 7);
        tx.insert(9, 9);
        tx.remove(&1_000_000);
    });
    let restored = map.snapshot();
    assert!(!Snapshot::ptr_eq(&old, &restored));
    assert_eq!(old, restored, "same contents, different versions: equal");
    assert_eq!(old.diff(&restored).count(), 0);
}
