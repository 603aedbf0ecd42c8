//! What changed between two snapshots, walking both tries in step.
//!
//! Two versions of one map share every sub-tree that no write touched, and by
//! canonical form (see `crate::trie`) equal key sets have equal shapes. So the
//! walk skips a pair of children as soon as they are the same allocation, and
//! only descends where a write happened: O(changes × depth), whatever the size
//! of the map. Snapshots of two different maps (different hashers) have
//! unrelated shapes; their diff falls back to look-ups, O(len). Collision
//! nodes (keys whose 64-bit hashes are equal) are compared as sets, O(m²).

use core::hash::{BuildHasher, Hash};

use crate::hooks::DiffHook;
use crate::iter::{Iter, RawIter};
use crate::raw::NodeRef;
use crate::trie::{BITS, Slot, is_collision_level, slot};
use crate::view::View;

/// One difference between an older and a newer snapshot.
///
/// Changes order by kind (`Added`, `Removed`, `Updated`), then by key, then
/// by value, so that a diff, whose order is unspecified, can be sorted.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Change<'a, K, V> {
    /// The key is in the newer snapshot only.
    Added(&'a K, &'a V),
    /// The key is in the older snapshot only.
    Removed(&'a K, &'a V),
    /// The key is in both, with values that are not equal (`!=`).
    Updated {
        /// The key (as stored in the newer snapshot: the argument of
        /// [`diff`](crate::View::diff)).
        key: &'a K,
        /// Its value in the older snapshot.
        old: &'a V,
        /// Its value in the newer snapshot.
        new: &'a V,
    },
}

impl<K, V> Clone for Change<'_, K, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K, V> Copy for Change<'_, K, V> {}

impl<'a, K, V> Change<'a, K, V> {
    /// The key this change is about.
    pub fn key(&self) -> &'a K {
        match *self {
            Change::Added(k, _) | Change::Removed(k, _) | Change::Updated { key: k, .. } => k,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Old,
    New,
}

/// A pair of nodes at the same depth whose slots are still to compare.
struct Frame<'a, K, V> {
    old: &'a NodeRef<K, V>,
    new: &'a NodeRef<K, V>,
    shift: u32,
    todo: u64,
}

/// The source of changes being drained before the walk goes on.
enum Active<'a, K, V> {
    Idle,
    One(Change<'a, K, V>),
    /// A sub-tree only one side has: all of it was added or removed.
    Only {
        side: Side,
        entries: RawIter<'a, K, V>,
    },
    /// A single entry on `side` where the other side has a sub-tree.
    EntryVsTree {
        entry: &'a (K, V),
        side: Side,
        tree: RawIter<'a, K, V>,
        found: bool,
    },
    /// Two collision nodes: lists compared pairwise.
    Collision {
        old: &'a [(K, V)],
        new: &'a [(K, V)],
        at: usize,
        in_new: bool,
    },
}

impl<'a, K: Eq, V: PartialEq> Active<'a, K, V> {
    fn next(&mut self) -> Option<Change<'a, K, V>> {
        match self {
            Active::Idle => None,
            Active::One(change) => {
                let change = *change;
                *self = Active::Idle;
                Some(change)
            }
            Active::Only { side, entries } => {
                let (k, v) = entries.next()?;
                Some(if *side == Side::Old { Change::Removed(k, v) } else { Change::Added(k, v) })
            }
            Active::EntryVsTree { entry, side, tree, found } => {
                for (k, v) in tree.by_ref() {
                    if *k == entry.0 {
                        *found = true;
                        let (old, new) = if *side == Side::Old { (&entry.1, v) } else { (v, &entry.1) };
                        if old != new {
                            return Some(Change::Updated {
                                key: if *side == Side::Old { k } else { &entry.0 },
                                old,
                                new,
                            });
                        }
                    } else {
                        return Some(if *side == Side::Old { Change::Added(k, v) } else { Change::Removed(k, v) });
                    }
                }
                if core::mem::replace(found, true) {
                    return None;
                }
                let (k, v) = (&entry.0, &entry.1);
                Some(if *side == Side::Old { Change::Removed(k, v) } else { Change::Added(k, v) })
            }
            Active::Collision { old, new, at, in_new } => {
                while !*in_new {
                    let Some((k, v)) = old.get(*at) else {
                        (*at, *in_new) = (0, true);
                        break;
                    };
                    *at += 1;
                    match new.iter().find(|(k2, _)| k2 == k) {
                        None => return Some(Change::Removed(k, v)),
                        Some((k2, v2)) if v2 != v => return Some(Change::Updated { key: k2, old: v, new: v2 }),
                        Some(_) => {}
                    }
                }
                while let Some((k, v)) = new.get(*at) {
                    *at += 1;
                    if !old.iter().any(|(k2, _)| k2 == k) {
                        return Some(Change::Added(k, v));
                    }
                }
                None
            }
        }
    }
}

