//! Model-based test: random sequences of writes, batches and snapshots run
//! against both a `SnapMap` and a `std::collections::HashMap`.
//!
//! Every snapshot taken is kept with a clone of the model at that moment and
//! re-checked in full after every later operation: a snapshot must never
//! change, whatever the writers do afterwards (and even after the map is gone).
//! Version numbers are checked against the rule "a write publishes exactly one
//! version if it changed something, none otherwise".

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::hash::{BuildHasher, Hash};
use std::mem;

use proptest::collection::vec;
use proptest::prelude::*;
use snapview::{SnapMap, Snapshot, Tx, View};

mod common;
use common::placed::{PREFIXES, Placed, Placing, placed_key};
use common::{Colliding, PLANNED_PANIC, quietly};

/// foldhash, as the default hasher, but seeded by the case (`seed`), so that
/// a saved regression rebuilds the trie it failed on, not only its
/// operations.
type Hasher = foldhash::fast::FixedState;
type Map<K, S> = SnapMap<K, u32, S>;
type Model<K> = HashMap<K, u32>;
/// A snapshot, the model's contents when it was taken, its version, and
/// which trie it is ([`Tries`]).
type Saved<K, S> = (Snapshot<K, u32, S>, Model<K>, u64, u64);

/// A map set aside, what it holds, its version and its trie.
type Aside<K, S> = (Map<K, S>, Model<K>, u64, u64);

/// Names the tries that versions hold: a restore publishes the trie it
/// restores (the same nodes), so whether it publishes at all depends on
/// whether that is the current trie, which contents alone cannot tell.
/// Every empty version is the one empty trie (no root); every other publish
/// makes a new one, and clones share their map's.
struct Tries(u64);

impl Tries {
    const EMPTY: u64 = 0;

    /// The trie of a version just published, with these contents.
    fn published<K>(&mut self, model: &Model<K>) -> u64 {
        if model.is_empty() {
            return Self::EMPTY;
        }
        self.0 += 1;
        self.0
    }
}
type KeyView<K, S> = View<K, u32, S>;
type KeyTx<'t, 'm, K, S> = &'t mut Tx<'m, K, u32, S>;

/// How the harness looks keys up; `String` goes through `&str` (`Borrow`).
trait Key: Hash + Eq + Clone + Debug {
    fn get<'a, S: BuildHasher>(view: &'a KeyView<Self, S>, key: &Self) -> Option<&'a u32> {
        view.get(key)
    }
    fn get_key_value<'a, S: BuildHasher>(view: &'a KeyView<Self, S>, key: &Self) -> Option<(&'a Self, &'a u32)> {
        view.get_key_value(key)
    }
    fn contains_key<S: BuildHasher>(view: &KeyView<Self, S>, key: &Self) -> bool {
        view.contains_key(key)
    }
    fn tx_get<'a, S: BuildHasher>(tx: &'a Tx<'_, Self, u32, S>, key: &Self) -> Option<&'a u32> {
        tx.get(key)
    }
    fn tx_remove<S: BuildHasher>(tx: KeyTx<'_, '_, Self, S>, key: &Self) -> Option<u32> {
        tx.remove(key)
    }
    fn tx_get_mut<'a, S: BuildHasher>(tx: &'a mut Tx<'_, Self, u32, S>, key: &Self) -> Option<&'a mut u32> {
        tx.get_mut(key)
    }
    fn remove<S: BuildHasher + Clone>(map: &Map<Self, S>, key: &Self) -> Option<u32> {
        map.remove(key)
    }
}

impl Key for u16 {}

