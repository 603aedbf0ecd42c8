//! Making nodes ([`Builder`]), taking them apart ([`Drain`]), and the
//! copy-on-write step that joins the two ([`rebuild`]).
//!
//! Panic safety rests on one rule: user code (`Clone`) runs only while reading
//! a *shared* node, which nothing here changes; a node owned alone is only
//! ever moved from, which runs no user code. A `Builder` dropped half-way
//! drops what it was given, and a `Drain` dropped half-way drops what it did
//! not hand out, so an unwinding panic neither leaks nor double-drops.

use core::cell::Cell;
use core::marker::PhantomData;
use core::mem::ManuallyDrop;
use core::ptr::{self, NonNull};

use super::node::{Header, NodeRef, Occupancy, own_lent};

/// Fills a freshly allocated node, then hands it out as a [`NodeRef`].
///
/// Entries and children are pushed in slot order, each array on its own
/// cursor, so the two may be filled in any interleaving.
pub(crate) struct Builder<K, V> {
    ptr: NonNull<Header>,
    entries: usize,
    children: usize,
    entries_done: usize,
    children_done: usize,
    /// Bit `i`: child `i` was pushed lent (uncounted), `lender` holds it.
    lent: u64,
    /// Bit `i`: entry `i` is `lender`'s entry in the same slot, bit for bit (E1).
    borrowed: u64,
    lender: Option<NodeRef<K, V>>,
    _owns: PhantomData<(K, V)>,
}

impl<K, V> Builder<K, V> {
    /// A trie node with these bitmaps, hence `popcount` entries and children.
    pub(crate) fn trie(datamap: u64, nodemap: u64) -> Self {
        debug_assert_eq!(datamap & nodemap, 0, "a slot holds an entry or a node, not both");
        Self::new(datamap, nodemap, datamap.count_ones() as usize, nodemap.count_ones() as usize)
    }

    /// A collision node: `len` entries whose hashes are all equal, no bitmaps.
    pub(crate) fn collision(len: usize) -> Self {
        Self::new(0, 0, len, 0)
    }

    fn new(datamap: u64, nodemap: u64, entries: usize, children: usize) -> Self {
        Self {
            ptr: NodeRef::<K, V>::allocate(datamap, nodemap, entries, children),
            entries,
            children,
            entries_done: 0,
            children_done: 0,
            lent: 0,
            borrowed: 0,
            lender: None,
            _owns: PhantomData,
        }
    }

    /// Appends the next entry (in slot order).
    #[inline]
    pub(crate) fn push_entry(&mut self, entry: (K, V)) {
        assert!(self.entries_done < self.entries, "snapview bug: too many entries for the node");
        // SAFETY: slot `entries_done` is inside the entry array (just checked,
        // N1) and not yet initialised, so writing does not overwrite a value.
        unsafe { NodeRef::<K, V>::entries_base(self.ptr, self.children).add(self.entries_done).write(entry) };
        self.entries_done += 1;
    }

    /// Appends the next child (in slot order).
    #[inline]
    pub(crate) fn push_child(&mut self, child: NodeRef<K, V>) {
        let occupancy = child.occupancy();
        self.push_child_occupying(child, occupancy);
    }

    /// Appends the next child, whose occupancy is known (O1): a child taken
    /// from another node comes with the occupancy that node kept, so its
    /// header, seldom in cache, is not read.
    #[inline]
    fn push_child_occupying(&mut self, child: NodeRef<K, V>, occupancy: Occupancy) {
        assert!(self.children_done < self.children, "snapview bug: too many children for the node");
        // SAFETY: as in `push_entry`, for the child and occupancy arrays,
        // which have the same length.
        unsafe {
            NodeRef::<K, V>::children_base(self.ptr).add(self.children_done).write(child);
            NodeRef::<K, V>::occupancy_base(self.ptr, self.children).add(self.children_done).write(occupancy);
        }
        self.children_done += 1;
    }

    /// Moves the next `n` entries of `from` into this node: from a node
    /// owned alone, moved (those it borrows stay borrowed, from the same
    /// lender); from a shared one, borrowed if it lends them
    /// ([`Drain::lends_entries`]), else cloned.
    ///
    /// The entries taken must go to the same slots in this node as in
    /// `from`'s (as every caller's do: a rebuild adds or removes entries
    /// around them), so that a borrowed one's index in the lender can be
    /// recomputed from the two datamaps (E1).
    pub(crate) fn take_entries(&mut self, from: &mut Drain<K, V>, n: usize)
    where
        K: Clone,
        V: Clone,
    {
        if n == 0 {
            return;
        }
        if from.moving {
            return self.move_entries(from, n);
        }
        if from.lends_entries() {
            return self.borrow_entries(from, n);
        }
        self.own_entries(from, n);
    }

    /// Moves the next `n` entries of `from`, a node owned alone, bit for
    /// bit: its own become this node's own, and those it borrows (E1) stay
    /// borrowed, in the same slots, with the counted lender that keeps them
    /// alive passed on to this node. So a second write that adds or removes
    /// a key in a node its batch has copied clones nothing.
    fn move_entries(&mut self, from: &mut Drain<K, V>, n: usize) {
        let (at, next) = (self.entries_done, from.next_entry);
        assert!(
            from.moving && at + n <= self.entries && next + n <= from.entries,
            "snapview bug: moved entries out of place"
        );
        let borrowed = from.borrowed_among(next, n);
        if borrowed != 0 {
            assert!(at + n <= 64, "snapview bug: borrowed entries out of place");
            self.hold_lender_of(from);
            self.borrowed |= borrowed << at;
        }
        // SAFETY: 1. both ranges are inside their entry arrays (just checked):
        //    initialised in the source (N2), not yet written in this node;
        // 2. moving mode: the Drain holds the only reference, and its cursor
        //    moves past the range, so each entry is read once and its Drop
        //    skips them: an owned entry is moved, a borrowed one stays the
        //    lender's, whose counted reference this node now holds (E1).
        unsafe {
            ptr::copy_nonoverlapping(
                NodeRef::<K, V>::entries_base(from.node.as_ptr(), from.children).add(next),
                NodeRef::<K, V>::entries_base(self.ptr, self.children).add(at),
                n,
            );
        }
        self.entries_done += n;
        from.next_entry += n;
    }

    /// Takes the counted lender of what this node borrows from `from`'s
    /// node, unless it holds it already: one lender per node, for its lent
    /// children and its borrowed entries alike.
    fn hold_lender_of(&mut self, from: &mut Drain<K, V>) {
        match &self.lender {
            None => self.lender = Some(from.lender()),
            Some(lender) => assert!(from.lends_through(lender), "snapview bug: borrowed from two nodes"),
        }
    }

    /// Clones the next `n` entries of `from`, a shared node, into this node.
    /// The bounds are checked once for the run, not per entry as
    /// `next_entry` and `push_entry` would: a batch's first copy of a node
    /// clones every entry it has (callgrind, session 53: 26 → 15
    /// instructions per key of a batch of new keys into a 1K map).
    #[inline]
    fn own_entries(&mut self, from: &mut Drain<K, V>, n: usize)
    where
        K: Clone,
        V: Clone,
    {
        let (at, next) = (self.entries_done, from.next_entry);
        assert!(
            !from.moving && at + n <= self.entries && next + n <= from.entries,
            "snapview bug: cloned entries out of place"
        );
        let to = NodeRef::<K, V>::entries_base(self.ptr, self.children);
        for (i, (k, v)) in from.node.entries()[next..next + n].iter().enumerate() {
            let entry = (k.clone(), v.clone());
            // SAFETY: slot `at + i` is inside the entry array (checked above,
            // N1) and not yet written. The cursors move one entry at a time,
            // so if a `Clone` panics this Builder drops exactly the clones it
            // holds, and the shared source is untouched.
            unsafe { to.add(at + i).write(entry) };
            self.entries_done += 1;
            from.next_entry += 1;
        }
    }

    /// Borrows the next `n` entries of `from`, a shared node whose entries
    /// it claimed for this copy ([`Drain::lends_entries`]): copied bit for
    /// bit, this node holding a count on `from`'s node instead of owning
    /// them (E1).
    fn borrow_entries(&mut self, from: &mut Drain<K, V>, n: usize) {
        let (at, next) = (self.entries_done, from.next_entry);
        assert!(
            !from.moving && at + n <= self.entries && next + n <= from.entries && at + n <= 64 && next + n <= 64,
            "snapview bug: borrowed entries out of place"
        );
        self.hold_lender_of(from);
        // SAFETY: 1. both ranges are inside their entry arrays (just checked):
        //    initialised in the source (N2), not yet written in this node;
        // 2. the copies are borrowed, not owned: their bits are set below
        //    before anything could drop them, and `self.lender` keeps the
        //    originals alive (E1); the source's slots stay as they were.
        unsafe {
            ptr::copy_nonoverlapping(
                NodeRef::<K, V>::entries_base(from.node.as_ptr(), from.children).add(next),
                NodeRef::<K, V>::entries_base(self.ptr, self.children).add(at),
                n,
            );
        }
        self.borrowed |= bits_below(n) << at;
        self.entries_done += n;
        from.next_entry += n;
    }

    /// Moves the next `n` children of `from` into this node; from a shared
    /// node they are *lent*: shared without touching their counts, this node
    /// holding one count on `from`'s node instead (N3, N6).
    pub(crate) fn take_children(&mut self, from: &mut Drain<K, V>, n: usize) {
        if n > 0 && !from.moving && from.lend {
            return self.lend_children(from, n);
        }
        for _ in 0..n {
            let occupancy = from.next_child_occupancy();
            let (child, lent) = from.next_child_raw();
            if lent {
                self.hold_lender_of(from);
                self.lent |= 1 << self.children_done;
            }
            self.push_child_occupying(ManuallyDrop::into_inner(child), occupancy);
        }
    }

    /// `take_children` from a lending Drain: all `n` pointers copied at once.
    fn lend_children(&mut self, from: &mut Drain<K, V>, n: usize) {
        let (at, next) = (self.children_done, from.next_child);
        assert!(at + n <= self.children && next + n <= from.children, "snapview bug: too many children");
        self.hold_lender_of(from);
        // SAFETY: 1. both ranges are inside their child arrays (just checked),
        //    and so inside their occupancy arrays, of the same lengths:
        //    initialised in the source (N2), not yet written in this node;
        // 2. the copies are lent, not counted: their bits are set below before
        //    anything can drop them, and `self.lender` (a count on the shared
        //    source node) keeps them alive (N3, N6); the source's slots are
        //    left as they were, still counted by the source;
        // 3. the occupancies are plain integers, copied with their children (O1).
        unsafe {
            let source = from.node.as_ptr();
            ptr::copy_nonoverlapping(
                NodeRef::<K, V>::children_base(source).add(next),
                NodeRef::<K, V>::children_base(self.ptr).add(at),
                n,
            );
            ptr::copy_nonoverlapping(
                NodeRef::<K, V>::occupancy_base(source, from.children).add(next),
                NodeRef::<K, V>::occupancy_base(self.ptr, self.children).add(at),
                n,
            );
        }
        self.lent |= (u64::MAX >> (64 - n)) << at;
        self.children_done += n;
        from.next_child += n;
    }

