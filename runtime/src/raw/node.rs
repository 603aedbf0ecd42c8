//! The node allocation: one header followed by three arrays, exact-size but
//! for some room in maps of plain data (past 64 bytes of arrays, the next
//! of 2^k and 3 * 2^(k-1) bytes: [`room`]).
//!
//! ```text
//! +---------------------------------+---------------------+---------------------+-------------------+------+--------------------------------------+
//! | Header (24 bytes)               | [NodeRef; children] | [Occupancy; ch.]    | [(K, V); entries] | room | Lending (32 B)                       |
//! | refs | shape | datamap | nodemap | sub-trees           | each one's occupied | inline entries    |      | lent | lender | borrowed | lent_out |
//! +---------------------------------+---------------------+---------------------+-------------------+------+--------------------------------------+
//! ```
//!
//! Beside each child pointer the node keeps that child's *occupancy*: the
//! bitmap of its slots that hold anything (`datamap | nodemap`, all ones for
//! a collision node). A lookup reads it with the pointer and stops there when
//! the key's slot in the child is empty, without fetching the child: in a
//! large map the last level is the one not in cache, and most misses end in
//! an empty slot of it (see "Occupancy" in docs/design.md).
//!
//! The `Lending` tail exists in nodes with children, and in every node of a
//! map whose entries need dropping; lookups and iteration never read it. It
//! records which children the node *borrows* (see "Lending copies" in
//! docs/design.md): a copy made by a write shares its source's children
//! without touching their counts, and holds one counted reference to the
//! source (`lender`) instead, which keeps them alive. In a map whose entries
//! own something (`String` keys), the copy also borrows the source's
//! *entries*, bit for bit, rather than cloning them ("Lending entries"):
//! `borrowed` in the copy, `lent_out` and the `LENT` and `GONE` bits of
//! `refs` in the source.
//!
//! Children come first so that the address of a full node's child `i` is
//! known from the node's address alone (`24 + 8i`): a lookup can fetch it
//! while the header is still on its way (see `prefetch_slot`). `shape` stores
//! both array lengths (`entries << 7 | children`): `children` is also
//! `popcount(nodemap)`, but baseline x86-64 computes that with a dozen
//! dependent operations, and every walk of a node needs it; `entries` must be
//! stored anyway, because a collision node has more entries than bits.
//!
//! Invariants of every live node (established by `Builder::finish`; what
//! may change afterwards, and how, N4 says):
//!
//! - **N1** the allocation has exactly `NodeRef::layout(entries, children)`,
//!   whose arrays have room for [`room`]`(filled)` bytes, `filled` being
//!   what they take at these counts;
//! - **N2** the first `entries` slots of the entry array and the first
//!   `children` slots of the child and occupancy arrays are initialised;
//! - **N3** `refs` counts the `NodeRef`s that point at the node (plus one for a
//!   `Drain` in moving mode, which has taken the last one over), except those
//!   in a parent's child array whose `lent` bit is set: those are not counted;
//! - **N6** a node whose `lent` bits are not all 0 has a non-null `lender`,
//!   which holds a count on each of its lent children (it is the node they
//!   were copied from, or that node's own lender chain keeps them alive);
//!   `lent` and `lender` change only through the writer, and lent children are
//!   never handed out mutably (see [`ChildrenMut`]); a node whose `lent` bits
//!   are set is the writer's own copy, settled before its lock is released
//!   or, in a map of entries without destructors whose replaced version a
//!   reader held (`defers_settling` in map.rs), before its next batch or
//!   clone, and before the map goes: so no other map's writer (a clone's,
//!   which shares published nodes; a restore copies an unsettled version's
//!   entries instead) ever sees one, and no reader is its last reference;
//! - **N4** the arrays, and the non-atomic header fields, change only through
//!   a `&mut NodeRef` whose `refs` is 1; the header fields only to add or
//!   take an entry, or turn one into a child or back, within the node's room
//!   ([`NodeRef::insert_entry_in_place`], [`NodeRef::take_entry_in_place`],
//!   [`NodeRef::entry_to_child_in_place`], [`NodeRef::child_to_entry_in_place`]),
//!   which keep N1, N2, N5 and O1; past its room such a node moves to a new
//!   allocation instead ([`NodeRef::relocate`]), the old one freed;
//! - **N5** `children == popcount(nodemap)`, and `entries == popcount(datamap)`
//!   unless `datamap == 0` (a collision node, or a node of children only);
//!   `shape` holds these two counts.
//!
//! - **E1** a node whose `borrowed` bits are not all 0 holds, at those
//!   entries, the bytes of entries of its lender, which has `LENT` set, and
//!   once the borrower has settled into a link (E2), those entries' bits set
//!   in `lent_out`, and no others but those of entries the borrower has
//!   since cloned for itself in an `own_all` cut short by a panicking
//!   `Clone`, whose originals the later end drops (before settling, nothing
//!   reads `lent_out`; one borrower per lender;
//!   both are trie nodes, and an entry sits in the same *slot* in both, not
//!   always at the same index: a copy rebuilt around a key it adds or
//!   removes borrows the entries on either side, so each side's bits are in
//!   its own index space, translated by [`lender_bits`]). Neither node drops a
//!   lent entry while the other lives; a lender with `LENT` is never unique,
//!   so never changed in place; a borrowed entry is made the borrower's own
//!   (a clone written over it) before the writer changes it (see
//!   [`EntriesMut`]) or moves it out on its own; a borrower rebuilt by moves
//!   passes its borrowed entries, and its counted lender, on to the new
//!   node, in the same slots (`Builder::move_entries`);
//! - **E2** during the batch that made it, a borrower's `lender` is a counted
//!   reference (`LENDING` set); once settled while the lender is still held,
//!   it is an uncounted link: the lender's last reference drops all but the
//!   lent entries and sets `GONE`, the borrower's end clears `LENT`, and
//!   whichever of the two comes second (one atomic word orders them) drops
//!   the lent entries and frees the lender's memory.
//!
//! And one invariant of content, which lookups trust for their answer but
//! never for memory safety (the occupancy only decides whether to go on):
//!
//! - **O1** between writes (so also for a batch's own lookups), a node's
//!   occupancy array holds, for each child `i`, `children[i].occupancy()`.
//!   `Builder` writes it with each child; a write that changes a child's
//!   slots through [`ChildrenMut`] updates it before it returns.

use core::alloc::Layout;
use core::marker::PhantomData;
use core::mem::{align_of, size_of};
use core::ptr::{self, NonNull};
use std::alloc;

use super::cpu::{BitCount, Compiled, Popcnt};
use super::lend::may_lend;
use crate::sync::{AtomicPtr, AtomicU32, AtomicU64, Ordering, acquire_after_last_decrement};

pub(crate) use spare_block::{SpareBlock, SpareBlockScope};

/// Past this count a clone aborts, as `Arc` does: a count that wraps would
/// free a live node. (Counts are per parent node, not per snapshot: reaching
/// it would take a billion live parents of one node.)
const MAX_REFS: u32 = 1 << 28;
/// The top bit of `refs`: the node holds a counted lender (N6). The writer
/// sets and clears it; counting never reaches it (`MAX_REFS`).
const LENDING: u32 = 1 << 31;
/// A bit of `refs`: a copy borrows this node's entries (E1). Set by the
/// writer that makes the copy; cleared by the borrower's end (the writer
/// during the batch, or the borrower's drop or later batch through a link),
/// while the lender's end sets `GONE` instead (see "Lending entries" in
/// docs/design.md).
const LENT: u32 = 1 << 30;
/// A bit of `refs`: the node's last reference went while `LENT` was set; it
/// has dropped all it owned but the lent entries, and its memory waits for
/// the borrower (E2).
const GONE: u32 = 1 << 29;
/// The bits of `refs` that count references.
const COUNT: u32 = GONE - 1;
/// The low bits of `Header::shape` hold the child count (at most 64).
const CHILD_BITS: u32 = 7;
/// The most inline entries a node can hold: a collision node of more keys
/// with one 64-bit hash is refused (that would take 2^25 colliding keys).
const MAX_ENTRIES: usize = (u32::MAX >> CHILD_BITS) as usize;

#[repr(C)]
pub(super) struct Header {
    refs: AtomicU32,
    /// `entries << CHILD_BITS | children`: both array lengths, so that walking
    /// a node needs no population count (baseline x86-64 has no `popcnt`).
    shape: u32,
    /// Bit `i` set: slot `i` holds an inline entry (always 0 in a collision node).
    datamap: u64,
    /// Bit `i` set: slot `i` holds a child node (always 0 in a collision node).
    nodemap: u64,
}

/// The tail of a node with children, or of any node whose entries need
/// dropping (never read by lookups): what it borrows rather than owns, and
/// from whom (N3, N6, E1).
#[repr(C)]
pub(super) struct Lending {
    /// Bit `i` set: `children[i]` is lent: this node holds no count on it.
    lent: AtomicU64,
    /// The node the lent children and borrowed entries came from, or null:
    /// a counted reference while the `LENDING` bit is set, else (when
    /// `borrowed` is not 0) an uncounted link (E2).
    lender: AtomicPtr<Header>,
    /// Bit `i` set: entry `i` is the lender's entry in the same slot, bit
    /// for bit: this node must not drop it (E1).
    borrowed: AtomicU64,
    /// While `LENT` is set and the borrowing copy has settled into a link:
    /// bit `i` set, entry `i` is borrowed by that copy, so this node's last
    /// reference leaves it to the later of the two (E2).
    lent_out: AtomicU64,
}

/// Whether this map's nodes can hold lent entries, and so carry the tail that
/// records them: only where an entry owns something (`String` keys, `Arc`
/// values); a `u64 -> u64` map keeps its nodes and code as they are. Whether
/// a copy does lend them is [`may_lend`]'s answer, asked when it claims them
/// ([`NodeRef::claim_entries`]): entries of other types are cloned.
const fn lends_entries<K, V>() -> bool {
    core::mem::needs_drop::<(K, V)>()
}

/// What a trie node's slot holds.
pub(crate) enum Slot<'a, K, V> {
    Empty,
    Entry(&'a (K, V)),
    /// A child, and where it sits in its parent (to read the occupancy the
    /// parent keeps for it).
    Child(&'a NodeRef<K, V>, ChildAt<'a, K, V>),
}

/// Where a child sits in its parent: made only by `NodeRef::child_slot`,
/// whose callers ([`NodeRef::slot_counting`], [`NodeRef::slot_in_sparse`])
/// checked that `at` is below the parent's child count; the parent is
/// borrowed, so it stays so.
pub(crate) struct ChildAt<'a, K, V> {
    parent: &'a NodeRef<K, V>,
    at: usize,
}

impl<K, V> ChildAt<'_, K, V> {
    /// The occupancy the parent keeps for this child (O1): what a lookup
    /// reads instead of the child's own bitmaps. Its address is computed
    /// here, after the lookup's step, and only by the lookups that test it.
    #[inline(always)]
    pub(crate) fn occupancy(self) -> Occupancy {
        let children = self.parent.counts().1;
        // SAFETY: `at` is below the parent's child count (a `ChildAt` is
        // made only by `child_slot`, whose callers checked it against
        // `nodemap`, N5), so the read is inside the initialised occupancy
        // array (N1, N2), which nothing changes while the parent is
        // borrowed (N4).
        unsafe { *occupancy_ptr(self.parent.ptr, children).add(self.at) }
    }
}

/// Mutable access to a node's two arrays: its entries and its children.
pub(crate) type NodeMut<'a, K, V> = (EntriesMut<'a, K, V>, ChildrenMut<'a, K, V>);

/// Mutable access to the entries of an unshared node.
///
/// A borrowed entry (E1) is the lender's, so [`get`](Self::get) first makes
/// it this node's own: what it hands out may be overwritten or moved.
pub(crate) struct EntriesMut<'a, K, V> {
    entries: &'a mut [(K, V)],
    /// The node's tail, if it borrows entries, and whether its lender is a
    /// counted reference (during the batch that made the node) or a link (E2).
    lending: Option<(&'a Lending, bool)>,
    /// The node's slots of entries: where its borrowed ones sit in the lender.
    datamap: u64,
}

impl<'a, K: Clone, V: Clone> EntriesMut<'a, K, V> {
    /// Entry `i`, owned by this node from now on.
    #[inline]
    pub(crate) fn get(&mut self, i: usize) -> &mut (K, V) {
        self.own(i);
        &mut self.entries[i]
    }

    /// Entry `i`, owned by this node from now on, for as long as the node was borrowed.
    #[inline]
    pub(crate) fn into_entry(mut self, i: usize) -> &'a mut (K, V) {
        self.own(i);
        &mut self.entries[i]
    }

    /// Every entry, each owned by this node from now on.
    pub(crate) fn into_slice(self) -> &'a mut [(K, V)] {
        if let Some((lending, counted)) = self.lending {
            // SAFETY: the node is unshared (an `EntriesMut` is made only by
            // `arrays_mut`), so nothing else reads or writes its entries and tail.
            unsafe { own_all::<K, V>(lending, counted, self.datamap, self.entries.as_mut_ptr(), self.entries.len()) };
        }
        self.entries
    }

    #[inline]
    fn own(&mut self, i: usize) {
        assert!(i < self.entries.len(), "snapview bug: entry index out of bounds");
        if let Some((lending, counted)) = self.lending {
            // SAFETY: as in `into_slice`; `i` is inside the array (checked).
            unsafe {
                own_entry::<K, V>(lending, counted, self.datamap, self.entries.as_mut_ptr(), self.entries.len(), i)
            };
        }
    }
}

/// Mutable access to the children of an unshared node.
///
/// A lent child (N3) is not this node's to change or drop, so [`get`](Self::get)
/// first gives the node a count of its own on it: what it hands out is always
/// an owned reference, which the caller may replace or copy-on-write.
pub(crate) struct ChildrenMut<'a, K, V> {
    children: &'a mut [NodeRef<K, V>],
    occupancy: &'a mut [Occupancy],
    lending: Option<&'a Lending>,
}

impl<'a, K, V> ChildrenMut<'a, K, V> {
    /// The children, for reading.
    #[inline]
    pub(crate) fn as_slice(&self) -> &[NodeRef<K, V>] {
        self.children
    }

    /// Child `i`, owned by this node from now on.
    #[inline]
    pub(crate) fn get(&mut self, i: usize) -> &mut NodeRef<K, V> {
        if let Some(lending) = self.lending {
            // Relaxed: only the writer, which holds this `&mut`, reads or
            // writes the bits of an unshared node.
            let lent = lending.lent.load(Ordering::Relaxed);
            if lent & (1 << i) != 0 {
                // Counted now: the clone's count becomes this slot's.
                core::mem::forget(self.children[i].clone());
                lending.lent.store(lent & !(1 << i), Ordering::Relaxed);
            }
        }
        &mut self.children[i]
    }

    /// Child `i`, owned by this node from now on, for as long as the node was
    /// borrowed: what a loop descending the trie moves on to; with its
    /// occupancy slot, which the caller updates if it fills a slot of the
    /// child (O1).
    #[inline]
    pub(crate) fn into_child(mut self, i: usize) -> (&'a mut NodeRef<K, V>, &'a mut Occupancy) {
        self.get(i);
        (&mut self.children[i], &mut self.occupancy[i])
    }

    /// Records child `i`'s occupancy again, after its slots changed (O1).
    #[inline]
    pub(crate) fn refresh(&mut self, i: usize) {
        self.occupancy[i] = self.children[i].occupancy();
    }
}

/// An owning, reference-counted pointer to a trie node.
///
/// Cloning it is one relaxed atomic increment; the node is freed, with the
/// entries and children it owns, when the last `NodeRef` goes.
pub(crate) struct NodeRef<K, V> {
    ptr: NonNull<Header>,
    _owns: PhantomData<(K, V)>,
}

// SAFETY: like Arc<(K, V)>, a NodeRef shares K and V with every holder's thread
// and the last holder drops them there, so it needs K and V Send and Sync.
unsafe impl<K: Send + Sync, V: Send + Sync> Send for NodeRef<K, V> {}
// SAFETY: as for Send: &NodeRef only hands out &K and &V, and clones that may
// be dropped on another thread, which needs K, V: Send + Sync.
unsafe impl<K: Send + Sync, V: Send + Sync> Sync for NodeRef<K, V> {}

/// What a node keeps for each child: the bitmap of the child's slots that
/// hold anything. Exact, one bit per slot: a map folded to 32 bits (bit
/// `s % 32`) would halve its memory, but in an A/B of 1M misses (6 rounds)
/// it was slower in 5 of them (median 84 against 74 ns): a leaf of 4 keys
/// leaves a folded bit clear 88% of the time, an exact one 94%.
pub(crate) type Occupancy = u64;

// The occupancy array needs its alignment; every node has the header's, which is at least that.
const _: () = assert!(align_of::<Header>() >= align_of::<Occupancy>());

const fn round_up(n: usize, align: usize) -> usize {
    (n + align - 1) & !(align - 1)
}

/// [`round_up`] of an `n` known to be a multiple of `n_align`: `n` itself
/// unless `align` is larger. LLVM does not see that `(24 + 16c + 7) & !7`
/// is `24 + 16c`, and a lookup computes these offsets at every level.
const fn round_up_from(n: usize, n_align: usize, align: usize) -> usize {
    if align <= n_align { n } else { round_up(n, align) }
}

/// Arrays of at most this many bytes are allocated at their exact size:
/// most of a large map's leaves (1-4 `u64` entries).
const ROOM_FROM: usize = 64;

