//! The hash trie (CHAMP layout) as safe algorithms over [`NodeRef`].
//!
//! A node at depth `d` looks at bits `6d..6d+6` of the key's 64-bit hash
//! ("shift" = `6d`) and has 64 slots. A slot holds nothing, one inline entry
//! (bit set in `datamap`), or a child node (bit set in `nodemap`); entries and
//! children sit in two dense arrays in slot order. Once the hash is used up
//! (shift >= 64) a node is a *collision node*: a plain list of the entries
//! that share the whole hash.
//!
//! **Canonical form.** A slot is an entry if exactly one key of the map falls
//! in it and a child if two or more do; removals collapse a child left with
//! one entry back into its parent. So the shape of a trie depends only on its
//! set of keys (and the hasher), never on the order of operations, which lets
//! [`diff`](crate::diff) and equality skip whole shared or equal sub-trees.
//!
//! **Copy-on-write.** Writers descend with [`NodeRef::make_mut`], which copies a
//! node only if another version still shares it; all user code (`Hash`, `Eq`,
//! `Clone`) runs before the step that changes a node, so a panic leaves the
//! trie as it was (possibly with some nodes copied, which changes nothing).

use core::borrow::Borrow;
use core::hash::{BuildHasher, Hash};
use core::mem;

use crate::raw::{Builder, Drain, NodeRef, rebuild};

/// Hash bits consumed per level: 64 slots per node.
pub(crate) const BITS: u32 = 6;
const MASK: u64 = (1 << BITS) - 1;
/// From this shift on, the hash is exhausted and nodes are collision nodes.
pub(crate) const HASH_BITS: u32 = 64;
/// The deepest a trie can be: 11 levels of 6 bits (the last uses 4) and a
/// collision level.
pub(crate) const MAX_DEPTH: usize = HASH_BITS.div_ceil(BITS) as usize + 1;

/// The slot's bit in a node's bitmaps.
#[inline(always)]
fn slot_bit(hash: u64, shift: u32) -> u64 {
    1 << ((hash >> shift) & MASK)
}

/// The position of the item for `bit` in the dense array of `map`.
#[inline(always)]
fn index(map: u64, bit: u64) -> usize {
    (map & (bit - 1)).count_ones() as usize
}

/// Whether a node at `shift` is a collision node.
#[inline(always)]
pub(crate) fn is_collision_level(shift: u32) -> bool {
    shift >= HASH_BITS
}

pub(crate) use crate::raw::Slot;

/// The contents of the slot for `bit` in a trie (not collision) node.
#[inline(always)]
pub(crate) fn slot<K, V>(node: &NodeRef<K, V>, bit: u64) -> Slot<'_, K, V> {
    node.slot(bit)
}

/// Looks `key` up; `hash` is its hash under the trie's hasher.
#[inline]
pub(crate) fn get<'a, K, V, Q>(root: &'a NodeRef<K, V>, hash: u64, key: &Q) -> Option<&'a (K, V)>
where
    K: Borrow<Q>,
    Q: Eq + ?Sized,
{
    let mut node = root;
    let mut shift = 0;
    loop {
        if is_collision_level(shift) {
            return node.entries().iter().find(|(k, _)| k.borrow() == key);
        }
        let bit = slot_bit(hash, shift);
        node.prefetch_slot(bit.trailing_zeros());
        match slot(node, bit) {
            Slot::Entry(entry) => return (entry.0.borrow() == key).then_some(entry),
            Slot::Child(child) => node = child,
            Slot::Empty => return None,
        }
        shift += BITS;
    }
}

/// A root holding one entry.
pub(crate) fn singleton<K, V>(hash: u64, key: K, value: V) -> NodeRef<K, V> {
    let mut b = Builder::trie(slot_bit(hash, 0), 0);
    b.push_entry((key, value));
    b.finish()
}

/// Inserts or replaces; returns the value replaced.
///
/// If a `Hash`, `Eq` or `Clone` panics, `*node` still holds the same map.
pub(crate) fn insert<K, V, S>(node: &mut NodeRef<K, V>, hash: u64, key: K, value: V, hasher: &S) -> Option<V>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
{
    insert_at(node, hash, 0, key, value, hasher)
}