    /// The finished node; panics if a slot was left empty.
    pub(crate) fn finish(mut self) -> NodeRef<K, V> {
        assert!(
            self.entries_done == self.entries && self.children_done == self.children,
            "snapview bug: node finished with empty slots"
        );
        let lender = self.lender.take();
        let this = ManuallyDrop::new(self);
        // SAFETY: `allocate` made the pointer for NodeRef<K, V>, every slot is
        // now initialised (just checked), and the Builder's one reference is
        // handed over (ManuallyDrop: its Drop will not run).
        let node = unsafe { NodeRef::from_raw(this.ptr) };
        let lends = lender.is_some();
        // N6, E1: the lent children and borrowed entries, and the reference
        // that keeps them alive, recorded before anything else runs: until
        // then an unwinding `node` would drop them as its own.
        node.set_borrowed(this.borrowed);
        node.set_lending(this.lent, lender);
        if lends {
            count_lending_build();
        }
        node
    }
}

impl<K, V> Drop for Builder<K, V> {
    fn drop(&mut self) {
        if self.borrowed != 0 {
            // The borrowed entries stay the lender's: it drops them itself.
            self.lender.as_ref().expect("snapview bug: borrowed entries without a lender").end_lending();
        }
        // SAFETY: the lent children pushed so far are alive: `self.lender`,
        // dropped only after this function, holds them (N6).
        unsafe { own_lent::<K, V>(NodeRef::<K, V>::children_base(self.ptr), self.children_done, self.lent) };
        // SAFETY: 1. only this Builder knows the pointer, so nothing else can
        //    reach the node;
        // 2. exactly `entries_done` entries and `children_done` children were
        //    written, so those are what we drop, each once, but the borrowed
        //    ones (the lender's); each child is counted by this Builder now
        //    (`own_lent` above);
        // 3. deallocation uses the counts the node was allocated with (N1).
        unsafe {
            for i in (0..self.entries_done).filter(|&i| i >= 64 || self.borrowed & (1 << i) == 0) {
                ptr::drop_in_place(NodeRef::<K, V>::entries_base(self.ptr, self.children).add(i));
            }
            ptr::drop_in_place(ptr::slice_from_raw_parts_mut(
                NodeRef::<K, V>::children_base(self.ptr),
                self.children_done,
            ));
            NodeRef::<K, V>::deallocate(self.ptr, self.entries, self.children);
        }
    }
}

/// Hands out a node's entries and children one by one, in slot order, each
/// array on its own cursor: moved out if the node was owned alone, cloned if it
/// is shared (so a shared node is never changed).
pub(crate) struct Drain<K, V> {
    node: ManuallyDrop<NodeRef<K, V>>,
    moving: bool,
    entries: usize,
    children: usize,
    next_entry: usize,
    next_child: usize,
    /// Moving mode: the node's lent bits and lender, taken out of it (N6).
    lent: u64,
    lender: Option<NodeRef<K, V>>,
    /// Moving mode: the lender's address, kept once `lender` is handed out.
    lender_at: Option<NonNull<Header>>,
    /// Moving mode: the entries the node borrows from `lender` (E1), which
    /// are passed on as they are ([`Builder::take_entries`]), never handed
    /// out one by one.
    borrowed: u64,
    /// Cloning mode: children are lent rather than counted (see `LEND_MIN`).
    lend: bool,
    /// Cloning mode: whether entries are lent rather than cloned (E1):
    /// `None` until the first are taken, then whether the node's claim
    /// ([`NodeRef::claim_entries`]) succeeded; `Some(false)` in moving mode.
    lend_entries: Option<bool>,
}

/// A copy lends its source's children, rather than counting each, from this
/// many on. Lending costs a fixed amount per copy (one count on the source,
/// and settling after the publish); counting costs one atomic increment per
/// child now and one decrement when the source is freed, each on a line that
/// is seldom in cache. Measured: a copy of a node with ~57 children at 1M
/// keys, vs ~1 child at 1K keys, where lending only adds its fixed cost.
const LEND_MIN: usize = 8;

impl<K, V> Drain<K, V> {
    /// Takes `node` apart: by moves if it is the only reference, else by clones.
    pub(crate) fn new(node: NodeRef<K, V>) -> Self {
        let moving = node.is_unique();
        let borrowed = if moving { node.borrowed() } else { 0 };
        // Borrowed entries are passed on with the counted lender that keeps
        // them alive; a link (E2) cannot be: `rebuild` makes a node that
        // borrows through one own its entries first.
        assert!(borrowed == 0 || node.is_lending(), "snapview bug: moving entries borrowed through a link");
        let (lent, lender) = if moving { node.take_lending_alone() } else { (0, None) };
        let lender_at = lender.as_ref().map(NodeRef::as_ptr);
        let (entries, children) = node.counts();
        let lend = !moving && children >= LEND_MIN;
        Self {
            node: ManuallyDrop::new(node),
            moving,
            entries,
            children,
            next_entry: 0,
            next_child: 0,
            lent,
            lender,
            lender_at,
            borrowed,
            lend,
            lend_entries: if moving { Some(false) } else { None },
        }
    }

    /// Cloning mode: never lend the entries, clone them (see [`rebuild`]).
    fn never_lend_entries(&mut self) {
        assert!(self.lend_entries.is_none(), "snapview bug: entries already taken");
        self.lend_entries = Some(false);
    }

    /// Whether entries are moved (true) or cloned (false).
    pub(crate) fn is_moving(&self) -> bool {
        self.moving
    }

    /// How many entries are left to hand out.
    pub(crate) fn entries_left(&self) -> usize {
        self.entries - self.next_entry
    }

    /// How many children are left to hand out.
    pub(crate) fn children_left(&self) -> usize {
        self.children - self.next_child
    }

    /// The next entry; in cloning mode, a `Clone` that panics leaves the node untouched.
    #[inline]
    pub(crate) fn next_entry(&mut self) -> (K, V)
    where
        K: Clone,
        V: Clone,
    {
        let i = self.next_entry;
        assert!(i < self.entries, "snapview bug: drained past the last entry");
        // An entry handed out on its own must be the node's: `rebuild_taking`.
        assert!(self.borrowed_among(i, 1) == 0, "snapview bug: a borrowed entry moved out");
        let entry = if self.moving {
            // SAFETY: 1. in moving mode this Drain holds the only reference
            //    (checked in `new`), so nothing else reads the slot;
            // 2. slot `i` is initialised (N2) and is read exactly once, since
            //    the cursor moves past it and Drop skips it.
            unsafe { ptr::read(NodeRef::<K, V>::entries_base(self.node.as_ptr(), self.children).add(i)) }
        } else {
            let (k, v) = &self.node.entries()[i];
            (k.clone(), v.clone())
        };
        self.next_entry = i + 1;
        entry
    }

    /// Moving mode: drops the entries not handed out yet, except those whose
    /// bit is set in `keep`, which now belong to a node that borrowed them.
    fn drop_entries_except(&mut self, keep: u64) {
        assert!(self.moving && self.borrowed == 0, "snapview bug: dropping entries not the node's own");
        let (at, left) = (self.next_entry, self.entries - self.next_entry);
        // Done with the entries whatever happens below: Drop skips them.
        self.next_entry = self.entries;
        // SAFETY: moving mode: this Drain holds the only reference; the
        // entries past the cursor are initialised and were not handed out,
        // so each not kept is dropped once here; the kept ones are left to
        // their new owner.
        unsafe {
            super::node::drop_entries_except(
                NodeRef::<K, V>::entries_base(self.node.as_ptr(), self.children).add(at),
                left,
                keep.checked_shr(at as u32).unwrap_or(0),
            )
        };
    }

    /// Moving mode: the bits of the borrowed entries among the `n` from
    /// index `at`, shifted down to bit 0.
    #[inline]
    fn borrowed_among(&self, at: usize, n: usize) -> u64 {
        if self.borrowed == 0 {
            return 0;
        }
        self.borrowed.checked_shr(at as u32).unwrap_or(0) & bits_below(n)
    }

    /// Whether `lender` keeps alive what this Drain lends: its node (cloning
    /// mode) or the node's own lender (moving mode), handed out or not.
    fn lends_through(&self, lender: &NodeRef<K, V>) -> bool {
        if self.moving { self.lender_at == Some(lender.as_ptr()) } else { lender.ptr_eq(&self.node) }
    }

    /// Whether the copy being built borrows the shared node's entries
    /// rather than cloning them (E1). The first call claims them: whoever
    /// gets `true` must borrow at least one ([`Builder::borrow_entries`]),
    /// which ties the claim to the copy; the copy ends it.
    fn lends_entries(&mut self) -> bool {
        *self.lend_entries.get_or_insert_with(|| self.node.claim_entries())
    }

    /// The next child, as a counted reference of the caller's.
    #[inline]
    pub(crate) fn next_child(&mut self) -> NodeRef<K, V> {
        let (child, lent) = self.next_child_raw();
        if lent {
            // Alive: its lender (ours, or our node) still holds it (N6).
            (*child).clone()
        } else {
            ManuallyDrop::into_inner(child)
        }
    }

    /// Moving mode: passes over the next `n` children without dropping them:
    /// the node's count on each (none is lent: see [`lent_bits`](Self::lent_bits))
    /// now belongs to the caller, who holds the same pointers elsewhere.
    pub(super) fn pass_counted_children(&mut self, n: usize) {
        let end = self.next_child + n;
        assert!(self.moving && end <= self.children, "snapview bug: passed children that are not the node's own");
        assert!(self.lent & bits_below(end) & !bits_below(self.next_child) == 0, "snapview bug: passed a lent child");
        self.next_child = end;
    }

    /// The occupancy the node keeps for its next child (O1).
    #[inline]
    fn next_child_occupancy(&self) -> Occupancy {
        self.node.child_occupancy()[self.next_child]
    }

    /// Moving mode: which of the node's children are lent to it (bit `i` for child `i`).
    pub(super) fn lent_bits(&self) -> u64 {
        self.lent
    }

    /// The next child and whether it is *lent*: then the reference is not
    /// counted (never drop it) and [`lender`](Self::lender) keeps it alive.
    /// From a shared node with `LEND_MIN` children or more, every child is lent.
    #[inline]
    pub(super) fn next_child_raw(&mut self) -> (ManuallyDrop<NodeRef<K, V>>, bool) {
        let i = self.next_child;
        assert!(i < self.children, "snapview bug: drained past the last child");
        if !self.moving && !self.lend {
            self.next_child = i + 1;
            return (ManuallyDrop::new(self.node.children()[i].clone()), false);
        }
        // SAFETY: 1. slot `i` is initialised (N2) and read exactly once, since
        //    the cursor moves past it;
        // 2. moving mode: we hold the only reference, so the bitwise copy takes
        //    the slot's count (or, if its bit is set, its lent state) over and
        //    Drop skips the slot; cloning mode: the copy is an uncounted
        //    pointer, wrapped in ManuallyDrop, to a child the shared node keeps.
        let child = unsafe { ptr::read(NodeRef::<K, V>::children_base(self.node.as_ptr()).add(i)) };
        self.next_child = i + 1;
        let lent = !self.moving || self.lent & (1 << i) != 0;
        (ManuallyDrop::new(child), lent)
    }