/// How many bytes a node's arrays (children, occupancies, entries) have
/// room for when they fill `filled` (N1): up to [`ROOM_FROM`], exactly
/// that; past it, the next of the sizes 2^k and 3 * 2^(k-1) (64, 96, 128,
/// 192, 256, 384, ...), so at most a third of the arrays is room. A batch
/// then adds an entry to a node it owns in place, or turns an entry into a
/// child there ([`NodeRef::insert_entry_in_place`],
/// [`NodeRef::entry_to_child_in_place`]), instead of allocating the node
/// anew, moving it and freeing the old one for each: at 1K keys, a batch
/// of new keys grows nodes of ~16 entries one by one, and one new key in
/// three meets an entry in its slot. Counted in bytes, not entries, so
/// that the room an entry leaves takes a child (16 bytes with its
/// occupancy, as a `u64 -> u64` entry). Derived from the counts, so that
/// every node's layout stays known from its header alone.
///
/// Only in maps of plain data: where entries need dropping (`String` keys),
/// a batch's copies borrow their entries (E1), and a node that borrows is
/// rebuilt rather than changed in place, so the room only cost: batches
/// that add and remove `String` keys in a 1K map took 1.05x the time with
/// it (docs/benchmarks.md, "Session 51's run").
const fn room<K, V>(filled: usize) -> usize {
    // Past isize::MAX / 2 the layout fails anyway; the check keeps the
    // doubling from overflowing.
    if lends_entries::<K, V>() || filled <= ROOM_FROM || filled > isize::MAX as usize / 2 {
        return filled;
    }
    let power = filled.next_power_of_two();
    let three_halves = power / 2 + power / 4;
    if filled <= three_halves { three_halves } else { power }
}

const fn max(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}

impl<K, V> NodeRef<K, V> {
    const CHILDREN_OFFSET: usize = round_up(size_of::<Header>(), align_of::<Self>());
    const ALIGN: usize =
        max(align_of::<Header>(), max(align_of::<(K, V)>(), max(align_of::<Self>(), align_of::<Lending>())));

    /// Where the occupancy array starts: right after the child pointers.
    const fn occupancy_offset(children: usize) -> usize {
        // CHILDREN_OFFSET is rounded to the pointers' alignment.
        round_up_from(Self::CHILDREN_OFFSET + children * size_of::<Self>(), align_of::<Self>(), align_of::<Occupancy>())
    }

    fn entries_offset(children: usize) -> usize {
        round_up_from(
            Self::occupancy_offset(children) + children * size_of::<Occupancy>(),
            align_of::<Occupancy>(),
            align_of::<(K, V)>(),
        )
    }

    /// Whether a node with this many children has the `Lending` tail.
    const fn has_tail(children: usize) -> bool {
        children > 0 || lends_entries::<K, V>()
    }

    /// The bytes the arrays of a node with these counts fill (without
    /// room); `None` past `usize`.
    fn filled(entries: usize, children: usize) -> Option<usize> {
        entries
            .checked_mul(size_of::<(K, V)>())
            .and_then(|e| e.checked_add(Self::entries_offset(children) - Self::CHILDREN_OFFSET))
    }

    /// Where the arrays' room ends (N1); `None` past `usize`.
    fn arrays_end(entries: usize, children: usize) -> Option<usize> {
        Self::filled(entries, children).and_then(|filled| room::<K, V>(filled).checked_add(Self::CHILDREN_OFFSET))
    }

    /// Whether a node with these counts has the same layout as one with
    /// `then`'s: what a change in place needs.
    fn same_room(now: (usize, usize), then: (usize, usize)) -> bool {
        Self::has_tail(now.1) == Self::has_tail(then.1)
            && Self::arrays_end(now.0, now.1) == Self::arrays_end(then.0, then.1)
    }

    /// Where the `Lending` tail starts (meaningful when `has_tail`): after
    /// the arrays' room, so that a change in place leaves it where it is.
    fn lending_offset(entries: usize, children: usize) -> usize {
        let end = Self::arrays_end(entries, children).expect("snapview bug: the tail of a node too large to exist");
        round_up(end, align_of::<Lending>())
    }

    /// The layout of a node with these counts; panics if it would not fit in `isize`.
    pub(super) fn layout(entries: usize, children: usize) -> Layout {
        // children <= 64 (one per nodemap bit), so only the entry array can overflow.
        debug_assert!(children <= 64);
        let arrays = Self::arrays_end(entries, children);
        let size = match Self::has_tail(children) {
            false => arrays,
            true => arrays
                .and_then(|end| end.checked_add(align_of::<Lending>() - 1))
                .and_then(|end| (end & !(align_of::<Lending>() - 1)).checked_add(size_of::<Lending>())),
        };
        size.and_then(|size| Layout::from_size_align(size, Self::ALIGN).ok())
            .unwrap_or_else(|| panic!("snapview: a node of {entries} entries and {children} children is too large"))
    }

    /// Allocates a node with an initialised header and uninitialised arrays.
    ///
    /// The returned pointer satisfies N1 and N3 (one reference); N2 is the
    /// caller's to establish before the node is read.
    pub(super) fn allocate(datamap: u64, nodemap: u64, entries: usize, children: usize) -> NonNull<Header> {
        assert!(entries <= MAX_ENTRIES, "snapview: more than {MAX_ENTRIES} keys with one 64-bit hash");
        let shape = (entries as u32) << CHILD_BITS | children as u32;
        // N5, which `slot` relies on for unchecked indexing. Counted with
        // the instruction where the CPU has it: by hand, the two counts were
        // a third of this function (callgrind, session 53).
        assert!(
            children == count_bits(nodemap) && (datamap == 0 || entries == count_bits(datamap)),
            "snapview bug: array lengths disagree with the bitmaps"
        );
        let layout = Self::layout(entries, children);
        // SAFETY: the layout has a non-zero size: it holds at least a Header.
        let raw = spare_block::take(layout).unwrap_or_else(|| unsafe { alloc::alloc(layout) });
        let Some(ptr) = NonNull::new(raw.cast::<Header>()) else {
            alloc::handle_alloc_error(layout);
        };
        let header = Header { refs: AtomicU32::new(1), shape, datamap, nodemap };
        // SAFETY: `ptr` is an allocation of `layout` that nothing else uses
        // (fresh, or a freed node's kept block of the same layout, which
        // `spare_block::take` hands out once), aligned for Header (ALIGN >=
        // its alignment) and large enough for it (the layout starts with it).
        unsafe { ptr.as_ptr().write(header) };
        if Self::has_tail(children) {
            let lending = Lending {
                lent: AtomicU64::new(0),
                lender: AtomicPtr::new(ptr::null_mut()),
                borrowed: AtomicU64::new(0),
                lent_out: AtomicU64::new(0),
            };
            // The tail ends the allocation (`layout`): its offset without
            // computing the room again.
            let tail = layout.size() - size_of::<Lending>();
            debug_assert_eq!(tail, Self::lending_offset(entries, children));
            // SAFETY: such a node has the tail (see `layout`), at this offset,
            // aligned for it, inside the allocation.
            unsafe { ptr.as_ptr().cast::<u8>().add(tail).cast::<Lending>().write(lending) };
        }
        ptr
    }

    /// Takes over a pointer whose N1-N3 hold and which carries one reference.
    ///
    /// Also made, inside a `ManuallyDrop` that is never dropped, as a view of
    /// a node whose count may already be 0 (`free_node`, `free_lender`, a gone
    /// lender's tail): such a view carries no reference, and only its header
    /// and tail are read, which stay until the node's memory is freed.
    ///
    /// # Safety
    /// `ptr` must come from `allocate` for `NodeRef<K, V>`, with all of its
    /// entries and children initialised, and the reference it carries must be
    /// given up by the caller; or the result must be a view as above: never
    /// dropped, cloned or read past its header and tail, and not used after
    /// the memory is freed.
    pub(super) unsafe fn from_raw(ptr: NonNull<Header>) -> Self {
        Self { ptr, _owns: PhantomData }
    }

    /// The node's address, without giving up the reference.
    pub(super) fn as_ptr(&self) -> NonNull<Header> {
        self.ptr
    }

    fn header(&self) -> &Header {
        // SAFETY: a NodeRef points at a node's memory, whose header was
        // written by `allocate`: kept by its own reference (N3), or, for a
        // view (`from_raw`), by its maker until the view is done.
        unsafe { self.ptr.as_ref() }
    }

    /// The `Lending` tail, if the node has one.
    fn lending(&self) -> Option<&Lending> {
        let (entries, children) = self.counts();
        // SAFETY: a live node with a tail has it initialised by `allocate`
        // (N1), and it is only accessed through atomics.
        Self::has_tail(children).then(|| unsafe { &*lending_ptr::<K, V>(self.ptr, entries, children) })
    }

    /// The entries this node borrows (E1): bit `i` for entry `i`.
    #[inline]
    pub(crate) fn borrowed(&self) -> u64 {
        if !lends_entries::<K, V>() {
            return 0;
        }
        // Relaxed: written only by the writer (on a node it holds alone or
        // builds, or, settling, on a published node whose tail no reader
        // reads, or under the node's claim); read by it, by a later claimer
        // (another map's writer, for a node a clone shares), whose claim's
        // Acquire follows the last claim's Release end, or by a last
        // reference after its Acquire.
        self.lending().map_or(0, |l| l.borrowed.load(Ordering::Relaxed))
    }

    /// Whether the node holds a lender, i.e. may borrow some of its children.
    #[inline]
    pub(crate) fn is_lending(&self) -> bool {
        // Relaxed: the flag is set and cleared by the writer alone, on its
        // own copies, settled (cleared) before another map's writer can
        // reach them (N6), and read
        // by it, by another map's writer (a clone's, which finds it clear on
        // every node it can reach), or by the node's last reference
        // (`free_node`, `take_lending`) after its Acquire on the count.
        self.header().refs.load(Ordering::Relaxed) & LENDING != 0
    }

    /// Records that the children at `lent` are borrowed from `lender`.
    ///
    /// Only for a node being built (`Builder::finish`): N6 must hold for it.
    pub(super) fn set_lending(&self, lent: u64, lender: Option<NodeRef<K, V>>) {
        let Some(lender) = lender else {
            assert!(lent == 0, "snapview bug: lent children without a lender");
            return;
        };
        let lending = self.lending().expect("snapview bug: lending without a tail");
        let lender = core::mem::ManuallyDrop::new(lender).ptr.as_ptr();
        // Relaxed: lending state is read and written by the writer alone (the
        // node is not even visible to anyone else yet).
        lending.lent.store(lent, Ordering::Relaxed);
        lending.lender.store(lender, Ordering::Relaxed);
        // A load and a store, not an atomic OR: nobody else holds the node yet.
        let refs = &self.header().refs;
        refs.store(refs.load(Ordering::Relaxed) | LENDING, Ordering::Relaxed);
    }

    /// Takes the lending state out: the bits of the borrowed children and the
    /// counted reference that keeps them alive. The node is left owning
    /// nothing it does not count, so the caller must settle those children
    /// (count them, or take over the lender's counts) before dropping it.
    pub(super) fn take_lending(&self) -> (u64, Option<NodeRef<K, V>>) {
        if !self.is_lending() {
            return (0, None);
        }
        let lending = self.lending().expect("snapview bug: lending without a tail");
        // Relaxed: as in `set_lending`; the swap makes the caller the one owner.
        let lent = lending.lent.swap(0, Ordering::Relaxed);
        let lender = NonNull::new(lending.lender.swap(ptr::null_mut(), Ordering::Relaxed));
        self.header().refs.fetch_and(!LENDING, Ordering::Relaxed);
        // SAFETY: a non-null lender is a counted reference (N6), which the swap
        // has handed to us alone.
        (lent, lender.map(|l| unsafe { Self::from_raw(l) }))
    }

    /// [`take_lending`](Self::take_lending) for a node the caller holds
    /// alone ([`is_unique`](Self::is_unique) said so): no other thread can
    /// reach its count word or its tail, so loads and stores replace the
    /// three atomic read-modify-writes, which took ~3% of the time of
    /// batches adding and removing `String` keys in a 1K map (`perf`): a
    /// moving `Drain` takes apart every node a batch rebuilds by moves.
    pub(super) fn take_lending_alone(&self) -> (u64, Option<NodeRef<K, V>>) {
        if !self.is_lending() {
            return (0, None);
        }
        let lending = self.lending().expect("snapview bug: lending without a tail");
        // Relaxed: the caller holds the only reference, and its `is_unique`
        // Acquire ordered every other holder's last use before this.
        let lent = lending.lent.load(Ordering::Relaxed);
        let lender = NonNull::new(lending.lender.load(Ordering::Relaxed));
        lending.lent.store(0, Ordering::Relaxed);
        lending.lender.store(ptr::null_mut(), Ordering::Relaxed);
        let refs = &self.header().refs;
        refs.store(refs.load(Ordering::Relaxed) & !LENDING, Ordering::Relaxed);
        // SAFETY: a non-null lender is a counted reference (N6), which the
        // stores above handed to us alone.
        (lent, lender.map(|l| unsafe { Self::from_raw(l) }))
    }

    /// Claims this shared node's entries for one copy to borrow (E1):
    /// false if they may not be lent (entries of a type that may change
    /// through `&` or is not known not to, [`may_lend`]; a collision node; a
    /// node that borrows entries from a lender still alive, or one whose
    /// entries a copy borrows already).
    ///
    /// The caller must be the writer, hold a counted reference to the node,
    /// and, on `true`, either give the copy it builds the borrowed entries and
    /// a counted reference to this node, or undo the claim
    /// ([`end_lending`](Self::end_lending)).
    pub(super) fn claim_entries(&self) -> bool {
        let (entries, _) = self.counts();
        if !lends_entries::<K, V>() || entries == 0 || self.datamap() == 0 || !may_lend::<K, V>() {
            return false;
        }
        let lending = self.lending().expect("snapview bug: entries that need dropping without a tail");
        // AcqRel: the bit is the claim. A previous claim's end may have
        // cleared it on another thread (`release_link`, AcqRel, or
        // `end_lending`, Release: another map's writer, for a node a clone
        // shares), and the Acquire orders that end, and what that claimer
        // wrote to the tail before it, before this claim. `lent_out` is written
        // when the copy settles into a link (`keep_link`), and read only
        // after: by the node's last reference, which cannot come while a
        // counted reference lives, and whose Acquire follows its release,
        // or by the copy. The Release half is not relied on: a claim
        // publishes nothing (the claimer writes the tail only after it, and
        // its end releases those writes). Neither loom nor ThreadSanitizer
        // finds a fault with it gone (`.ci/orderings`; docs/reliability.md).
        // It is kept: the same instruction on x86, and what a later change
        // that writes the tail before claiming would need.
        if self.header().refs.fetch_or(LENT, Ordering::AcqRel) & LENT != 0 {
            return false;
        }
        // A node that borrows lends nothing (lending is never two deep)
        // unless its lender has gone meanwhile: the entries it borrowed are
        // then its own, and it takes them before lending them on. Relaxed:
        // the claim keeps other writers out (another map's, for a node a
        // clone shares), and its Acquire saw what the last claimer wrote to
        // the tail: every claim ends with a Release (`end_lending`,
        // `release_link`).
        let borrows = lending.borrowed.load(Ordering::Relaxed) != 0;
        if borrows && (self.is_lending() || !self.adopt_while_claimed(lending)) {
            self.end_lending();
            return false;
        }
        true
    }

