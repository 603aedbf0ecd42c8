//! [`Tx::entry`]: std's entry API on a write batch.

use core::fmt;
use core::hash::{BuildHasher, Hash};
use core::mem;

use crate::trie::Target;
use crate::tx::{Count, Tx};

/// A key's place in a batch, vacant or occupied: from [`Tx::entry`].
///
/// As std's `hash_map::Entry`. Writes through it count as the batch's writes:
/// the first one under each node copies that node if the published version
/// still shares it, and reading copies nothing.
pub enum Entry<'t, 'm, K, V, S = crate::DefaultHashBuilder> {
    /// The batch holds the key.
    Occupied(OccupiedEntry<'t, 'm, K, V, S>),
    /// The batch does not hold the key.
    Vacant(VacantEntry<'t, 'm, K, V, S>),
}

/// An entry of a key the batch holds: from [`Entry::Occupied`].
pub struct OccupiedEntry<'t, 'm, K, V, S = crate::DefaultHashBuilder> {
    tx: &'t mut Tx<'m, K, V, S>,
    /// The key given to [`Tx::entry`], equal to the stored one.
    key: K,
    hash: u64,
    /// Whether the entry has handed out its value mutably already: the batch
    /// counts one write per entry, however many times it does.
    written: bool,
}

/// An entry of a key the batch does not hold: from [`Entry::Vacant`].
pub struct VacantEntry<'t, 'm, K, V, S = crate::DefaultHashBuilder> {
    tx: &'t mut Tx<'m, K, V, S>,
    key: K,
    hash: u64,
}

/// Panics where a key found by [`Tx::entry`] is gone, which only an `Eq` or
/// `Hash` that answers differently for the same keys can cause (the entry
/// holds the batch exclusively meanwhile). A panic publishes nothing.
const INCONSISTENT_KEY: &str =
    "snapview: an occupied entry's key is no longer found: its `Hash` or `Eq` is not consistent";

impl<'t, 'm, K, V, S> Entry<'t, 'm, K, V, S> {
    pub(crate) fn new(tx: &'t mut Tx<'m, K, V, S>, key: K, hash: u64, present: bool) -> Self {
        if present {
            Entry::Occupied(OccupiedEntry { tx, key, hash, written: false })
        } else {
            Entry::Vacant(VacantEntry { tx, key, hash })
        }
    }
}

impl<'t, 'm, K, V, S> Entry<'t, 'm, K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
{
    /// Sets the value, inserting the key if vacant; returns the entry, now
    /// occupied (std's `Entry::insert_entry`). The stored key is kept if
    /// there was one.
    pub fn insert_entry(self, value: V) -> OccupiedEntry<'t, 'm, K, V, S> {
        match self {
            Entry::Occupied(mut e) => {
                e.insert(value);
                e
            }
            Entry::Vacant(e) => e.insert_entry(value),
        }
    }

    /// The key: the stored one if occupied, else the one given.
    pub fn key(&self) -> &K {
        match self {
            Entry::Occupied(e) => e.key(),
            Entry::Vacant(e) => e.key(),
        }
    }

    /// The value, inserting `default` first if the key is vacant.
    pub fn or_insert(self, default: V) -> &'t mut V {
        self.or_insert_with(|| default)
    }

    /// The value, inserting `default()` first if the key is vacant.
    pub fn or_insert_with(self, default: impl FnOnce() -> V) -> &'t mut V {
        self.or_insert_with_key(|_| default())
    }

    /// The value, inserting `default(&key)` first if the key is vacant.
    pub fn or_insert_with_key(self, default: impl FnOnce(&K) -> V) -> &'t mut V {
        match self {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                let value = default(e.key());
                e.insert(value)
            }
        }
    }

    /// Runs `f` on the value if the key is occupied; the entry goes on.
    pub fn and_modify(self, f: impl FnOnce(&mut V)) -> Self {
        match self {
            Entry::Occupied(mut e) => {
                f(e.get_mut());
                Entry::Occupied(e)
            }
            vacant @ Entry::Vacant(_) => vacant,
        }
    }
}

impl<'t, K, V, S> Entry<'t, '_, K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone + Default,
    S: BuildHasher,
{
    /// The value, inserting `V::default()` first if the key is vacant.
    pub fn or_default(self) -> &'t mut V {
        self.or_insert_with(V::default)
    }
}

impl<'t, K, V, S> OccupiedEntry<'t, '_, K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
{
    fn stored(&self) -> &(K, V) {
        self.tx.find(self.hash, &self.key).expect(INCONSISTENT_KEY)
    }

    /// The stored key.
    pub fn key(&self) -> &K {
        &self.stored().0
    }

    /// The value.
    pub fn get(&self) -> &V {
        &self.stored().1
    }

    /// The value, for changing in place: a write, as [`Tx::get_mut`].
    pub fn get_mut(&mut self) -> &mut V {
        let value = self.tx.value_mut(self.hash, Target::Key(&self.key), self.count()).expect(INCONSISTENT_KEY);
        // Only once it succeeded: a `Clone` that panics on the way (and that
        // the batch catches) leaves the next access to count the write.
        self.written = true;
        value
    }

    /// The value, borrowed for as long as the entry's batch: a write, as [`Tx::get_mut`].
    pub fn into_mut(self) -> &'t mut V {
        let count = self.count();
        let Self { tx, key, hash, .. } = self;
        tx.value_mut(hash, Target::Key(&key), count).expect(INCONSISTENT_KEY)
    }

    /// How the next mutable access counts: a write the first time only.
    fn count(&self) -> Count {
        if self.written { Count::Counted } else { Count::Write }
    }

    /// Replaces the value; returns the old one. The stored key is kept.
    pub fn insert(&mut self, value: V) -> V {
        mem::replace(self.get_mut(), value)
    }

    /// Removes the entry; returns its value.
    pub fn remove(self) -> V {
        self.remove_entry().1
    }

    /// Removes the entry; returns the stored key and the value.
    pub fn remove_entry(self) -> (K, V) {
        self.tx.remove_hashed(self.hash, &self.key).expect(INCONSISTENT_KEY)
    }
}

