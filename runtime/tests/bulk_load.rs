//! A map loaded in one pass (`collect`, `extend` into an empty map) holds
//! what single inserts of the same entries would, the last value of equal
//! keys kept under the first key (as std's `collect`): at sizes on both sides of the radix sort's threshold (128), with
//! hashes whose leading trie-order bits all agree (one run for the radix
//! passes to leave alone), with full 64-bit collisions, and with every
//! value dropped exactly once.

mod common;

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

use common::{Grouped, Registry, Rng, Tag, lending_map_of};
use snapview::SnapMap;

/// `n` entries with random keys drawn from about `n` values, so roughly a
/// third of them repeat a key; the value is the entry's position.
fn table(n: usize, seed: u64) -> Vec<(u64, usize)> {
    let mut rng = Rng(seed | 1);
    (0..n).map(|i| (rng.below(n as u64 + 1) * 0x9E37_79B9, i)).collect()
}

fn inserted_one_by_one<K, V, S>(entries: &[(K, V)], hasher: S) -> SnapMap<K, V, S>
where
    K: std::hash::Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher + Clone,
{
    let map = SnapMap::with_hasher(hasher);
    for (k, v) in entries {
        map.insert(k.clone(), v.clone());
    }
    map
}

fn check_load<S: BuildHasher + Clone>(entries: &[(u64, usize)], hasher: S) {
    let mut loaded = SnapMap::with_hasher(hasher.clone());
    loaded.extend(entries.iter().copied());
    let model: HashMap<u64, usize> = entries.iter().copied().collect();
    let snapshot = loaded.snapshot();
    assert_eq!(snapshot.len(), model.len());
    assert_eq!(snapshot.iter().len(), model.len());
    for (k, v) in &model {
        assert_eq!(snapshot.get(k), Some(v), "key {k:#x} of {} entries", entries.len());
    }
    assert!(*snapshot == *inserted_one_by_one(entries, hasher).snapshot(), "{} entries", entries.len());
}

#[test]
fn a_load_holds_what_single_inserts_hold_at_every_size() {
    for (n, seed) in [(0, 1), (1, 2), (2, 3), (127, 4), (128, 5), (129, 6), (1000, 7), (5000, 8), (70_000, 9)] {
        check_load(&table(n, seed), foldhash::fast::FixedState::with_seed(n as u64));
    }
}

/// Hashes a `u64` key to the key shifted up by 30 bits: every hash has the
/// same 30 low bits, which the trie reads first, so every trie order has
/// the same 30 leading bits.
#[derive(Clone, Copy, Default)]
struct HighBitsOnly;

struct ShiftedHasher(u64);

impl Hasher for ShiftedHasher {
    fn finish(&self) -> u64 {
        self.0 << 30
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl BuildHasher for HighBitsOnly {
    type Hasher = ShiftedHasher;
    fn build_hasher(&self) -> ShiftedHasher {
        ShiftedHasher(0)
    }
}

#[test]
fn a_load_of_hashes_alike_in_their_first_slots_is_sorted_all_the_same() {
    for (n, seed) in [(200, 10), (20_000, 11)] {
        let entries: Vec<(u64, usize)> = table(n, seed).into_iter().map(|(k, v)| (k >> 20, v)).collect();
        check_load(&entries, HighBitsOnly);
    }
}

#[test]
fn a_load_of_colliding_keys_keeps_them_all_apart() {
    let mut rng = Rng(12);
    // Groups of three keys share a 64-bit hash; a third of the entries repeat a key.
    let entries: Vec<(Grouped, usize)> = (0..3000).map(|i| (Grouped(rng.below(2000)), i)).collect();
    let hasher = BuildHasherDefault::<std::hash::DefaultHasher>::default();
    let mut loaded: SnapMap<Grouped, usize, _> = SnapMap::with_hasher(hasher.clone());
    loaded.extend(entries.iter().copied());
    let model: HashMap<Grouped, usize> = entries.iter().copied().collect();
    let snapshot = loaded.snapshot();
    assert_eq!(snapshot.len(), model.len());
    for (k, v) in &model {
        assert_eq!(snapshot.get(k), Some(v), "{k:?}");
    }
    assert!(*snapshot == *inserted_one_by_one(&entries, hasher).snapshot());
}

#[test]
fn a_load_drops_each_superseded_value_once_and_keeps_the_rest() {
    let registry = Registry::new();
    let keys = table(5000, 13);
    let entries: Vec<(u64, Tag)> = keys.iter().map(|&(k, _)| (k, Tag::new(&registry))).collect();
    let last: HashMap<u64, u64> = entries.iter().map(|(k, tag)| (*k, tag.id())).collect();
    let map: SnapMap<u64, Tag> = lending_map_of(entries);
    assert_eq!(map.len(), last.len());
    assert_eq!(registry.live_count(), last.len(), "the superseded values are gone");
    let snapshot = map.snapshot();
    for (k, id) in &last {
        assert_eq!(snapshot.get(k).map(Tag::id), Some(*id), "the last value of {k:#x}");
    }
    drop((map, snapshot));
    assert_eq!(registry.live_count(), 0);
}

/// A key equal to another of the same `id` whatever its `given` mark, so
/// that a test can tell which of equal keys a map stored.
#[derive(Clone, Copy, Debug)]
struct Marked {
    id: u64,
    given: usize,
}

impl PartialEq for Marked {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for Marked {}

impl std::hash::Hash for Marked {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

#[test]
fn a_load_keeps_the_first_of_equal_keys_with_the_last_value_as_std_does() {
    for (n, seed) in [(2, 21), (127, 22), (129, 23), (5000, 24)] {
        let entries: Vec<(Marked, usize)> =
            table(n, seed).into_iter().map(|(id, given)| (Marked { id, given }, given)).collect();
        let model: HashMap<Marked, usize> = entries.iter().copied().collect();
        let hasher = foldhash::fast::FixedState::with_seed(seed);
        let mut loaded = SnapMap::with_hasher(hasher.clone());
        loaded.extend(entries.iter().copied());
        let one_by_one = inserted_one_by_one(&entries, hasher);
        let (loaded, one_by_one) = (loaded.snapshot(), one_by_one.snapshot());
        assert_eq!(loaded.len(), model.len());
        for (key, value) in &model {
            let (stored, got) = loaded.get_key_value(key).expect("every key is loaded");
            assert_eq!((stored.given, *got), (key.given, *value), "id {:#x} of {n} entries", key.id);
            assert_eq!(one_by_one.get_key_value(key).map(|(k, _)| k.given), Some(key.given));
        }
    }
}