    /// [`adopt_from_gone_lender`] for [`claim_entries`](Self::claim_entries),
    /// which holds the claim and has checked that the node borrows through a
    /// link. If an original's destructor panics in the adoption (the node
    /// has taken its entries over by then), the claim ends with the unwind:
    /// left set, it would make the node's last drop take it for a lender
    /// whose borrower is still to come, and never free it.
    fn adopt_while_claimed(&self, lending: &Lending) -> bool {
        struct EndClaim<'a, K, V>(&'a NodeRef<K, V>);
        impl<K, V> Drop for EndClaim<'_, K, V> {
            fn drop(&mut self) {
                self.0.end_lending();
            }
        }
        let on_unwind = EndClaim(self);
        // SAFETY: the node borrows through a link (the caller checked that it
        // borrows and does not count its lender); we are the writer, hold a
        // reference, and hold the claim.
        let adopted = unsafe { adopt_from_gone_lender::<K, V>(lending, self.datamap()) };
        core::mem::forget(on_unwind);
        adopted
    }

    /// Records the entries this node borrows from its counted lender: those
    /// of a new node (`Builder::finish`), or none once it owns them all.
    pub(super) fn set_borrowed(&self, borrowed: u64) {
        match self.lending() {
            // Relaxed: the node is not visible to anyone else yet, or the
            // writer holds it alone, or settles it (`take_over`): readers of
            // a published node never read its tail, and its last reference
            // reads it only after its Acquire.
            Some(lending) => lending.borrowed.store(borrowed, Ordering::Relaxed),
            None => assert!(borrowed == 0, "snapview bug: borrowed entries without a tail"),
        }
    }

    /// Turns the node's lender, whose counted reference the caller took out
    /// with [`take_lending`](Self::take_lending) and is about to drop, into
    /// the uncounted link that its borrowed entries need (E2), and records
    /// in the lender which of its entries are lent (`lent_out`): until now
    /// only this node's `borrowed` bits said so, since nothing reads
    /// `lent_out` while a counted reference keeps the lender alive. (A
    /// write of a borrowed entry used to clear its bit in the lender at
    /// once: an atomic on a line of another node, seldom in cache.)
    pub(super) fn keep_link(&self, lender: &NodeRef<K, V>) {
        let lending = self.lending().expect("snapview bug: borrowed entries without a tail");
        let lender_tail = lender.lending().expect("snapview bug: lent entries without a tail");
        // Relaxed: `lent_out` is read by the lender's last reference after
        // its Acquire on the count, which follows the Release of the
        // caller's counted reference, dropped after this; or by this node.
        let lent_out = lender_bits(self.borrowed(), self.datamap(), lender.datamap());
        lender_tail.lent_out.store(lent_out, Ordering::Relaxed);
        // Relaxed: read only by the writer, or by this node's last reference.
        lending.lender.store(lender.ptr.as_ptr(), Ordering::Relaxed);
    }

    /// Whether the node's only reference is the caller's, not counting the
    /// `LENT` bit: a lender that only the copy borrowing from it still holds.
    pub(super) fn is_unique_but_lent(&self) -> bool {
        // Acquire: as in `is_unique`, so that `true` means what it means
        // there. Its one caller, `take_over`, asks `is_unique` again (in
        // `Drain::new`, once `end_lending` has cleared `LENT`) before it moves
        // or drops anything, and in between reads only what no other holder
        // writes (bitmaps, child pointers, `borrowed`). That load reads the
        // count word after the other holders' Release decrements, whose
        // release sequences the read-modify-writes since then continue, so
        // it synchronizes with them all the same: today no loom test fails
        // with this load Relaxed (`.ci/orderings`).
        self.header().refs.load(Ordering::Acquire) & COUNT == 1
    }

    /// Ends a lending of this node's entries that the caller's copy, which
    /// holds a counted reference to it, no longer needs (E1).
    pub(super) fn end_lending(&self) {
        // Release: the next claim's Acquire (`claim_entries`, AcqRel), which
        // may be another map's writer on another thread (a clone shares the
        // node, and its lock orders nothing with ours), must see what this
        // claim wrote to the node's tail (an adoption: nothing borrowed, no
        // lender, the lender freed). A Relaxed clear would carry only the
        // claim's own release, made before those writes. The node's last
        // drop reads the bit only after our counted reference's Release.
        self.header().refs.fetch_and(!LENT, Ordering::Release);
    }

    /// Makes every entry this unshared node borrows its own (E1): a clone
    /// written over the lender's bytes, or, if the lender is gone, the bytes
    /// themselves. If a `Clone` panics, the entries cloned so far are the
    /// node's and the rest stay borrowed: consistent either way.
    pub(crate) fn own_borrowed_entries(&mut self)
    where
        K: Clone,
        V: Clone,
    {
        if self.borrowed() == 0 {
            return;
        }
        // A hard check: the writing below would race with readers of a shared
        // node, and it runs only where entries are cloned anyway.
        assert!(self.is_unique(), "snapview bug: owning the entries of a shared node");
        let (entries, children) = self.counts();
        let counted = self.is_lending();
        let lending = self.lending().expect("snapview bug: borrowed entries without a tail");
        // SAFETY: the node is unshared (the caller holds it mutably, and its
        // count, just checked, is one), so nothing else reads or writes its
        // entries or its tail.
        unsafe { own_all::<K, V>(lending, counted, self.datamap(), entries_ptr::<K, V>(self.ptr, children), entries) }
    }

    /// Readies this unshared node, which borrows entries (E1), to be taken
    /// apart by moves (`rebuild_taking`): entry `taken`, which will be
    /// moved out on its own, is made its own; if it borrows through a link
    /// (E2), which cannot be passed on to the node built from it, every
    /// entry is. The rest stay borrowed, and move on with the counted
    /// lender. A `Clone` that panics leaves the node consistent, as in
    /// [`own_borrowed_entries`](Self::own_borrowed_entries).
    pub(crate) fn own_entries_to_move(&mut self, taken: Option<usize>)
    where
        K: Clone,
        V: Clone,
    {
        if self.borrowed() == 0 {
            return;
        }
        if !self.is_lending() {
            return self.own_borrowed_entries();
        }
        let Some(i) = taken else { return };
        // A hard check: the writing below would race with readers of a shared
        // node, and it runs only where entries are cloned anyway.
        assert!(self.is_unique(), "snapview bug: owning the entries of a shared node");
        let (entries, children) = self.counts();
        assert!(i < entries, "snapview bug: taking an entry past the last");
        let lending = self.lending().expect("snapview bug: borrowed entries without a tail");
        // SAFETY: the node is unshared (the caller holds it mutably, and its
        // count, checked above, is one), so nothing else reads or writes its
        // entries or its tail; its lender is counted (`is_lending`, just
        // checked).
        unsafe { own_entry::<K, V>(lending, true, self.datamap(), entries_ptr::<K, V>(self.ptr, children), entries, i) }
    }

    /// The bitmap of slots holding an inline entry.
    #[inline]
    pub(crate) fn datamap(&self) -> u64 {
        self.header().datamap
    }

    /// The bitmap of slots holding a child node.
    #[inline]
    pub(crate) fn nodemap(&self) -> u64 {
        self.header().nodemap
    }

    /// The slots that hold anything; all of them, for a collision node (its
    /// entries are not placed by slot). What the parent keeps beside its
    /// pointer to this node (O1).
    #[inline]
    pub(crate) fn occupancy(&self) -> Occupancy {
        match self.datamap() | self.nodemap() {
            0 => Occupancy::MAX,
            occupied => occupied,
        }
    }

    /// The occupancy of each child, in slot order (O1).
    #[inline]
    pub(crate) fn child_occupancy(&self) -> &[Occupancy] {
        let children = self.counts().1;
        // SAFETY: as for `entries`: `children` initialised integers at
        // `occupancy_offset`, aligned, changed only through `&mut self`.
        unsafe { core::slice::from_raw_parts(occupancy_ptr(self.ptr, children), children) }
    }

    /// The inline entries, in slot order.
    #[inline]
    pub(crate) fn entries(&self) -> &[(K, V)] {
        let (entries, children) = self.counts();
        // SAFETY: N1 and N2: `entries` initialised (K, V) sit at `entries_offset`,
        // aligned because it is rounded up to their alignment and the node to
        // ALIGN; N4: nobody mutates them while this shared borrow lives,
        // because mutation needs `&mut self` on the only reference.
        unsafe { core::slice::from_raw_parts(entries_ptr::<K, V>(self.ptr, children), entries) }
    }

    /// The entries of a leaf (a node without children), or `None`: the
    /// iteration's most common node, whose entries start at a fixed offset,
    /// so reading them needs only the entry count.
    #[inline(always)]
    pub(crate) fn leaf_entries(&self) -> Option<&[(K, V)]> {
        let shape = self.header().shape;
        if shape & ((1 << CHILD_BITS) - 1) != 0 {
            return None;
        }
        // SAFETY: as for `entries`, for a node of 0 children.
        Some(unsafe { core::slice::from_raw_parts(entries_ptr::<K, V>(self.ptr, 0), (shape >> CHILD_BITS) as usize) })
    }

    /// The child nodes, in slot order.
    #[inline]
    pub(crate) fn children(&self) -> &[NodeRef<K, V>] {
        // SAFETY: as for `entries`, with the child array at CHILDREN_OFFSET.
        unsafe { core::slice::from_raw_parts(children_ptr::<K, V>(self.ptr), self.counts().1) }
    }

    /// Whether `self` and `other` are the same allocation (so the same sub-tree).
    #[inline]
    pub(crate) fn ptr_eq(&self, other: &Self) -> bool {
        self.ptr == other.ptr
    }

    /// Whether this is the only reference to the node, so it may be mutated.
    #[inline]
    pub(crate) fn is_unique(&self) -> bool {
        // Acquire: synchronizes with the Release decrement of every other
        // reference that was dropped (in `Drop`), so that their reads of the
        // node happen-before our writes to it. A node whose entries a copy
        // borrows (`LENT`) is never unique: the copy reads them too (E1).
        self.header().refs.load(Ordering::Acquire) & !LENDING == 1
    }

    /// What the slot for `bit` holds (always `Empty` in a collision node,
    /// whose bitmaps are 0). This is the lookup's inner step: no bounds
    /// checks, and children tested before entries, since a lookup steps
    /// into a child at every level but its last.
    ///
    /// A full node is tested first: every node on the first levels of a
    /// large map's lookups is one, the branch is then predicted, and the
    /// child's load is issued without waiting for the bitmaps to decide
    /// between entry and child (A/B, fastest of 5 rounds: 100K hits
    /// 26.0 -> 20.5 ns, misses 20.2 -> 15.5 ns; 1M misses median 77 -> 61 ns).
    #[inline(always)]
    pub(crate) fn slot(&self, bit: u64) -> Slot<'_, K, V> {
        self.slot_counting(bit, Compiled)
    }

    /// [`slot`](Self::slot), counting bits with `popcnt` (a lookup's plan
    /// holds the CPU's best way, see [`Popcnt`](super::Popcnt)).
    #[inline(always)]
    pub(crate) fn slot_counting(&self, bit: u64, popcnt: impl BitCount) -> Slot<'_, K, V> {
        if self.header().nodemap == u64::MAX {
            // SAFETY: every slot is a child, so child `at` sits at `at`, below
            // 64, the child count (N5).
            return unsafe { self.child_slot(bit.trailing_zeros() as usize) };
        }
        self.slot_in_sparse(bit, popcnt)
    }

    /// [`slot_counting`](Self::slot_counting) without its test for a full
    /// node: for the depths where a lookup expects sparse nodes, where the
    /// test would only cost its two instructions (a full node is still
    /// read correctly, by its bitmap).
    #[inline(always)]
    pub(crate) fn slot_in_sparse(&self, bit: u64, popcnt: impl BitCount) -> Slot<'_, K, V> {
        let h = self.header();
        let below = bit.wrapping_sub(1);
        if h.nodemap & bit != 0 {
            // SAFETY: `bit` is set in `nodemap`, so the index is less than
            // popcount(nodemap), the child count (N5).
            unsafe { self.child_slot(popcnt.count(h.nodemap & below)) }
        } else if h.datamap & bit != 0 {
            let at = popcnt.count(h.datamap & below);
            let children = (h.shape & ((1 << CHILD_BITS) - 1)) as usize;
            // SAFETY: `bit` is set in `datamap`, so `at` < popcount(datamap),
            // which is the entry count (N5); those entries are initialised (N2)
            // and stay unchanged while `self` is borrowed (N4).
            Slot::Entry(unsafe { &*entries_ptr::<K, V>(self.ptr, children).add(at) })
        } else {
            Slot::Empty
        }
    }

    /// Child `at`, and where it sits.
    ///
    /// # Safety
    /// `at` must be less than the node's child count.
    #[inline(always)]
    unsafe fn child_slot(&self, at: usize) -> Slot<'_, K, V> {
        // SAFETY: by the caller's guarantee child `at` is inside the child
        // array, initialised (N2) and unchanged while `self` is borrowed (N4).
        let child = unsafe { &*children_ptr::<K, V>(self.ptr).add(at) };
        Slot::Child(child, ChildAt { parent: self, at })
    }

    /// Mutable access to both arrays, if this is the only reference.
    #[inline]
    pub(crate) fn get_mut(&mut self) -> Option<NodeMut<'_, K, V>> {
        if !self.is_unique() {
            return None;
        }
        // SAFETY: the node was just found unique.
        Some(unsafe { self.arrays_mut() })
    }

    /// Mutable access to both arrays of a node known to be unique.
    ///
    /// # Safety
    /// `self.is_unique()` must have returned true, and nothing may have
    /// cloned `self` since.
    #[inline(always)]
    unsafe fn arrays_mut(&mut self) -> NodeMut<'_, K, V> {
        let (ne, nc) = self.counts();
        let counted = self.is_lending();
        let lending = if counted { self.lending().map(|l| l as *const Lending) } else { None };
        let borrowing = match self.borrowed() {
            0 => None,
            _ => self.lending().map(|l| l as *const Lending),
        };
        // SAFETY: 1. the count is 1 (the caller's guarantee) and we hold
        //    `&mut` to that one reference, so no other thread or borrow can
        //    reach the node (N3, N4);
        // 2. the three arrays and the tail are disjoint and initialised (N1,
        //    N2), so three mutable slices and a shared tail reference do not
        //    alias;
        // 3. lent children are reachable only through `ChildrenMut::get`,
        //    which makes them owned first (N3), and borrowed entries only
        //    through `EntriesMut`, which does the same (E1).
        unsafe {
            (
                EntriesMut {
                    entries: core::slice::from_raw_parts_mut(entries_ptr::<K, V>(self.ptr, nc), ne),
                    lending: borrowing.map(|l| (&*l, counted)),
                    datamap: self.datamap(),
                },
                ChildrenMut {
                    children: core::slice::from_raw_parts_mut(children_ptr::<K, V>(self.ptr), nc),
                    occupancy: core::slice::from_raw_parts_mut(occupancy_ptr(self.ptr, nc), nc),
                    lending: lending.map(|l| &*l),
                },
            )
        }
    }

    /// Puts `entry` into the empty slot `bit` of this trie node where it
    /// lies, if the node is the caller's alone, borrows no entries, and has
    /// room for one more ([`room`]); past its room, a node of plain data
    /// that is not lending moves to a larger allocation instead, bit for bit
    /// ([`relocate`](Self::relocate)). Hands the entry back otherwise,
    /// changing nothing. Runs no user code.
    ///
    /// Inlined into a write's descent, where it counts bits with `popcnt`
    /// (`raw::cpu`); the move to a larger allocation stays out of line.
    #[inline]
    pub(crate) fn insert_entry_in_place(&mut self, bit: u64, entry: (K, V)) -> Result<(), (K, V)> {
        let (entries, children) = self.counts();
        let (datamap, nodemap) = (self.datamap(), self.nodemap());
        assert!(
            bit.is_power_of_two() && (datamap | nodemap) & bit == 0,
            "snapview bug: an entry put into a filled slot"
        );
        let is_collision = datamap == 0 && entries > 0;
        if is_collision || !self.is_unique() || self.borrowed() != 0 {
            return Err(entry);
        }
        let at = (datamap & (bit - 1)).count_ones() as usize;
        if !Self::same_room((entries + 1, children), (entries, children)) {
            return self.insert_entry_relocating(bit, at, entry);
        }
        let base = entries_ptr::<K, V>(self.ptr, children);
        let header = self.ptr.as_ptr();
        // SAFETY: 1. the count is 1 and we hold `&mut` to that reference, so
        //    nothing else reads or writes the node (N3, N4); no copy borrows
        //    its entries (`is_unique` is false while `LENT` is set), and it
        //    borrows none, so no other node's bits index its entries (E1);
        // 2. the allocation has room for `entries + 1` entries (N1: a node
        //    of that many has the same layout), so slot `entries` is inside
        //    it, and the tail, placed after the room, does not move;
        // 3. the entries `at..entries` are initialised (N2) and move one slot
        //    up bit for bit: nothing is dropped or cloned, and nothing between
        //    the move and the header update can panic, so N2 and N5 hold
        //    again when this returns (a trie slot is one bit: `entries + 1 <=
        //    64` fits the shape).
        unsafe {
            ptr::copy(base.add(at), base.add(at + 1), entries - at);
            base.add(at).write(entry);
            (*header).datamap = datamap | bit;
            (*header).shape = ((entries + 1) as u32) << CHILD_BITS | children as u32;
        }
        Ok(())
    }

    /// Takes the entry in slot `bit` of this trie node out where it lies, if
    /// the node is the caller's alone, borrows no entries, and keeps the
    /// same room with one entry less ([`room`]); a node of plain data that is
    /// not lending and would have less room moves to a smaller allocation
    /// instead ([`relocate`](Self::relocate)). `None` otherwise, changing
    /// nothing. Runs no user code.
    #[inline]
    pub(crate) fn take_entry_in_place(&mut self, bit: u64) -> Option<(K, V)> {
        let (entries, children) = self.counts();
        let datamap = self.datamap();
        assert!(bit.is_power_of_two() && datamap & bit != 0, "snapview bug: taking an entry from a slot without one");
        if !self.is_unique() || self.borrowed() != 0 {
            return None;
        }
        let at = index_of(datamap, bit);
        if !Self::same_room((entries - 1, children), (entries, children)) {
            return self.take_entry_relocating(bit, at);
        }
        let base = entries_ptr::<K, V>(self.ptr, children);
        let header = self.ptr.as_ptr();
        // SAFETY: 1. as in `insert_entry_in_place`: the node is ours alone,
        //    lends no entry (not `LENT`: it is unique) and borrows none;
        // 2. entry `at` is initialised (N2: its bit is set in `datamap`) and
        //    is read out once, then the entries after it move one slot down
        //    bit for bit over it; the room, and so the tail, stays (N1);
        // 3. nothing can panic before the header says one entry less, so
        //    N2 and N5 hold again when this returns.
        unsafe {
            let taken = base.add(at).read();
            ptr::copy(base.add(at + 1), base.add(at), entries - at - 1);
            (*header).datamap = datamap & !bit;
            (*header).shape = ((entries - 1) as u32) << CHILD_BITS | children as u32;
            Some(taken)
        }
    }

    /// [`insert_entry_in_place`](Self::insert_entry_in_place) past the
    /// node's room: `entry` goes into slot `bit` (entry index `at`) of a
    /// larger allocation the node moves to, if it may move.
    #[inline(never)]
    fn insert_entry_relocating(&mut self, bit: u64, at: usize, entry: (K, V)) -> Result<(), (K, V)> {
        if !self.relocatable() {
            return Err(entry);
        }
        let (entries, children) = self.counts();
        // SAFETY: the node is ours alone and relocatable (just checked); the
        // new datamap has `entries + 1` bits (the caller found `bit` clear,
        // `at` its index), and the gap `relocate` leaves at `at` is filled
        // at once, by a move that cannot panic.
        unsafe {
            self.relocate(self.datamap() | bit, entries + 1, at);
            entries_ptr::<K, V>(self.ptr, children).add(at).write(entry);
        }
        Ok(())
    }

    /// [`take_entry_in_place`](Self::take_entry_in_place) where the node
    /// would have less room: entry `at` (in slot `bit`) is taken out as the
    /// node moves to a smaller allocation, if it may move.
    #[inline(never)]
    fn take_entry_relocating(&mut self, bit: u64, at: usize) -> Option<(K, V)> {
        if !self.relocatable() {
            return None;
        }
        let (entries, children) = self.counts();
        // SAFETY: entry `at` is initialised (N2: the caller found its bit set)
        // and is read out once, and `relocate` leaves it out of the copy;
        // should `relocate`'s allocation panic first, the copy read out is
        // dropped while the node still owns the entry, which is harmless
        // for a relocatable node's entries (no drop glue); the node is ours
        // alone and relocatable (just checked), and the new datamap has
        // `entries - 1` bits.
        unsafe {
            let taken = entries_ptr::<K, V>(self.ptr, children).add(at).read();
            self.relocate(self.datamap() & !bit, entries - 1, at);
            Some(taken)
        }
    }

    /// Whether this node may move to a new allocation bit for bit
    /// ([`relocate`](Self::relocate)): a node of plain data (no entry lent
    /// or borrowed, E1) that the caller holds alone and that is not lending
    /// (its tail, which the move does not carry over, holds no lender and
    /// no lent bits, N6). The caller reaches it through a counted slot (a
    /// lent child is counted before it is handed out mutably), so that
    /// slot, which the move rewrites, is the only place that holds its
    /// address: a lender is reached through its borrower's count, never
    /// unique, and links without a count (E2) exist only for borrowed
    /// entries, which plain data does not have.
    fn relocatable(&self) -> bool {
        !lends_entries::<K, V>() && self.is_unique() && !self.is_lending()
    }

    /// Moves this trie node to a new allocation laid out for `entries`
    /// entries, one more or one less than it has, and the same children:
    /// the children, their occupancies and the entries are copied bit for
    /// bit, with a gap at entry `gap` for one more, or without entry `gap`
    /// for one less; the old allocation is freed without dropping anything.
    /// A batch's node that outgrows its room, or shrinks past it, moves
    /// this way rather than by a rebuild, which handles lent children and
    /// borrowed entries one by one: a relocatable node has neither.
    ///
    /// # Safety
    /// The node must be the caller's alone and [`relocatable`](
    /// Self::relocatable), `datamap` must have `entries` bits set, and
    /// `gap` must be at most the node's entry count (below it, for one
    /// less). For one more, the gap is left uninitialised for the caller to
    /// fill before anything reads the node; for one less, entry `gap` is
    /// not dropped (the caller has read it out).
    unsafe fn relocate(&mut self, datamap: u64, entries: usize, gap: usize) {
        let (before, children) = self.counts();
        debug_assert!(entries.abs_diff(before) == 1 && gap <= before.min(entries));
        let old = self.ptr;
        let new = Self::allocate(datamap, self.nodemap(), entries, children);
        // SAFETY: 1. `new` is a fresh allocation laid out for `entries` and
        //    `children` (N1), so its arrays do not overlap the old ones, and
        //    the old arrays hold `before` entries and `children` children,
        //    initialised (N2); each copy stays within both;
        // 2. every value is copied once and the old allocation is freed
        //    without dropping any (`deallocate` drops only the header's and
        //    the tail's atomics, which hold nothing: not lending, nothing
        //    lent or borrowed), so each value has one owner again: `new`;
        // 3. the caller holds the only reference, which now points at `new`
        //    (header written by `allocate`: one reference, the new counts,
        //    a cleared tail, as the old one was); nothing can panic between
        //    the copies and the pointer's update.
        unsafe {
            ptr::copy_nonoverlapping(children_ptr::<K, V>(old), children_ptr::<K, V>(new), children);
            ptr::copy_nonoverlapping(occupancy_ptr(old, children), occupancy_ptr(new, children), children);
            let (from, to) = (entries_ptr::<K, V>(old, children), entries_ptr::<K, V>(new, children));
            ptr::copy_nonoverlapping(from, to, gap);
            if entries > before {
                ptr::copy_nonoverlapping(from.add(gap), to.add(gap + 1), before - gap);
            } else {
                ptr::copy_nonoverlapping(from.add(gap + 1), to.add(gap), before - gap - 1);
            }
            Self::deallocate(old, before, children);
        }
        self.ptr = new;
    }

    /// Turns the entry in slot `bit` of this trie node into the child that
    /// `make_child` builds from it, where the node lies, if the node is the
    /// caller's alone (so no copy borrows from it), borrows no children
    /// (not lending), already has children, and keeps its room with one
    /// entry less and one child more ([`room`]); hands `make_child` back
    /// otherwise, changing nothing. Only in maps of plain data: the room is
    /// theirs, and so is the reason a panicking `make_child` leaves the node
    /// unchanged (the entry it was given is a bitwise copy whose drop does
    /// nothing). Elsewhere exact sizes can match too (an entry of 16 bytes
    /// with drop glue), which is why the check names the entries' type.
    pub(crate) fn entry_to_child_in_place<F>(&mut self, bit: u64, make_child: F) -> Result<(), F>
    where
        F: FnOnce((K, V)) -> Self,
    {
        let (entries, children) = self.counts();
        let (datamap, nodemap) = (self.datamap(), self.nodemap());
        assert!(
            bit.is_power_of_two() && datamap & bit != 0 && nodemap & bit == 0,
            "snapview bug: no entry to turn into a child"
        );
        if lends_entries::<K, V>()
            || children == 0
            || !Self::same_room((entries - 1, children + 1), (entries, children))
            || !self.is_unique()
            || self.is_lending()
        {
            return Err(make_child);
        }
        let at = index_of(datamap, bit);
        let child_at = index_of(nodemap, bit);
        // SAFETY: entry `at` is initialised (N2: its bit is set). The bitwise
        // copy leaves the node unchanged: if `make_child` panics, the copy is
        // dropped, which for a type without drop glue (`!lends_entries`,
        // checked above) does nothing, and the node still owns its entry.
        let child = make_child(unsafe { entries_ptr::<K, V>(self.ptr, children).add(at).read() });
        let occupancy = child.occupancy();
        // SAFETY: 1. the count is 1 and we hold `&mut` to that reference, so
        //    nothing else reads or writes the node (N3, N4); not lending, it
        //    has no lent children whose bits would index its child array
        //    (N6: `lent` bits are set only with `LENDING`, and cleared with
        //    it), and with entries without drop glue it borrows none (E1);
        // 2. a node of `entries - 1` entries and `children + 1` children has
        //    this node's layout (`same_room`, N1): every move below stays in
        //    the allocation, and the tail (it had children, so it has one)
        //    does not move;
        // 3. entry `at` was copied into the child, which owns it now: its
        //    slot is written over. The other entries, the occupancies and
        //    the children move bit for bit to where the new counts put them
        //    (`ptr::copy` is a memmove), each block to its place before the
        //    block below it moves up into where it was; nothing in between
        //    can panic, so N2, N5 and O1 (the new child's occupancy is
        //    written beside it) hold again when this returns.
        unsafe {
            self.move_arrays_for_a_child(at, child_at, entries, children);
            children_ptr::<K, V>(self.ptr).add(child_at).write(child);
            occupancy_ptr(self.ptr, children + 1).add(child_at).write(occupancy);
            let header = self.ptr.as_ptr();
            (*header).datamap = datamap & !bit;
            (*header).nodemap = nodemap | bit;
            (*header).shape = ((entries - 1) as u32) << CHILD_BITS | (children + 1) as u32;
        }
        Ok(())
    }

    /// Moves the arrays of this node of `entries` entries and `children`
    /// children to where a node with one entry less (entry `at` gone) and one
    /// child more (a gap at `child_at`) has them.
    ///
    /// # Safety
    /// `at < entries` and `child_at <= children < 64`; the allocation must
    /// have both layouts' arrays (N1), the arrays must be initialised for
    /// the old counts (N2), and nothing else may access the node until the
    /// caller has filled the gap and written the new counts to the header.
    /// Entry `at` is written over without being dropped.
    unsafe fn move_arrays_for_a_child(&mut self, at: usize, child_at: usize, entries: usize, children: usize) {
        let (old_entries, new_entries) =
            (entries_ptr::<K, V>(self.ptr, children), entries_ptr::<K, V>(self.ptr, children + 1));
        let (old_occupancy, new_occupancy) = (occupancy_ptr(self.ptr, children), occupancy_ptr(self.ptr, children + 1));
        let child_array = children_ptr::<K, V>(self.ptr);
        let after = entries - at - 1;
        // SAFETY: all within the allocation (the caller's N1); each copy
        // moves initialised values to where the new counts put them, and
        // no block is written over before it has moved. The entries after
        // `at` go first, by the step to the new entry array less one entry
        // (up or down): the step is never negative, so their new place
        // starts at or after the end of the entries before `at`. Those then
        // move up by the step, ending where the others now begin. Then the
        // occupancies and the children, which only go up, each upper part
        // first, into places the blocks above them have left.
        unsafe {
            move_items(old_entries.add(at + 1), new_entries.add(at), after);
            move_items(old_entries, new_entries, at);
            move_items(old_occupancy.add(child_at), new_occupancy.add(child_at + 1), children - child_at);
            move_items(old_occupancy, new_occupancy, child_at);
            move_items(child_array.add(child_at), child_array.add(child_at + 1), children - child_at);
        }
    }

    /// Folds the child in slot `bit` of this trie node, which holds one entry
    /// and no children, back into the node as that entry, where the node
    /// lies, if both are the caller's alone, this node borrows no children
    /// (not lending), keeps children, and keeps its room with one child less
    /// and one entry more ([`room`]); returns whether it did (else nothing
    /// changed). Only in maps of plain data, as [`entry_to_child_in_place`](
    /// Self::entry_to_child_in_place) says. Runs no user code.
    pub(crate) fn child_to_entry_in_place(&mut self, bit: u64) -> bool {
        let (entries, children) = self.counts();
        let (datamap, nodemap) = (self.datamap(), self.nodemap());
        assert!(bit.is_power_of_two() && nodemap & bit != 0, "snapview bug: no child to fold");
        let child_at = index_of(nodemap, bit);
        // SAFETY: `child_at < children` (its bit is set, N5), and the child
        // is initialised (N2).
        let child = unsafe { &*children_ptr::<K, V>(self.ptr).add(child_at) };
        if lends_entries::<K, V>()
            || !Self::same_room((entries + 1, children - 1), (entries, children))
            || !self.is_unique()
            || self.is_lending()
            || !child.is_unique()
            || child.counts() != (1, 0)
        {
            return false;
        }
        let at = index_of(datamap, bit);
        // SAFETY: 1. as in `entry_to_child_in_place`: the node is ours alone,
        //    and, not lending, no lent bit indexes its children (N6);
        // 2. the child is ours alone too: its count is 1, and it is held by
        //    this node's array, to which we hold `&mut`, as a counted
        //    reference (not lending, this node has no lent children, whose
        //    one count would be their lender's); it holds one entry: read
        //    out, then the child is dropped, which for entries without drop
        //    glue (`!lends_entries`) frees its memory and leaves the entry,
        //    now this node's, as it was;
        // 3. a node of `entries + 1` entries and `children - 1` children has
        //    this node's layout (`same_room`, N1), tail included (it keeps
        //    children): the moves stay in the allocation, and nothing
        //    between them and the header update can panic, so N2, N5 and O1
        //    (the other occupancies move with their children) hold again
        //    when this returns.
        unsafe {
            let child = children_ptr::<K, V>(self.ptr).add(child_at).read();
            let entry = entries_ptr::<K, V>(child.ptr, 0).read();
            self.move_arrays_for_an_entry(at, child_at, entries, children);
            entries_ptr::<K, V>(self.ptr, children - 1).add(at).write(entry);
            let header = self.ptr.as_ptr();
            (*header).datamap = datamap | bit;
            (*header).nodemap = nodemap & !bit;
            (*header).shape = ((entries + 1) as u32) << CHILD_BITS | (children - 1) as u32;
            drop(child);
        }
        true
    }

    /// Moves the arrays of this node of `entries` entries and `children`
    /// children to where a node with one child less (child `child_at` gone)
    /// and one entry more (a gap at `at`) has them: the reverse of
    /// [`move_arrays_for_a_child`](Self::move_arrays_for_a_child).
    ///
    /// # Safety
    /// `at <= entries` and `child_at < children`; the allocation must have
    /// both layouts' arrays (N1), the arrays must be initialised for the old
    /// counts (N2), and nothing else may access the node until the caller
    /// has filled the gap and written the new counts to the header. Child
    /// `child_at` and its occupancy are written over without being dropped.
    unsafe fn move_arrays_for_an_entry(&mut self, at: usize, child_at: usize, entries: usize, children: usize) {
        let (old_entries, new_entries) =
            (entries_ptr::<K, V>(self.ptr, children), entries_ptr::<K, V>(self.ptr, children - 1));
        let (old_occupancy, new_occupancy) = (occupancy_ptr(self.ptr, children), occupancy_ptr(self.ptr, children - 1));
        let child_array = children_ptr::<K, V>(self.ptr);
        let after = children - child_at - 1;
        // SAFETY: all within the allocation (the caller's N1); each copy
        // moves initialised values to where the new counts put them, and no
        // block is written over before it has moved. Everything moves down
        // but the entries from `at` on (down, up or not at all), so the
        // lower blocks go first: the children after `child_at`, then the
        // occupancies before it and after it, then the entries before `at`,
        // each into places the blocks below have left; last the entries from
        // `at` on, by one entry less the step to the new entry array, to
        // just past the gap, whose start is where the entries before `at`
        // now end.
        unsafe {
            move_items(child_array.add(child_at + 1), child_array.add(child_at), after);
            move_items(old_occupancy, new_occupancy, child_at);
            move_items(old_occupancy.add(child_at + 1), new_occupancy.add(child_at), after);
            move_items(old_entries, new_entries, at);
            move_items(old_entries.add(at), new_entries.add(at + 1), entries - at);
        }
    }

    /// Mutable access to both arrays, copying the node first if it is shared.
    ///
    /// The copy clones the entries, or borrows them (E1): if a `Clone`
    /// panics, `self`'s entries and children are unchanged (a claim may
    /// have adopted entries from a gone lender, the same values).
    #[inline]
    pub(crate) fn make_mut(&mut self) -> NodeMut<'_, K, V>
    where
        K: Clone,
        V: Clone,
    {
        if !self.is_unique() {
            self.replace_by_copy();
        }
        // SAFETY: the node was unique, or is a fresh copy, which is (N3: one
        // reference, ours); nothing cloned it since.
        unsafe { self.arrays_mut() }
    }

    /// Out of line so that `make_mut`, called at every level of every write,
    /// inlines to a load and a branch: within a batch, only a node's first
    /// write copies it.
    #[inline(never)]
    fn replace_by_copy(&mut self)
    where
        K: Clone,
        V: Clone,
    {
        *self = super::build::shallow_copy(self);
    }

    /// Hints that this node's first `LINES` cache lines will be read soon.
    ///
    /// A lookup asks for two lines of each sparse node it reaches (its
    /// header and the start of its arrays: a leaf of a few entries rarely
    /// fits in the one line its header starts); four measured 3-5% slower
    /// at 1M and 2M keys (docs/design.md, §6).
    #[inline(always)]
    pub(crate) fn prefetch<const LINES: usize>(&self) {
        for line in 0..LINES {
            prefetch(self.ptr.as_ptr().cast::<u8>().wrapping_add(64 * line));
        }
    }

    /// Hints that the child for slot `slot`, and the occupancy kept for it,
    /// will be read soon, before the header that locates them has arrived.
    /// The node is expected to hold `children` children (the lookup's plan
    /// knows how many a node at this depth of a map this size has): child
    /// `slot` then sits near `slot * children / 64`, exactly at `slot` in a
    /// full node. At 1M keys (~57 children) guessing as if full put the
    /// occupancy guess a line off, most of the time: misses were 6-10%
    /// faster with the estimate, in two A/Bs. A guess outside the node costs
    /// a useless fetch, never a fault: prefetches do not fault.
    #[inline(always)]
    pub(crate) fn prefetch_slot(&self, slot: u32, children: u32) {
        let (children, at) = (children as usize, (slot * children / 64) as usize);
        prefetch(children_ptr::<K, V>(self.ptr).wrapping_add(at));
        prefetch(occupancy_ptr(self.ptr, children).wrapping_add(at));
    }

    /// The counts of entries and children.
    #[inline(always)]
    pub(super) fn counts(&self) -> (usize, usize) {
        let h = self.header();
        ((h.shape >> CHILD_BITS) as usize, (h.shape & ((1 << CHILD_BITS) - 1)) as usize)
    }

    /// Pointer to the first entry slot of the node at `ptr`, which has `children` children.
    pub(super) fn entries_base(ptr: NonNull<Header>, children: usize) -> *mut (K, V) {
        entries_ptr::<K, V>(ptr, children)
    }

    /// Pointer to the first child slot of the node at `ptr`.
    pub(super) fn children_base(ptr: NonNull<Header>) -> *mut NodeRef<K, V> {
        children_ptr::<K, V>(ptr)
    }

    /// Pointer to the first occupancy slot of the node at `ptr`, which has `children` children.
    pub(super) fn occupancy_base(ptr: NonNull<Header>, children: usize) -> *mut Occupancy {
        occupancy_ptr(ptr, children)
    }

    /// Frees the node's allocation, without dropping anything in it.
    ///
    /// # Safety
    /// `ptr` must come from `allocate` for `NodeRef<K, V>` with these counts,
    /// and nothing may use it afterwards.
    pub(super) unsafe fn deallocate(ptr: NonNull<Header>, entries: usize, children: usize) {
        // SAFETY: the caller guarantees the pointer and counts, hence the
        // layout and the tail's place, are those of the allocation (N1).
        unsafe {
            ptr::drop_in_place(&raw mut (*ptr.as_ptr()).refs);
            // (Plain atomics need no drop; loom's do, a leaf's tail too.)
            if Self::has_tail(children) {
                ptr::drop_in_place(lending_ptr::<K, V>(ptr, entries, children));
            }
            spare_block::free(ptr.cast(), Self::layout(entries, children));
        }
    }
}