impl Key for String {
    fn get<'a, S: BuildHasher>(view: &'a KeyView<Self, S>, key: &Self) -> Option<&'a u32> {
        view.get(key.as_str())
    }
    fn get_key_value<'a, S: BuildHasher>(view: &'a KeyView<Self, S>, key: &Self) -> Option<(&'a Self, &'a u32)> {
        view.get_key_value(key.as_str())
    }
    fn contains_key<S: BuildHasher>(view: &KeyView<Self, S>, key: &Self) -> bool {
        view.contains_key(key.as_str())
    }
    fn tx_get<'a, S: BuildHasher>(tx: &'a Tx<'_, Self, u32, S>, key: &Self) -> Option<&'a u32> {
        tx.get(key.as_str())
    }
    fn tx_remove<S: BuildHasher>(tx: KeyTx<'_, '_, Self, S>, key: &Self) -> Option<u32> {
        tx.remove(key.as_str())
    }
    fn tx_get_mut<'a, S: BuildHasher>(tx: &'a mut Tx<'_, Self, u32, S>, key: &Self) -> Option<&'a mut u32> {
        tx.get_mut(key.as_str())
    }
    fn remove<S: BuildHasher + Clone>(map: &Map<Self, S>, key: &Self) -> Option<u32> {
        map.remove(key.as_str())
    }
}

impl Key for Colliding {}

impl Key for Placed {}

#[derive(Clone, Debug)]
enum TxOp<K> {
    Insert(K, u32),
    Remove(K),
    RemoveEntry(K),
    Get(K),
    /// Overwrite the value through `get_mut`, if present.
    GetMut(K, u32),
    /// One use of `entry`, of the kind given.
    Entry(K, u32, EntryUse),
    /// Keep only values not divisible by this.
    Retain(u32),
    Extend(Vec<(K, u32)>),
    /// `assign` of the batch's entries whose value is not divisible by the
    /// number, then the listed ones (which may repeat keys): a reload that
    /// keeps most entries, drops some and adds or changes a few.
    Assign(u32, Vec<(K, u32)>),
    Clear,
}

/// What an `entry` call does with its entry.
#[derive(Clone, Copy, Debug)]
enum EntryUse {
    /// `or_insert(v)`, then add 1 through the reference.
    OrInsert,
    /// `and_modify(|x| x += v).or_default()`.
    AndModifyOrDefault,
    /// `Occupied::insert(v)` or `Vacant::insert(v)`; for an odd `v`,
    /// `Entry::insert_entry(v)` then add 1 through the entry.
    Insert,
    /// `Occupied::remove_entry()`, or `Vacant::into_key()` (no write).
    Remove,
    /// Only `key()`, and `get()` if occupied (no write).
    Look,
}

#[derive(Clone, Debug)]
enum Op<K> {
    Insert(K, u32),
    Remove(K),
    Batch(Vec<TxOp<K>>),
    /// A batch whose closure runs these ops, then panics: it must publish
    /// nothing, however much of the tree its writes had copied or changed.
    PanickingBatch(Vec<TxOp<K>>),
    /// A `try_update` whose closure runs these ops, then returns `Err`: it
    /// must publish nothing either.
    FailingBatch(Vec<TxOp<K>>),
    Extend(Vec<(K, u32)>),
    Clear,
    /// Take a snapshot (through `snapshot()` if true, `read().to_snapshot()` if false).
    Snapshot(bool),
    /// Clone the map, and write on to the clone (true) or to the map (false),
    /// keeping the other aside: whatever is written later, neither sees it.
    Fork(bool),
    /// Write on to a map set aside (the index, modulo their number), setting
    /// this one aside: writes alternate between maps that share nodes.
    Switch(u8),
    /// A batch that runs the first ops, restores a saved snapshot (the
    /// index, modulo their number; of this map or of one it was forked
    /// from or into: O(1), sharing its nodes), then runs the second ops.
    Restore(Vec<TxOp<K>>, u8, Vec<TxOp<K>>),
    /// A batch that runs these ops, then restores the version it started
    /// from: it publishes nothing.
    Undo(Vec<TxOp<K>>),
    /// Restore the version of another map holding these entries: a copy.
    RestoreOther(Vec<(K, u32)>),
}