fn insert_at<K, V, S>(node: &mut NodeRef<K, V>, hash: u64, shift: u32, key: K, value: V, hasher: &S) -> Option<V>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
{
    if is_collision_level(shift) {
        return insert_collision(node, key, value);
    }
    let bit = slot_bit(hash, shift);
    let (dm, nm) = (node.datamap(), node.nodemap());
    match slot(node, bit) {
        Slot::Entry(existing) if existing.0 == key => {
            let (entries, _) = node.make_mut();
            Some(mem::replace(&mut entries[index(dm, bit)].1, value))
        }
        Slot::Entry(existing) => {
            // Hash the key already there before touching anything: it may panic.
            let existing_hash = hasher.hash_one(&existing.0);
            let (at, child_at) = (index(dm, bit), index(nm, bit));
            rebuild(node, |from| {
                let mut to = Builder::trie(dm & !bit, nm | bit);
                to.take_entries(from, at);
                let existing = from.next_entry();
                to.take_entries(from, from.entries_left());
                to.take_children(from, child_at);
                to.push_child(merge(existing, existing_hash, (key, value), hash, shift + BITS));
                to.take_children(from, from.children_left());
                to.finish()
            });
            None
        }
        Slot::Child(_) => {
            let (_, children) = node.make_mut();
            insert_at(&mut children[index(nm, bit)], hash, shift + BITS, key, value, hasher)
        }
        Slot::Empty => {
            let at = index(dm, bit);
            rebuild(node, |from| {
                let mut to = Builder::trie(dm | bit, nm);
                to.take_entries(from, at);
                to.push_entry((key, value));
                to.take_entries(from, from.entries_left());
                to.take_children(from, from.children_left());
                to.finish()
            });
            None
        }
    }
}

fn insert_collision<K, V>(node: &mut NodeRef<K, V>, key: K, value: V) -> Option<V>
where
    K: Eq + Clone,
    V: Clone,
{
    if let Some(at) = node.entries().iter().position(|(k, _)| *k == key) {
        let (entries, _) = node.make_mut();
        return Some(mem::replace(&mut entries[at].1, value));
    }
    let len = node.entries().len();
    rebuild(node, |from| {
        let mut to = Builder::collision(len + 1);
        to.take_entries(from, len);
        to.push_entry((key, value));
        to.finish()
    });
    None
}

/// The smallest sub-tree holding two entries of different keys. Runs no user code.
fn merge<K: Clone, V: Clone>(a: (K, V), hash_a: u64, b: (K, V), hash_b: u64, shift: u32) -> NodeRef<K, V> {
    if is_collision_level(shift) {
        let mut to = Builder::collision(2);
        to.push_entry(a);
        to.push_entry(b);
        return to.finish();
    }
    let (bit_a, bit_b) = (slot_bit(hash_a, shift), slot_bit(hash_b, shift));
    if bit_a == bit_b {
        let mut to = Builder::trie(0, bit_a);
        to.push_child(merge(a, hash_a, b, hash_b, shift + BITS));
        return to.finish();
    }
    let mut to = Builder::trie(bit_a | bit_b, 0);
    let (first, second) = if bit_a < bit_b { (a, b) } else { (b, a) };
    to.push_entry(first);
    to.push_entry(second);
    to.finish()
}

/// Removes `key`, which the caller has found present; returns its entry.
///
/// Leaves the trie canonical: a child reduced to a single entry is folded back
/// into its parent. A root may end up empty; the caller drops it then.
pub(crate) fn remove<K, V, Q>(node: &mut NodeRef<K, V>, hash: u64, key: &Q) -> Option<(K, V)>
where
    K: Borrow<Q> + Clone,
    V: Clone,
    Q: Eq + ?Sized,
{
    remove_at(node, hash, 0, key)
}