/// One freed node block per map, kept for its writer's next node of the
/// same layout: blocks of [`MIN_SIZE`] to [`MAX_SIZE`] bytes.
///
/// glibc's per-thread cache of freed blocks stops at 1032 bytes, and a
/// node of ~58 children and a few entries, as under the root's children of
/// a 1M-key map, is 1080 with its room and tail: past that cache, each
/// free and allocation of one takes the arena's general path (bins,
/// consolidation). A publishing write into such a map copies one of them
/// and, once the version it replaced is gone, frees the one it copied, so
/// the block freed is the next write's allocation. Kept (per thread, as
/// session 53 did), a publishing write at 1M ran 4797 → 4579 instructions
/// (`python3 runtime/benches/instructions.py --writes 1000000`) and 8-14%
/// faster (`AB_WRITES=1 runtime/benches/ab.sh`, `publ`); lending it to the
/// thread for each write (below) costs ~50 of them back (4631; session 54).
/// Allocators with per-thread caches of larger blocks (jemalloc, mimalloc)
/// do the same themselves.
///
/// The block belongs to a map: its writer keeps it between writes
/// ([`SpareBlock`]) and lends it to its thread for the length of a write
/// ([`SpareBlockScope`]), the only time a block is kept or taken; a node
/// freed outside a write (a reader dropping the last snapshot of a
/// version) goes straight back to the allocator. So once a map and its
/// snapshots are gone, so is every byte they held, as a counting allocator
/// sees it (`runtime/tests/no_bytes_left.rs`), with one exception: a node
/// of another map freed on the writing thread during a write (a batch's
/// closure dropping another map's snapshot, a value holding one) is kept
/// by that write's map, one block at most, until its next write or its
/// drop. (Session 53 kept one block per thread instead, freed only at the
/// thread's exit: 1080 bytes stayed with a thread after its map went;
/// session 54.) Writes nest (a batch's closure may write to another map),
/// and so do the scopes: each gives back the slot it found.
///
/// The memory of a reused block is not poisoned between its two nodes, so
/// a checker would not see a use of the first node after its free: CI's
/// AddressSanitizer run builds with `--cfg snapview_no_spare`, which keeps
/// nothing (valgrind's run keeps the spare; it runs a subset of ASan's
/// tests).
mod spare_block {
    use core::cell::Cell;
    use core::mem::ManuallyDrop;
    use core::ptr::NonNull;
    use std::alloc::{self, Layout};