/// The changes from an older snapshot to a newer one, as an iterator of [`Change`].
///
/// Created by [`View::diff`]. Each key that differs appears exactly once; the
/// order is unspecified.
#[must_use = "iterators are lazy and do nothing unless consumed"]
pub struct Diff<'a, K, V, S = crate::DefaultHashBuilder> {
    stack: Vec<Frame<'a, K, V>>,
    active: Active<'a, K, V>,
    unrelated: Option<Unrelated<'a, K, V, S>>,
    hook: DiffHook,
}

/// Two snapshots of different maps: no shared structure to follow.
struct Unrelated<'a, K, V, S> {
    old: &'a View<K, V, S>,
    new: &'a View<K, V, S>,
    old_entries: Iter<'a, K, V>,
    new_entries: Iter<'a, K, V>,
}

/// Opaque: the walk's position is not a value worth printing.
impl<K, V, S> core::fmt::Debug for Diff<'_, K, V, S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Diff").finish_non_exhaustive()
    }
}

impl<'a, K, V, S> Diff<'a, K, V, S> {
    pub(crate) fn new(old: &'a View<K, V, S>, new: &'a View<K, V, S>) -> Self {
        let hook = old.meta().hook.diff(old.version(), new.version());
        let mut diff = Self { stack: Vec::new(), active: Active::Idle, unrelated: None, hook };
        if !old.same_map(new) {
            diff.unrelated =
                Some(Unrelated { old, new, old_entries: old.iter_unwatched(), new_entries: new.iter_unwatched() });
            return diff;
        }
        match (old.root(), new.root()) {
            (Some(a), Some(b)) if a.ptr_eq(b) => {}
            (Some(a), Some(b)) => {
                diff.stack.reserve_exact(crate::trie::MAX_DEPTH);
                diff.push(a, b, 0);
            }
            (Some(a), None) => diff.active = Active::Only { side: Side::Old, entries: RawIter::new(Some(a)) },
            (None, Some(b)) => diff.active = Active::Only { side: Side::New, entries: RawIter::new(Some(b)) },
            (None, None) => {}
        }
        diff
    }

    fn push(&mut self, old: &'a NodeRef<K, V>, new: &'a NodeRef<K, V>, shift: u32) {
        let todo = slots_to_compare(old, new);
        if todo != 0 {
            self.stack.push(Frame { old, new, shift, todo });
        }
    }
}

/// The slots of two nodes at the same depth that may hold a difference.
///
/// Nodes of the same shape pair their children up by index, so a tight scan
/// drops every pair that is one allocation before the slot-by-slot walk. This
/// matters for the writer's private copies of the root's children (see
/// `trie::recycle`): two versions never share them, though they share nearly
/// all of their children.
fn slots_to_compare<K, V>(old: &NodeRef<K, V>, new: &NodeRef<K, V>) -> u64 {
    if old.datamap() != new.datamap() || old.nodemap() != new.nodemap() {
        return old.datamap() | old.nodemap() | new.datamap() | new.nodemap();
    }
    let mut todo = old.datamap();
    let mut children = old.nodemap();
    for (a, b) in old.children().iter().zip(new.children()) {
        let bit = children & children.wrapping_neg();
        children &= !bit;
        if !a.ptr_eq(b) {
            todo |= bit;
        }
    }
    todo
}