fn entry_use() -> impl Strategy<Value = EntryUse> + Clone {
    prop_oneof![
        Just(EntryUse::OrInsert),
        Just(EntryUse::AndModifyOrDefault),
        Just(EntryUse::Insert),
        Just(EntryUse::Remove),
        Just(EntryUse::Look),
    ]
}

fn ops<K: Debug + Clone + 'static>(
    key: impl Strategy<Value = K> + Clone + 'static,
) -> impl Strategy<Value = Vec<Op<K>>> {
    let value = 0u32..16;
    let entries = vec((key.clone(), value.clone()), 0..8);
    let tx_op = prop_oneof![
        6 => (key.clone(), value.clone()).prop_map(|(k, v)| TxOp::Insert(k, v)),
        4 => key.clone().prop_map(TxOp::Remove),
        1 => key.clone().prop_map(TxOp::RemoveEntry),
        3 => key.clone().prop_map(TxOp::Get),
        2 => (key.clone(), value.clone()).prop_map(|(k, v)| TxOp::GetMut(k, v)),
        4 => (key.clone(), value.clone(), entry_use()).prop_map(|(k, v, u)| TxOp::Entry(k, v, u)),
        1 => (2u32..6).prop_map(TxOp::Retain),
        1 => entries.clone().prop_map(TxOp::Extend),
        1 => ((2u32..20), entries.clone()).prop_map(|(m, edits)| TxOp::Assign(m, edits)),
        1 => Just(TxOp::Clear),
    ];
    let op = prop_oneof![
        12 => (key.clone(), value).prop_map(|(k, v)| Op::Insert(k, v)),
        8 => key.clone().prop_map(Op::Remove),
        5 => vec(tx_op.clone(), 0..10).prop_map(Op::Batch),
        2 => vec(tx_op.clone(), 0..10).prop_map(Op::PanickingBatch),
        2 => vec(tx_op.clone(), 0..10).prop_map(Op::FailingBatch),
        2 => entries.clone().prop_map(Op::Extend),
        1 => Just(Op::Clear),
        3 => any::<bool>().prop_map(Op::Snapshot),
        1 => any::<bool>().prop_map(Op::Fork),
        1 => any::<u8>().prop_map(Op::Switch),
        2 => (vec(tx_op.clone(), 0..3), any::<u8>(), vec(tx_op.clone(), 0..3))
            .prop_map(|(first, i, then)| Op::Restore(first, i, then)),
        1 => vec(tx_op.clone(), 0..6).prop_map(Op::Undo),
        1 => entries.clone().prop_map(Op::RestoreOther),
    ];
    // A base of up to 150 entries first, so that tries get a few levels deep.
    (vec((key, 0u32..16), 0..150), vec(op, 1..48)).prop_map(|(base, mut ops)| {
        ops.insert(0, Op::Extend(base));
        ops
    })
}

/// Checks every read method of `view` against `model`.
fn check_view<K: Key, S: BuildHasher>(view: &KeyView<K, S>, model: &Model<K>, version: u64, probes: &[K]) {
    assert_eq!(view.version(), version, "version");
    assert_eq!(view.len(), model.len(), "len");
    assert_eq!(view.is_empty(), model.is_empty(), "is_empty");

    let mut it = view.iter();
    assert_eq!(it.len(), model.len(), "ExactSizeIterator::len of iter");
    if it.next().is_some() {
        assert_eq!(it.len(), model.len() - 1, "len after one next()");
    }
    let mut yielded = 0;
    let mut collected = HashMap::with_capacity(model.len());
    for (k, v) in view.iter() {
        yielded += 1;
        collected.insert(k.clone(), *v);
    }
    assert_eq!(yielded, model.len(), "iter() yields len() entries");
    assert_eq!(&collected, model, "iter() collected equals the model");

    assert_eq!(view.keys().len(), model.len(), "keys().len()");
    let keys: HashSet<&K> = view.keys().collect();
    assert_eq!(keys.len(), model.len(), "keys() yields each key once");
    assert!(keys.iter().all(|k| model.contains_key(*k)), "keys() are the model's keys");
    assert_eq!(view.values().len(), model.len(), "values().len()");
    let mut values: Vec<u32> = view.values().copied().collect();
    let mut expected: Vec<u32> = model.values().copied().collect();
    values.sort_unstable();
    expected.sort_unstable();
    assert_eq!(values, expected, "values() are the model's values");

    for p in probes {
        let want = model.get(p);
        assert_eq!(K::get(view, p), want, "get({p:?})");
        assert_eq!(K::contains_key(view, p), want.is_some(), "contains_key({p:?})");
        match K::get_key_value(view, p) {
            Some((k, v)) => {
                assert_eq!(k, p, "get_key_value returns the stored key");
                assert_eq!(Some(v), want);
            }
            None => assert!(want.is_none(), "get_key_value({p:?}) missed"),
        }
    }
}