    /// A counted reference that keeps the lent children handed out alive:
    /// the node's own lender (moving mode: this Drain's, handed over once),
    /// or the shared node itself (cloning mode).
    pub(super) fn lender(&mut self) -> NodeRef<K, V> {
        if self.moving {
            self.lender.take().expect("snapview bug: lent children without a lender")
        } else {
            (*self.node).clone()
        }
    }
}

impl<K, V> Drop for Drain<K, V> {
    fn drop(&mut self) {
        if !self.moving {
            // SAFETY: `node` is never used again after this.
            unsafe { ManuallyDrop::drop(&mut self.node) };
            return;
        }
        let ptr = self.node.as_ptr();
        let borrowed_left = self.borrowed_among(self.next_entry, self.entries - self.next_entry);
        if let Some(lender) = self.lender.as_ref().filter(|_| borrowed_left != 0) {
            // Borrowed entries never passed on (only on the way to an abort:
            // `rebuild`'s closures take every entry): the lender gets them
            // back and drops them itself.
            lender.end_lending();
        }
        let left = self.children - self.next_child;
        // SAFETY: the lent children not handed out are alive: their lender
        // holds them (N6), and outlives this drop: `self.lender`, dropped
        // after this function, or, once a Builder took it over
        // (`Builder::hold_lender_of`), the node that Builder made, which
        // `rebuild` keeps while it drops this Drain. Shifting the bits
        // lines them up with the slice that starts at the cursor.
        unsafe {
            own_lent::<K, V>(
                NodeRef::<K, V>::children_base(ptr).add(self.next_child),
                left,
                self.lent.checked_shr(self.next_child as u32).unwrap_or(0),
            )
        };
        // SAFETY: 1. moving mode: this Drain holds the only reference;
        // 2. the slots past each cursor are initialised and were not handed out,
        //    so dropping them drops each value once (each is counted now, see
        //    above), but the borrowed entries, which are the lender's (E1);
        //    those before the cursors now belong to whoever took them;
        // 3. `deallocate` uses the header's counts, the node's real layout.
        unsafe {
            super::node::drop_entries_except(
                NodeRef::<K, V>::entries_base(ptr, self.children).add(self.next_entry),
                self.entries - self.next_entry,
                borrowed_left,
            );
            ptr::drop_in_place(ptr::slice_from_raw_parts_mut(
                NodeRef::<K, V>::children_base(ptr).add(self.next_child),
                self.children - self.next_child,
            ));
            NodeRef::<K, V>::deallocate(ptr, self.entries, self.children);
        }
    }
}

/// The mask of bits `0..n` (all 64 for `n >= 64`).
pub(super) fn bits_below(n: usize) -> u64 {
    1u64.checked_shl(n as u32).map_or(u64::MAX, |bit| bit - 1)
}

/// A copy of `node` sharing its children (lent, or counted) and its entries:
/// borrowed where `node` may lend them (E1), else cloned. If a `Clone`
/// panics, `node` is unchanged and the partial copy freed.
pub(super) fn shallow_copy<K: Clone, V: Clone>(node: &NodeRef<K, V>) -> NodeRef<K, V> {
    let mut from = Drain::new(node.clone());
    let (entries, children) = (from.entries_left(), from.children_left());
    let mut to = Builder::new(node.datamap(), node.nodemap(), entries, children);
    // `take_entries`, written out: through it, batches of `String`
    // overwrites at 100K keys, whose every first copy of a node comes
    // here, ran 7-9% slower (a standalone A/B, session 25).
    if entries > 0 && from.lends_entries() {
        to.borrow_entries(&mut from, entries);
    } else {
        to.own_entries(&mut from, entries);
    }
    to.take_children(&mut from, children);
    to.finish()
}

/// A rebuilt copy of a shared node borrows its entries (E1) only if the
/// node has this many: the copy then keeps at least two. So a node of one
/// entry and no children, which exists only on its way to be folded into
/// its parent (`trie::remove`), never borrows, and the fold can move its
/// entry. (Borrowing one entry would save one clone for the claim and the
/// settling it costs.)
const REBUILD_BORROW_MIN: usize = 3;

/// Replaces `*slot` by the node `f` builds from it.
///
/// If `*slot` is owned alone, `f` gets a moving [`Drain`] and no copy is made;
/// otherwise `f` gets a cloning one and `*slot` stays untouched until `f`
/// returns, so a panicking `Clone` leaves it as it was. The cloning one
/// lends the node's entries that `f` takes ([`Builder::take_entries`]) where
/// they need dropping (and the node has [`REBUILD_BORROW_MIN`]).
///
/// In moving mode `f` must not run user code (it only moves values, which
/// cannot panic): `*slot` is being taken apart, and a panic there would leave
/// it half-moved, so the process aborts instead. The entries it moves that
/// `*slot` borrows stay borrowed in the new node ([`Builder::take_entries`]);
/// `f` may not take one out for itself ([`Drain::next_entry`]): see
/// [`rebuild_taking`].
pub(crate) fn rebuild<K, V>(slot: &mut NodeRef<K, V>, f: impl FnOnce(&mut Drain<K, V>) -> NodeRef<K, V>)
where
    K: Clone,
    V: Clone,
{
    rebuild_taking(slot, None, f);
}

/// [`rebuild`] for an `f` that takes entry `taken` of `*slot` out for
/// itself ([`Drain::next_entry`]): to return it, or to move it elsewhere in
/// the trie, whose other nodes have other lenders. If `*slot` is owned alone
/// and borrows that entry (E1), it is made `*slot`'s own first, before
/// anything changes, since that runs `Clone`.
pub(crate) fn rebuild_taking<K, V>(
    slot: &mut NodeRef<K, V>,
    taken: Option<usize>,
    f: impl FnOnce(&mut Drain<K, V>) -> NodeRef<K, V>,
) where
    K: Clone,
    V: Clone,
{
    if !slot.is_unique() {
        let mut from = Drain::new(slot.clone());
        if from.entries < REBUILD_BORROW_MIN {
            from.never_lend_entries();
        }
        let new = f(&mut from);
        drop(from);
        *slot = new;
        return;
    }
    // Entries are moved below, under the guard; those that cannot be passed
    // on borrowed are made the node's own first, since that may run `Clone`.
    slot.own_entries_to_move(taken);
    struct AbortOnUnwind;
    impl Drop for AbortOnUnwind {
        fn drop(&mut self) {
            std::process::abort();
        }
    }
    let guard = AbortOnUnwind;
    // SAFETY: 1. the bitwise copy takes over the only reference (checked just
    //    above), and `*slot` is overwritten below without being dropped, so the
    //    count stays right;
    // 2. between the read and the write `*slot` must not be used or dropped:
    //    `f` cannot reach it (we hold `&mut`), and if `f` or the drain's drop
    //    panicked, the guard aborts before unwinding could drop the stale
    //    `*slot`;
    // 3. the drain and the new node are `ManuallyDrop`, so that such
    //    unwinding drops neither before the guard aborts: that would run
    //    user destructors (of the entries not handed out, of the new node's)
    //    and free the node `*slot` still points to.
    unsafe {
        let old = ptr::read(slot);
        let mut from = ManuallyDrop::new(Drain::new(old));
        debug_assert!(from.is_moving());
        let new = ManuallyDrop::new(f(&mut from));
        drop(ManuallyDrop::into_inner(from));
        ptr::write(slot, ManuallyDrop::into_inner(new));
    }
    core::mem::forget(guard);
}

/// [`settle_node`] for `node`, then for each lending child it does not
/// borrow, and so on down (the tests' way to settle a copy and those below
/// it; a batch settles along its written paths, `trie::settle_written`).
#[cfg(test)]
pub(crate) fn settle<K, V>(node: &NodeRef<K, V>) {
    let lent = settle_node(node);
    for (i, child) in node.children().iter().enumerate() {
        if lent & (1 << i) == 0 && child.is_lending() {
            settle(child);
        }
    }
}

thread_local! {
    /// How many lending nodes this thread has built. Per thread, not one
    /// process-wide counter: writers of different maps on different threads
    /// passed that one's cache line between them at every copy (1K-key
    /// `String` batches beside another writer took 1.41x the time of batches
    /// alone, 1.21x with this; docs/benchmarks.md, "Two writers, two maps").
    static LENDING_BUILT_HERE: Cell<u64> = const { Cell::new(0) };
}

#[inline]
fn count_lending_build() {
    LENDING_BUILT_HERE.with(|n| n.set(n.get() + 1));
}

/// This thread's count, and the address of its counter, which names the
/// thread for as long as the thread lives.
#[inline]
fn lending_built_here() -> (usize, u64) {
    LENDING_BUILT_HERE.with(|n| (ptr::from_ref(n).addr(), n.get()))
}

/// Tells a writer whether its batch built a lending node, so that it must
/// [`settle`] the batch's paths, or none, so that it can skip the walk.
///
/// A batch's writes run on the writer's thread, whose own count then tells,
/// unless the batch's [`Tx`](crate::Tx) (which is `Send`) was handed to another
/// thread: each write first calls [`will_write`](Self::will_write), which
/// notices that, and then the answer is "yes". Another map's batch on this
/// thread, inside the closure, also moves the count: a walk for nothing,
/// never a walk missed.
pub(crate) struct LendingWatch {
    thread: usize,
    built_before: u64,
    written_elsewhere: bool,
}

impl LendingWatch {
    /// Starts watching, on the writer's thread, before the batch's first write.
    #[inline]
    pub(crate) fn start() -> Self {
        let (thread, built_before) = lending_built_here();
        Self { thread, built_before, written_elsewhere: false }
    }

    /// Forgets the lending nodes built so far, which the batch has dropped
    /// (a restore replaced its working copy): on the thread that started
    /// watching, counts from now on. Anywhere else, or once a write ran
    /// elsewhere, it changes nothing, and the answer stays as it would be.
    #[inline]
    pub(crate) fn restart(&mut self) {
        let (thread, built) = lending_built_here();
        if thread == self.thread && !self.written_elsewhere {
            self.built_before = built;
        }
    }

    /// Called before each write that may copy a node.
    #[inline]
    pub(crate) fn will_write(&mut self) {
        if !self.written_elsewhere && lending_built_here().0 != self.thread {
            self.written_elsewhere = true;
        }
    }

    /// Whether a write ran on another thread than the one that started
    /// watching.
    #[inline]
    pub(crate) fn written_elsewhere(&self) -> bool {
        self.written_elsewhere
    }