impl<'a, K, V, S> Diff<'a, K, V, S>
where
    K: Eq,
    V: PartialEq,
{
    /// Compares the next slot of the deepest pair; returns a change if the
    /// slot yields one directly, else sets `active` or descends.
    fn step(&mut self) -> Option<Option<Change<'a, K, V>>> {
        let frame = self.stack.last_mut()?;
        if frame.todo == 0 {
            self.stack.pop();
            return Some(None);
        }
        let bit = frame.todo & frame.todo.wrapping_neg();
        frame.todo &= !bit;
        let (old, new, shift) = (frame.old, frame.new, frame.shift);
        let change = match (slot(old, bit), slot(new, bit)) {
            (Slot::Entry(a), Slot::Entry(b)) if a.0 == b.0 => {
                (a.1 != b.1).then_some(Change::Updated { key: &b.0, old: &a.1, new: &b.1 })
            }
            (Slot::Entry(a), Slot::Entry(b)) => {
                self.active = Active::One(Change::Added(&b.0, &b.1));
                Some(Change::Removed(&a.0, &a.1))
            }
            (Slot::Entry(a), Slot::Child(t, _)) => {
                self.active =
                    Active::EntryVsTree { entry: a, side: Side::Old, tree: RawIter::new(Some(t)), found: false };
                None
            }
            (Slot::Child(t, _), Slot::Entry(b)) => {
                self.active =
                    Active::EntryVsTree { entry: b, side: Side::New, tree: RawIter::new(Some(t)), found: false };
                None
            }
            (Slot::Child(x, _), Slot::Child(y, _)) => {
                let shift = shift + BITS;
                if x.ptr_eq(y) {
                } else if is_collision_level(shift) {
                    self.active = Active::Collision { old: x.entries(), new: y.entries(), at: 0, in_new: false };
                } else {
                    self.push(x, y, shift);
                }
                None
            }
            (Slot::Entry(a), Slot::Empty) => Some(Change::Removed(&a.0, &a.1)),
            (Slot::Empty, Slot::Entry(b)) => Some(Change::Added(&b.0, &b.1)),
            (Slot::Child(t, _), Slot::Empty) => {
                self.active = Active::Only { side: Side::Old, entries: RawIter::new(Some(t)) };
                None
            }
            (Slot::Empty, Slot::Child(t, _)) => {
                self.active = Active::Only { side: Side::New, entries: RawIter::new(Some(t)) };
                None
            }
            (Slot::Empty, Slot::Empty) => None,
        };
        Some(change)
    }
}

impl<'a, K, V, S> Iterator for Diff<'a, K, V, S>
where
    K: Hash + Eq,
    V: PartialEq,
    S: BuildHasher,
{
    type Item = Change<'a, K, V>;

    fn next(&mut self) -> Option<Self::Item> {
        self.hook.before_next();
        let change = self.next_change();
        self.hook.after_next(change.is_some());
        change
    }
}

impl<'a, K, V, S> Diff<'a, K, V, S>
where
    K: Hash + Eq,
    V: PartialEq,
    S: BuildHasher,
{
    fn next_change(&mut self) -> Option<Change<'a, K, V>> {
        if let Some(unrelated) = &mut self.unrelated {
            return unrelated.next();
        }
        loop {
            if let Some(change) = self.active.next() {
                return Some(change);
            }
            if let Some(change) = self.step()? {
                return Some(change);
            }
        }
    }
}

impl<K, V, S> core::iter::FusedIterator for Diff<'_, K, V, S>
where
    K: Hash + Eq,
    V: PartialEq,
    S: BuildHasher,
{
}

impl<'a, K, V, S> Unrelated<'a, K, V, S>
where
    K: Hash + Eq,
    V: PartialEq,
    S: BuildHasher,
{
    fn next(&mut self) -> Option<Change<'a, K, V>> {
        for (k, v) in self.old_entries.by_ref() {
            match self.new.lookup(k).map(|(k, v)| (k, v)) {
                None => return Some(Change::Removed(k, v)),
                Some((k2, v2)) if v2 != v => return Some(Change::Updated { key: k2, old: v, new: v2 }),
                Some(_) => {}
            }
        }
        self.new_entries.by_ref().find(|(k, _)| self.old.lookup(*k).is_none()).map(|(k, v)| Change::Added(k, v))
    }
}
