//! Random operation sequences on a `SnapMap`, checked against `std::collections::HashMap`,
//! with old snapshots re-checked after every later write.
//!
//! Keys and values own heap memory, so that AddressSanitizer sees an entry
//! dropped twice, read after its drop, or never dropped (a leak, at exit),
//! wherever a copy moves, lends or clones it. The input's first byte picks
//! the hashing (bit 0): few distinct hashes (collision nodes, deep chains)
//! or every key its own (wide nodes, whose copies lend their children); and
//! (bit 1) whether the map's copies lend entries or clone them. Its other
//! six bits seed the hasher (foldhash, as the default), so that a crash
//! artifact rebuilds the trie it crashed on, and pick how often the map's
//! calls are sampled (with the `instrument` feature, where a sampled
//! iteration holds entries back before the `next()`s it watches).
//!
//! The map is also cloned (its clones set aside, never to see its writes),
//! and restored to versions it kept.
//!
//! `cargo +nightly fuzz run model -- -max_total_time=60` (from `fuzz/`);
//! `cargo +nightly fuzz run --features instrument model -- ...` for the
//! instrumented iterator.
#![no_main]

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};

use libfuzzer_sys::fuzz_target;
use snapview::{Change, SnapMap, Snapshot};

/// The default hasher's algorithm, seeded by the input.
type Seeded = foldhash::fast::FixedState;
type Snap = Snapshot<Key, Val, Seeded>;

/// Whether this input's keys hash apart (set from its first byte).
static WIDE: AtomicBool = AtomicBool::new(false);

/// A key on the heap. Unless [`WIDE`], few distinct hashes, so that
/// collision nodes and deep chains are common.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Key(Box<u8>);

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match WIDE.load(Ordering::Relaxed) {
            true => self.0.hash(state),
            false => (*self.0 % 24).hash(state),
        }
    }
}

// SAFETY: a `Box<u8>`: nothing changes through `&Key`.
unsafe impl snapview::Lendable for Key {}

fn key(k: u8) -> Key {
    Key(Box::new(k))
}

/// A value on the heap.
type Val = Box<u16>;

fn unbox(v: Option<Val>) -> Option<u16> {
    v.map(|v| *v)
}

type Model = HashMap<u8, u16>;

fn check(snap: &Snap, model: &Model) {
    assert_eq!(snap.len(), model.len());
    assert_eq!(snap.iter().len(), model.len());
    let seen: Model = snap.iter().map(|(k, v)| (*k.0, **v)).collect();
    assert_eq!(&seen, model);
    for k in 0..=255u8 {
        assert_eq!(snap.get(&key(k)).map(|v| **v), model.get(&k).copied());
    }
}

/// Walks `snap` by `next()`, its exact length checked at each step; then
/// takes `split` items by `next()`, clones the iterator there, and folds the
/// rest of both: every walk yields the model, each key once.
fn check_walks(snap: &Snap, model: &Model, split: usize) {
    let mut it = snap.iter();
    let mut seen = Model::new();
    loop {
        assert_eq!(it.len(), model.len() - seen.len());
        let Some((k, v)) = it.next() else { break };
        assert!(seen.insert(*k.0, **v).is_none(), "a key twice");
    }
    assert_eq!(&seen, model);
    let mut it = snap.iter();
    let head: Model = it.by_ref().take(split).map(|(k, v)| (*k.0, **v)).collect();
    let copy = it.clone();
    for rest in [it, copy] {
        assert_eq!(rest.len(), model.len() - head.len());
        let all = rest.fold(head.clone(), |mut all, (k, v)| {
            assert!(all.insert(*k.0, **v).is_none(), "a key twice");
            all
        });
        assert_eq!(&all, model);
    }
}