    /// Whether the batch may have built a lending node; asked on the thread
    /// that started watching, once the batch's writes are over.
    #[inline]
    pub(crate) fn built_lending(&self) -> bool {
        let (thread, built) = lending_built_here();
        self.written_elsewhere || thread != self.thread || built != self.built_before
    }
}

/// Makes `node` own every child it borrows (N3, N6), and settles the
/// entries it borrows (E1, E2); returns the bits of the children it borrowed.
///
/// Where the lender is no longer shared (the version it belonged to has just
/// been freed or recycled), its counts are taken over: it is taken apart
/// without touching the counts of the children it lent, which is what makes a
/// path copy cost nothing per shared child, and the entries it lent become
/// `node`'s own, bit for bit. Otherwise each lent child gets a count of its
/// own, as a counting copy would have given it, and the borrowed entries stay
/// borrowed through an uncounted link until the lender or `node` goes. Runs
/// no user code except the destructors of what the lender alone held.
pub(crate) fn settle_node<K, V>(node: &NodeRef<K, V>) -> u64 {
    let (lent, lender) = node.take_lending();
    if let Some(lender) = lender
        && let Err(lender) = take_over(node, lender, lent)
    {
        // SAFETY: the lent children are alive: `lender`, dropped only after
        // this, holds them (N6).
        unsafe { own_lent(node.children().as_ptr(), node.children().len(), lent) };
        if node.borrowed() != 0 {
            // Someone still holds the lender: its entries stay borrowed,
            // through an uncounted link, until one of the two goes (E2).
            node.keep_link(&lender);
        }
        drop(lender);
    }
    lent
}

/// Hands `node` (whose lending state the caller took out) the counts that
/// `lender` holds on the children lent to it (`lent`), and frees the rest of
/// `lender`; `Err` (changing no count) if `lender` is shared or a lent child is
/// not `lender`'s own child at the same slot.
fn take_over<K, V>(node: &NodeRef<K, V>, lender: NodeRef<K, V>, lent: u64) -> Result<(), NodeRef<K, V>> {
    // A lender whose entries `node` borrows has `LENT` set, by `node` alone
    // (one borrower at a time); one that lends entries to another copy must
    // stay as it is.
    let borrowed = node.borrowed();
    let unique = if borrowed != 0 { lender.is_unique_but_lent() } else { lender.is_unique() };
    // A lender that borrows entries itself (a copy made after an older
    // version was held, which lends only its children) is not taken apart
    // here: its children are counted instead, and its own borrowing ends
    // when it is dropped.
    if !unique || lender.borrowed() != 0 {
        return Err(lender);
    }
    let (mine, theirs) = (node.children(), lender.children());
    let theirs_map = lender.nodemap();
    // Bit `j`: the lender's child `j` is lent to `node`, which takes its count.
    let mut given = 0u64;
    let mut slots = node.nodemap();
    if slots == theirs_map {
        // The same slots (the usual case: the batch replaced children, it did
        // not add or remove any): child `i` faces child `i`. No early exit, so
        // that the loop is a straight run of compares.
        let differ = mine
            .iter()
            .zip(theirs)
            .enumerate()
            .fold(0u64, |m, (i, (child, their))| m | u64::from(!child.ptr_eq(their)) << i);
        if differ & lent != 0 {
            return Err(lender);
        }
        given = lent;
    } else {
        for (i, child) in mine.iter().enumerate() {
            let bit = slots & slots.wrapping_neg();
            slots &= slots - 1;
            if lent & (1 << i) == 0 {
                continue;
            }
            let j = (theirs_map & bit.wrapping_sub(1)).count_ones() as usize;
            if theirs_map & bit == 0 || !child.ptr_eq(&theirs[j]) {
                return Err(lender);
            }
            given |= 1 << j;
        }
    }
    // The lender's bits of the entries `node` borrowed, which it passes over below.
    let lent_out = super::node::lender_bits(borrowed, node.datamap(), lender.datamap());
    // From here `node` counts every child itself (its lent bits are already
    // cleared), and owns every entry it borrowed, whatever happens below.
    if borrowed != 0 {
        lender.end_lending();
    }
    let mut parts = Drain::new(lender);
    assert!(parts.is_moving(), "snapview bug: a unique lender drained by clones");
    node.set_borrowed(0);
    // What only the lender held is dropped last, after every count has moved:
    // its destructors may panic.
    let mut doomed: [Option<NodeRef<K, V>>; 64] = core::array::from_fn(|_| None);
    let mut doomed_at = 0u64;
    // The lender's count on each of these is `node`'s now: nothing to do, so
    // they are passed over by runs (all but the few children the batch replaced).
    let counts_moved = given & !parts.lent_bits();
    let total = parts.children_left();
    let mut j = 0;
    while j < total {
        let run = ((counts_moved >> j).trailing_ones() as usize).min(total - j);
        parts.pass_counted_children(run);
        j += run;
        if j == total {
            break;
        }
        let (child, lent_to_lender) = parts.next_child_raw();
        match (given & (1 << j) != 0, lent_to_lender) {
            (true, false) => unreachable!("snapview bug: a moved count not passed over"),
            // The lender held no count (its own lender does): `node` needs one.
            (true, true) => core::mem::forget((*child).clone()),
            (false, false) => {
                doomed[j] = Some(ManuallyDrop::into_inner(child));
                doomed_at |= 1 << j;
            }
            // Not counted by the lender: nothing to give back.
            (false, true) => {}
        }
        j += 1;
    }
    // The borrowed entries are `node`'s now (the same bytes): the lender's
    // are passed over, the others it alone held are dropped.
    parts.drop_entries_except(lent_out);
    drop(parts);
    // Only the slots filled above, rather than a drop of all 64 (if one of
    // these drops panics, unwinding drops the array and with it the rest).
    while doomed_at != 0 {
        drop(doomed[doomed_at.trailing_zeros() as usize].take());
        doomed_at &= doomed_at - 1;
    }
    core::mem::forget(doomed); // all `None` now
    Ok(())
}

#[cfg(all(test, not(snapview_loom)))]
mod tests {
    use super::*;
    use crate::raw::{LendGuard, Lendable};
    use crate::trie::take_inline_entry;
    use std::rc::Rc;

    fn leaf<V: Clone>(entries: &[(u32, V)]) -> NodeRef<u32, V> {
        let mut b = Builder::collision(entries.len());
        for e in entries {
            b.push_entry(e.clone());
        }
        b.finish()
    }

    #[test]
    fn abandoned_builder_drops_what_it_was_given() {
        let _lend = LendGuard::allow::<u32, Rc<()>>();
        let token = Rc::new(());
        let mut b = Builder::<u32, Rc<()>>::collision(3);
        b.push_entry((1, token.clone()));
        b.push_entry((2, token.clone()));
        assert_eq!(Rc::strong_count(&token), 3);
        drop(b);
        assert_eq!(Rc::strong_count(&token), 1);
    }

    #[test]
    fn moving_drain_moves_and_drops_the_rest_once() {
        let _lend = LendGuard::allow::<u32, Rc<()>>();
        let token = Rc::new(());
        let node = leaf(&[(1, token.clone()), (2, token.clone()), (3, token.clone())]);
        assert_eq!(Rc::strong_count(&token), 4);
        let mut d = Drain::new(node);
        assert!(d.is_moving());
        let (k, v) = d.next_entry();
        assert_eq!(k, 1);
        assert_eq!(Rc::strong_count(&token), 4, "a move does not clone");
        drop(v);
        drop(d);
        assert_eq!(Rc::strong_count(&token), 1);
    }

    #[test]
    fn cloning_drain_leaves_a_shared_node_alone() {
        let _lend = LendGuard::allow::<u32, Rc<()>>();
        let token = Rc::new(());
        let node = leaf(&[(1, token.clone()), (2, token.clone())]);
        let keep = node.clone();
        let mut d = Drain::new(node);
        assert!(!d.is_moving());
        let e = d.next_entry();
        assert_eq!(Rc::strong_count(&token), 4);
        drop((e, d));
        assert_eq!(keep.entries().len(), 2);
        assert_eq!(Rc::strong_count(&token), 3);
    }

    /// A node of `width` single-entry children (slots 0..width) and one
    /// entry (slot 63), every value holding `token`.
    fn wide<V: Clone>(width: u32, token: &V) -> NodeRef<u32, V> {
        let nodemap = (1u64 << width) - 1;
        let mut b = Builder::trie(1 << 63, nodemap);
        for i in 0..width {
            b.push_child(leaf(&[(i, token.clone())]));
        }
        b.push_entry((63, token.clone()));
        b.finish()
    }

    fn counts(node: &NodeRef<u32, Rc<()>>) -> Vec<u32> {
        node.children().iter().map(NodeRef::ref_count).collect()
    }

    /// A copy-on-write of `node`, which stays shared, as a write makes it.
    fn copy_of<V: Clone>(node: &NodeRef<u32, V>) -> NodeRef<u32, V> {
        let mut copy = node.clone();
        copy.make_mut();
        copy
    }

    #[test]
    fn a_lending_watch_counts_the_lending_builds_of_its_own_thread_only() {
        let node = wide(LEND_MIN as u32, &0u32);
        let watch = LendingWatch::start();
        assert!(!watch.built_lending());
        std::thread::spawn(|| assert!(copy_of(&wide(LEND_MIN as u32, &0u32)).is_lending())).join().unwrap();
        assert!(!watch.built_lending(), "another thread's copy is not this batch's");
        let narrow = wide(2, &0u32);
        assert!(!copy_of(&narrow).is_lending());
        assert!(!watch.built_lending(), "a counting copy lends nothing");
        let copy = copy_of(&node);
        assert!(copy.is_lending());
        assert!(watch.built_lending());
    }

    #[test]
    fn a_write_on_another_thread_makes_a_lending_watch_answer_yes() {
        let mut watch = LendingWatch::start();
        watch.will_write();
        assert!(!watch.built_lending(), "a write on the watch's own thread that built nothing");
        std::thread::scope(|s| {
            s.spawn(|| watch.will_write());
        });
        assert!(watch.built_lending(), "what the other thread built is not counted here");
    }

    #[test]
    fn a_copy_of_a_wide_node_lends_its_children_without_counting_them() {
        let _lend = LendGuard::allow::<u32, Rc<()>>();
        let token = Rc::new(());
        let node = wide(LEND_MIN as u32, &token);
        let copy = copy_of(&node);
        assert!(!copy.ptr_eq(&node));
        assert!(copy.is_lending());
        assert!(copy.children().iter().zip(node.children()).all(|(a, b)| a.ptr_eq(b)));
        assert!(counts(&node).iter().all(|&c| c == 1), "children's counts untouched");
        assert_eq!(node.ref_count(), 2, "the copy holds one count on its source instead");
        assert_eq!(Rc::strong_count(&token), 1 + LEND_MIN + 1, "nothing cloned: the entry is borrowed too");
        assert_eq!(copy.borrowed(), 1);
    }