    /// The smallest block kept: those below it are glibc's cache's.
    const MIN_SIZE: usize = 1024;
    /// The largest block kept, so that a map never holds much: a node of
    /// 64 children and a few entries, or of 64 entries of up to ~48 bytes.
    const MAX_SIZE: usize = 4096;

    /// Whether blocks are kept at all: never under loom, whose threads
    /// share one OS thread's thread-locals (so scopes of two of its threads
    /// would not nest), nor in a build for a memory checker
    /// (`snapview_no_spare`).
    const KEEPS: bool = !cfg!(any(snapview_loom, snapview_no_spare));

    /// Whether blocks of `layout` are kept.
    fn kept(layout: Layout) -> bool {
        KEEPS && (MIN_SIZE..=MAX_SIZE).contains(&layout.size())
    }

    /// A freed node's allocation: its address and the layout it was
    /// allocated with, by the global allocator. Nothing in it is alive, and
    /// one owner holds it: the thread's slot, a scope's `outer`, or a
    /// [`SpareBlock`]; it moves between them, never copied.
    type Block = (NonNull<u8>, Layout);

    /// The thread's slot: `None` outside a write; in one, the block kept
    /// for its next allocation, if any.
    type Slot = Option<Option<Block>>;

    thread_local! {
        static SLOT: Cell<Slot> = const { Cell::new(None) };
    }

    /// Frees a block.
    ///
    /// # Safety
    /// `block` must have been allocated by the global allocator with its
    /// layout, and nothing may use it afterwards.
    unsafe fn release((block, layout): Block) {
        // SAFETY: the caller's.
        unsafe { alloc::dealloc(block.as_ptr(), layout) };
    }

    /// A map's kept block between its writes (none at first): owned, freed
    /// with the map.
    #[derive(Default)]
    pub(crate) struct SpareBlock(Option<Block>);

    // SAFETY: an allocation with nothing alive in it, owned by this value
    // alone: any thread may hand it over or free it.
    unsafe impl Send for SpareBlock {}
    // SAFETY: `&SpareBlock` gives no access to anything.
    unsafe impl Sync for SpareBlock {}

    impl Drop for SpareBlock {
        fn drop(&mut self) {
            if let Some(block) = self.0.take() {
                // SAFETY: a node's allocation with its layout, given up by
                // the node (`free`) and held by this value alone since.
                unsafe { release(block) };
            }
        }
    }

    /// A write on this thread: from [`open`](Self::open) to
    /// [`close`](Self::close), nodes freed or allocated with a kept layout
    /// go through the map's block. Dropped instead of closed (a panic), it
    /// frees the block and puts the thread's slot back as it found it.
    #[must_use = "a scope dropped without `close` frees its block"]
    pub(crate) struct SpareBlockScope {
        /// The slot as the scope found it (an enclosing write's, or none).
        outer: Slot,
    }

    impl SpareBlockScope {
        /// Lends `home`'s block to this thread until the scope closes.
        #[inline]
        pub(crate) fn open(home: &mut SpareBlock) -> Self {
            let block = home.0.take();
            if !KEEPS {
                return Self { outer: None };
            }
            match SLOT.try_with(|slot| slot.replace(Some(block))) {
                Ok(outer) => Self { outer },
                Err(_) => {
                    // Thread-locals gone (a write from another
                    // thread-local's destructor): nothing is kept.
                    if let Some(block) = block {
                        // SAFETY: a `Block` (allocated with its layout,
                        // nothing alive in it) that `home` owned alone and
                        // holds no more.
                        unsafe { release(block) };
                    }
                    Self { outer: None }
                }
            }
        }

        /// Ends the write: the block kept in it goes back to the map
        /// (whose `home` is empty since [`open`](Self::open)).
        #[inline]
        pub(crate) fn close(self, home: &mut SpareBlock) {
            // Before the scope is forgotten: should it fail, the drop
            // still puts the slot back.
            debug_assert!(home.0.is_none(), "a map's block lent to two writes");
            let this = ManuallyDrop::new(self);
            home.0 = this.restore();
        }

        /// Puts the slot back as the scope found it; returns the block the
        /// scope kept.
        #[inline]
        fn restore(&self) -> Option<Block> {
            if !KEEPS {
                return None;
            }
            SLOT.try_with(|slot| slot.replace(self.outer)).ok().flatten().flatten()
        }
    }

    impl Drop for SpareBlockScope {
        fn drop(&mut self) {
            if let Some(block) = self.restore() {
                // SAFETY: a node's allocation with its layout, given up by
                // its node (`free`); the slot held it alone.
                unsafe { release(block) };
            }
        }
    }

    /// The block kept for this write, if there is one and it has this layout.
    #[inline]
    pub(super) fn take(layout: Layout) -> Option<*mut u8> {
        if !kept(layout) {
            return None;
        }
        SLOT.try_with(|slot| match slot.get() {
            Some(Some((block, kept))) if kept == layout => {
                slot.set(Some(None));
                Some(block.as_ptr())
            }
            _ => None,
        })
        .ok()
        .flatten()
    }

    /// Frees `block`, or, in a write, keeps it for the write's map in place
    /// of the one kept before (which is freed).
    ///
    /// # Safety
    /// `block` must have been allocated with `layout` (by the global
    /// allocator), and nothing may use it afterwards.
    #[inline]
    pub(super) unsafe fn free(block: NonNull<u8>, layout: Layout) {
        let freed = (block, layout);
        let out = match kept(layout) {
            true => SLOT
                .try_with(|slot| match slot.get() {
                    Some(before) => {
                        slot.set(Some(Some(freed)));
                        before
                    }
                    // Outside a write: not the map's to keep.
                    None => Some(freed),
                })
                .unwrap_or(Some(freed)),
            false => Some(freed),
        };
        if let Some(block) = out {
            // SAFETY: the caller's (for `block`), or the slot's (for the
            // block it held, allocated with its layout and used by nothing).
            unsafe { release(block) };
        }
    }

    #[cfg(all(test, not(snapview_loom), not(snapview_no_spare)))]
    mod tests {
        use super::*;

        fn block(size: usize) -> (NonNull<u8>, Layout) {
            let layout = Layout::from_size_align(size, 8).expect("a small layout");
            // SAFETY: the layout's size is not zero.
            let block = NonNull::new(unsafe { alloc::alloc(layout) }).expect("memory");
            (block, layout)
        }

        /// A write for a map whose block is `home`.
        fn open(mut home: SpareBlock) -> SpareBlockScope {
            SpareBlockScope::open(&mut home)
        }

        /// Ends a write; returns what the map keeps.
        fn close(scope: SpareBlockScope) -> SpareBlock {
            let mut home = SpareBlock::default();
            scope.close(&mut home);
            home
        }

        /// Frees a block that a test took back.
        ///
        /// # Safety
        /// `block` must come from [`block`] with `layout`, taken back from
        /// the slot (`take`) or never given to it, and not be used again.
        unsafe fn dealloc(block: *mut u8, layout: Layout) {
            // SAFETY: the caller's.
            unsafe { alloc::dealloc(block, layout) };
        }

        #[test]
        fn a_freed_block_is_the_next_allocation_of_its_layout_only() {
            let scope = open(SpareBlock::default());
            let (first, layout) = block(1080);
            // SAFETY: allocated with `layout`, and not used again but by address.
            unsafe { free(first, layout) };
            assert_eq!(take(Layout::from_size_align(1088, 8).expect("a layout")), None, "another size");
            assert_eq!(take(layout), Some(first.as_ptr()), "the block freed last");
            assert_eq!(take(layout), None, "taken once");
            // SAFETY: from `block`, taken back from the slot: the test's to free.
            unsafe { dealloc(first.as_ptr(), layout) };
            // A second block freed replaces the first kept (which is freed).
            let (second, other) = block(2048);
            let (third, _) = block(1080);
            // SAFETY: as above.
            unsafe {
                free(second, other);
                free(third, layout);
            }
            assert_eq!(take(other), None, "replaced");
            let reused = take(layout).expect("the block freed last");
            // SAFETY: from `block`, taken back from the slot: the test's to free.
            unsafe { dealloc(reused, layout) };
            assert!(close(scope).0.is_none(), "the scope's block was taken");
        }

        #[test]
        fn only_blocks_of_the_kept_sizes_replace_the_spare() {
            let scope = open(SpareBlock::default());
            for size in [MIN_SIZE, MAX_SIZE] {
                let (b, layout) = block(size);
                // SAFETY: as above.
                unsafe { free(b, layout) };
                assert_eq!(take(layout), Some(b.as_ptr()), "a block of {size} bytes was not kept");
                // SAFETY: from `block`, taken back from the slot: the test's to free.
                unsafe { dealloc(b.as_ptr(), layout) };
            }
            let (kept, layout) = block(1080);
            // SAFETY: as above, for each block.
            unsafe {
                free(kept, layout);
                for size in [MIN_SIZE - 8, MAX_SIZE + 8] {
                    let (b, other) = block(size);
                    free(b, other);
                }
            }
            assert_eq!(take(layout), Some(kept.as_ptr()), "a block out of the sizes replaced the spare");
            // SAFETY: from `block`, taken back from the slot: the test's to free.
            unsafe { dealloc(kept.as_ptr(), layout) };
            drop(scope);
        }

        #[test]
        fn outside_a_write_nothing_is_kept_or_taken() {
            let (b, layout) = block(1080);
            // SAFETY: as above.
            unsafe { free(b, layout) };
            assert_eq!(take(layout), None, "a block freed outside a write was kept");
            let scope = open(SpareBlock::default());
            assert_eq!(take(layout), None, "a write found a block it was not lent");
            let home = close(scope);
            assert!(home.0.is_none(), "a block freed outside a write went to the next write's map");
            // A map's block is not lent outside its writes.
            let (b, layout) = block(1080);
            let scope = open(home);
            // SAFETY: as above.
            unsafe { free(b, layout) };
            let home = close(scope);
            assert_eq!(home.0.map(|(block, _)| block), Some(b), "the write's block went back to its map");
            assert_eq!(take(layout), None, "the map's block stayed with the thread");
            drop(home);
        }

        #[test]
        fn nested_writes_keep_their_own_blocks() {
            let (a, layout) = block(1080);
            let (b, _) = block(1080);
            let outer = open(SpareBlock::default());
            // SAFETY: as above.
            unsafe { free(a, layout) };
            let inner = open(SpareBlock::default());
            assert_eq!(take(layout), None, "the inner write took the outer one's block");
            // SAFETY: as above.
            unsafe { free(b, layout) };
            let inner_home = close(inner);
            assert_eq!(take(layout), Some(a.as_ptr()), "the outer write's block came back");
            // SAFETY: from `block`, taken back from the slot: the test's to free.
            unsafe { dealloc(a.as_ptr(), layout) };
            drop(close(outer));
            let again = open(inner_home);
            assert_eq!(take(layout), Some(b.as_ptr()), "the inner map's block on its next write");
            // SAFETY: from `block`, taken back from the slot: the test's to free.
            unsafe { dealloc(b.as_ptr(), layout) };
            drop(again);
        }

        #[test]
        fn a_scope_dropped_by_a_panic_frees_its_block_and_restores_the_outer_slot() {
            let (a, layout) = block(1080);
            let outer = open(SpareBlock::default());
            // SAFETY: as above.
            unsafe { free(a, layout) };
            let unwound = std::panic::catch_unwind(|| {
                let _inner = open(SpareBlock::default());
                let (b, layout) = block(1080);
                // SAFETY: as above.
                unsafe { free(b, layout) };
                panic!("a write's user code");
            });
            assert!(unwound.is_err());
            // The inner block was freed with the scope (valgrind's run
            // would see it lost otherwise); the outer one is back.
            assert_eq!(take(layout), Some(a.as_ptr()));
            // SAFETY: from `block`, taken back from the slot: the test's to free.
            unsafe { dealloc(a.as_ptr(), layout) };
            drop(outer);
        }
    }
}

#[cfg(all(test, not(snapview_loom)))]
impl<K, V> NodeRef<K, V> {
    /// The node's count of references (tests).
    pub(crate) fn ref_count(&self) -> u32 {
        // Relaxed: tests read it where nothing else runs.
        self.header().refs.load(Ordering::Relaxed) & COUNT
    }
}

fn entries_ptr<K, V>(ptr: NonNull<Header>, children: usize) -> *mut (K, V) {
    // wrapping_add: the arithmetic itself is safe; the offset stays inside the
    // allocation whenever the pointer is later dereferenced (N1).
    ptr.as_ptr().cast::<u8>().wrapping_add(NodeRef::<K, V>::entries_offset(children)).cast()
}

fn children_ptr<K, V>(ptr: NonNull<Header>) -> *mut NodeRef<K, V> {
    ptr.as_ptr().cast::<u8>().wrapping_add(NodeRef::<K, V>::CHILDREN_OFFSET).cast()
}

/// The occupancy array of a node of `NodeRef<K, V>` (its offset does not depend on K, V).
fn occupancy_ptr(ptr: NonNull<Header>, children: usize) -> *mut Occupancy {
    // wrapping_add: as in `entries_ptr`.
    ptr.as_ptr().cast::<u8>().wrapping_add(NodeRef::<(), ()>::occupancy_offset(children)).cast()
}

/// `ptr::copy` of `n` items, skipping the call where nothing would move: a
/// change of arity in place moves five blocks, of which, in a node of few
/// children and entries as large as a child with its occupancy (`u64 ->
/// u64`), most are empty or stay where they are.
///
/// # Safety
/// As `ptr::copy`'s.
#[inline(always)]
unsafe fn move_items<T>(src: *const T, dst: *mut T, n: usize) {
    if n != 0 && !ptr::eq(src, dst) {
        // SAFETY: the caller's.
        unsafe { ptr::copy(src, dst, n) };
    }
}

/// The bits set in `x`, counted with the instruction where the CPU has it:
/// the functions here that count are called out of line, where a count by
/// hand is a dozen operations (std caches the detection).
#[inline]
fn count_bits(x: u64) -> usize {
    Popcnt::detect().map_or_else(|| Compiled.count(x), |popcnt| popcnt.count(x))
}

