//! One published version of a map, and the two ways to hold it:
//! [`Snapshot`] (owned, `'static`) and [`ReadGuard`] (borrowed, cheaper).

use core::borrow::Borrow;
use core::fmt;
use core::hash::{BuildHasher, Hash};
use core::ops::{Deref, Index};
use std::sync::Arc;

use crate::diff::Diff;
use crate::hooks::MapHook;
use crate::iter::{Iter, Keys, Values};
use crate::raw::NodeRef;
use crate::sync::{AtomicBool, Ordering};
use crate::trie::{self, LookupPlan};

/// What all versions of one map share.
///
/// Its address identifies the map: versions sharing one `Meta` were built with
/// the same hasher, so their tries are comparable shape for shape.
pub(crate) struct Meta {
    pub(crate) name: Box<str>,
    pub(crate) hook: MapHook,
    /// Set once the map has been cloned: the maps sharing this `Meta` may
    /// restore each other's versions, which must then be settled at their
    /// publish to be shared rather than copied (`defers_settling` in
    /// map.rs). A setting, not a protocol: set and read under the writer
    /// locks of the maps involved.
    pub(crate) cloned: crate::sync::unmodelled::AtomicBool,
}

impl Meta {
    pub(crate) fn new(name: Box<str>, hook: MapHook) -> Self {
        Self { name, hook, cloned: crate::sync::unmodelled::AtomicBool::new(false) }
    }
}

/// The read-only contents of one published version of a [`SnapMap`](crate::SnapMap).
///
/// You reach it through a [`Snapshot`] or a [`ReadGuard`], which dereference to
/// it; it never changes once published.
pub struct View<K, V, S = crate::DefaultHashBuilder> {
    root: Option<NodeRef<K, V>>,
    len: usize,
    /// How lookups walk `root`, made from `len` once, at publication.
    plan: LookupPlan,
    version: u64,
    hasher: S,
    meta: Arc<Meta>,
    /// Whether the writer that published this version is done settling its
    /// lending copies (docs/design.md, "Lending copies"), which it does after
    /// publishing. Readers never look at that state, but a writer that
    /// copies these nodes does: a restore into another map (a clone) must not
    /// start from a version whose settling may still be under way.
    settled: AtomicBool,
}

impl<K, V, S> View<K, V, S> {
    pub(crate) fn new(root: Option<NodeRef<K, V>>, len: usize, version: u64, hasher: S, meta: Arc<Meta>) -> Self {
        let settled = AtomicBool::new(true);
        Self { root, len, plan: LookupPlan::for_len(len), version, hasher, meta, settled }
    }

    /// A version published before its writer settles it: see
    /// [`mark_settled`](Self::mark_settled).
    pub(crate) fn unsettled(self) -> Self {
        self.settled.store(false, Ordering::Relaxed);
        self
    }

    /// Called by the writer once it has settled this version's copies.
    pub(crate) fn mark_settled(&self) {
        // Release: pairs with the Acquire in `is_settled`, so that a writer
        // of another map that then copies these nodes sees the lending state
        // that the settling left.
        self.settled.store(true, Ordering::Release);
    }

    /// Whether a writer may copy this version's nodes: its own writer is done
    /// settling them.
    pub(crate) fn is_settled(&self) -> bool {
        // Acquire: pairs with the Release in `mark_settled`.
        self.settled.load(Ordering::Acquire)
    }

    pub(crate) fn into_root(self) -> Option<NodeRef<K, V>> {
        self.root
    }

    pub(crate) fn root(&self) -> Option<&NodeRef<K, V>> {
        self.root.as_ref()
    }

    pub(crate) fn meta(&self) -> &Arc<Meta> {
        &self.meta
    }