    #[test]
    fn a_copy_of_a_narrow_node_counts_its_children() {
        let _lend = LendGuard::allow::<u32, Rc<()>>();
        let token = Rc::new(());
        let node = wide(LEND_MIN as u32 - 1, &token);
        let copy = copy_of(&node);
        assert!(counts(&node).iter().all(|&c| c == 2));
        assert!(copy.is_lending(), "it holds its source, for the entry it borrows");
        assert_eq!(node.ref_count(), 2);
    }

    #[test]
    fn settling_while_the_source_is_held_counts_each_lent_child() {
        let _lend = LendGuard::allow::<u32, Rc<()>>();
        let token = Rc::new(());
        let node = wide(10, &token);
        let copy = copy_of(&node);
        settle(&copy);
        assert!(!copy.is_lending());
        assert!(counts(&node).iter().all(|&c| c == 2), "each child counted by both");
        assert_eq!(node.ref_count(), 1, "the lender was released");
        drop(node);
        assert!(counts(&copy).iter().all(|&c| c == 1));
        drop(copy);
        assert_eq!(Rc::strong_count(&token), 1);
    }

    #[test]
    fn settling_once_the_source_is_gone_takes_its_counts_over() {
        let _lend = LendGuard::allow::<u32, Rc<()>>();
        let token = Rc::new(());
        let node = wide(10, &token);
        let mut copy = copy_of(&node);
        // The batch replaces child 3 and keeps the other nine lent.
        *copy.get_mut().expect("unique copy").1.get(3) = leaf(&[(3, token.clone())]);
        drop(node);
        assert_eq!(Rc::strong_count(&token), 1 + 10 + 1 + 1, "the source lives on in the lender");
        settle(&copy);
        assert!(!copy.is_lending());
        assert!(counts(&copy).iter().all(|&c| c == 1), "counts moved, none added");
        assert_eq!(Rc::strong_count(&token), 1 + 10 + 1, "the source's entry and replaced child are freed");
        drop(copy);
        assert_eq!(Rc::strong_count(&token), 1);
    }

    #[test]
    fn taking_counts_over_passes_runs_and_frees_each_replaced_child() {
        let _lend = LendGuard::allow::<u32, Rc<()>>();
        for replaced in [vec![0], vec![9], vec![0, 9], vec![2, 3, 7], (0..10).collect()] {
            let token = Rc::new(());
            let node = wide(10, &token);
            let mut copy = copy_of(&node);
            for &i in &replaced {
                *copy.get_mut().expect("unique copy").1.get(i) = leaf(&[(i as u32, token.clone())]);
            }
            drop(node);
            settle(&copy);
            assert!(!copy.is_lending());
            assert!(counts(&copy).iter().all(|&c| c == 1), "{replaced:?}: counts moved, none added");
            assert_eq!(Rc::strong_count(&token), 1 + 10 + 1, "{replaced:?}: the source's own parts are freed");
            drop(copy);
            assert_eq!(Rc::strong_count(&token), 1, "{replaced:?}");
        }
    }

    #[test]
    fn a_lent_child_taken_mutably_is_counted_first_and_copied_on_write() {
        let _lend = LendGuard::allow::<u32, Rc<()>>();
        let token = Rc::new(());
        let node = wide(10, &token);
        let mut copy = copy_of(&node);
        let (_, mut children) = copy.get_mut().expect("unique copy");
        let child = children.get(0);
        assert_eq!(child.ref_count(), 2, "counted by the copy now");
        child.make_mut().0.get(0).0 = 99;
        assert_eq!(node.children()[0].entries()[0].0, 0, "the source's child is unchanged");
        assert_eq!(copy.children()[0].entries()[0].0, 99);
        drop(copy);
        assert!(counts(&node).iter().all(|&c| c == 1));
    }

    #[test]
    fn a_lending_node_dropped_unsettled_gives_every_count_back() {
        let _lend = LendGuard::allow::<u32, Rc<()>>();
        let token = Rc::new(());
        let node = wide(12, &token);
        // Rebuilt by moves (as a batch does to its own copy), then abandoned,
        // as a panicking batch abandons its working copy.
        let mut copy = copy_of(&node);
        rebuild_taking(&mut copy, Some(0), |from| {
            let mut to = Builder::trie(0, (1 << 12) - 1);
            let _entry = from.next_entry();
            to.take_children(from, 12);
            to.finish()
        });
        assert!(copy.is_lending(), "the lender moved to the rebuilt node");
        drop(copy);
        assert!(counts(&node).iter().all(|&c| c == 1));
        assert_eq!(node.ref_count(), 1);
        drop(node);
        assert_eq!(Rc::strong_count(&token), 1);
    }

    /// A trie leaf holding `entries` in slots 0, 1, ..: unlike a collision
    /// node (`leaf`), one whose copies borrow its entries.
    fn trie_leaf(entries: &[(u32, Rc<()>)]) -> NodeRef<u32, Rc<()>> {
        let mut b = Builder::trie(bits_below(entries.len()), 0);
        for e in entries {
            b.push_entry(e.clone());
        }
        b.finish()
    }

    /// A write through a shared leaf: the copy, and the entry it overwrites.
    fn overwrite(leaf_: &NodeRef<u32, Rc<()>>, at: usize, token: &Rc<()>) -> NodeRef<u32, Rc<()>> {
        let mut copy = leaf_.clone();
        copy.make_mut().0.get(at).1 = token.clone();
        copy
    }

    #[test]
    fn a_copy_borrows_its_sources_entries_and_clones_only_the_one_it_writes() {
        let _lend = LendGuard::allow::<u32, Rc<()>>();
        let (old, new) = (Rc::new(()), Rc::new(()));
        let source = trie_leaf(&[(1, old.clone()), (2, old.clone()), (3, old.clone())]);
        let copy = overwrite(&source, 1, &new);
        assert_eq!(copy.borrowed(), 0b101);
        assert_eq!(Rc::strong_count(&old), 1 + 3, "no clone of the borrowed entries");
        assert_eq!(Rc::strong_count(&new), 2);
        assert_eq!(copy.entries().iter().map(|e| e.0).collect::<Vec<_>>(), [1, 2, 3]);
        assert!(Rc::ptr_eq(&copy.entries()[1].1, &new));
        drop(copy);
        assert_eq!(Rc::strong_count(&old), 4, "the borrowed entries stay the source's");
        drop(source);
        assert_eq!((Rc::strong_count(&old), Rc::strong_count(&new)), (1, 1));
    }

    #[test]
    fn settling_once_the_source_is_gone_takes_its_entries_over() {
        let _lend = LendGuard::allow::<u32, Rc<()>>();
        let (old, new) = (Rc::new(()), Rc::new(()));
        let source = trie_leaf(&[(1, old.clone()), (2, old.clone()), (3, old.clone())]);
        let copy = overwrite(&source, 1, &new);
        drop(source);
        settle(&copy);
        assert_eq!(copy.borrowed(), 0, "owned now");
        assert!(!copy.is_lending());
        assert_eq!(Rc::strong_count(&old), 1 + 2, "the overwritten original went with the source");
        drop(copy);
        assert_eq!((Rc::strong_count(&old), Rc::strong_count(&new)), (1, 1));
    }

    #[test]
    fn a_held_source_drops_what_it_alone_held_and_the_later_of_the_two_the_rest() {
        let _lend = LendGuard::allow::<u32, Rc<()>>();
        for source_goes_first in [true, false] {
            let (old, new) = (Rc::new(()), Rc::new(()));
            let source = trie_leaf(&[(1, old.clone()), (2, old.clone()), (3, old.clone())]);
            let copy = overwrite(&source, 1, &new);
            settle(&copy);
            assert_eq!(copy.borrowed(), 0b101, "still borrowed, through a link");
            assert!(!copy.is_lending());
            assert_eq!(source.ref_count(), 1, "the copy's count is given back");
            if source_goes_first {
                drop(source);
                assert_eq!(Rc::strong_count(&old), 1 + 2, "the overwritten original went with the source");
                assert_eq!(copy.entries()[0].0, 1, "the lent entries stay");
                drop(copy);
            } else {
                drop(copy);
                assert_eq!(Rc::strong_count(&new), 1);
                assert_eq!(source.entries()[2].0, 3);
                drop(source);
            }
            assert_eq!((Rc::strong_count(&old), Rc::strong_count(&new)), (1, 1), "{source_goes_first}");
        }
    }

    #[test]
    fn a_later_write_to_a_borrowing_node_owns_its_entries_first() {
        let _lend = LendGuard::allow::<u32, Rc<()>>();
        for source_held in [true, false] {
            let (old, new) = (Rc::new(()), Rc::new(()));
            let source = trie_leaf(&[(1, old.clone()), (2, old.clone()), (3, old.clone())]);
            let mut copy = overwrite(&source, 1, &new);
            settle(&copy);
            assert!(!source.is_unique(), "a lender is never changed in place");
            let held = source_held.then(|| source.clone());
            drop(source);
            // The next batch writes entry 2 of its own (unshared) copy in place:
            // both borrowed entries are cloned while the source is held, and
            // taken over (no clone) once it has gone.
            copy.make_mut().0.get(2).1 = new.clone();
            assert_eq!(copy.borrowed(), 0, "{source_held}");
            assert_eq!(Rc::strong_count(&old), if source_held { 1 + 3 + 1 } else { 1 + 1 }, "{source_held}");
            drop(held);
            assert_eq!(Rc::strong_count(&old), 1 + 1, "{source_held}");
            drop(copy);
            assert_eq!((Rc::strong_count(&old), Rc::strong_count(&new)), (1, 1), "{source_held}");
        }
    }

    /// A trie leaf holding `entries`, in order, in the slots of `datamap`.
    fn leaf_in(datamap: u64, entries: &[(u32, Rc<()>)]) -> NodeRef<u32, Rc<()>> {
        let mut b = Builder::trie(datamap, 0);
        for e in entries {
            b.push_entry(e.clone());
        }
        b.finish()
    }

    /// A trie leaf whose entries fill the slots of `datamap`, each keyed by
    /// its slot and holding a token of its own (so that an entry dropped in
    /// place of another shows), and the tokens.
    fn leaf_of_tokens(datamap: u64) -> (Vec<Rc<()>>, NodeRef<u32, Rc<()>>) {
        let slots: Vec<u32> = (0..64).filter(|s| datamap & (1 << s) != 0).collect();
        let tokens: Vec<Rc<()>> = slots.iter().map(|_| Rc::new(())).collect();
        let entries: Vec<_> = slots.iter().zip(&tokens).map(|(&s, t)| (s, t.clone())).collect();
        (tokens, leaf_in(datamap, &entries))
    }

    fn counts_of(tokens: &[Rc<()>]) -> Vec<usize> {
        tokens.iter().map(Rc::strong_count).collect()
    }

    fn keys<V>(node: &NodeRef<u32, V>) -> Vec<u32> {
        node.entries().iter().map(|e| e.0).collect()
    }