fn remove_at<K, V, Q>(node: &mut NodeRef<K, V>, hash: u64, shift: u32, key: &Q) -> Option<(K, V)>
where
    K: Borrow<Q> + Clone,
    V: Clone,
    Q: Eq + ?Sized,
{
    if is_collision_level(shift) {
        let at = node.entries().iter().position(|(k, _)| k.borrow() == key)?;
        let len = node.entries().len();
        let mut removed = None;
        rebuild(node, |from| {
            let mut to = Builder::collision(len - 1);
            to.take_entries(from, at);
            removed = Some(from.next_entry());
            to.take_entries(from, from.entries_left());
            to.finish()
        });
        return removed;
    }
    let bit = slot_bit(hash, shift);
    let (dm, nm) = (node.datamap(), node.nodemap());
    match slot(node, bit) {
        Slot::Entry(entry) if entry.0.borrow() == key => {
            let at = index(dm, bit);
            let mut removed = None;
            rebuild(node, |from| {
                let mut to = Builder::trie(dm & !bit, nm);
                to.take_entries(from, at);
                removed = Some(from.next_entry());
                to.take_entries(from, from.entries_left());
                to.take_children(from, from.children_left());
                to.finish()
            });
            removed
        }
        Slot::Entry(_) | Slot::Empty => None,
        Slot::Child(_) => {
            let child_at = index(nm, bit);
            let (_, children) = node.make_mut();
            let removed = remove_at(&mut children[child_at], hash, shift + BITS, key)?;
            let child = &children[child_at];
            if child.entries().len() == 1 && child.children().is_empty() {
                // The child and this node are both fresh, unshared copies now:
                // folding moves values only and runs no user code.
                fold_child(node, bit);
            }
            Some(removed)
        }
    }
}

/// Replaces the single-entry child at `bit` by its entry, inline.
fn fold_child<K: Clone, V: Clone>(node: &mut NodeRef<K, V>, bit: u64) {
    let (dm, nm) = (node.datamap(), node.nodemap());
    let (entry_at, child_at) = (index(dm, bit), index(nm, bit));
    rebuild(node, |from| {
        let mut to = Builder::trie(dm | bit, nm & !bit);
        to.take_children(from, child_at);
        let mut child = Drain::new(from.next_child());
        let entry = child.next_entry();
        drop(child);
        to.take_children(from, from.children_left());
        to.take_entries(from, entry_at);
        to.push_entry(entry);
        to.take_entries(from, from.entries_left());
        to.finish()
    });
}

/// Makes `spare`, an unshared node that once equalled an older version of
/// `current`, equal to `current` again, or drops it and shares `current`.
///
/// The spare already holds a count on each of its children, so only the slots
/// where the two differ cost a count change: a write then mutates the result
/// in place instead of copying `current` (one increment per child) and later
/// freeing the old root (one decrement per child). If a `Clone` panics, the
/// half-updated spare is dropped during unwinding; `current` is untouched.
pub(crate) fn recycle<K: Clone, V: Clone>(mut spare: NodeRef<K, V>, current: &NodeRef<K, V>) -> Option<NodeRef<K, V>> {
    let same_shape = spare.datamap() == current.datamap()
        && spare.nodemap() == current.nodemap()
        && spare.entries().len() == current.entries().len();
    let Some((entries, children)) = spare.get_mut().filter(|_| same_shape) else {
        return Some(current.clone());
    };
    for (mine, theirs) in children.iter_mut().zip(current.children()) {
        if !mine.ptr_eq(theirs) {
            *mine = theirs.clone();
        }
    }
    for (mine, theirs) in entries.iter_mut().zip(current.entries()) {
        *mine = theirs.clone();
    }
    Some(spare)
}