    pub(crate) fn same_map(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.meta, &other.meta)
    }

    /// The number of entries.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no entries.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The version number: 0 for a new map, +1 for every published write or batch.
    #[inline]
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The name of the map this version belongs to.
    pub fn name(&self) -> &str {
        &self.meta.name
    }

    /// The map's hasher.
    pub fn hasher(&self) -> &S {
        &self.hasher
    }

    /// All entries, as `(&K, &V)`, in unspecified (but, for one version, fixed) order.
    pub fn iter(&self) -> Iter<'_, K, V> {
        Iter::with_hook(self.root.as_ref(), self.len, self.meta.hook.iteration(self.version, self.len))
    }

    /// [`iter`](Self::iter) for the crate's own walks, which instrumentation does not count.
    pub(crate) fn iter_unwatched(&self) -> Iter<'_, K, V> {
        Iter::new(self.root.as_ref(), self.len)
    }

    /// All keys.
    pub fn keys(&self) -> Keys<'_, K, V> {
        Keys::new(self.iter())
    }

    /// All values.
    pub fn values(&self) -> Values<'_, K, V> {
        Values::new(self.iter())
    }

    /// What changed from `self` (the older) to `newer`.
    ///
    /// For two versions of the same map this costs O(written × depth), where
    /// `written` counts the keys written between them, changes or not (a
    /// value stored again equal, a key inserted then removed, `clear` then
    /// the same entries: the copies they made are compared entry by entry,
    /// [`Tx::assign`](crate::Tx::assign) writes only what differs): the
    /// walk skips every sub-tree the versions still share (plus, at most, a
    /// scan of 64 × 64 child pointers: the writer keeps private copies of the
    /// root's children, which it compares by their children). For versions of
    /// two different maps it costs O(len) look-ups; a map's clone
    /// ([`SnapMap::clone`](crate::SnapMap)) counts as the same map here, and
    /// diffs with it by structure, while two maps built with one fixed
    /// hasher seed still count as different.
    ///
    /// Either order works: `newer` need not be the later version, and
    /// `b.diff(&a)` is `a.diff(&b)` with `Added` and `Removed` swapped and
    /// each `Updated`'s `old` and `new` swapped. "Newer" names the argument.
    ///
    /// Keys whose hashes collide in all 64 bits sit in one collision node,
    /// which the diff compares as a set: O(m²) `Eq` calls for a node of m
    /// keys that a write copied (a look-up there costs O(m)). Only a `Hash`
    /// that leaves out part of what `Eq` compares makes such nodes large.
    ///
    /// A pair of entries the walk compares (because the write copied the
    /// node that holds them) is compared with `!=`, so a value that is not
    /// equal to itself (`f64::NAN`) shows as `Updated` when a write copied
    /// its node, and not when its sub-tree is shared: as for `View`'s
    /// `PartialEq`, the answer for such values depends on what the versions
    /// share.
    ///
    /// If `K::eq` or `V::eq` panics in a `next()`, that diff must not be
    /// resumed: the walk had already moved past the pair, and later items
    /// may report that key wrongly (as `Added` and `Removed`, or not at all).
    /// Nothing unsafe follows; start a new diff.
    pub fn diff<'a>(&'a self, newer: &'a View<K, V, S>) -> Diff<'a, K, V, S>
    where
        K: Hash + Eq,
        V: PartialEq,
        S: BuildHasher,
    {
        Diff::new(self, newer)
    }
}

impl<K, V, S> View<K, V, S>
where
    S: BuildHasher,
{
    /// The value for `key`.
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.counted_lookup(key).map(|(_, v)| v)
    }

    /// The stored key and value for `key`.
    #[inline]
    pub fn get_key_value<Q>(&self, key: &Q) -> Option<(&K, &V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.counted_lookup(key).map(|(k, v)| (k, v))
    }

    /// Whether `key` is present.
    #[inline]
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.counted_lookup(key).is_some()
    }

    /// A user's look-up: [`lookup`](Self::lookup), which instrumentation
    /// records if the map records `get` calls.
    #[inline(always)]
    fn counted_lookup<Q>(&self, key: &Q) -> Option<&(K, V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if self.meta.hook.records_get() {
            return self.meta.hook.recorded_get(|| self.lookup(key));
        }
        self.lookup(key)
    }

    /// A look-up that instrumentation does not count (the crate's own).
    ///
    /// Always inlined: it is the hashing plus a call into the descent, and
    /// with the `instrument` feature LLVM otherwise kept it out of line in
    /// `get` (a 1K-map hit ~1.3x slower than without the feature).
    #[inline(always)]
    pub(crate) fn lookup<Q>(&self, key: &Q) -> Option<&(K, V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let root = self.root.as_ref()?;
        trie::get_planned(root, &self.plan, self.hasher.hash_one(key), key)
    }
}