/// Runs one `entry` use against the transaction and the model; returns
/// whether it was a write (a look is not; `or_insert` on a present key is,
/// since it hands out the value mutably).
fn run_entry<K: Key, S: BuildHasher>(
    tx: KeyTx<'_, '_, K, S>,
    model: &mut Model<K>,
    k: K,
    v: u32,
    used: EntryUse,
) -> bool {
    use snapview::Entry;
    use std::collections::hash_map::Entry as ModelEntry;
    let present = model.contains_key(&k);
    let entry = tx.entry(k.clone());
    assert_eq!(entry.key(), &k, "entry({k:?}).key()");
    assert_eq!(matches!(entry, Entry::Occupied(_)), present, "entry({k:?}) occupied");
    match used {
        EntryUse::OrInsert => {
            let got = entry.or_insert(v);
            *got += 1;
            let want = model.entry(k).or_insert(v);
            *want += 1;
            assert_eq!(*got, *want, "or_insert");
            true
        }
        EntryUse::AndModifyOrDefault => {
            let got = *entry.and_modify(|x| *x += v).or_default();
            let want = *model.entry(k).and_modify(|x| *x += v).or_default();
            assert_eq!(got, want, "and_modify().or_default()");
            true
        }
        EntryUse::Insert if v % 2 == 1 => {
            let (mut e, mut m) = (entry.insert_entry(v), model.entry(k).insert_entry(v));
            assert_eq!((e.key(), e.get()), (m.key(), m.get()), "Entry::insert_entry");
            *e.get_mut() += 1;
            *m.get_mut() += 1;
            assert_eq!(e.get(), m.get(), "OccupiedEntry::get_mut after insert_entry");
            true
        }
        EntryUse::Insert => {
            match (entry, model.entry(k)) {
                (Entry::Occupied(mut e), ModelEntry::Occupied(mut m)) => {
                    assert_eq!(e.insert(v), m.insert(v), "OccupiedEntry::insert");
                    assert_eq!(*e.get(), v, "OccupiedEntry::get after insert");
                }
                (Entry::Vacant(e), ModelEntry::Vacant(m)) => {
                    assert_eq!(*e.insert(v), *m.insert(v), "VacantEntry::insert");
                }
                _ => unreachable!("checked above"),
            }
            true
        }
        EntryUse::Remove => match (entry, model.entry(k.clone())) {
            (Entry::Occupied(e), ModelEntry::Occupied(m)) => {
                assert_eq!(e.key(), m.key(), "OccupiedEntry::key is the stored key");
                assert_eq!(e.remove_entry(), m.remove_entry(), "OccupiedEntry::remove_entry");
                true
            }
            (Entry::Vacant(e), ModelEntry::Vacant(_)) => {
                assert_eq!(e.into_key(), k, "VacantEntry::into_key");
                false
            }
            _ => unreachable!("checked above"),
        },
        EntryUse::Look => {
            if let Entry::Occupied(e) = entry {
                assert_eq!(Some(e.get()), model.get(&k), "OccupiedEntry::get");
            }
            false
        }
    }
}