fn check_diff(old: &Snap, old_model: &Model, new: &Snap, new_model: &Model) {
    let mut expected: Vec<(u8, Option<u16>, Option<u16>)> = Vec::new();
    for (k, v) in old_model {
        match new_model.get(k) {
            None => expected.push((*k, Some(*v), None)),
            Some(n) if n != v => expected.push((*k, Some(*v), Some(*n))),
            Some(_) => {}
        }
    }
    expected.extend(new_model.iter().filter(|(k, _)| !old_model.contains_key(k)).map(|(k, v)| (*k, None, Some(*v))));
    let mut got: Vec<(u8, Option<u16>, Option<u16>)> = old
        .diff(new)
        .map(|c| match c {
            Change::Added(k, v) => (*k.0, None, Some(**v)),
            Change::Removed(k, v) => (*k.0, Some(**v), None),
            Change::Updated { key, old, new } => (*key.0, Some(**old), Some(**new)),
        })
        .collect();
    expected.sort_unstable();
    got.sort_unstable();
    assert_eq!(got, expected);
    assert_eq!(old == new, old_model == new_model);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else { return };
    WIDE.store(mode & 1 != 0, Ordering::Relaxed);
    // Entries lent (a `Box` key is not lent by default), so that the fuzzer
    // sees a double drop or a read after a drop of a lent entry; or, as in a
    // map of types not declared `Lendable`, cloned.
    // Sampling one call in 1 to 4, or none (without `instrument`, no effect).
    let builder =
        SnapMap::builder().hasher(Seeded::with_seed(u64::from(mode >> 2))).sample_every(u32::from(mode >> 2) % 5);
    let mut map: SnapMap<Key, Val, Seeded> =
        if mode & 2 == 0 { builder.lend_entries().build() } else { builder.build() };
    let mut model = Model::new();
    let mut kept: Vec<(Snap, Model)> = Vec::new();
    // Maps forked off (`clone`) and set aside: they share nodes with `map`,
    // whose writes they must never see.
    let mut forks: Vec<(SnapMap<Key, Val, Seeded>, Model)> = Vec::new();
    let mut ops = data.chunks_exact(3);
    while let Some(&[op, k, v]) = ops.next() {
        let value = u16::from(v) << 1;
        match op % 12 {
            0..=2 => assert_eq!(unbox(map.insert(key(k), Box::new(value))), model.insert(k, value)),
            3 | 4 => assert_eq!(unbox(map.remove(&key(k))), model.remove(&k)),
            5 => {
                // A batch of up to 8 ops from the following bytes.
                let n = usize::from(v % 8);
                let batch: Vec<&[u8]> = ops.by_ref().take(n).collect();
                map.update(|tx| {
                    for b in &batch {
                        let (k, v) = (b[1], u16::from(b[2]));
                        match b[0] % 4 {
                            0 => assert_eq!(unbox(tx.insert(key(k), Box::new(v))), model.insert(k, v)),
                            1 => assert_eq!(unbox(tx.remove(&key(k))), model.remove(&k)),
                            2 => {
                                let got =
                                    tx.entry(key(k)).and_modify(|x| **x = x.wrapping_add(1)).or_insert(Box::new(v));
                                let want = model.entry(k).and_modify(|x| *x = x.wrapping_add(1)).or_insert(v);
                                assert_eq!(**got, *want);
                            }
                            _ => {
                                let got = tx.get_mut(&key(k)).map(|x| std::mem::replace(&mut **x, v));
                                assert_eq!(got, model.get_mut(&k).map(|x| std::mem::replace(x, v)));
                            }
                        }
                        assert_eq!(tx.len(), model.len());
                    }
                });
            }
            6 => {
                let snap = map.snapshot();
                check_walks(&snap, &model, usize::from(k));
                kept.push((snap, model.clone()));
            }
            7 => {
                // Clear and load again in one batch (the one-pass load), from
                // up to 15 following (key, value) pairs; a repeated key's last
                // value wins, as with inserts.
                let n = usize::from(v % 16);
                let pairs: Vec<(u8, u16)> = ops.by_ref().take(n).map(|b| (b[1], u16::from(b[2]))).collect();
                map.update(|tx| {
                    tx.clear();
                    tx.extend(pairs.iter().map(|&(k, v)| (key(k), Box::new(v))));
                });
                model.clear();
                model.extend(pairs.iter().copied());
            }
            8 => {
                // A reload by `assign`: the current contents less the keys
                // divisible by a divisor from `k`, then up to 15 following
                // (key, value) pairs, of which a repeated key's last wins.
                let n = usize::from(v % 16);
                let divisor = k % 7 + 2;
                let pairs: Vec<(u8, u16)> = ops.by_ref().take(n).map(|b| (b[1], u16::from(b[2]))).collect();
                let table: Vec<(u8, u16)> =
                    model.iter().filter(|&(k, _)| k % divisor != 0).map(|(&k, &v)| (k, v)).chain(pairs).collect();
                let wanted: Model = table.iter().copied().collect();
                let differing = wanted.iter().filter(|&(k, v)| model.get(k) != Some(v)).count()
                    + model.keys().filter(|k| !wanted.contains_key(*k)).count();
                let version = map.version();
                let written = map.update(|tx| tx.assign(table.iter().map(|&(k, v)| (key(k), Box::new(v)))));
                assert_eq!(written, differing);
                assert_eq!(map.version(), version + u64::from(written > 0));
                model = wanted;
            }
            9 => {
                let now = map.snapshot();
                for (snap, m) in &kept {
                    check_diff(snap, m, &now, &model);
                }
            }
            11 if !kept.is_empty() => {
                // Back to a kept version (which shares its nodes and entries
                // with it): alone, or (odd `v`) in a batch after a write that
                // it drops, and before one that it keeps.
                let (snap, m) = &kept[usize::from(k) % kept.len()];
                if v & 1 == 0 {
                    map.restore(snap);
                    model = m.clone();
                } else {
                    map.update(|tx| {
                        tx.insert(key(k), Box::new(1));
                        tx.restore(snap);
                        tx.remove(&key(v));
                    });
                    model = m.clone();
                    model.remove(&v);
                }
                check_diff(snap, m, &map.snapshot(), &model);
            }
            11 => {}
            _ => {
                // Write on to the clone (odd `k`) or to the map, and set the
                // other aside; snapshots of the two diff against each other.
                let mut fork = map.clone();
                if k & 1 == 1 {
                    std::mem::swap(&mut map, &mut fork);
                }
                check_diff(&fork.snapshot(), &model, &map.snapshot(), &model);
                forks.push((fork, model.clone()));
            }
        }
        for (snap, m) in &kept {
            check(snap, m);
        }
        for (fork, m) in &forks {
            check(&fork.snapshot(), m);
        }
    }
    check(&map.snapshot(), &model);
});
