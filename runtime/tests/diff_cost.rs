//! `diff` and `==` between two versions of one map cost O(written × depth),
//! not O(len): they skip every sub-tree the versions share, and never hash.
//! Counted, not timed: keys and values count their `Hash`, `Eq` and
//! `PartialEq` calls, so a walk that stopped skipping shared sub-trees (or a
//! diff that fell back to looking every key up in the other version) fails
//! here by a factor of a hundred, whatever the machine's speed.

use std::cell::Cell;
use std::hash::{Hash, Hasher};

use snapview::{Change, SnapMap};

thread_local! {
    static HASHES: Cell<u64> = const { Cell::new(0) };
    static KEY_EQS: Cell<u64> = const { Cell::new(0) };
    static VALUE_EQS: Cell<u64> = const { Cell::new(0) };
}

#[derive(Clone, Copy, Debug)]
struct Key(u64);

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        HASHES.set(HASHES.get() + 1);
        self.0.hash(state);
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        KEY_EQS.set(KEY_EQS.get() + 1);
        self.0 == other.0
    }
}

impl Eq for Key {}

#[derive(Clone, Copy, Debug)]
struct Value(u64);

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        VALUE_EQS.set(VALUE_EQS.get() + 1);
        self.0 == other.0
    }
}

/// The calls `f` made: (hashes, key comparisons, value comparisons).
fn counted<R>(f: impl FnOnce() -> R) -> (R, [u64; 3]) {
    for counter in [&HASHES, &KEY_EQS, &VALUE_EQS] {
        counter.set(0);
    }
    let result = f();
    (result, [HASHES.get(), KEY_EQS.get(), VALUE_EQS.get()])
}

const LEN: u64 = 100_000;
/// Generous: each written key's path, ~4 levels of up to 64 slots each.
const BOUND_PER_WRITE: u64 = 64 * 6;

#[test]
fn a_diff_of_ten_writes_in_100k_entries_compares_along_their_paths_only() {
    let map: SnapMap<Key, Value> = (0..LEN).map(|k| (Key(k), Value(k))).collect();
    let old = map.snapshot();
    map.update(|tx| {
        for k in [3, 40_000, 77_777, 99_999] {
            tx.insert(Key(k), Value(k + 1)); // updated
        }
        tx.insert(Key(12), Value(12)); // written, equal: not a change
        for k in [LEN, LEN + 1, LEN + 2] {
            tx.insert(Key(k), Value(k)); // added
        }
        for k in [5, 50_005] {
            tx.remove(&Key(k)); // removed
        }
    });
    let new = map.snapshot();
    let written = 10;

    let (changes, [hashes, key_eqs, value_eqs]) = counted(|| old.diff(&new).collect::<Vec<_>>());
    let (mut added, mut removed, mut updated) = (0, 0, 0);
    for change in &changes {
        match change {
            Change::Added(..) => added += 1,
            Change::Removed(..) => removed += 1,
            Change::Updated { .. } => updated += 1,
        }
    }
    assert_eq!((added, removed, updated), (3, 2, 4), "{changes:?}");
    assert_eq!(hashes, 0, "the structural walk hashes nothing (a look-up walk would hash every key)");
    let bound = written * BOUND_PER_WRITE;
    eprintln!("diff: {key_eqs} key and {value_eqs} value comparisons for {written} writes (bound {bound})");
    assert!(key_eqs <= bound, "{key_eqs} key comparisons for {written} writes in {LEN} entries (bound {bound})");
    assert!(value_eqs <= bound, "{value_eqs} value comparisons for {written} writes (bound {bound})");

    // `==` skips shared sub-trees the same way, and stops at a difference.
    let (equal, [hashes, key_eqs, value_eqs]) = counted(|| old == new);
    assert!(!equal);
    assert_eq!(hashes, 0);
    assert!(key_eqs + value_eqs <= 2 * bound, "== made {key_eqs} + {value_eqs} comparisons");
    let (equal, calls) = counted(|| old == old.clone());
    assert!(equal);
    assert_eq!(calls, [0, 0, 0], "a version equals itself without comparing an entry");
}

/// The versions share nothing with an equal map built apart (another
/// allocation of every node): `diff` falls back to look-ups there, and the
/// counters see it. Guards the guard: the bound above would fail if the
/// walk compared as much as this.
#[test]
fn versions_of_two_maps_compare_entry_by_entry() {
    let a: SnapMap<Key, Value> = (0..LEN).map(|k| (Key(k), Value(k))).collect();
    let b: SnapMap<Key, Value> = (0..LEN).map(|k| (Key(k), Value(k))).collect();
    let (changes, [hashes, key_eqs, _]) = counted(|| a.snapshot().diff(&b.snapshot()).count());
    assert_eq!(changes, 0);
    assert!(hashes + key_eqs >= LEN, "{hashes} hashes and {key_eqs} comparisons for {LEN} entries");
}