/// The position of slot `bit`'s item in the dense array of `map`.
#[inline]
fn index_of(map: u64, bit: u64) -> usize {
    count_bits(map & (bit - 1))
}

fn lending_ptr<K, V>(ptr: NonNull<Header>, entries: usize, children: usize) -> *mut Lending {
    // wrapping_add: as in `entries_ptr`.
    ptr.as_ptr().cast::<u8>().wrapping_add(NodeRef::<K, V>::lending_offset(entries, children)).cast()
}

/// Gives a count of their holder's own to each of the `len` children at
/// `children` whose bit is set in `lent`, so that dropping them afterwards
/// takes back exactly what the holder has (N3).
///
/// # Safety
/// `children` must point at `len` initialised child slots, and each child
/// whose bit is set must be alive (its lender still holds it, N6).
pub(super) unsafe fn own_lent<K, V>(children: *const NodeRef<K, V>, len: usize, lent: u64) {
    let mut bits = lent;
    while bits != 0 {
        let i = bits.trailing_zeros() as usize;
        bits &= bits - 1;
        assert!(i < len, "snapview bug: a lent bit past the children");
        // SAFETY: slot `i` < `len` is initialised and alive (caller).
        core::mem::forget(unsafe { &*children.add(i) }.clone());
    }
}

#[inline(always)]
pub(crate) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint to the cache: it never faults and never
    // reads memory into the program's state, whatever the address.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

impl<K, V> Clone for NodeRef<K, V> {
    #[inline]
    fn clone(&self) -> Self {
        // Relaxed: a new reference is made from an existing one, which already
        // keeps the node alive; nothing needs to be ordered (as in Arc::clone).
        let old = self.header().refs.fetch_add(1, Ordering::Relaxed);
        if old & COUNT > MAX_REFS {
            std::process::abort();
        }
        Self { ptr: self.ptr, _owns: PhantomData }
    }
}

impl<K, V> Drop for NodeRef<K, V> {
    fn drop(&mut self) {
        // Release: orders every use of the node through this reference before
        // the decrement, so that whoever frees it (below, after the Acquire
        // fence) sees those uses finished.
        let before = self.header().refs.fetch_sub(1, Ordering::Release);
        if before & COUNT != 1 {
            return;
        }
        // Acquire: synchronizes with the Release decrements of all other
        // references, so their reads happen-before the drop and free.
        acquire_after_last_decrement(&self.header().refs);
        let (entries, children) = self.counts();
        // (`LENT` is never set where entries are not lent: a `u64` map's drop
        // compiles to what it was before lending.)
        if lends_entries::<K, V>() && before & LENT != 0 {
            // SAFETY: as below; the borrower's own end is ordered with ours
            // by the handshake on `refs` (E2).
            unsafe { free_lender::<K, V>(self.ptr, entries, children) };
            return;
        }
        // SAFETY: the count reached zero, so this was the last reference and
        // nothing else can reach the node (N3); its arrays are initialised (N2)
        // and its counts give its layout (N1). No copy borrows its entries:
        // `LENT` was clear, and no copy can be made without a reference.
        unsafe { free_node::<K, V>(self.ptr, entries, children) };
    }
}

/// Drops a node's contents and frees it.
///
/// # Safety
/// The node must be unreachable by anything else, with `entries` entries and
/// `children` children initialised, as `allocate` made it, and no copy may
/// borrow its entries (`LENT` clear).
// Out of line, as `Arc`'s `drop_slow`: the drop of a reference that is not
// the last one stays a few instructions, inlined where it is dropped.
#[inline(never)]
unsafe fn free_node<K, V>(ptr: NonNull<Header>, entries: usize, children: usize) {
    // Frees the allocation even if a K or V destructor panics, so that a
    // panicking Drop leaks nothing but what it panicked in.
    let _dealloc = Dealloc::<K, V>(ptr, entries, children, PhantomData);
    // SAFETY: `ptr` is a live node (caller); this temporary reference only
    // takes its lending state out and is never dropped.
    let node = core::mem::ManuallyDrop::new(unsafe { NodeRef::<K, V>::from_raw(ptr) });
    let borrowed = node.borrowed();
    // A link (E2) when the lender is not counted: read before `take_lending` clears it.
    let link = match borrowed {
        0 => None,
        _ if node.is_lending() => None,
        _ => node.lending().and_then(|lending| NonNull::new(lending.lender.load(Ordering::Relaxed))),
    };
    let (lent, lender) = node.take_lending();
    // SAFETY: the lent children are alive: the lender, not yet dropped, holds
    // them (N6).
    unsafe { own_lent::<K, V>(children_ptr::<K, V>(ptr), children, lent) };
    // Dropped when this function returns or unwinds, after the arrays below:
    // what the lender frees is then no longer referenced from this node, and
    // the borrowed entries are given back only once this node is done.
    let _borrowing = EndBorrowing { borrowed, lender, link };
    // Dropped after the entries, or as they unwind.
    let _children = DropChildren::<K, V>(ptr, children, PhantomData);
    // SAFETY: 1. the entry array holds exactly `entries` initialised values
    //    (caller), each dropped once here and never used again; the borrowed
    //    entries are the lender's, left to it or to `_borrowing` (E1);
    // 2. if a destructor panics, the other entries are still dropped (by
    //    `drop_entries_except`), then the children (`_children`, each
    //    counted by this node now: `own_lent` above), and `_dealloc` still
    //    frees the memory.
    unsafe { drop_entries_except(entries_ptr::<K, V>(ptr, children), entries, borrowed) };
}

/// Drops a dying node's children (see `free_node`): when the node's entries
/// are dropped, or if one of their destructors panics, so that a panicking
/// `Drop` does not leak the sub-trees below the node.
struct DropChildren<K, V>(NonNull<Header>, usize, PhantomData<(K, V)>);

impl<K, V> Drop for DropChildren<K, V> {
    fn drop(&mut self) {
        // SAFETY: made only for a dying node whose `self.1` children are
        // initialised and counted by it (lent ones owned first: `own_lent`),
        // each dropped here once and never used again.
        unsafe { ptr::drop_in_place(ptr::slice_from_raw_parts_mut(children_ptr::<K, V>(self.0), self.1)) };
    }
}

/// Frees a node's allocation on drop (see `free_node`).
struct Dealloc<K, V>(NonNull<Header>, usize, usize, PhantomData<(K, V)>);

impl<K, V> Drop for Dealloc<K, V> {
    fn drop(&mut self) {
        // SAFETY: made only with the pointer and counts of a node whose
        // contents have been dropped or moved out (or are being unwound).
        unsafe { NodeRef::<K, V>::deallocate(self.0, self.1, self.2) };
    }
}

/// Gives back, on drop, the entries a dying node borrowed: to its counted
/// lender (which then drops them with the rest of its entries), or through
/// its link (E2).
struct EndBorrowing<K, V> {
    borrowed: u64,
    lender: Option<NodeRef<K, V>>,
    link: Option<NonNull<Header>>,
}

impl<K, V> Drop for EndBorrowing<K, V> {
    fn drop(&mut self) {
        if self.borrowed != 0 {
            match (&self.lender, self.link) {
                (Some(lender), _) => lender.end_lending(),
                // SAFETY: a link of a node that borrows entries points at a
                // lender that waits for it (E2), and this node, which is going,
                // uses it for the last time.
                (None, Some(link)) => unsafe { release_link::<K, V>(link) },
                (None, None) => unreachable!("snapview bug: borrowed entries without a lender"),
            }
        }
        // The counted lender, if any, is dropped with `self` after this.
    }
}

/// Drops the last reference of a node whose entries a copy borrows (E2):
/// everything it owns but the lent entries, then the handshake with the
/// borrower: if the borrower has gone already, the lent entries and the
/// memory too; otherwise the borrower will.
///
/// # Safety
/// As for `free_node`, except that `LENT` was set when the count reached zero.
#[inline(never)]
unsafe fn free_lender<K, V>(ptr: NonNull<Header>, entries: usize, children: usize) {
    // SAFETY: `ptr` is a live node (caller), read through a temporary
    // reference that is never dropped.
    let node = core::mem::ManuallyDrop::new(unsafe { NodeRef::<K, V>::from_raw(ptr) });
    debug_assert_eq!(node.borrowed(), 0, "snapview bug: a lender that borrows");
    let lending = node.lending().expect("snapview bug: lent entries without a tail");
    // Relaxed: written when the borrower settled into a link (`keep_link`),
    // before it dropped its counted reference to this node; our Acquire on
    // the count synchronizes with that Release decrement.
    let lent_out = lending.lent_out.load(Ordering::Relaxed);
    let (lent, lender) = node.take_lending();
    // SAFETY: as in `free_node`.
    unsafe { own_lent::<K, V>(children_ptr::<K, V>(ptr), children, lent) };
    let _lender = lender;
    // Runs last, also when a destructor below panics.
    let _handshake = Handshake::<K, V> { ptr, entries, children, lent_out, _owns: PhantomData };
    // As in `free_node`.
    let _children = DropChildren::<K, V>(ptr, children, PhantomData);
    // SAFETY: as in `free_node`, leaving the lent entries to the handshake.
    unsafe { drop_entries_except(entries_ptr::<K, V>(ptr, children), entries, lent_out) };
}

/// The lender's half of the handshake (see `free_lender`).
struct Handshake<K, V> {
    ptr: NonNull<Header>,
    entries: usize,
    children: usize,
    lent_out: u64,
    _owns: PhantomData<(K, V)>,
}

impl<K, V> Drop for Handshake<K, V> {
    fn drop(&mut self) {
        // SAFETY: the node's memory stays until one of the two ends frees it.
        let refs = unsafe { &(*self.ptr.as_ptr()).refs };
        // AcqRel: Release orders our drops before the borrower frees the
        // memory; Acquire orders the borrower's last reads of the lent entries
        // (its Release when it cleared `LENT`) before we drop them.
        if refs.fetch_or(GONE, Ordering::AcqRel) & LENT != 0 {
            return; // the borrower is still there: the lent entries are its to end
        }
        let _dealloc = Dealloc::<K, V>(self.ptr, self.entries, self.children, PhantomData);
        // SAFETY: the borrower has ended: the lent entries are ours alone, and
        // this is their one drop.
        unsafe { drop_entries_except(entries_ptr::<K, V>(self.ptr, self.children), self.entries, !self.lent_out) };
    }
}

/// The borrower's half of the handshake: gives the lent entries back to the
/// lender at `link`, or, if the lender has gone, drops them and frees its
/// memory (E2).
///
/// # Safety
/// `link` must be the lender of entries that the caller borrowed and has
/// stopped reading, and the caller must never use it again.
unsafe fn release_link<K, V>(link: NonNull<Header>) {
    // SAFETY: a lender's memory stays while `LENT` is set (E2).
    let lender = core::mem::ManuallyDrop::new(unsafe { NodeRef::<K, V>::from_raw(link) });
    // AcqRel: Release orders our reads of the lent entries before the lender
    // drops them; Acquire, if it has gone, orders its drops before our free.
    if lender.header().refs.fetch_and(!LENT, Ordering::AcqRel) & GONE == 0 {
        return;
    }
    let (entries, children) = lender.counts();
    let lending = lender.lending().expect("snapview bug: lent entries without a tail");
    // Relaxed: ordered by the Acquire above.
    let lent_out = lending.lent_out.load(Ordering::Relaxed);
    let _dealloc = Dealloc::<K, V>(link, entries, children, PhantomData);
    // SAFETY: the lender dropped all else (`free_lender`); the lent entries
    // are ours alone now, dropped once here.
    unsafe { drop_entries_except(entries_ptr::<K, V>(link, children), entries, !lent_out) };
}

/// Makes borrowed entry `i` of an unshared node its own (E1).
///
/// # Safety
/// `lending`, `datamap` and the `len` entries at `entries` must be those of
/// an unshared node (nothing else reads or writes them), `i < len`, and
/// `counted` must say whether the node's lender is a counted reference.
unsafe fn own_entry<K: Clone, V: Clone>(
    lending: &Lending,
    counted: bool,
    datamap: u64,
    entries: *mut (K, V),
    len: usize,
    i: usize,
) {
    // Relaxed: the node is unshared (caller).
    let borrowed = lending.borrowed.load(Ordering::Relaxed);
    // An entry past the 64th has no bit: only a collision node holds more,
    // and it never borrows (`claim_entries`).
    if i >= 64 || borrowed & (1 << i) == 0 {
        return;
    }
    if !counted {
        // After its batch, a node stops borrowing all at once (E2).
        // SAFETY: the caller's guarantees.
        return unsafe { own_all::<K, V>(lending, counted, datamap, entries, len) };
    }
    // SAFETY: 1. entry `i` is initialised and alive: the counted lender holds
    //    it; a `Clone` that panics leaves everything as it was;
    // 2. the write replaces the lender's bytes without dropping them: they
    //    are the lender's, which drops them itself once its bit is cleared.
    unsafe {
        let (k, v) = &*entries.add(i);
        let fresh = (k.clone(), v.clone());
        entries.add(i).write(fresh);
    }
    let left = borrowed & !(1 << i);
    lending.borrowed.store(left, Ordering::Relaxed);
    // The lender's `lent_out` is left alone: it is written when this node
    // settles into a link (`keep_link`), from the bits left then.
    if left == 0 {
        // SAFETY: a counted lender is alive (N6).
        let lender = core::mem::ManuallyDrop::new(unsafe { lender_of::<K, V>(lending) });
        lender.end_lending();
    }
}

/// Makes every borrowed entry of an unshared node its own (E1, E2).
///
/// # Safety
/// As for `own_entry`.
unsafe fn own_all<K: Clone, V: Clone>(
    lending: &Lending,
    counted: bool,
    datamap: u64,
    entries: *mut (K, V),
    len: usize,
) {
    // Relaxed: the node is unshared (caller).
    let borrowed = lending.borrowed.load(Ordering::Relaxed);
    if borrowed == 0 {
        return;
    }
    // SAFETY: the node is unshared (caller) and borrows (checked) through a
    // link (`counted` false).
    if !counted && unsafe { adopt_from_gone_lender::<K, V>(lending, datamap) } {
        return;
    }
    // SAFETY: a node that borrows has a lender: counted, or waiting for it (E2).
    let lender = core::mem::ManuallyDrop::new(unsafe { lender_of::<K, V>(lending) });
    // The lender's `lent_out` is left alone: a counted lender's is written
    // when this node settles into a link, from the bits left then; a link's
    // keeps naming the originals of the entries cloned here, which the
    // later of the two ends drops (E2), as it does if a `Clone` panics.
    let mut bits = borrowed;
    while bits != 0 {
        let i = bits.trailing_zeros() as usize;
        bits &= bits - 1;
        assert!(i < len, "snapview bug: a borrowed bit past the entries");
        // SAFETY: as in `own_entry`: the lender keeps entry `i` alive while
        // this node borrows it (its count, or `LENT` and the handshake).
        unsafe {
            let (k, v) = &*entries.add(i);
            let fresh = (k.clone(), v.clone());
            entries.add(i).write(fresh);
        }
        lending.borrowed.fetch_and(!(1 << i), Ordering::Relaxed);
    }
    if counted {
        lender.end_lending();
    } else {
        lending.lender.store(ptr::null_mut(), Ordering::Relaxed);
        // SAFETY: this node borrowed from `lender` and no longer reads it.
        unsafe { release_link::<K, V>(lender.ptr) };
    }
}

/// If the lender of a node that borrows entries through a link (E2) has gone,
/// makes those entries the node's own, bit for bit, and frees the lender's
/// memory; false, changing nothing, while the lender lives.
///
/// # Safety
/// `lending` must be the tail of a live node, whose datamap is `datamap`,
/// that borrows entries through a
/// link (its lender not counted), and nothing else may read or write that
/// tail meanwhile: the caller is the writer, and holds the node alone or
/// holds its claim (`LENT`, which keeps other writers out; the node's last
/// drop, the only other reader, cannot come while the caller holds it).
#[inline(never)]
unsafe fn adopt_from_gone_lender<K, V>(lending: &Lending, datamap: u64) -> bool {
    // SAFETY: a node that borrows through a link has a lender waiting for it
    // (E2): its memory stays until this node ends the borrowing.
    let lender = core::mem::ManuallyDrop::new(unsafe { lender_of::<K, V>(lending) });
    // Acquire: the lender's drops happened before it set GONE.
    if lender.header().refs.load(Ordering::Acquire) & GONE == 0 {
        return false;
    }
    // The lender has gone: the lent entries we still hold are ours, bit for
    // bit; the others (cloned over by an earlier call cut short by a panic)
    // it left to us too. Relaxed: the caller alone reads and writes the tail.
    let borrowed = lender_bits(lending.borrowed.load(Ordering::Relaxed), datamap, lender.datamap());
    let (l_entries, l_children) = lender.counts();
    let lent_out =
        lender.lending().expect("snapview bug: lent entries without a tail").lent_out.load(Ordering::Relaxed);
    lending.borrowed.store(0, Ordering::Relaxed);
    lending.lender.store(ptr::null_mut(), Ordering::Relaxed);
    let _dealloc = Dealloc::<K, V>(lender.ptr, l_entries, l_children, PhantomData);
    // SAFETY: once GONE is set, only this node uses the lender's memory; the
    // entries dropped are originals that this node no longer borrows.
    unsafe { drop_entries_except(entries_ptr::<K, V>(lender.ptr, l_children), l_entries, !(lent_out & !borrowed)) };
    true
}