/// `view[&key]`, as `std::collections::HashMap` has it.
///
/// # Panics
///
/// If `key` is absent ([`get`](View::get) returns an `Option`).
impl<K, Q, V, S> Index<&Q> for View<K, V, S>
where
    K: Borrow<Q>,
    Q: Hash + Eq + ?Sized,
    S: BuildHasher,
{
    type Output = V;

    #[inline]
    fn index(&self, key: &Q) -> &V {
        self.get(key).expect("no entry for this key in the snapview map")
    }
}

impl<K: fmt::Debug, V: fmt::Debug, S> fmt::Debug for View<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter_unwatched()).finish()
    }
}

/// Equal when both hold the same entries. Two versions of one map compare
/// shape by shape and skip shared sub-trees; otherwise it is `len` look-ups.
///
/// A shared sub-tree (or the same version) is taken as equal without
/// comparing its values, so for a value type whose `==` is not reflexive
/// (`f64::NAN != f64::NAN`) the answer depends on what the versions share:
/// a snapshot equals its clone, where std's `HashMap` holding a NaN is not
/// equal to itself. [`diff`](View::diff) skips shared sub-trees the same way.
impl<K, V, S> PartialEq for View<K, V, S>
where
    K: Hash + Eq,
    V: PartialEq,
    S: BuildHasher,
{
    fn eq(&self, other: &Self) -> bool {
        if core::ptr::eq(self, other) {
            return true;
        }
        if self.len != other.len {
            return false;
        }
        if self.same_map(other) {
            return match (&self.root, &other.root) {
                (Some(a), Some(b)) => trie::nodes_equal(a, b, 0),
                (a, b) => a.is_none() && b.is_none(),
            };
        }
        self.iter_unwatched().all(|(k, v)| other.lookup(k).is_some_and(|(_, v2)| v2 == v))
    }
}

impl<K: Hash + Eq, V: Eq, S: BuildHasher> Eq for View<K, V, S> {}

impl<'a, K, V, S> IntoIterator for &'a View<K, V, S> {
    type Item = (&'a K, &'a V);
    type IntoIter = Iter<'a, K, V>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// An owned, immutable, point-in-time view of a [`SnapMap`](crate::SnapMap).
///
/// Taking one is O(1) and allocates nothing (one `ArcSwap::load_full`);
/// it can be held as long as wanted, cloned, and sent across threads, and it
/// never changes: writers that go on publishing copy what they touch. All read
/// methods come from [`View`], which it dereferences to.
pub struct Snapshot<K, V, S = crate::DefaultHashBuilder> {
    view: Arc<View<K, V, S>>,
}

impl<K, V, S> Snapshot<K, V, S> {
    pub(crate) fn from_arc(view: Arc<View<K, V, S>>) -> Self {
        Self { view }
    }

    /// Whether both are the very same version of the same map (pointer equality).
    pub fn ptr_eq(this: &Self, other: &Self) -> bool {
        Arc::ptr_eq(&this.view, &other.view)
    }
}

impl<K, V, S> Deref for Snapshot<K, V, S> {
    type Target = View<K, V, S>;

    #[inline]
    fn deref(&self) -> &View<K, V, S> {
        &self.view
    }
}

impl<K, V, S> Clone for Snapshot<K, V, S> {
    fn clone(&self) -> Self {
        Self { view: Arc::clone(&self.view) }
    }
}

impl<K: fmt::Debug, V: fmt::Debug, S> fmt::Debug for Snapshot<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.view, f)
    }
}

impl<K: Hash + Eq, V: PartialEq, S: BuildHasher> PartialEq for Snapshot<K, V, S> {
    fn eq(&self, other: &Self) -> bool {
        *self.view == *other.view
    }
}

impl<K: Hash + Eq, V: Eq, S: BuildHasher> Eq for Snapshot<K, V, S> {}