impl<K, V, S> VacantEntry<'_, '_, K, V, S> {
    /// The key given to [`Tx::entry`].
    pub fn key(&self) -> &K {
        &self.key
    }

    /// Takes the key back; the batch is unchanged.
    pub fn into_key(self) -> K {
        self.key
    }
}

impl<'t, 'm, K, V, S> VacantEntry<'t, 'm, K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
{
    /// Inserts `value` under the key; returns it, borrowed for as long as the
    /// entry's batch. Hashes the key no second time.
    pub fn insert(self, value: V) -> &'t mut V {
        let Self { tx, key, hash } = self;
        tx.insert_new(key, hash, value)
    }

    /// Inserts `value` under the key; returns the entry, now occupied
    /// (std's `VacantEntry::insert_entry`). Clones the key once: an occupied
    /// entry finds its value again by it, where std's keeps a pointer.
    pub fn insert_entry(self, value: V) -> OccupiedEntry<'t, 'm, K, V, S> {
        let Self { tx, key, hash } = self;
        let found_by = key.clone();
        tx.insert_new(key, hash, value);
        // The insert counted this entry's write.
        OccupiedEntry { tx, key: found_by, hash, written: true }
    }
}

impl<K, V, S> fmt::Debug for Entry<'_, '_, K, V, S>
where
    K: Hash + Eq + Clone + fmt::Debug,
    V: Clone + fmt::Debug,
    S: BuildHasher,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entry::Occupied(e) => f.debug_tuple("Entry").field(e).finish(),
            Entry::Vacant(e) => f.debug_tuple("Entry").field(e).finish(),
        }
    }
}

impl<K, V, S> fmt::Debug for OccupiedEntry<'_, '_, K, V, S>
where
    K: Hash + Eq + Clone + fmt::Debug,
    V: Clone + fmt::Debug,
    S: BuildHasher,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OccupiedEntry").field("key", self.key()).field("value", self.get()).finish()
    }
}

impl<K: fmt::Debug, V, S> fmt::Debug for VacantEntry<'_, '_, K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("VacantEntry").field(&self.key).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::Entry;
    use crate::trie::WrittenPaths;
    use crate::tx::Tx;

    type Hasher = foldhash::fast::FixedState;

    /// The writes a batch counts (its `publish` span's `changes`) when `ops`
    /// runs on a map of the keys 0..100.
    fn changes(ops: impl FnOnce(&mut Tx<'_, u32, u32, Hasher>)) -> usize {
        let hasher = Hasher::with_seed(7);
        let mut load = Tx::new(None, 0, &hasher, WrittenPaths::default(), None);
        load.extend((0..100).map(|k| (k, k)));
        let base = load.into_changes().ok().expect("loaded");
        let mut tx = Tx::new(base.root, base.len, &hasher, WrittenPaths::default(), None);
        ops(&mut tx);
        tx.into_changes().map_or(0, |c| c.changes)
    }

    #[test]
    fn each_entry_counts_one_write_however_often_it_hands_out_its_value() {
        assert_eq!(changes(|tx| *tx.entry(5).and_modify(|v| *v += 1).or_insert(0) += 1), 1);
        assert_eq!(changes(|tx| *tx.entry(500).or_insert(0) += 1), 1, "a vacant insert");
        assert_eq!(
            changes(|tx| {
                if let Entry::Occupied(mut e) = tx.entry(5) {
                    *e.get_mut() += 1;
                    e.insert(9);
                    *e.into_mut() += 1;
                }
            }),
            1
        );
        // Two entries of one key are two writes, as two inserts are.
        assert_eq!(changes(|tx| (0..2).for_each(|_| *tx.entry(5).or_default() += 1)), 2);
        assert_eq!(changes(|tx| _ = tx.get_mut(&5)), 1);
        assert_eq!(changes(|tx| _ = tx.get_mut(&500)), 0, "an absent key");
        assert_eq!(changes(|tx| _ = tx.entry(5).key()), 0, "a look");
        assert_eq!(changes(|tx| *tx.entry(500).insert_entry(1).get_mut() += 1), 1, "insert_entry, vacant");
        assert_eq!(changes(|tx| *tx.entry(5).insert_entry(1).get_mut() += 1), 1, "insert_entry, occupied");
    }

    /// The entry `insert_entry` returns is the key's, as std's: it reads and
    /// writes the value just set, and removing it takes the key out.
    #[test]
    fn insert_entry_returns_the_entry_it_filled() {
        let hasher = Hasher::with_seed(7);
        let mut tx: Tx<'_, String, u32, Hasher> = Tx::new(None, 0, &hasher, WrittenPaths::default(), None);
        let mut vacant = tx.entry("a".to_string()).insert_entry(1);
        assert_eq!((vacant.key().as_str(), *vacant.get()), ("a", 1));
        *vacant.get_mut() += 1;
        assert_eq!(tx.get("a"), Some(&2));
        let occupied = tx.entry("a".to_string()).insert_entry(7);
        assert_eq!(*occupied.get(), 7);
        assert_eq!(occupied.remove_entry(), ("a".to_string(), 7));
        assert_eq!((tx.get("a"), tx.len()), (None, 0));
    }
}