/// Runs one batch against the transaction and the model side by side;
/// returns whether any write took effect.
fn run_tx<K: Key, S: BuildHasher>(
    tx: KeyTx<'_, '_, K, S>,
    model: &mut Model<K>,
    ops: Vec<TxOp<K>>,
    probes: &[K],
) -> bool {
    let mut effective = false;
    for op in ops {
        effective |= run_tx_op(tx, model, op);
    }
    check_tx(tx, model, probes);
    effective
}

/// Runs one op of a batch against the transaction and the model; returns
/// whether it was a write that took effect.
fn run_tx_op<K: Key, S: BuildHasher>(tx: KeyTx<'_, '_, K, S>, model: &mut Model<K>, op: TxOp<K>) -> bool {
    let mut effective = false;
    match op {
        TxOp::Insert(k, v) => {
            assert_eq!(tx.insert(k.clone(), v), model.insert(k, v), "tx.insert");
            effective = true;
        }
        TxOp::Remove(k) => {
            let want = model.remove(&k);
            assert_eq!(K::tx_remove(tx, &k), want, "tx.remove({k:?})");
            effective |= want.is_some();
        }
        TxOp::RemoveEntry(k) => {
            let want = model.remove_entry(&k);
            assert_eq!(tx.remove_entry(&k), want, "tx.remove_entry({k:?})");
            effective |= want.is_some();
        }
        TxOp::Get(k) => {
            assert_eq!(K::tx_get(tx, &k), model.get(&k), "tx.get({k:?})");
            assert_eq!(tx.contains_key(&k), model.contains_key(&k), "tx.contains_key({k:?})");
        }
        TxOp::GetMut(k, v) => {
            let want = model.get_mut(&k).map(|x| mem::replace(x, v));
            let got = K::tx_get_mut(tx, &k).map(|x| mem::replace(x, v));
            assert_eq!(got, want, "tx.get_mut({k:?})");
            // A found key counts as a write, changed or not.
            effective |= want.is_some();
        }
        TxOp::Entry(k, v, used) => effective |= run_entry(tx, model, k, v, used),
        TxOp::Retain(m) => {
            let before = model.len();
            model.retain(|_, v| *v % m != 0);
            tx.retain(|_, v| *v % m != 0);
            effective |= model.len() != before;
        }
        TxOp::Extend(entries) => {
            effective |= !entries.is_empty();
            model.extend(entries.iter().cloned());
            tx.extend(entries);
        }
        TxOp::Assign(m, edits) => {
            let table: Vec<(K, u32)> =
                model.iter().filter(|&(_, v)| *v % m != 0).map(|(k, v)| (k.clone(), *v)).chain(edits).collect();
            let wanted: Model<K> = table.iter().cloned().collect();
            let differing = wanted.iter().filter(|&(k, v)| model.get(k) != Some(v)).count();
            let dropped = model.keys().filter(|k| !wanted.contains_key(*k)).count();
            let written = tx.assign(table);
            assert_eq!(written, differing + dropped, "assign's count of keys written");
            effective |= written > 0;
            *model = wanted;
        }
        TxOp::Clear => {
            effective |= !model.is_empty();
            model.clear();
            tx.clear();
        }
    }
    assert_eq!(tx.len(), model.len(), "tx.len()");
    assert_eq!(tx.is_empty(), model.is_empty(), "tx.is_empty()");
    effective
}

/// The batch reads its own writes, everywhere.
fn check_tx<K: Key, S: BuildHasher>(tx: &Tx<'_, K, u32, S>, model: &Model<K>, probes: &[K]) {
    let seen: Model<K> = tx.iter().map(|(k, v)| (k.clone(), *v)).collect();
    assert_eq!(tx.iter().len(), model.len(), "tx.iter().len()");
    assert_eq!(tx.iter().count(), model.len(), "tx.iter() yields len() entries");
    assert_eq!(&seen, model, "tx.iter() equals the model");
    let keys: HashSet<&K> = tx.keys().collect();
    assert_eq!((tx.keys().len(), keys.len()), (model.len(), model.len()), "tx.keys() yields each key once");
    assert!(keys.iter().all(|k| model.contains_key(*k)), "tx.keys() are the model's keys");
    assert_eq!(tx.values().copied().sum::<u32>(), model.values().sum::<u32>(), "tx.values()");
    assert_eq!(tx.values().len(), model.len(), "tx.values().len()");
    for p in probes {
        assert_eq!(K::tx_get(tx, p), model.get(p), "tx.get({p:?}) at the end of the batch");
    }
}

