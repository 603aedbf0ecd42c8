//! A batch that catches a panic from a destructor, or from a `Clone` on an
//! entry's way to being written, and goes on, publishes exactly what it
//! holds: its length counts what it reaches, and a write that took effect is
//! never taken for no write (which would publish nothing and lose it).
//! Until session 30 four such paths got the bookkeeping wrong (a review's
//! findings): a one-pass load, `clear`, an entry's retried `get_mut`, and an
//! `insert` whose key was dropped after replacing the value.

mod common;

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};

use common::{PLANNED_PANIC, quietly};
use snapview::{Entry, SnapMap};

/// A value that panics when dropped if `boom`; its clones do not.
#[derive(Debug, PartialEq)]
struct Value {
    n: u64,
    boom: bool,
}

impl Value {
    fn new(n: u64) -> Self {
        Self { n, boom: false }
    }

    fn bomb(n: u64) -> Self {
        Self { n, boom: true }
    }
}

impl Clone for Value {
    fn clone(&self) -> Self {
        Self::new(self.n)
    }
}

impl Drop for Value {
    fn drop(&mut self) {
        if self.boom {
            std::panic::panic_any(PLANNED_PANIC);
        }
    }
}

/// What a published version holds: its length agrees with what it reaches.
fn contents(map: &SnapMap<u64, Value>) -> Vec<(u64, u64)> {
    let snapshot = map.snapshot();
    let mut pairs: Vec<(u64, u64)> = snapshot.iter().map(|(k, v)| (*k, v.n)).collect();
    assert_eq!(snapshot.len(), pairs.len(), "the published length counts what the version holds");
    pairs.sort_unstable();
    pairs
}

#[test]
fn a_load_whose_superseded_value_panics_as_it_drops_keeps_its_entries_and_length() {
    let map: SnapMap<u64, Value> = SnapMap::new();
    map.update(|tx| {
        // Key 1 given twice: the first pair is superseded, dropped after the build.
        let load = quietly(|| tx.extend([(1, Value::bomb(10)), (2, Value::new(20)), (1, Value::new(11))]));
        assert!(load.is_err(), "the superseded value's drop panicked");
        assert_eq!(tx.len(), 2);
    });
    assert_eq!(contents(&map), [(1, 11), (2, 20)]);
}

#[test]
fn a_clear_whose_value_panics_as_it_drops_leaves_the_batch_empty() {
    let map: SnapMap<u64, Value> = SnapMap::new();
    map.insert(7, Value::new(70));
    let version = map.version();
    map.update(|tx| {
        // The batch's own copy holds the value, so clearing drops it here.
        tx.insert(8, Value::bomb(80));
        assert!(quietly(|| tx.clear()).is_err(), "the value's drop panicked");
        assert_eq!(tx.len(), 0);
    });
    assert_eq!(map.version(), version + 1);
    assert_eq!(contents(&map), []);
}

#[test]
fn an_insert_whose_unused_key_panics_as_it_drops_still_counts_as_a_write() {
    /// A key compared by `id` alone that panics when dropped if `boom`.
    #[derive(Debug)]
    struct Key {
        id: u64,
        boom: bool,
    }
    impl Clone for Key {
        fn clone(&self) -> Self {
            Self { id: self.id, boom: false }
        }
    }
    impl PartialEq for Key {
        fn eq(&self, other: &Self) -> bool {
            self.id == other.id
        }
    }
    impl Eq for Key {}
    impl Hash for Key {
        fn hash<H: Hasher>(&self, state: &mut H) {
            self.id.hash(state);
        }
    }
    impl Drop for Key {
        fn drop(&mut self) {
            if self.boom {
                std::panic::panic_any(PLANNED_PANIC);
            }
        }
    }

    let map: SnapMap<Key, u64> = SnapMap::new();
    map.insert(Key { id: 1, boom: false }, 10);
    let version = map.version();
    map.update(|tx| {
        // The stored key is kept; the one given is dropped after the value
        // is replaced, and panics.
        assert!(quietly(|| tx.insert(Key { id: 1, boom: true }, 11)).is_err());
        assert_eq!(tx.get(&Key { id: 1, boom: false }), Some(&11));
    });
    assert_eq!(map.version(), version + 1, "the replace was published");
    assert_eq!(map.snapshot().get(&Key { id: 1, boom: false }), Some(&11));
}

#[test]
fn an_entry_whose_first_get_mut_panicked_counts_its_retry_as_a_write() {
    /// Armed: the next clone of a `Cloned` panics.
    static ARMED: AtomicBool = AtomicBool::new(false);
    #[derive(Debug, PartialEq)]
    struct Cloned(u64);
    impl Clone for Cloned {
        fn clone(&self) -> Self {
            if ARMED.swap(false, Ordering::Relaxed) {
                std::panic::panic_any(PLANNED_PANIC);
            }
            Self(self.0)
        }
    }

    let map: SnapMap<u64, Cloned> = SnapMap::new();
    map.insert(1, Cloned(10));
    let version = map.version();
    map.update(|tx| {
        let Entry::Occupied(mut entry) = tx.entry(1) else { panic!("key 1 is present") };
        // The write copies the node that holds the entry, which clones it.
        ARMED.store(true, Ordering::Relaxed);
        assert!(quietly(|| entry.get_mut().0 = 11).is_err(), "the clone panicked");
        entry.get_mut().0 = 12;
    });
    assert_eq!(map.version(), version + 1, "the retried write was published");
    assert_eq!(map.snapshot().get(&1), Some(&Cloned(12)));
}