impl<'a, K, V, S> IntoIterator for &'a Snapshot<K, V, S> {
    type Item = (&'a K, &'a V);
    type IntoIter = Iter<'a, K, V>;

    fn into_iter(self) -> Self::IntoIter {
        self.view.iter()
    }
}

/// A short-lived borrowed view of the current version, cheaper to take than a
/// [`Snapshot`] (no shared reference count is touched in the common case).
///
/// It uses one of a few per-thread slots (arc-swap's `Guard`): hold it for the
/// length of a request or a lookup, and take a [`Snapshot`] to keep a version
/// longer. All read methods come from [`View`].
pub struct ReadGuard<K, V, S = crate::DefaultHashBuilder> {
    guard: arc_swap::Guard<Arc<View<K, V, S>>>,
}

impl<K, V, S> ReadGuard<K, V, S> {
    pub(crate) fn new(guard: arc_swap::Guard<Arc<View<K, V, S>>>) -> Self {
        Self { guard }
    }

    /// An owned snapshot of the same version.
    #[must_use]
    pub fn to_snapshot(&self) -> Snapshot<K, V, S> {
        Snapshot::from_arc(Arc::clone(&self.guard))
    }
}

impl<K, V, S> Deref for ReadGuard<K, V, S> {
    type Target = View<K, V, S>;

    #[inline]
    fn deref(&self) -> &View<K, V, S> {
        &self.guard
    }
}

impl<K: fmt::Debug, V: fmt::Debug, S> fmt::Debug for ReadGuard<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self.guard, f)
    }
}

impl<'a, K, V, S> IntoIterator for &'a ReadGuard<K, V, S> {
    type Item = (&'a K, &'a V);
    type IntoIter = Iter<'a, K, V>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(feature = "serde")]
mod serde_impls {
    use super::{ReadGuard, Snapshot, View};
    use serde::ser::{Serialize, SerializeMap, Serializer};

    /// Serializes as a map of the view's entries.
    #[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
    impl<K: Serialize, V: Serialize, S> Serialize for View<K, V, S> {
        fn serialize<Ser: Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
            let mut map = serializer.serialize_map(Some(self.len()))?;
            for (k, v) in self.iter() {
                map.serialize_entry(k, v)?;
            }
            map.end()
        }
    }

    /// Serializes as a map of the snapshot's entries.
    #[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
    impl<K: Serialize, V: Serialize, S> Serialize for Snapshot<K, V, S> {
        fn serialize<Ser: Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
            (**self).serialize(serializer)
        }
    }

    /// Serializes as a map of the guard's entries.
    #[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
    impl<K: Serialize, V: Serialize, S> Serialize for ReadGuard<K, V, S> {
        fn serialize<Ser: Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
            (**self).serialize(serializer)
        }
    }
}

#[cfg(all(test, not(snapview_loom)))]
mod tests {
    use std::sync::Arc;

    use crate::SnapMap;
    use crate::sync::Ordering;

    /// A clone's version that its writer has not settled yet (it settles
    /// right after publishing) is copied by a restore into the map, not
    /// shared: the map's writer must not copy nodes whose lending state the
    /// other writer is still changing. Once settled, it is shared.
    #[test]
    fn a_restore_copies_a_version_its_writer_is_still_settling() {
        let map: SnapMap<u32, Arc<u32>> = (0..100).map(|k| (k, Arc::new(k))).collect();
        let clone = map.clone();
        let value = Arc::new(1000);
        clone.insert(1000, Arc::clone(&value));
        let theirs = clone.snapshot();
        assert!(theirs.is_settled());
        // As while the clone's writer settles it.
        theirs.settled.store(false, Ordering::Relaxed);
        map.restore(&theirs);
        assert_eq!(Arc::strong_count(&value), 3, "copied: the map holds a clone of the value");
        assert_eq!(map.snapshot(), theirs);
        theirs.mark_settled();
        let other = clone.clone();
        other.insert(0, Arc::new(0));
        other.restore(&theirs);
        assert_eq!(Arc::strong_count(&value), 3, "shared once settled: no clone of the value");
        assert_eq!(other.snapshot(), theirs);
    }
}