/// Structural equality, valid for two tries built with the same hasher
/// (canonical form: equal key sets have equal shapes). Skips shared sub-trees.
pub(crate) fn nodes_equal<K: Eq, V: PartialEq>(a: &NodeRef<K, V>, b: &NodeRef<K, V>, shift: u32) -> bool {
    if a.ptr_eq(b) {
        return true;
    }
    if is_collision_level(shift) {
        let (ea, eb) = (a.entries(), b.entries());
        return ea.len() == eb.len() && ea.iter().all(|(k, v)| eb.iter().any(|(k2, v2)| k == k2 && v == v2));
    }
    a.datamap() == b.datamap()
        && a.nodemap() == b.nodemap()
        && a.entries().iter().zip(b.entries()).all(|((k, v), (k2, v2))| k == k2 && v == v2)
        && a.children().iter().zip(b.children()).all(|(x, y)| nodes_equal(x, y, shift + BITS))
}

#[cfg(all(test, not(snapview_loom)))]
mod tests {
    use super::*;
    use core::hash::{BuildHasherDefault, Hasher};

    /// A hasher that returns the key itself: tests place keys in chosen slots.
    #[derive(Default)]
    struct Identity(u64);
    impl Hasher for Identity {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, _: &[u8]) {
            unreachable!("only u64 keys")
        }
        fn write_u64(&mut self, n: u64) {
            self.0 = n;
        }
    }
    type Id = BuildHasherDefault<Identity>;

    /// A key whose hash is `hash`, told apart by `tag`.
    #[derive(Clone, Debug, PartialEq, Eq)]
    struct Colliding {
        hash: u64,
        tag: u32,
    }
    impl Hash for Colliding {
        fn hash<H: Hasher>(&self, h: &mut H) {
            h.write_u64(self.hash);
        }
    }

    fn build<K: Hash + Eq + Clone>(keys: impl IntoIterator<Item = K>) -> NodeRef<K, u32> {
        let s = Id::default();
        let mut root: Option<NodeRef<K, u32>> = None;
        for (i, k) in keys.into_iter().enumerate() {
            let h = s.hash_one(&k);
            match &mut root {
                None => root = Some(singleton(h, k, i as u32)),
                Some(r) => {
                    insert(r, h, k, i as u32, &s);
                }
            }
        }
        root.expect("at least one key")
    }

    fn lookup<K: Hash + Eq>(root: &NodeRef<K, u32>, k: &K) -> Option<u32> {
        get(root, Id::default().hash_one(k), k).map(|e| e.1)
    }

    fn depth<K, V>(n: &NodeRef<K, V>) -> usize {
        1 + n.children().iter().map(depth).max().unwrap_or(0)
    }

    #[test]
    fn keys_differing_in_the_first_six_bits_sit_inline_in_the_root() {
        let root = build(0u64..64);
        assert_eq!(root.datamap(), u64::MAX);
        assert_eq!(root.nodemap(), 0);
        assert_eq!(root.entries().len(), 64);
        for k in 0..64 {
            assert_eq!(lookup(&root, &k), Some(k as u32));
        }
        assert_eq!(lookup(&root, &64), None, "slot 0 holds key 0, not 64");
    }

    #[test]
    fn keys_sharing_a_slot_move_down_into_a_child() {
        let root = build([1u64, 1 + 64, 1 + 128]);
        assert_eq!(root.datamap(), 0);
        assert_eq!(root.nodemap(), 1 << 1);
        let child = &root.children()[0];
        assert_eq!(child.datamap(), (1 << 0) | (1 << 1) | (1 << 2));
        for k in [1, 65, 129] {
            assert!(lookup(&root, &k).is_some());
        }
    }

    #[test]
    fn full_hash_collisions_end_in_a_collision_node() {
        let keys: Vec<_> = (0..5).map(|tag| Colliding { hash: 42, tag }).collect();
        let root = build(keys.clone());
        assert_eq!(depth(&root), MAX_DEPTH, "a chain down to the collision level");
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(lookup(&root, k), Some(i as u32));
        }
        assert_eq!(lookup(&root, &Colliding { hash: 42, tag: 9 }), None);
        let mut root = root;
        let h = Id::default().hash_one(&keys[0]);
        for k in &keys[..4] {
            assert_eq!(remove(&mut root, h, k).map(|e| e.0), Some(k.clone()));
        }
        assert_eq!(depth(&root), 1, "the last one folds back into the root");
        assert_eq!(root.entries().len(), 1);
    }

    #[test]
    fn removal_restores_the_shape_of_never_having_inserted() {
        let s = Id::default();
        let base: Vec<u64> = (0..300).map(|i| i * 7919 % 4093).collect();
        let extra: Vec<u64> = (0..300).map(|i| 5000 + i * 64).collect();
        let expected = build(base.iter().copied());
        let mut root = build(base.iter().chain(&extra).copied());
        for k in &extra {
            assert!(remove(&mut root, s.hash_one(k), k).is_some());
        }
        // Same keys, same values is not required by shape; compare bitmaps and keys.
        fn same_shape(a: &NodeRef<u64, u32>, b: &NodeRef<u64, u32>) -> bool {
            a.datamap() == b.datamap()
                && a.nodemap() == b.nodemap()
                && a.entries().iter().zip(b.entries()).all(|(x, y)| x.0 == y.0)
                && a.children().iter().zip(b.children()).all(|(x, y)| same_shape(x, y))
        }
        assert!(same_shape(&root, &expected));
    }

    #[test]
    fn insertion_order_does_not_change_the_shape() {
        let keys: Vec<u64> = (0..2000).map(|i| (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)).collect();
        let forward = build(keys.iter().copied());
        let backward = build(keys.iter().rev().copied());
        // Values differ (insertion index); compare the shape through keys only.
        fn keys_shape(a: &NodeRef<u64, u32>, b: &NodeRef<u64, u32>) -> bool {
            a.datamap() == b.datamap()
                && a.nodemap() == b.nodemap()
                && a.entries().iter().zip(b.entries()).all(|(x, y)| x.0 == y.0)
                && a.children().iter().zip(b.children()).all(|(x, y)| keys_shape(x, y))
        }
        assert!(keys_shape(&forward, &backward));
    }

    #[test]
    fn writing_to_a_shared_trie_copies_only_the_path() {
        let s = Id::default();
        let old = build(0u64..4096);
        let mut new = old.clone();
        insert(&mut new, s.hash_one(5000u64), 5000u64, 1, &s);
        assert!(!new.ptr_eq(&old));
        let shared = old.children().iter().zip(new.children()).filter(|(a, b)| a.ptr_eq(b)).count();
        assert_eq!(shared, old.children().len() - 1, "all but one child still shared");
        assert_eq!(lookup(&old, &5000), None, "the old version is unchanged");
        assert_eq!(lookup(&new, &5000), Some(1));
    }

    #[test]
    fn a_recycled_spare_equals_the_current_root_and_owns_its_counts() {
        let s = Id::default();
        let v1 = build((0u64..4096).map(|i| i * 3));
        let mut v2 = v1.clone();
        insert(&mut v2, s.hash_one(7u64), 7u64, 99, &s);
        // `v1` plays the old version nobody holds any more: unique again once `v2` is built.
        let spare = recycle(v1, &v2).expect("a root");
        assert!(!spare.ptr_eq(&v2));
        assert!(nodes_equal(&spare, &v2, 0));
        assert!(spare.children().iter().zip(v2.children()).all(|(a, b)| a.ptr_eq(b)), "children shared, not copied");
        assert_eq!(get(&spare, s.hash_one(7u64), &7u64).map(|e| e.1), Some(99));
        // A shared or differently shaped spare is not reused.
        let other = build([1u64]);
        assert!(recycle(other, &v2).expect("a root").ptr_eq(&v2));
        let held = spare.clone();
        assert!(recycle(spare, &v2).expect("a root").ptr_eq(&v2));
        drop(held);
    }

    #[test]
    fn equality_ignores_collision_order_and_sees_value_changes() {
        let a = build((0..4).map(|tag| Colliding { hash: 7, tag }));
        let b = build((0..4).rev().map(|tag| Colliding { hash: 7, tag }));
        // Values are insertion indices, so they differ: not equal.
        assert!(!nodes_equal(&a, &b, 0));
        let c = build((0..4).map(|tag| Colliding { hash: 7, tag }));
        assert!(nodes_equal(&a, &c, 0));
    }
}
