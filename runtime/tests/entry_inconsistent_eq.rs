//! An `Eq` that answers differently for the same keys can make `Tx::entry`
//! miss a key that the insert of its vacant entry then finds. The entry must
//! not hand out another key's value for it (before session 40 it gave the
//! last value of the collision node, a different key's, in release builds):
//! it panics, naming the cause, and the batch publishes nothing.

use std::cell::Cell;
use std::hash::{Hash, Hasher};
use std::panic::{AssertUnwindSafe, catch_unwind};

use snapview::SnapMap;

thread_local! {
    /// How many more comparisons answer "different" whatever the keys.
    static LYING: Cell<u32> = const { Cell::new(0) };
}

/// Every key hashes alike: they share one collision node.
#[derive(Clone, Debug)]
struct Key(u32);

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        0u8.hash(state);
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        match LYING.get() {
            0 => self.0 == other.0,
            n => {
                LYING.set(n - 1);
                false
            }
        }
    }
}

impl Eq for Key {}

#[test]
fn a_vacant_entry_whose_key_the_insert_finds_panics() {
    let map: SnapMap<Key, u32> = (0..3).map(|k| (Key(k), k * 100)).collect();
    let before = map.snapshot();
    let unwound = catch_unwind(AssertUnwindSafe(|| {
        map.update(|tx| {
            // `entry` compares the key with each of the three: all "different".
            LYING.set(3);
            let handed_out = tx.entry(Key(0)).or_insert(7);
            panic!("or_insert gave a value for a key it found vacant: {handed_out}");
        })
    }));
    LYING.set(0);
    let payload = unwound.expect_err("the batch panics");
    let message = payload.downcast_ref::<String>().cloned().or(payload.downcast_ref::<&str>().map(|s| s.to_string()));
    let message = message.unwrap_or_default();
    assert!(message.contains("not consistent"), "{message}");
    assert!(snapview::Snapshot::ptr_eq(&before, &map.snapshot()), "the batch published a version");
    assert_eq!(map.snapshot().get(&Key(0)), Some(&0));
    assert_eq!(map.snapshot().get(&Key(2)), Some(&200));
}