    /// A node the caller holds alone takes entries in and gives them out in
    /// place while its room lasts (`room`: 9 to 12 entries of 8 bytes share
    /// one allocation, in a map of plain data), keeping slot order and every
    /// other entry; past its room it moves to an allocation of the right
    /// size (`relocate`); shared, it refuses and changes nothing. A map
    /// whose entries drop has no room: it always refuses.
    #[test]
    fn an_unshared_node_adds_and_takes_entries_in_place_within_its_room() {
        let value = |k: u32| k + 100;
        let mut node = node_of(&(0..=16).step_by(2).collect::<Vec<_>>(), &[], &[], value);
        let mut allocation = node.as_ptr();
        // (slot, whether the node moves): 10 to 12 entries fit the room of 9
        // (96 bytes); the 13th needs 128.
        for (slot, moves) in [(3, false), (1, false), (17, false), (5, true), (21, false)] {
            assert!(node.insert_entry_in_place(1 << slot, (slot, value(slot))).is_ok(), "slot {slot}");
            assert_eq!(node.as_ptr() != allocation, moves, "insert into slot {slot}");
            allocation = node.as_ptr();
            assert_laid_out(&node, value);
        }
        let shared = node.clone();
        let mut copy = node.clone();
        assert!(copy.take_entry_in_place(1 << 3).is_none(), "shared");
        assert!(copy.insert_entry_in_place(1 << 7, (7, 107)).is_err(), "shared");
        drop((shared, copy));
        // From 14 entries (112 of 128 bytes): 12 fit 96 bytes, 8 fit 64.
        let takes = [(3, false), (0, true), (17, false), (21, false), (5, false), (4, true)];
        for (slot, moves) in takes {
            assert_eq!(node.take_entry_in_place(1 << slot), Some((slot, value(slot))));
            assert_eq!(node.as_ptr() != allocation, moves, "taking slot {slot}");
            allocation = node.as_ptr();
            assert_laid_out(&node, value);
        }
        assert_eq!(keys(&node), [1, 2, 6, 8, 10, 12, 14, 16]);

        let (tokens, mut dropping) = leaf_of_tokens(0b1_0101_0101);
        let token = Rc::new(());
        assert!(dropping.insert_entry_in_place(1 << 3, (3, token.clone())).is_err(), "no room where entries drop");
        assert!(dropping.take_entry_in_place(1 << 2).is_none());
        drop(dropping);
        assert_eq!((counts_of(&tokens), Rc::strong_count(&token)), (vec![1; 5], 1));
    }

    /// A node with children moves with them and their occupancies (its tail
    /// is made anew, as cleared as the old one); a lending copy (a batch's
    /// first write to a shared node of 8 children or more) adds entries
    /// within its room, but does not move: its tail holds its lender and
    /// the lent bits that index its child array.
    #[test]
    fn a_node_past_its_room_moves_with_its_children_unless_it_is_lending() {
        let value = |k: u32| k.wrapping_mul(3);
        let counted_once = |node: &NodeRef<u32, u32>| node.children().iter().all(|c| c.ref_count() == 1);
        // 4 entries and 2 children fill 64 bytes, exactly.
        let mut node = node_of(&[0, 2, 4, 6], &[5, 40], &[], value);
        let allocation = node.as_ptr();
        assert!(node.insert_entry_in_place(1 << 1, (1, value(1))).is_ok());
        assert_ne!(node.as_ptr(), allocation);
        assert_laid_out(&node, value);
        assert!(counted_once(&node), "the children moved, not cloned");
        let allocation = node.as_ptr();
        assert!(node.insert_entry_in_place(1 << 8, (8, value(8))).is_ok(), "96 bytes of 96");
        assert_eq!(node.as_ptr(), allocation);
        assert_eq!(node.take_entry_in_place(1 << 0), Some((0, value(0))));
        assert_eq!(node.take_entry_in_place(1 << 4), Some((4, value(4))));
        assert_ne!(node.as_ptr(), allocation, "64 bytes are allocated exactly");
        assert_laid_out(&node, value);
        assert!(counted_once(&node));

        let odd = [1, 3, 5, 7, 9, 11, 13, 15];
        // With 8 children, 7 entries fill 184 bytes of 192, 8 all 192, and
        // 9 fill 200 of 256.
        for entries in [0..=12, 0..=14, 0..=16] {
            let source = node_of(&entries.clone().step_by(2).collect::<Vec<_>>(), &odd, &[], value);
            let mut copy = source.clone();
            copy.make_mut();
            assert!(copy.is_lending(), "a copy of 8 children lends them");
            let allocation = copy.as_ptr();
            match entries.end() {
                12 => assert!(copy.insert_entry_in_place(1 << 20, (20, value(20))).is_ok(), "within its room"),
                14 => assert!(copy.insert_entry_in_place(1 << 20, (20, value(20))).is_err(), "past its room"),
                _ => assert!(copy.take_entry_in_place(1 << 2).is_none(), "to less room"),
            }
            assert_eq!(copy.as_ptr(), allocation);
            assert_laid_out(&copy, value);
            drop(copy);
            assert!(source.is_unique());
            assert_laid_out(&source, value);
        }
    }

    /// A child for slot `slot` of its parent, holding `entries` (one or
    /// two) in child slots of its own: `slot % 63`, then 63, so that no two
    /// children in a test share an occupancy.
    fn child_for<V>(slot: u32, entries: Vec<(u32, V)>) -> NodeRef<u32, V> {
        let slots = [slot % 63, 63];
        let mut b = Builder::trie(slots[..entries.len()].iter().fold(0, |map, s| map | 1 << s), 0);
        entries.into_iter().for_each(|e| b.push_entry(e));
        b.finish()
    }

    /// A trie node with an entry keyed by its slot (valued `value(slot)`)
    /// in each of `entry_slots`, a child of two entries (keys `1000 + slot`
    /// and `2000 + slot`) in each of `pair_slots`, and a child of one entry
    /// (key `slot`) in each of `single_slots`.
    fn node_of<V: Clone>(
        entry_slots: &[u32],
        pair_slots: &[u32],
        single_slots: &[u32],
        value: fn(u32) -> V,
    ) -> NodeRef<u32, V> {
        let map = |slots: &[u32]| slots.iter().fold(0u64, |map, s| map | 1 << s);
        let mut b = Builder::trie(map(entry_slots), map(pair_slots) | map(single_slots));
        let mut entries = entry_slots.to_vec();
        entries.sort_unstable();
        entries.iter().for_each(|&slot| b.push_entry((slot, value(slot))));
        let mut children: Vec<u32> = [pair_slots, single_slots].concat();
        children.sort_unstable();
        for slot in children {
            let entries = match pair_slots.contains(&slot) {
                true => vec![(1000 + slot, value(1000 + slot)), (2000 + slot, value(2000 + slot))],
                false => vec![(slot, value(slot))],
            };
            b.push_child(child_for(slot, entries));
        }
        b.finish()
    }

    /// Checks every entry, child and occupancy of `node` against its
    /// bitmaps: an entry is keyed by its slot and valued `value(key)`; a
    /// child in slot `s` holds keys `1000 + s` and `2000 + s`, or `s` (and
    /// `3000 + s` if made from an entry), and the occupancy beside it is
    /// its own (O1), which differs from child to child.
    fn assert_laid_out<V: PartialEq + core::fmt::Debug>(node: &NodeRef<u32, V>, value: fn(u32) -> V) {
        let slots = |map: u64| (0..64u32).filter(move |s| map & 1 << s != 0);
        let entry_slots: Vec<u32> = slots(node.datamap()).collect();
        assert_eq!(keys(node), entry_slots);
        assert!(node.entries().iter().all(|(k, v)| *v == value(*k)), "values stay with their keys");
        assert_eq!(node.children().len(), slots(node.nodemap()).count());
        for slot in slots(node.nodemap()) {
            let crate::raw::Slot::Child(child, at) = node.slot(1 << slot) else { panic!("no child in slot {slot}") };
            let child_keys = keys(child);
            assert!(
                [vec![1000 + slot, 2000 + slot], vec![slot, 3000 + slot], vec![slot]].contains(&child_keys),
                "slot {slot}: {child_keys:?}"
            );
            assert!(child.entries().iter().all(|(k, v)| *v == value(*k)));
            assert_eq!(child.occupancy() & !(1 << 63), 1 << (slot % 63), "the child of slot {slot}");
            assert_eq!(at.occupancy(), child.occupancy(), "O1 in slot {slot}");
        }
    }

    /// Turns the entry in `slot` into a child (of it and key `3000 + slot`)
    /// in place, and checks the node after.
    fn to_child_in_place<V>(node: &mut NodeRef<u32, V>, slot: u32, value: fn(u32) -> V)
    where
        V: Clone + PartialEq + core::fmt::Debug,
    {
        let allocation = node.as_ptr();
        let made = node.entry_to_child_in_place(1 << slot, |existing| {
            child_for(slot, vec![existing, (3000 + slot, value(3000 + slot))])
        });
        assert!(made.is_ok(), "slot {slot}");
        assert_eq!(node.as_ptr(), allocation, "in place");
        assert_laid_out(node, value);
    }

    /// Folds the one-entry child in `slot` in place, and checks the node after.
    fn to_entry_in_place<V: PartialEq + core::fmt::Debug>(node: &mut NodeRef<u32, V>, slot: u32, value: fn(u32) -> V) {
        let allocation = node.as_ptr();
        assert!(node.child_to_entry_in_place(1 << slot), "slot {slot}");
        assert_eq!(node.as_ptr(), allocation, "in place");
        assert_laid_out(node, value);
    }

    /// An entry of 64 bytes aligned to 32: the entry array's start moves by
    /// 0 or 32 bytes as a child comes or goes.
    #[derive(Clone, Copy, Debug, PartialEq)]
    #[repr(align(32))]
    struct Wide(u32);