fn run<K: Key, S: BuildHasher + Clone>(ops: Vec<Op<K>>, absent: K, hasher: S) {
    // Every key the run mentions, plus one it never writes: probes for both
    // present and absent keys.
    let mut probes: Vec<K> = Vec::new();
    let mut seen = HashSet::new();
    let mut note = |k: &K| {
        if seen.insert(k.clone()) {
            probes.push(k.clone());
        }
    };
    for op in &ops {
        match op {
            Op::Insert(k, _) | Op::Remove(k) => note(k),
            Op::Extend(entries) => entries.iter().for_each(|(k, _)| note(k)),
            Op::RestoreOther(entries) => entries.iter().for_each(|(k, _)| note(k)),
            Op::Batch(tx) | Op::PanickingBatch(tx) | Op::FailingBatch(tx) | Op::Undo(tx) | Op::Restore(tx, ..) => {
                let then = match op {
                    Op::Restore(_, _, then) => &then[..],
                    _ => &[],
                };
                for t in tx.iter().chain(then) {
                    match t {
                        TxOp::Insert(k, _)
                        | TxOp::Remove(k)
                        | TxOp::RemoveEntry(k)
                        | TxOp::Get(k)
                        | TxOp::GetMut(k, _)
                        | TxOp::Entry(k, _, _) => note(k),
                        TxOp::Extend(entries) | TxOp::Assign(_, entries) => entries.iter().for_each(|(k, _)| note(k)),
                        TxOp::Retain(_) | TxOp::Clear => {}
                    }
                }
            }
            Op::Clear | Op::Snapshot(_) | Op::Fork(_) | Op::Switch(_) => {}
        }
    }
    assert!(!seen.contains(&absent));
    probes.push(absent);

    let mut map: Map<K, S> = SnapMap::with_hasher(hasher.clone());
    let mut model: Model<K> = HashMap::new();
    let mut version = 0u64;
    let mut saved: Vec<Saved<K, S>> = Vec::new();
    // Maps forked off and set aside, with what they hold (and its trie).
    let mut aside: Vec<Aside<K, S>> = Vec::new();
    let (mut tries, mut trie) = (Tries(Tries::EMPTY), Tries::EMPTY);
    check_view(&map.snapshot(), &model, 0, &probes);

    for (step, op) in ops.into_iter().enumerate() {
        // Set by a restore that publishes the trie it restores.
        let mut restored_trie = None;
        // Every other step holds the version it starts from, to check that
        // it stays as it was; the others do not, so that the write can take
        // its root back as the writer's spare, which the next write starts
        // from (and a restore then replaces).
        let hold = step % 2 == 0;
        let mut before = hold.then(|| map.snapshot());
        let mut before_model = model.clone();
        let mut before_version = version;
        match op {
            Op::Insert(k, v) => {
                assert_eq!(map.insert(k.clone(), v), model.insert(k, v), "insert");
                version += 1;
            }
            Op::Remove(k) => {
                let want = model.remove(&k);
                assert_eq!(K::remove(&map, &k), want, "remove({k:?})");
                version += u64::from(want.is_some());
            }
            Op::Batch(tx_ops) => {
                let effective = map.update(|tx| {
                    // The batch starts from the current version.
                    assert_eq!(tx.len(), model.len(), "tx starts at the current len");
                    run_tx(tx, &mut model, tx_ops, &probes)
                });
                version += u64::from(effective);
            }
            Op::PanickingBatch(tx_ops) => {
                // The batch works on a copy of the model, dropped with the
                // batch: the map must stay at `model` too.
                let mut scratch = model.clone();
                let unwound = quietly(|| {
                    map.update(|tx| {
                        for op in tx_ops {
                            run_tx_op(tx, &mut scratch, op);
                        }
                        check_tx(tx, &scratch, &probes);
                        std::panic::panic_any(PLANNED_PANIC)
                    })
                });
                let payload = unwound.expect_err("the batch's closure panics");
                if payload.downcast_ref::<&str>() != Some(&PLANNED_PANIC) {
                    // A check inside the batch failed: report that one.
                    std::panic::resume_unwind(payload);
                }
                assert_eq!(map.version(), before_version, "a panicking batch published a version");
                // Below, as after any op: the contents and older snapshots
                // unchanged; then the rest of the case's ops must work.
            }
            Op::FailingBatch(tx_ops) => {
                let mut scratch = model.clone();
                let failed = map.try_update(|tx| {
                    for op in tx_ops {
                        run_tx_op(tx, &mut scratch, op);
                    }
                    check_tx(tx, &scratch, &probes);
                    Err::<(), _>(tx.len())
                });
                assert_eq!(failed, Err(scratch.len()), "try_update returns the closure's error");
                assert_eq!(map.version(), before_version, "a failed batch published a version");
            }
            Op::Extend(entries) => {
                version += u64::from(!entries.is_empty());
                model.extend(entries.iter().cloned());
                map.extend(entries);
            }
            Op::Clear => {
                version += u64::from(!model.is_empty());
                model.clear();
                map.clear();
            }
            Op::Snapshot(owned) => {
                let snap = if owned { map.snapshot() } else { map.read().to_snapshot() };
                saved.push((snap, model.clone(), version, trie));
            }
            Op::Fork(write_the_clone) => {
                let mut clone = map.clone();
                let (a, b) = (map.snapshot(), clone.snapshot());
                assert!(a == b && a.diff(&b).next().is_none(), "a clone holds its map's entries");
                assert_eq!(clone.version(), map.version(), "a clone starts at its map's version");
                if write_the_clone {
                    std::mem::swap(&mut map, &mut clone);
                    // The map written from now on holds what the old one held.
                    before = hold.then(|| map.snapshot());
                }
                aside.push((clone, model.clone(), version, trie));
            }
            Op::Restore(first, i, then) if !saved.is_empty() => {
                let (snap, snap_model, _, snap_trie) = &saved[usize::from(i) % saved.len()];
                let then_effective = map.update(|tx| {
                    run_tx(tx, &mut model, first, &probes);
                    tx.restore(snap);
                    model = snap_model.clone();
                    check_tx(tx, &model, &probes);
                    run_tx(tx, &mut model, then, &probes)
                });
                // Another trie than the current one is a write, whatever was
                // written before it; the current trie is not (that undoes
                // the batch), unless a write follows.
                let published = then_effective || *snap_trie != trie;
                version += u64::from(published);
                restored_trie = (!then_effective).then_some(*snap_trie);
            }
            Op::Restore(..) => {}
            Op::Undo(tx_ops) => {
                let before = map.snapshot();
                map.update(|tx| {
                    run_tx(tx, &mut model, tx_ops, &probes);
                    tx.restore(&before);
                    check_tx(tx, &before_model, &probes);
                });
                model = before_model.clone();
            }
            Op::RestoreOther(entries) => {
                let mut other: Map<K, S> = SnapMap::with_hasher(hasher.clone());
                other.extend(entries);
                let other = other.snapshot();
                map.restore(&other);
                let copied: Model<K> = other.iter().map(|(k, v)| (k.clone(), *v)).collect();
                version += u64::from(!(model.is_empty() && copied.is_empty()));
                model = copied;
            }
            Op::Switch(i) => {
                // Writes alternate between maps that share nodes: two
                // writers' copies of one node, in turn.
                if !aside.is_empty() {
                    let at = usize::from(i) % aside.len();
                    let (other, other_model, other_version, other_trie) = &mut aside[at];
                    std::mem::swap(&mut map, other);
                    std::mem::swap(&mut model, other_model);
                    std::mem::swap(&mut version, other_version);
                    std::mem::swap(&mut trie, other_trie);
                    (before, before_model, before_version) = (hold.then(|| map.snapshot()), model.clone(), version);
                }
            }
        }

        assert_eq!(map.version(), version, "map.version()");
        assert_eq!(map.len(), model.len(), "map.len()");
        assert_eq!(map.is_empty(), model.is_empty(), "map.is_empty()");
        let now = map.snapshot();
        if version == before_version {
            if let Some(before) = &before {
                assert!(Snapshot::ptr_eq(before, &now), "a write that changed nothing published a version");
            }
        } else {
            trie = restored_trie.unwrap_or_else(|| tries.published(&model));
            assert_eq!(version, before_version + 1);
            assert!(before.as_ref().is_none_or(|before| !Snapshot::ptr_eq(before, &now)));
        }
        check_view(&now, &model, version, &probes);
        check_view(&map.read(), &model, version, &probes);
        if let Some(before) = &before {
            check_view(before, &before_model, before_version, &probes);
        }
        for (snap, snap_model, snap_version, _) in &saved {
            check_view(snap, snap_model, *snap_version, &probes);
        }
        for (other, other_model, other_version, _) in &aside {
            check_view(&other.snapshot(), other_model, *other_version, &probes);
        }
    }

    // A map set aside still takes writes of its own (a version each), which
    // neither the map nor the other maps set aside see.
    if let Some(k) = probes.first() {
        for (other, other_model, other_version, _) in &mut aside {
            other.insert(k.clone(), 99);
            other_model.insert(k.clone(), 99);
            *other_version += 1;
        }
    }
    check_view(&map.snapshot(), &model, version, &probes);
    for (other, other_model, other_version, _) in &aside {
        check_view(&other.snapshot(), other_model, *other_version, &probes);
    }

    // Snapshots outlive their map.
    drop(map);
    for (snap, snap_model, snap_version, _) in &saved {
        check_view(snap, snap_model, *snap_version, &probes);
    }
}