/// The bits, among a lender's entries, of the borrowed entries whose bits
/// are set in `mask`, among its borrower's (E1): a borrowed entry sits in the
/// same slot in both, at an index that a rebuilt borrower may have shifted
/// (entries added or removed before it). `datamap` is the borrower's,
/// `lender_datamap` the lender's; where they are equal (every copy that did
/// not change shape), so are the indices.
pub(super) fn lender_bits(mask: u64, datamap: u64, lender_datamap: u64) -> u64 {
    if datamap == lender_datamap {
        return mask;
    }
    let (mut theirs, mut slots, mut mine) = (0u64, datamap, mask);
    while mine != 0 {
        assert!(slots != 0, "snapview bug: a borrowed bit past the entries");
        let slot = slots & slots.wrapping_neg();
        slots &= slots - 1;
        if mine & 1 != 0 {
            assert!(lender_datamap & slot != 0, "snapview bug: a borrowed entry in a slot its lender does not fill");
            theirs |= 1 << (lender_datamap & (slot - 1)).count_ones();
        }
        mine >>= 1;
    }
    theirs
}

/// The lender recorded in a tail, as a reference that must not be dropped.
///
/// # Safety
/// The lender must be alive, or waiting for this node (E2).
unsafe fn lender_of<K, V>(lending: &Lending) -> NodeRef<K, V> {
    // Relaxed: the lender is written by the writer that reads it here, or,
    // on a node a clone shares, by the last claimer, whose claim's Release
    // end the caller's claim acquired.
    let lender =
        NonNull::new(lending.lender.load(Ordering::Relaxed)).expect("snapview bug: borrowing without a lender");
    // SAFETY: the caller's guarantee.
    unsafe { NodeRef::from_raw(lender) }
}

/// Drops the `len` entries at `entries` whose bit in `keep` is clear. If one
/// destructor panics, the ones after it are still dropped.
///
/// # Safety
/// The entries must be initialised, and those dropped never used again.
pub(super) unsafe fn drop_entries_except<K, V>(entries: *mut (K, V), len: usize, keep: u64) {
    if keep == 0 {
        // SAFETY: the caller's guarantee, for all of them.
        unsafe { ptr::drop_in_place(ptr::slice_from_raw_parts_mut(entries, len)) };
        return;
    }
    /// On unwinding out of entry `at`'s drop, drops the ones after it.
    struct Rest<K, V>(*mut (K, V), usize, u64, usize);
    impl<K, V> Drop for Rest<K, V> {
        fn drop(&mut self) {
            let (entries, len, keep, at) = (self.0, self.1, self.2, self.3 + 1);
            // SAFETY: the caller's guarantee, for the entries after `at`.
            unsafe { drop_entries_except(entries.add(at), len - at, keep.checked_shr(at as u32).unwrap_or(0)) };
        }
    }
    // Only the set bits are visited, rather than a test per entry: which
    // entries a batch wrote (and so which the lender drops) follows its keys,
    // and a test per entry mispredicted about once per entry written.
    let mut doomed = !keep & super::build::bits_below(len);
    while doomed != 0 {
        let i = doomed.trailing_zeros() as usize;
        doomed &= doomed - 1;
        let rest = Rest(entries, len, keep, i);
        // SAFETY: entry `i` is initialised and not kept (caller).
        unsafe { ptr::drop_in_place(entries.add(i)) };
        core::mem::forget(rest);
    }
    // Past 64 entries (a collision node) nothing is kept.
    for i in 64..len {
        let rest = Rest(entries, len, keep, i);
        // SAFETY: entry `i` is initialised and not kept (caller).
        unsafe { ptr::drop_in_place(entries.add(i)) };
        core::mem::forget(rest);
    }
}

#[cfg(all(test, not(snapview_loom)))]
mod tests {
    use super::*;

    /// A xorshift64 generator from `seed`: random bitmaps, the same every run.
    fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    /// `lender_bits` against its definition: the borrower's entry `i` sits in
    /// the `i`-th slot of its datamap, and the lender's index of that slot is
    /// the count of the lender's slots below it.
    #[test]
    fn lender_bits_finds_each_borrowed_entry_by_its_slot() {
        let mut next = xorshift(0x9E37_79B9_7F4A_7C15u64);
        for _ in 0..20_000 {
            let lender = next() & next();
            // A rebuilt borrower: the lender's slots, some gone, a few added.
            let datamap = (lender & (next() | next())) | (next() & next() & next());
            let slots: Vec<u64> = (0..64).map(|s| 1u64 << s).filter(|b| datamap & b != 0).collect();
            let (mut mask, mut expected) = (0u64, 0u64);
            for (i, &slot) in slots.iter().enumerate() {
                if lender & slot != 0 && next() & 1 == 1 {
                    mask |= 1 << i;
                    expected |= 1 << (lender & (slot - 1)).count_ones();
                }
            }
            assert_eq!(lender_bits(mask, datamap, lender), expected, "{mask:#x} {datamap:#x} {lender:#x}");
        }
        assert_eq!(lender_bits(0b101, 0b111, 0b111), 0b101, "the same slots: the same bits");
    }

    #[test]
    fn layout_packs_children_after_header_then_occupancy_then_entries() {
        let l = NodeRef::<u64, u64>::layout(2, 1);
        assert_eq!(size_of::<Header>(), 24);
        assert_eq!(NodeRef::<u64, u64>::CHILDREN_OFFSET, 24);
        assert_eq!(NodeRef::<u64, u64>::occupancy_offset(2), 24 + 2 * 8);
        assert_eq!(NodeRef::<u64, u64>::entries_offset(2), 24 + 2 * 8 + 2 * 8);
        assert_eq!(NodeRef::<u64, u64>::lending_offset(2, 1), 24 + 16 + 2 * 16);
        assert_eq!(l.size(), 24 + 16 + 2 * 16 + 32, "and the lending tail");
        assert_eq!(NodeRef::<u64, u64>::layout(3, 0).size(), 24 + 3 * 16, "no tail without children");
        assert_eq!(l.align(), 8);
    }

    /// Past 64 bytes a node's arrays have room up to the next of 2^k and
    /// 3 * 2^(k-1) bytes, and its tail sits after the room, where a change
    /// in place leaves it.
    #[test]
    fn layout_leaves_room_past_64_bytes() {
        let rooms: Vec<usize> =
            [0, 16, 64, 65, 96, 97, 128, 129, 192, 193, 256, 257, 1024].map(room::<u64, u64>).into();
        assert_eq!(rooms, [0, 16, 64, 96, 96, 128, 128, 192, 192, 256, 256, 384, 1024]);
        assert_eq!(room::<String, u64>(100), 100, "no room where entries drop");
        assert_eq!(NodeRef::<u64, u64>::layout(5, 0).size(), 24 + 6 * 16);
        assert_eq!(NodeRef::<u64, u64>::layout(6, 0), NodeRef::<u64, u64>::layout(5, 0));
        assert_eq!(NodeRef::<u64, u64>::lending_offset(4, 2), 24 + 96, "2 children and 4 entries fill 96 bytes");
        assert_eq!(NodeRef::<u64, u64>::lending_offset(5, 2), 24 + 128);
        assert_eq!(NodeRef::<u64, u64>::lending_offset(3, 3), NodeRef::<u64, u64>::lending_offset(4, 2), "one room");
        assert_eq!(NodeRef::<u64, u64>::layout(9, 2).size(), 24 + 192 + 32);
        assert!(NodeRef::<u64, u64>::same_room((8, 4), (9, 3)), "an entry's bytes take a child");
        assert!(!NodeRef::<u64, u64>::same_room((3, 1), (4, 0)), "a first child brings the tail");
    }

    /// A node of ~1 KB freed in a write is the write's spare block, and the
    /// next node of its counts: the block a publishing write at 1M frees and
    /// then allocates (`spare_block`).
    #[cfg(not(snapview_no_spare))]
    #[test]
    fn a_freed_large_node_is_the_next_of_its_counts() {
        type Node = NodeRef<u64, u64>;
        let (nodemap, datamap) = (u64::MAX >> 6, 0b11_1110u64 << 58);
        let (entries, children) = (5, 58);
        let layout = Node::layout(entries, children);
        assert!(layout.size() >= 1024, "a node past glibc's cache");
        // A write's: only then is a block kept.
        let scope = spare_block::SpareBlockScope::open(&mut spare_block::SpareBlock::default());
        let first = Node::allocate(datamap, nodemap, entries, children);
        // SAFETY: from `allocate` with these counts; its arrays were never
        // initialised and nothing reads them.
        unsafe { Node::deallocate(first, entries, children) };
        // Whatever glibc would hand out next, the block is the spare's now.
        let spare = spare_block::take(layout).expect("the freed node's block was not kept");
        assert_eq!(spare, first.as_ptr().cast::<u8>());
        // SAFETY: the block, allocated with `layout`, given back as it was.
        unsafe { spare_block::free(NonNull::new(spare).expect("not null"), layout) };
        let second = Node::allocate(datamap, nodemap, entries, children);
        assert_eq!(second, first, "the freed block was not reused");
        // SAFETY: as above.
        unsafe { Node::deallocate(second, entries, children) };
        // 40 children fill 640 bytes, kept in a block of 768.
        let smaller = Node::allocate(0, nodemap >> 18, 0, 40);
        assert_ne!(smaller, first, "a block of another layout was handed out");
        // SAFETY: as above.
        unsafe { Node::deallocate(smaller, 0, 40) };
        drop(scope);
    }

    #[test]
    fn layout_respects_over_aligned_entries() {
        #[repr(align(64))]
        struct Big;
        let off = NodeRef::<Big, u8>::entries_offset(3);
        assert_eq!(off % 64, 0);
        assert_eq!(NodeRef::<Big, u8>::layout(1, 1).align(), 64);
    }

    #[test]
    fn layout_of_zero_sized_entries_is_header_and_children() {
        let l = NodeRef::<(), ()>::layout(1000, 1);
        assert_eq!(l.size(), size_of::<Header>() + 8 + 8 + size_of::<Lending>());
    }

    /// Records its index when dropped, and panics then if told to.
    struct Marked(usize, bool);

    std::thread_local! {
        static DROPPED: core::cell::RefCell<Vec<usize>> = const { core::cell::RefCell::new(Vec::new()) };
    }

    impl Drop for Marked {
        fn drop(&mut self) {
            DROPPED.with(|d| d.borrow_mut().push(self.0));
            assert!(!self.1, "entry {} panics as it drops", self.0);
        }
    }

    /// Runs `drop_entries_except` over `len` marked entries (entry
    /// `panics_at` panicking) and returns the indices dropped, sorted.
    fn dropped_by(len: usize, keep: u64, panics_at: Option<usize>) -> Vec<usize> {
        let mut entries: Vec<(Marked, ())> = (0..len).map(|i| (Marked(i, Some(i) == panics_at), ())).collect();
        DROPPED.with(|d| d.borrow_mut().clear());
        let ptr = entries.as_mut_ptr();
        // SAFETY: the entries are initialised; the Vec forgets them all
        // below (the kept ones are leaked: they own nothing).
        let run =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe { drop_entries_except(ptr, len, keep) }));
        // SAFETY: length 0 drops nothing; the entries' memory is freed.
        unsafe { entries.set_len(0) };
        assert_eq!(run.is_err(), panics_at.is_some_and(|at| at >= 64 || keep & (1 << at) == 0));
        let mut dropped = DROPPED.with(|d| d.take());
        dropped.sort_unstable();
        dropped
    }

    /// Every entry not kept is dropped exactly once, also when one of their
    /// destructors panics, and past 64 entries (a collision node) none is kept.
    #[test]
    fn drop_entries_except_drops_each_entry_not_kept_exactly_once() {
        let mut next = xorshift(0x2545_F491_4F6C_DD1Du64);
        for round in 0..400 {
            let len = [0, 1, 5, 17, 63, 64, 65, 90][round % 8];
            let keep = match round % 3 {
                0 => 0,
                1 => next(),
                _ => next() & next() & next(),
            };
            let panics_at = (round % 4 == 3 && len > 0).then(|| next() as usize % len);
            let expected: Vec<usize> = (0..len).filter(|&i| i >= 64 || keep & (1 << i) == 0).collect();
            assert_eq!(
                dropped_by(len, keep, panics_at),
                expected,
                "len {len}, keep {keep:#x}, panics at {panics_at:?}"
            );
        }
    }
}

/// Model-checked reference counting (`RUSTFLAGS="--cfg snapview_loom" cargo test -p snapview --lib loom`).
#[cfg(all(test, snapview_loom))]
mod loom_tests {
    use super::*;
    use crate::raw::{Builder, LendGuard, Lendable};
    use std::sync::Arc;

    /// An entry's value whose life loom can see: node memory and `token` are
    /// plain memory, outside the model, but every [`read`](Self::read) and
    /// the drop (a write) go through a loom cell, and loom fails the model
    /// when a read on one thread and the drop on another are not ordered by
    /// happens-before. So a missing Release or Acquire on the counts, which
    /// would let an entry be dropped while another thread still reads it,
    /// fails these tests, not only a wrong count of drops (`token`'s).
    struct Touched {
        cell: loom::cell::UnsafeCell<u32>,
        token: Arc<()>,
    }

    // SAFETY: the cell is only read through loom's checked `with` and written
    // through its checked `with_mut` (in the drop): an access on one thread
    // that races one on another fails the model instead of racing.
    unsafe impl Sync for Touched {}

    // SAFETY: `Lendable` asks that a value's bytes never change through a
    // shared reference. A `Touched`'s do not, cell or no cell: through
    // `&Touched` it is only read, and its one write is the drop's, through
    // `&mut`. So a bit copy reads as the original does, and loom, whose
    // access state for the cell lives outside its bytes (an index), tracks
    // both as the one value they are.
    unsafe impl Lendable for Touched {}

    impl Touched {
        fn new(token: &Arc<()>) -> Self {
            Self { cell: loom::cell::UnsafeCell::new(1), token: Arc::clone(token) }
        }

        fn read(&self) -> u32 {
            // SAFETY: a write racing this read fails the model (see the type).
            self.cell.with(|value| unsafe { *value })
        }
    }

    impl Clone for Touched {
        fn clone(&self) -> Self {
            Self { cell: loom::cell::UnsafeCell::new(self.read()), token: Arc::clone(&self.token) }
        }
    }

    impl Drop for Touched {
        fn drop(&mut self) {
            // SAFETY: a read racing this write fails the model (see the type).
            self.cell.with_mut(|value| unsafe { *value = 0 });
        }
    }

    /// A reader's last use of a version: it reads every value the node
    /// reaches, then lets go of it.
    fn read_then_drop(node: NodeRef<u32, Touched>) {
        fn read_all(node: &NodeRef<u32, Touched>) {
            node.entries().iter().for_each(|e| assert_eq!(e.1.read(), 1));
            node.children().iter().for_each(read_all);
        }
        read_all(&node);
        drop(node);
    }

    fn node_holding(token: &Arc<()>) -> NodeRef<u32, Touched> {
        let mut b = Builder::collision(1);
        b.push_entry((1, Touched::new(token)));
        b.finish()
    }

    #[test]
    fn loom_the_last_of_two_concurrent_drops_frees_exactly_once() {
        loom::model(|| {
            let _lend = LendGuard::allow::<u32, Touched>();
            let token = Arc::new(());
            let node = node_holding(&token);
            let other = node.clone();
            let t = loom::thread::spawn(move || {
                assert_eq!(other.entries()[0].1.read(), 1);
                drop(other);
            });
            assert_eq!(node.entries()[0].1.read(), 1);
            drop(node);
            t.join().unwrap();
            assert_eq!(Arc::strong_count(&token), 1);
        });
    }

    /// Publication vs snapshot vs drop of the last reference, on our counts:
    /// a writer publishes a path copy that shares the old root's child and
    /// drops the old root, while a reader snapshots the old root, reads
    /// through it and drops it. Whoever drops the old root last frees it (not
    /// the shared child), the new root still reads the child, and every entry
    /// is freed exactly once. The `Mutex` stands in for the `ArcSwap`, whose
    /// publication orders are at least as strong.
    #[test]
    fn loom_publish_snapshot_and_last_drop_free_exactly_once() {
        loom::model(|| {
            let _lend = LendGuard::allow::<u32, Touched>();
            let token = Arc::new(());
            let mut root = Builder::trie(0, 1);
            root.push_child(node_holding(&token));
            let published = loom::sync::Arc::new(loom::sync::Mutex::new(root.finish()));
            let reader = {
                let published = loom::sync::Arc::clone(&published);
                loom::thread::spawn(move || {
                    let snapshot = published.lock().unwrap().clone();
                    assert_eq!(snapshot.children()[0].entries()[0].0, 1);
                    assert_eq!(snapshot.children()[0].entries()[0].1.read(), 1);
                })
            };
            let next = {
                let current = published.lock().unwrap();
                let mut copy = Builder::trie(0, 1);
                copy.push_child(current.children()[0].clone());
                copy.finish()
            };
            let old = core::mem::replace(&mut *published.lock().unwrap(), next);
            drop(old);
            reader.join().unwrap();
            assert_eq!(published.lock().unwrap().children()[0].entries()[0].0, 1);
            drop(published);
            assert_eq!(Arc::strong_count(&token), 1);
        });
    }