    /// An entry whose slot takes a new key turns into a child in place, and
    /// a child of one entry back into it, where the node is the caller's
    /// alone, keeps children, and its room takes the change: each at the
    /// first, a middle and the last child index, with entries of 8 bytes
    /// (a child takes two entries' bytes: the entries after it move up),
    /// 24 (they move down) and 64 aligned to 32 (the entry array stays or
    /// moves by 32).
    #[test]
    fn an_unshared_node_turns_entries_into_children_and_back_in_place_within_its_room() {
        let small = |k: u32| k.wrapping_mul(7);
        // 9 entries and 2 children fill 104 bytes of 128: three conversions fit.
        let mut node = node_of(&[0, 2, 4, 6, 8, 10, 12, 14, 50], &[5, 40], &[], small);
        for slot in [50, 10, 0] {
            to_child_in_place(&mut node, slot, small);
        }
        let refused = node.entry_to_child_in_place(1 << 2, |_| unreachable!("refused before it builds"));
        assert!(refused.is_err(), "5 entries and 6 children fill 136 bytes");
        let shared = node.clone();
        assert!(node.entry_to_child_in_place(1 << 2, |_| unreachable!()).is_err(), "shared");
        assert!(!node.child_to_entry_in_place(1 << 50), "shared");
        drop(shared);
        // 8 entries and 4 children fill 128 bytes of 128.
        let mut node = node_of(&[0, 2, 4, 6, 8, 10, 12, 14], &[], &[5, 20, 40, 50], small);
        for slot in [50, 20, 5] {
            to_entry_in_place(&mut node, slot, small);
        }
        assert!(!node.child_to_entry_in_place(1 << 40), "the last child takes the tail with it");

        let large = |k: u32| [k, k + 1, k + 2, k + 3, k + 4];
        // 6 entries of 24 bytes and a child fill 160 bytes of 192; each
        // conversion takes 8 bytes less.
        let mut node = node_of(&[1, 5, 9, 13, 17, 40], &[30], &[], large);
        for slot in [40, 9, 13] {
            to_child_in_place(&mut node, slot, large);
        }
        let mut node = node_of(&[1, 5, 13, 17], &[], &[3, 9, 30], large);
        for slot in [9, 30] {
            to_entry_in_place(&mut node, slot, large);
        }

        let wide = Wide;
        // 5 entries of 64 bytes and a child fill 360 bytes of 384.
        let mut node = node_of(&[1, 5, 9, 13, 17], &[30], &[], wide);
        for slot in [9, 17] {
            to_child_in_place(&mut node, slot, wide);
        }
        // 3 entries and 3 children fill 264 bytes of 384: the entry array
        // moves by 32 bytes on the first fold (its start rounded up to 32),
        // not at all on the second.
        let mut node = node_of(&[5, 9, 20], &[], &[3, 13, 30], wide);
        for slot in [3, 13] {
            to_entry_in_place(&mut node, slot, wide);
        }
    }

    /// Where the changes in place are refused: a node without children (the
    /// first brings the tail), a child of two entries, and a map whose
    /// entries drop, even where the sizes would allow it (16-byte entries
    /// and exact sizes: an entry and a child take the same bytes).
    #[test]
    fn changes_of_arity_in_place_are_refused_where_they_would_not_hold() {
        let mut childless = Builder::trie(0b1111_1111_1111, 0);
        (0..12).for_each(|slot| childless.push_entry((slot, slot)));
        let mut childless = childless.finish();
        assert!(childless.entry_to_child_in_place(1 << 3, |_| unreachable!()).is_err(), "a first child brings a tail");
        let mut node = node_of(&[0, 2, 4, 6, 8, 10, 12, 14], &[5], &[20, 40], |k| k);
        assert!(!node.child_to_entry_in_place(1 << 5), "a child of two entries");

        let mut dropping = node_of(&[0, 2, 4], &[], &[5, 20], |_| Rc::new(()));
        assert!(dropping.entry_to_child_in_place(1 << 2, |_| unreachable!()).is_err(), "no room where entries drop");
        assert!(!dropping.child_to_entry_in_place(1 << 5), "no room where entries drop");
        assert_eq!((keys(&dropping), dropping.children().len()), (vec![0, 2, 4], 2));
    }