fn u16_key() -> impl Strategy<Value = u16> + Clone {
    0u16..200
}

proptest! {
    #[test]
    fn small_integer_keys(ops in ops(u16_key()), seed: u64) {
        run(ops, 999, Hasher::with_seed(seed));
    }

    /// Only four distinct hashes: four big collision nodes under a chain of
    /// single-child nodes.
    #[test]
    fn keys_colliding_in_four_groups(ops in ops(u16_key().prop_map(|id| Colliding { id, hash: id % 4 })), seed: u64) {
        run(ops, Colliding { id: 999, hash: 1 }, Hasher::with_seed(seed));
    }

    /// Groups of three keys share a hash: many small collision nodes that
    /// appear, shrink to one entry and fold back into their parents.
    #[test]
    fn keys_colliding_in_threes(ops in ops(u16_key().prop_map(|id| Colliding { id, hash: id / 3 })), seed: u64) {
        run(ops, Colliding { id: 999, hash: 7 }, Hasher::with_seed(seed));
    }

    /// String keys, looked up, removed and read in batches through `&str`.
    #[test]
    fn string_keys(ops in ops(u16_key().prop_map(|n| format!("key-{n}"))), seed: u64) {
        run(ops, "absent".to_string(), Hasher::with_seed(seed));
    }

    /// Hashes sharing long runs of the bits the trie reads first: chains of
    /// single-child nodes 5 to 10 levels deep, which writes split, extend
    /// and fold back up (canonical form) and batches copy whole. The absent
    /// probe walks the longest chain to its collision node and misses there.
    #[test]
    fn keys_sharing_long_hash_prefixes(ops in ops(placed_key())) {
        run(ops, Placed { hash: PREFIXES[0] ^ (3 << 60), id: 9 }, Placing::default());
    }
}