    /// Settling a lending copy while a reader lets go of the old version that
    /// holds its lender: whichever way the race goes (the writer takes the
    /// lender's counts over, or counts each lent child), the copy's children
    /// stay alive and every entry is freed exactly once.
    #[test]
    fn loom_settling_races_the_last_drop_of_the_old_version() {
        loom::model(|| {
            let _lend = LendGuard::allow::<u32, Touched>();
            let token = Arc::new(());
            let width = 8; // LEND_MIN: the copy lends
            let mut source = Builder::trie(1 << 63, (1 << width) - 1);
            for _ in 0..width {
                source.push_child(node_holding(&token));
            }
            source.push_entry((63, Touched::new(&token)));
            let source = source.finish();
            let mut old_root = Builder::trie(0, 1);
            old_root.push_child(source.clone());
            let old_root = old_root.finish();
            let mut copy = source;
            copy.make_mut();
            assert!(copy.is_lending());
            let reader = loom::thread::spawn(move || read_then_drop(old_root));
            crate::raw::settle(&copy);
            reader.join().unwrap();
            assert!(!copy.is_lending());
            assert!(copy.children().iter().all(|c| c.entries()[0].0 == 1));
            drop(copy);
            assert_eq!(Arc::strong_count(&token), 1);
        });
    }

    /// A settling left to the next batch (a map whose entries have no
    /// destructor, `defers_settling` in map.rs): the copy is published and
    /// read while its writer settles it, as a reader lets go of the old
    /// version. Whichever way the two drops and the settling interleave, the
    /// copy's readers read every child, and every entry is freed once.
    #[test]
    fn loom_a_later_settling_races_readers_of_both_versions() {
        loom::model(|| {
            let _lend = LendGuard::allow::<u32, Touched>();
            let token = Arc::new(());
            let width = 8; // LEND_MIN: the copy lends
            let mut source = Builder::trie(0, (1 << width) - 1);
            for _ in 0..width {
                source.push_child(node_holding(&token));
            }
            let source = source.finish();
            let mut copy = source.clone();
            copy.make_mut();
            assert!(copy.is_lending());
            let old_reader = loom::thread::spawn(move || read_then_drop(source));
            let snapshot = copy.clone();
            let new_reader = loom::thread::spawn(move || read_then_drop(snapshot));
            crate::raw::settle(&copy);
            old_reader.join().unwrap();
            new_reader.join().unwrap();
            assert!(!copy.is_lending());
            read_then_drop(copy);
            assert_eq!(Arc::strong_count(&token), 1);
        });
    }

    /// A trie leaf of two entries holding `token`, and a copy that wrote its
    /// entry 1 (owned, a clone) and borrows its entry 0 (E1), settled while
    /// the leaf is still held: through a link (E2).
    fn lender_and_settled_borrower(token: &Arc<()>) -> (NodeRef<u32, Touched>, NodeRef<u32, Touched>) {
        let (source, copy) = lender_and_borrower(token);
        crate::raw::settle(&copy);
        assert_eq!(copy.borrowed(), 0b01);
        (source, copy)
    }

    /// [`lender_and_settled_borrower`] before the settling: the copy holds a
    /// counted reference to its lender.
    fn lender_and_borrower(token: &Arc<()>) -> (NodeRef<u32, Touched>, NodeRef<u32, Touched>) {
        let mut b = Builder::trie(0b11, 0);
        b.push_entry((1, Touched::new(token)));
        b.push_entry((2, Touched::new(token)));
        let source = b.finish();
        let mut copy = source.clone();
        copy.make_mut().0.get(1).1 = Touched::new(token);
        assert!(copy.is_lending() && copy.borrowed() == 0b01);
        (source, copy)
    }

    /// `copy` published as the root of a version, before its writer settles
    /// it (as a batch that built lending copies publishes).
    fn published_unsettled(copy: &NodeRef<u32, Touched>) -> crate::view::View<u32, Touched, ()> {
        let hook = crate::hooks::MapHook::new("loom", crate::hooks::HookConfig::default());
        let meta = Arc::new(crate::view::Meta::new("loom".into(), hook));
        crate::view::View::new(Some(copy.clone()), copy.entries().len(), 1, (), meta).unsettled()
    }

    /// Settling a copy that borrows from its counted lender while a reader
    /// lets go of the lender's old version: a settling that finds the lender
    /// held by the copy alone (`is_unique_but_lent`) takes it apart and drops
    /// what only the lender held (the original of the entry the copy wrote),
    /// which must come after the reader's last read of it.
    #[test]
    fn loom_settling_takes_a_lender_apart_only_after_its_last_reader() {
        loom::model(|| {
            let _lend = LendGuard::allow::<u32, Touched>();
            let token = Arc::new(());
            let (source, copy) = lender_and_borrower(&token);
            let reader = loom::thread::spawn(move || read_then_drop(source));
            crate::raw::settle(&copy);
            reader.join().unwrap();
            assert!(copy.entries().iter().all(|e| e.1.read() == 1));
            drop(copy);
            assert_eq!(Arc::strong_count(&token), 1);
        });
    }

    /// The two ends of a lending on two threads: the source's last reference
    /// (a reader letting go of the old version) and the copy's (a newer
    /// version going). Whichever comes second drops the lent entry and frees
    /// the source's memory; each entry is dropped exactly once.
    #[test]
    fn loom_the_later_of_a_lender_and_its_borrower_drops_the_lent_entries() {
        loom::model(|| {
            let _lend = LendGuard::allow::<u32, Touched>();
            let token = Arc::new(());
            let (source, copy) = lender_and_settled_borrower(&token);
            let reader = loom::thread::spawn(move || read_then_drop(source));
            assert!(copy.entries().iter().all(|e| e.1.read() == 1));
            drop(copy);
            reader.join().unwrap();
            assert_eq!(Arc::strong_count(&token), 1);
        });
    }

    /// A later batch writing the borrowing copy in place while a reader lets
    /// go of the source: the copy clones the borrowed entry (source still
    /// there) or takes its bytes over (source gone), never both, never neither.
    #[test]
    fn loom_a_later_write_races_the_lenders_last_drop() {
        loom::model(|| {
            let _lend = LendGuard::allow::<u32, Touched>();
            let token = Arc::new(());
            let (source, mut copy) = lender_and_settled_borrower(&token);
            let reader = loom::thread::spawn(move || read_then_drop(source));
            copy.make_mut().0.get(0).1 = Touched::new(&token);
            assert_eq!(copy.borrowed(), 0);
            reader.join().unwrap();
            assert_eq!(copy.entries()[0].0, 1);
            drop(copy);
            assert_eq!(Arc::strong_count(&token), 1);
        });
    }

    /// A later write copying the borrowing copy (whose version is still
    /// held) while a reader lets go of the source: the copy's entries are
    /// cloned (source still there) or the borrowing copy first adopts them
    /// and then lends them on (source gone). Either way the new copy reads
    /// them, and each entry is dropped exactly once.
    #[test]
    fn loom_lending_on_races_the_lenders_last_drop() {
        loom::model(|| {
            let _lend = LendGuard::allow::<u32, Touched>();
            let token = Arc::new(());
            let (source, copy) = lender_and_settled_borrower(&token);
            let reader = loom::thread::spawn(move || read_then_drop(source));
            let mut next = copy.clone();
            next.make_mut().0.get(1).1 = Touched::new(&token);
            crate::raw::settle(&next);
            assert_eq!(next.entries().iter().map(|e| e.0).collect::<Vec<_>>(), [1, 2]);
            reader.join().unwrap();
            drop(copy);
            assert_eq!(next.entries()[0].0, 1);
            drop(next);
            assert_eq!(Arc::strong_count(&token), 1);
        });
    }

    /// A trie leaf of one entry per token, in slots 0, 1, ..
    fn leaf_of(tokens: &[Arc<()>]) -> NodeRef<u32, Touched> {
        let mut b = Builder::trie((1 << tokens.len()) - 1, 0);
        for (i, token) in tokens.iter().enumerate() {
            b.push_entry((i as u32, Touched::new(token)));
        }
        b.finish()
    }

    /// A source of three entries (one token each) and a copy rebuilt without
    /// the first, settled while the source is held: the copy borrows the
    /// other two, each at an index one lower than in the source (E1).
    fn lender_and_rebuilt_borrower(tokens: &[Arc<()>]) -> (NodeRef<u32, Touched>, NodeRef<u32, Touched>) {
        let source = leaf_of(tokens);
        let mut copy = source.clone();
        crate::raw::rebuild_taking(&mut copy, Some(0), |from| {
            let mut to = Builder::trie(0b110, 0);
            drop(from.next_entry());
            to.take_entries(from, 2);
            to.finish()
        });
        crate::raw::settle(&copy);
        assert_eq!(copy.borrowed(), 0b11);
        (source, copy)
    }

    /// The rebuilt copy's two ends against the source's last drop: the copy
    /// dropped, or first written (entry 1, the source's entry 2), which
    /// clones what it borrows (source still there) or adopts it (source
    /// gone). Each token ends with its one count: every entry dropped once,
    /// the removed one with the source, the written one's original too.
    #[test]
    fn loom_a_rebuilt_borrower_and_its_lender_drop_each_entry_once() {
        for write_first in [false, true] {
            loom::model(move || {
                let _lend = LendGuard::allow::<u32, Touched>();
                let tokens: Vec<Arc<()>> = (0..3).map(|_| Arc::new(())).collect();
                let (source, mut copy) = lender_and_rebuilt_borrower(&tokens);
                let reader = loom::thread::spawn(move || read_then_drop(source));
                if write_first {
                    copy.make_mut().0.get(1).1 = Touched::new(&tokens[0]);
                    assert_eq!(copy.borrowed(), 0);
                    assert_eq!(copy.entries().iter().map(|e| e.0).collect::<Vec<_>>(), [1, 2]);
                }
                drop(copy);
                reader.join().unwrap();
                assert!(tokens.iter().all(|t| Arc::strong_count(t) == 1), "{write_first}");
            });
        }
    }

    /// A copy that a batch rebuilt twice, the second time by moves (a
    /// borrowed entry removed, cloned alone, the other borrowed ones passed
    /// on with the counted lender), settled while the source is held; then
    /// the copy's drop against the source's last. Each token ends with its
    /// one count: the source's `lent_out` names exactly the entries the copy
    /// still borrows (checked as the copy outlives the source, too).
    #[test]
    fn loom_a_borrower_rebuilt_by_moves_and_its_lender_drop_each_entry_once() {
        for keep_copy in [false, true] {
            model_a_borrower_rebuilt_by_moves(keep_copy);
        }
    }

    fn model_a_borrower_rebuilt_by_moves(keep_copy: bool) {
        loom::model(move || {
            let _lend = LendGuard::allow::<u32, Touched>();
            let tokens: Vec<Arc<()>> = (0..4).map(|_| Arc::new(())).collect();
            let source = leaf_of(&tokens);
            let mut copy = source.clone();
            crate::raw::rebuild(&mut copy, |from| {
                let mut to = Builder::trie(0b11111, 0);
                to.take_entries(from, 4);
                to.push_entry((4, Touched::new(&Arc::new(()))));
                to.finish()
            });
            assert_eq!(copy.borrowed(), 0b1111);
            crate::raw::rebuild_taking(&mut copy, Some(1), |from| {
                let mut to = Builder::trie(0b11101, 0);
                to.take_entries(from, 1);
                drop(from.next_entry());
                to.take_entries(from, 3);
                to.finish()
            });
            crate::raw::settle(&copy);
            assert_eq!(copy.borrowed(), 0b111);
            let reader = loom::thread::spawn(move || read_then_drop(source));
            if keep_copy {
                reader.join().unwrap();
                let counts: Vec<_> = tokens.iter().map(Arc::strong_count).collect();
                assert_eq!(counts, [2, 1, 2, 2], "the source left the copy's entries to it");
                drop(copy);
            } else {
                drop(copy);
                reader.join().unwrap();
            }
            assert!(tokens.iter().all(|t| Arc::strong_count(t) == 1), "{keep_copy}");
        });
    }

    /// Two maps' writers (a map and its clone, each under its own lock, so
    /// nothing orders them but the node's count word) copy one shared
    /// borrower whose lender has gone. The first to claim it adopts the
    /// entries (its tail: nothing borrowed, no lender; the lender's memory
    /// freed), lends them to its copy, writes them all and so ends the
    /// claim; the second, claiming after, must see that adoption, or it
    /// would adopt again from the freed lender. Each entry is dropped once.
    #[test]
    fn loom_two_writers_claiming_one_shared_node_in_turn() {
        loom::model(|| {
            let _lend = LendGuard::allow::<u32, Touched>();
            let token = Arc::new(());
            let (source, shared) = lender_and_settled_borrower(&token);
            drop(source);
            let writer = |node: NodeRef<u32, Touched>, token: Arc<()>| {
                move || {
                    let _lend = LendGuard::allow::<u32, Touched>();
                    let mut copy = node.clone();
                    let (mut entries, _) = copy.make_mut();
                    entries.get(0).1 = Touched::new(&token);
                    entries.get(1).1 = Touched::new(&token);
                    crate::raw::settle(&copy);
                    assert_eq!(copy.borrowed(), 0);
                    assert_eq!(copy.entries().iter().map(|e| e.0).collect::<Vec<_>>(), [1, 2]);
                    drop(node);
                    drop(copy);
                }
            };
            let other = loom::thread::spawn(writer(shared.clone(), Arc::clone(&token)));
            writer(shared, Arc::clone(&token))();
            other.join().unwrap();
            assert_eq!(Arc::strong_count(&token), 1);
        });
    }

    /// Two maps' writers claim one shared borrower whose lender has gone,
    /// and each ends its claim with `end_lending` alone: the second claim must
    /// see what the first wrote to the tail under its claim (the adoption:
    /// nothing borrowed, no lender), ordered only by the end's Release and
    /// the claim's Acquire on the count word. Seeing the old tail (still
    /// borrowing), it would adopt again: from no lender ("borrowing without
    /// a lender"), or from the one the first freed (a read of freed memory,
    /// which loom's bookkeeping trips over). This one fails with a Relaxed
    /// end; `loom_two_writers_claiming_one_shared_node_in_turn`,
    /// whose claims end inside a whole write and settling, passes with it
    /// (checked up to 8 preemptions).
    #[test]
    fn loom_a_claim_sees_the_tail_the_previous_claim_ended_with() {
        loom::model(|| {
            let _lend = LendGuard::allow::<u32, Touched>();
            let token = Arc::new(());
            let (source, shared) = lender_and_settled_borrower(&token);
            drop(source);
            let claim_and_end = |node: NodeRef<u32, Touched>| {
                move || {
                    let _lend = LendGuard::allow::<u32, Touched>();
                    if node.claim_entries() {
                        node.end_lending();
                    }
                    drop(node);
                }
            };
            let other = loom::thread::spawn(claim_and_end(shared.clone()));
            claim_and_end(shared)();
            other.join().unwrap();
            assert_eq!(Arc::strong_count(&token), 1);
        });
    }

    /// A version published by one map's writer before it settles its
    /// lending copies, restored by another map's writer (a clone's, under
    /// its own lock): the second copies the version's nodes only once the
    /// first says, with the `View`'s own flag (`View::mark_settled`, Release),
    /// that the settling is over (`View::is_settled`, Acquire, as
    /// `Tx::restore` asks), and reads the entries as a reader does until
    /// then. Copying without waiting for the flag reads a borrower whose
    /// lender the settling has taken out.
    #[test]
    fn loom_a_published_copy_is_copied_by_another_writer_only_once_settled() {
        loom::model(|| {
            let _lend = LendGuard::allow::<u32, Touched>();
            let token = Arc::new(());
            let (source, copy) = lender_and_borrower(&token);
            let version = loom::sync::Arc::new(published_unsettled(&copy));
            let restorer = {
                let (version, token) = (loom::sync::Arc::clone(&version), Arc::clone(&token));
                loom::thread::spawn(move || {
                    let _lend = LendGuard::allow::<u32, Touched>();
                    let published = version.root().expect("a root");
                    if version.is_settled() {
                        let mut mine = published.clone();
                        mine.make_mut().0.get(1).1 = Touched::new(&token);
                        crate::raw::settle(&mine);
                        assert_eq!(mine.entries().iter().map(|e| e.0).collect::<Vec<_>>(), [1, 2]);
                    } else {
                        // Read as a reader reads: the entries, never the tail.
                        assert_eq!(published.entries().iter().map(|e| e.0).collect::<Vec<_>>(), [1, 2]);
                        assert!(published.entries().iter().all(|e| e.1.read() == 1));
                    }
                })
            };
            crate::raw::settle(&copy);
            version.mark_settled();
            drop(source);
            restorer.join().unwrap();
            drop((copy, version));
            assert_eq!(Arc::strong_count(&token), 1);
        });
    }

    #[test]
    fn loom_a_node_is_unique_once_every_other_holder_dropped() {
        loom::model(|| {
            let _lend = LendGuard::allow::<u32, Touched>();
            let token = Arc::new(());
            let mut node = node_holding(&token);
            let other = node.clone();
            let t = loom::thread::spawn(move || {
                let copy = other.clone();
                drop(other);
                assert_eq!(copy.entries()[0].1.read(), 1);
                drop(copy);
            });
            // While the other thread may still hold a reference, get_mut must
            // refuse whenever the count says so; once it succeeds, the other
            // thread's read happened before the write it allows.
            if let Some((mut entries, _)) = node.get_mut() {
                entries.get(0).1 = Touched::new(&token);
            }
            t.join().unwrap();
            assert!(node.get_mut().is_some());
            drop(node);
            assert_eq!(Arc::strong_count(&token), 1);
        });
    }
}