    /// A panicking `make_child` leaves the node as it was, owning its entry.
    #[test]
    fn a_child_that_fails_to_build_leaves_the_node_unchanged() {
        let value = |k: u32| u64::from(k) << 32 | 7;
        let mut node = node_of(&[0, 2, 4, 6, 8, 10, 12, 14, 16], &[40], &[], value);
        let before: Vec<(u32, u64)> = node.entries().to_vec();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = node.entry_to_child_in_place(1 << 4, |_| panic!("the child's allocation fails"));
        }));
        assert!(caught.is_err());
        assert_eq!((node.entries(), node.nodemap()), (before.as_slice(), 1 << 40));
        assert_laid_out(&node, value);
    }

    /// What `trie::insert` does with a new key whose slot in `node` is
    /// empty where it cannot add it in place: `node` rebuilt with `entry` in
    /// slot `bit` (by moves if it is unshared, as a batch's second write to
    /// a node it copied).
    fn add_entry<V: Clone>(node: &mut NodeRef<u32, V>, bit: u64, entry: (u32, V)) {
        crate::trie::rebuild_with_entry(node, bit, entry);
    }

    /// `add_entry` to a copy of a shared node.
    fn with_entry(node: &NodeRef<u32, Rc<()>>, bit: u64, entry: (u32, Rc<()>)) -> NodeRef<u32, Rc<()>> {
        let mut copy = node.clone();
        add_entry(&mut copy, bit, entry);
        copy
    }

    /// `trie::take_inline_entry` from a copy of a shared node.
    fn without_entry(node: &NodeRef<u32, Rc<()>>, bit: u64) -> (NodeRef<u32, Rc<()>>, (u32, Rc<()>)) {
        let mut copy = node.clone();
        let removed = take_inline_entry(&mut copy, bit);
        (copy, removed)
    }

    #[test]
    fn a_copy_rebuilt_around_a_key_it_adds_borrows_the_entries_on_either_side() {
        let _lend = LendGuard::allow::<u32, Rc<()>>();
        for source_held in [true, false] {
            let (old, new) = (Rc::new(()), Rc::new(()));
            // Slots 0, 2 and 4; the new key goes into slot 1, so the entry of
            // slot 4 is entry 2 in the source and entry 3 in the copy.
            let source = leaf_in(0b10101, &[(0, old.clone()), (2, old.clone()), (4, old.clone())]);
            let mut copy = with_entry(&source, 0b10, (1, new.clone()));
            assert_eq!(keys(&copy), [0, 1, 2, 4]);
            assert_eq!(copy.borrowed(), 0b1101, "{source_held}: all but the added entry");
            assert_eq!(Rc::strong_count(&old), 1 + 3, "{source_held}: nothing cloned");
            // The batch then writes the entry of slot 4: cloned alone, and
            // its original is the source's to drop again (its bit there is 2).
            copy.make_mut().0.get(3).1 = new.clone();
            assert_eq!(copy.borrowed(), 0b0101);
            assert_eq!(Rc::strong_count(&old), 1 + 3);
            let held = source_held.then(|| source.clone());
            drop(source);
            settle(&copy);
            if source_held {
                assert_eq!(copy.borrowed(), 0b0101, "borrowed through a link");
                assert_eq!(Rc::strong_count(&old), 1 + 3);
                drop(held);
            } else {
                assert_eq!(copy.borrowed(), 0, "taken over");
            }
            assert_eq!(Rc::strong_count(&old), 1 + 2, "{source_held}: the written original went with the source");
            assert_eq!(keys(&copy), [0, 1, 2, 4]);
            drop(copy);
            assert_eq!((Rc::strong_count(&old), Rc::strong_count(&new)), (1, 1), "{source_held}");
        }
    }

    #[test]
    fn a_copy_rebuilt_without_a_key_borrows_the_entries_left() {
        let _lend = LendGuard::allow::<u32, Rc<()>>();
        for source_held in [true, false] {
            let (tokens, source) = leaf_of_tokens(0b1111);
            let counts = || counts_of(&tokens);
            // Entries 2 and 3 of the source are entries 1 and 2 of the copy.
            let (copy, removed) = without_entry(&source, 0b10);
            assert_eq!((keys(&copy), removed.0), (vec![0, 2, 3], 1));
            assert_eq!(copy.borrowed(), 0b111, "{source_held}");
            assert_eq!(counts(), [2, 3, 2, 2], "{source_held}: only the removed entry cloned");
            drop(removed);
            let held = source_held.then(|| source.clone());
            drop(source);
            settle(&copy);
            assert_eq!(copy.borrowed(), if source_held { 0b111 } else { 0 }, "{source_held}");
            drop(held);
            assert_eq!(counts(), [2, 1, 2, 2], "{source_held}: the removed original went with the source");
            drop(copy);
            assert_eq!(counts(), [1, 1, 1, 1], "{source_held}");
        }
    }

    #[test]
    fn a_key_added_to_a_borrowing_copy_moves_its_borrowed_entries_on() {
        let _lend = LendGuard::allow::<u32, Rc<()>>();
        for source_held in [true, false] {
            let (tokens, source) = leaf_of_tokens(0b10101);
            let counts = || counts_of(&tokens);
            let new = Rc::new(());
            // The batch's first write copies the source; its second and
            // third rebuild that copy, unshared, by moves.
            let mut copy = with_entry(&source, 0b10, (1, new.clone()));
            assert_eq!(copy.borrowed(), 0b1101);
            add_entry(&mut copy, 0b1000, (3, new.clone()));
            add_entry(&mut copy, 0b100000, (5, new.clone()));
            assert_eq!(keys(&copy), [0, 1, 2, 3, 4, 5]);
            assert_eq!(copy.borrowed(), 0b10101, "{source_held}: the source's entries, each in its slot");
            assert_eq!(counts(), [2, 2, 2], "{source_held}: nothing cloned");
            assert!(copy.is_lending(), "the counted lender moved on with the entries");
            let held = source_held.then(|| source.clone());
            drop(source);
            settle(&copy);
            assert_eq!(copy.borrowed(), if source_held { 0b10101 } else { 0 }, "{source_held}");
            assert_eq!(counts(), [2, 2, 2], "{source_held}");
            drop(held);
            assert_eq!(counts(), [2, 2, 2], "{source_held}: the copy's entries outlive the source");
            assert_eq!(keys(&copy), [0, 1, 2, 3, 4, 5]);
            drop(copy);
            assert_eq!(counts(), [1, 1, 1], "{source_held}");
            assert_eq!(Rc::strong_count(&new), 1);
        }
    }

    #[test]
    fn a_borrowed_key_removed_from_a_borrowing_copy_is_cloned_alone() {
        let _lend = LendGuard::allow::<u32, Rc<()>>();
        for source_held in [true, false] {
            let (tokens, source) = leaf_of_tokens(0b1111);
            let counts = || counts_of(&tokens);
            let new = Rc::new(());
            let mut copy = with_entry(&source, 0b10000, (4, new.clone()));
            assert_eq!(copy.borrowed(), 0b1111);
            // Removed from the unshared copy: the entry leaves the node, so
            // it is cloned; the source keeps its original, no longer lent.
            let removed = take_inline_entry(&mut copy, 0b10);
            assert_eq!((keys(&copy), removed.0), (vec![0, 2, 3, 4], 1));
            assert_eq!(copy.borrowed(), 0b0111, "{source_held}: the other three moved on borrowed");
            assert_eq!(counts(), [2, 3, 2, 2], "{source_held}: only the removed entry cloned");
            drop(removed);
            let held = source_held.then(|| source.clone());
            drop(source);
            settle(&copy);
            drop(held);
            assert_eq!(counts(), [2, 1, 2, 2], "{source_held}: the source dropped its entry 1 once");
            drop(copy);
            assert_eq!(counts(), [1, 1, 1, 1], "{source_held}");
            assert_eq!(Rc::strong_count(&new), 1);
        }
    }

    /// A value whose `Clone` panics once `fuse` has run out.
    #[derive(Debug)]
    struct Fused {
        token: Rc<()>,
        fuse: Rc<core::cell::Cell<u32>>,
    }

    impl Clone for Fused {
        fn clone(&self) -> Self {
            let left = self.fuse.get();
            assert!(left > 0, "the fuse has run out");
            self.fuse.set(left - 1);
            Self { token: self.token.clone(), fuse: self.fuse.clone() }
        }
    }

    // SAFETY: two `Rc`s; the fuse's `Cell` is shared behind one, as clones share it.
    unsafe impl Lendable for Fused {}

    /// A copy of `source` (entries in slots 0 to 3) rebuilt without slot 0:
    /// it borrows the other three, its entries 0, 1, 2 the source's 1, 2, 3.
    fn copy_without_slot_0<V: Clone>(source: &NodeRef<u32, V>) -> NodeRef<u32, V> {
        let mut copy = source.clone();
        let mut removed = None;
        rebuild(&mut copy, |from| {
            let mut to = Builder::trie(0b1110, 0);
            removed = Some(from.next_entry());
            to.take_entries(from, 3);
            to.finish()
        });
        drop(removed);
        copy
    }

    #[test]
    fn a_rebuilt_copy_cut_short_owning_its_entries_leaves_its_lender_the_right_ones() {
        let _lend = LendGuard::allow::<u32, Fused>();
        let tokens: Vec<Rc<()>> = (0..4).map(|_| Rc::new(())).collect();
        let counts = || counts_of(&tokens);
        let fuse = Rc::new(core::cell::Cell::new(u32::MAX));
        let mut b = Builder::trie(0b1111, 0);
        for (i, token) in tokens.iter().enumerate() {
            b.push_entry((i as u32, Fused { token: token.clone(), fuse: fuse.clone() }));
        }
        let source = b.finish();
        let mut copy = copy_without_slot_0(&source);
        assert_eq!(copy.borrowed(), 0b111);
        // The batch then owns them all (as a fold owns those of a pair it
        // moves up, `trie::own_what_a_fold_moves`);
        // the second clone panics.
        fuse.set(1);
        let cut = std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| copy.own_borrowed_entries()));
        assert!(cut.is_err());
        fuse.set(u32::MAX);
        assert_eq!(copy.borrowed(), 0b110, "the first is the copy's, the other two still borrowed");
        assert_eq!(counts(), [2, 3, 2, 2]);
        // A reader holds the source when the copy settles: a link. When the
        // source goes it drops its slot-0 entry and the original of the one
        // the copy cloned (its entry 1), and leaves its entries 2 and 3.
        let held = source.clone();
        drop(source);
        settle(&copy);
        assert_eq!(copy.borrowed(), 0b110);
        drop(held);
        assert_eq!(counts(), [1, 2, 2, 2]);
        drop(copy);
        assert_eq!(counts(), [1, 1, 1, 1]);
    }

    /// A [`Fused`] whose drop panics once `trip` is set (and clears it, so
    /// that only one drop panics: a second, while unwinding, would abort).
    #[derive(Clone, Debug)]
    struct Tripwire {
        _fused: Fused,
        trip: Rc<core::cell::Cell<bool>>,
    }

    impl Drop for Tripwire {
        fn drop(&mut self) {
            if self.trip.replace(false) {
                panic!("snapview test: a tripwire's drop");
            }
        }
    }

    // SAFETY: a `Fused` and an `Rc`; the `Cell` is shared behind it, as clones share it.
    unsafe impl Lendable for Tripwire {}

    #[test]
    fn a_claim_cut_short_by_a_panicking_drop_leaves_the_node_claimable() {
        let _lend = LendGuard::allow::<u32, Tripwire>();
        let tokens: Vec<Rc<()>> = (0..4).map(|_| Rc::new(())).collect();
        let counts = || counts_of(&tokens);
        let fuse = Rc::new(core::cell::Cell::new(u32::MAX));
        let trip = Rc::new(core::cell::Cell::new(false));
        let mut b = Builder::trie(0b1111, 0);
        for (i, token) in tokens.iter().enumerate() {
            let fused = Fused { token: token.clone(), fuse: fuse.clone() };
            b.push_entry((i as u32, Tripwire { _fused: fused, trip: trip.clone() }));
        }
        let source = b.finish();
        // The copy borrows the source's entries 1, 2, 3 and settles into a
        // link while a reader holds the source, which then records them as
        // lent out.
        let mut copy = copy_without_slot_0(&source);
        let held = source.clone();
        drop(source);
        settle(&copy);
        // Owning its entries is cut short after the first clone, which the
        // source's original of key 1 no longer backs.
        fuse.set(1);
        let cut = std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| copy.own_borrowed_entries()));
        assert!(cut.is_err());
        fuse.set(u32::MAX);
        assert_eq!(copy.borrowed(), 0b110);
        // The reader lets go: the source drops its key 0 and leaves the rest,
        // lent out, to the copy.
        drop(held);
        assert_eq!(counts(), [1, 3, 2, 2]);
        // A write copies the copy: the claim adopts the gone source's
        // entries and drops the original of key 1, whose destructor panics.
        let shared = copy.clone();
        trip.set(true);
        let cut = std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| copy.claim_entries()));
        assert!(cut.is_err(), "the original's drop panicked");
        assert_eq!((copy.borrowed(), counts()), (0, vec![1, 2, 2, 2]), "the adoption is done");
        // The claim went with the panic: the next copy claims the entries,
        // and the node's last drop frees it (not a lender's half-drop
        // waiting for a borrower that never comes, which leaked it).
        assert!(copy.claim_entries(), "the claim outlived the panic");
        copy.end_lending();
        drop(shared);
        drop(copy);
        assert_eq!(counts(), [1, 1, 1, 1]);
    }

    #[test]
    fn a_clone_that_panics_as_a_borrowed_key_is_removed_leaves_the_copy_as_it_was() {
        let _lend = LendGuard::allow::<u32, Fused>();
        let tokens: Vec<Rc<()>> = (0..3).map(|_| Rc::new(())).collect();
        let counts = || counts_of(&tokens);
        let fuse = Rc::new(core::cell::Cell::new(u32::MAX));
        let fused = |i: usize| (i as u32, Fused { token: tokens[i].clone(), fuse: fuse.clone() });
        let mut b = Builder::trie(0b111, 0);
        (0..3).for_each(|i| b.push_entry(fused(i)));
        let source = b.finish();
        let mut copy = source.clone();
        add_entry(&mut copy, 0b1000, (3, Fused { token: Rc::new(()), fuse: fuse.clone() }));
        assert_eq!((copy.borrowed(), counts()), (0b111, vec![2, 2, 2]));
        // Removing entry 1 from the unshared copy clones it first: the clone
        // panics before anything has moved.
        fuse.set(0);
        let cut = std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| take_inline_entry(&mut copy, 0b10)));
        assert!(cut.is_err());
        fuse.set(u32::MAX);
        assert_eq!(keys(&copy), [0, 1, 2, 3], "the copy is as it was");
        assert_eq!((copy.borrowed(), counts()), (0b111, vec![2, 2, 2]));
        // The next try removes it.
        let removed = take_inline_entry(&mut copy, 0b10);
        assert_eq!((keys(&copy), removed.0, copy.borrowed()), (vec![0, 2, 3], 1, 0b011));
        drop(removed);
        drop(source);
        settle(&copy);
        assert_eq!(counts(), [2, 1, 2]);
        drop(copy);
        assert_eq!(counts(), [1, 1, 1]);
    }

    #[test]
    fn a_rebuilt_copy_of_a_pair_clones_its_entries() {
        let _lend = LendGuard::allow::<u32, Rc<()>>();
        // What is left of a pair is folded into its parent by moves: it must
        // own its one entry (`REBUILD_BORROW_MIN`).
        let token = Rc::new(());
        let pair = leaf_in(0b11, &[(0, token.clone()), (1, token.clone())]);
        let (copy, removed) = without_entry(&pair, 0b1);
        assert_eq!((keys(&copy), removed.0), (vec![1], 0));
        assert_eq!(copy.borrowed(), 0);
        assert!(!copy.is_lending());
        assert_eq!(Rc::strong_count(&token), 1 + 2 + 2);
        drop((pair, removed));
        assert_eq!(Rc::strong_count(&token), 1 + 1);
        // And a copy of the pair whose key is added lends nothing either.
        let grown = with_entry(&copy, 0b100, (2, token.clone()));
        assert_eq!((keys(&grown), grown.borrowed()), (vec![1, 2], 0));
    }

    #[test]
    fn a_node_whose_lender_has_gone_lends_its_entries_on() {
        let _lend = LendGuard::allow::<u32, Rc<()>>();
        for source_held in [true, false] {
            let (old, new) = (Rc::new(()), Rc::new(()));
            let source = trie_leaf(&[(1, old.clone()), (2, old.clone()), (3, old.clone())]);
            let copy = overwrite(&source, 1, &new);
            settle(&copy);
            assert_eq!(copy.borrowed(), 0b101, "borrowed through a link: the source was held");
            let held = source_held.then(|| source.clone());
            drop(source);
            // The next write copies `copy`, which its version still holds.
            let next = overwrite(&copy, 0, &new);
            if source_held {
                assert_eq!(copy.borrowed(), 0b101, "the lender lives: still borrowed");
                assert_eq!(next.borrowed(), 0, "a node that borrows lends nothing: cloned");
                assert_eq!(Rc::strong_count(&old), 1 + 3 + 1);
            } else {
                assert_eq!(copy.borrowed(), 0, "adopted from the gone lender, bit for bit");
                assert_eq!(next.borrowed(), 0b110, "and lent on");
                assert_eq!(Rc::strong_count(&old), 1 + 2, "no clone but the written entry's");
            }
            assert_eq!(copy.entries().iter().map(|e| e.0).collect::<Vec<_>>(), [1, 2, 3]);
            assert_eq!(next.entries().iter().map(|e| e.0).collect::<Vec<_>>(), [1, 2, 3]);
            settle(&next);
            drop((held, copy));
            assert_eq!(Rc::strong_count(&old), 1 + 1, "{source_held}: the one `next` holds");
            drop(next);
            assert_eq!((Rc::strong_count(&old), Rc::strong_count(&new)), (1, 1), "{source_held}");
        }
    }

    #[test]
    fn make_mut_copies_a_shared_node_and_not_a_unique_one() {
        let _lend = LendGuard::allow::<u32, Rc<()>>();
        let mut a = leaf(&[(1, Rc::new(()))]);
        let before = a.entries().as_ptr();
        a.make_mut().0.get(0).0 = 7;
        assert_eq!(a.entries().as_ptr(), before, "unique: mutated in place");
        let b = a.clone();
        a.make_mut().0.get(0).0 = 8;
        assert_eq!((a.entries()[0].0, b.entries()[0].0), (8, 7));
    }
}
