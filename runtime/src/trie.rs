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

use crate::raw::{
    BitCount, Builder, Compiled, Drain, HotPath, NodeRef, Occupancy, Popcnt, rebuild, rebuild_taking, run_with_popcnt,
    settle_node,
};

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

use crate::order::slot_bit_of_order;
pub(crate) use crate::raw::Slot;

/// The contents of the slot for `bit` in a trie (not collision) node.
#[inline(always)]
pub(crate) fn slot<K, V>(node: &NodeRef<K, V>, bit: u64) -> Slot<'_, K, V> {
    node.slot(bit)
}

/// From this many entries on, a lookup prefetches the nodes it will read
/// and tests occupancies (O1). Below it the levels a lookup walks are mostly
/// in cache and the prefetches are only instructions: measured without them
/// (fastest of 3 rounds), 1K hits 13.5 -> 11.8 ns and misses 12.2 -> 11.0
/// ns, 100K misses 20.5 -> 17.6 ns with hits even; at 300K hits were ~10%
/// slower without them, and at 1M ~35%.
const GET_PREFETCH_MIN_LEN: usize = 128 * 1024;

/// How lookups walk a trie of a given size. A version computes it once,
/// when it is published, so that a lookup does not derive it from the
/// length each time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LookupPlan {
    /// The shift of the first sparse depth ([`sparse_depth_shift`]), or
    /// [`LookupPlan::SMALL`] for a map too small to prefetch.
    sparse_from: u32,
    /// How many levels a lookup walks before the depth above the sparse
    /// one, the first whose nodes are cold: the steps it takes without
    /// prefetching.
    warm_steps: u32,
    /// How many children a node just above the sparse depth has, expected
    /// from the map's size: where the lookup guesses that node's child and
    /// occupancy lines before its header arrives.
    children_guess: u32,
    /// The CPU's `popcnt`, if it has it: detected once here rather than per
    /// lookup.
    popcnt: Option<Popcnt>,
}

impl LookupPlan {
    const SMALL: u32 = u32::MAX;

    /// The plan for a trie of `len` entries.
    #[inline]
    pub(crate) fn for_len(len: usize) -> Self {
        if len < GET_PREFETCH_MIN_LEN {
            return Self::sparse_from(Self::SMALL, 64);
        }
        let sparse_from = sparse_depth_shift(len);
        // Keys per slot of a node above the sparse depth, in quarters: 8 to
        // 511, since `sparse_from` leaves that node 2 to 128 keys per slot.
        let quarters = len >> (sparse_from - 2);
        let children_guess = EXPECTED_CHILDREN.get(quarters.saturating_sub(8)).map_or(64, |&c| u32::from(c));
        Self::sparse_from(sparse_from, children_guess)
    }

    /// A plan that tests occupancies from `sparse_from` on, which is
    /// [`SMALL`](Self::SMALL) or a depth's shift from `2 * BITS` up.
    fn sparse_from(sparse_from: u32, children_guess: u32) -> Self {
        debug_assert!(sparse_from == Self::SMALL || (2 * BITS..HASH_BITS).contains(&sparse_from));
        // The step into the depth above the sparse one prefetches; the ones
        // before it do not. A small plan never reads it.
        let warm_steps = (sparse_from / BITS).saturating_sub(2);
        Self { sparse_from, warm_steps, children_guess, popcnt: Popcnt::detect() }
    }
}

/// How many of a node's 64 slots hold two keys or more (so a child), when
/// the node's keys fall into slots at random: `64 * (1 - e^-λ (1 + λ))` for
/// λ keys per slot, λ = 2, 2.25, .. 7.75 (from 8 on: 64).
const EXPECTED_CHILDREN: [u8; 24] =
    [38, 42, 46, 49, 51, 53, 55, 57, 58, 59, 60, 61, 61, 62, 62, 63, 63, 63, 63, 63, 64, 64, 64, 64];

/// Looks `key` up in a trie of `len` entries; `hash` is its hash under the
/// trie's hasher.
#[inline]
pub(crate) fn get<'a, K, V, Q>(root: &'a NodeRef<K, V>, len: usize, hash: u64, key: &Q) -> Option<&'a (K, V)>
where
    K: Borrow<Q>,
    Q: Eq + ?Sized,
{
    get_planned(root, &LookupPlan::for_len(len), hash, key)
}

/// [`get`] with the plan of the trie's length already made.
#[inline]
pub(crate) fn get_planned<'a, K, V, Q>(
    root: &'a NodeRef<K, V>,
    plan: &LookupPlan,
    hash: u64,
    key: &Q,
) -> Option<&'a (K, V)>
where
    K: Borrow<Q>,
    Q: Eq + ?Sized,
{
    match plan.popcnt {
        Some(popcnt) => descend_planned(root, plan, hash, key, popcnt),
        None => get_without_popcnt(root, plan, hash, key),
    }
}

/// [`get_planned`] on an x86-64 CPU without `popcnt` (made before 2008):
/// out of line, so that the descents inlined where `get` is called are only
/// the two that nearly every CPU runs.
#[cold]
#[inline(never)]
fn get_without_popcnt<'a, K, V, Q>(root: &'a NodeRef<K, V>, plan: &LookupPlan, hash: u64, key: &Q) -> Option<&'a (K, V)>
where
    K: Borrow<Q>,
    Q: Eq + ?Sized,
{
    descend_planned(root, plan, hash, key, Compiled)
}

/// The descent the plan calls for: a small trie's, or a large one's.
#[inline(always)]
fn descend_planned<'a, K, V, Q, C: BitCount>(
    root: &'a NodeRef<K, V>,
    plan: &LookupPlan,
    hash: u64,
    key: &Q,
    popcnt: C,
) -> Option<&'a (K, V)>
where
    K: Borrow<Q>,
    Q: Eq + ?Sized,
{
    if plan.sparse_from == LookupPlan::SMALL {
        descend(root, hash, key, popcnt)
    } else {
        descend_large(root, hash, key, plan, popcnt)
    }
}

/// The shift of the first depth whose nodes a map of `len` entries leaves
/// sparse (fewer keys than slots, ~`len / 64^depth` each): there a lookup
/// tests the child's occupancy before fetching it (O1). Above it nodes are
/// full, the test always passes, and its load would only take a line from
/// the hits: testing at every depth cost 100K hits ~30% (A/B, 5 rounds).
#[inline(always)]
fn sparse_depth_shift(len: usize) -> u32 {
    // floor((log2(len) - 1) / 6) = ceil(log64(len) - 1), in bits of hash.
    len.max(1).ilog2().saturating_sub(1) / BITS * BITS
}

/// A small trie's lookup: the levels it walks are in cache, so each step is
/// the slot's few instructions and nothing else.
#[inline(always)]
fn descend<'a, K, V, Q, C: BitCount>(root: &'a NodeRef<K, V>, hash: u64, key: &Q, popcnt: C) -> Option<&'a (K, V)>
where
    K: Borrow<Q>,
    Q: Eq + ?Sized,
{
    let mut node = root;
    // The hash bits not yet used, the next slot's lowest.
    let mut rest = hash;
    let mut shift = 0;
    loop {
        let child = match node.slot_counting(1 << (rest & MASK), popcnt) {
            Slot::Child(child, _) => child,
            Slot::Entry(entry) => return (entry.0.borrow() == key).then_some(entry),
            Slot::Empty => return None,
        };
        shift += BITS;
        rest >>= BITS;
        if is_collision_level(shift) {
            return child.entries().iter().find(|(k, _)| k.borrow() == key);
        }
        node = child;
    }
}

/// A large trie's lookup. Its instruction count is its speed: the CPU
/// overlaps independent lookups only as far as its reorder window holds
/// their instructions. So the walk is three loops, one per kind of depth
/// the plan knows of, and no step tests which kind it is in:
///
/// 1. the warm depths, in cache: plain steps;
/// 2. the depth above the sparse one, whose nodes are large and cold: the
///    step into it prefetches the node's header and the line its child
///    probably sits on;
/// 3. from the sparse depth on: nodes are not full, so the step does not
///    test for one; it tests the child's occupancy (O1) before fetching the
///    child, and fetches its first two lines.
///
/// Only the third can reach the collision level (the sparse depth is at
/// most 60 bits down, see [`sparse_depth_shift`]).
#[inline(always)]
fn descend_large<'a, K, V, Q, C: BitCount>(
    root: &'a NodeRef<K, V>,
    hash: u64,
    key: &Q,
    plan: &LookupPlan,
    popcnt: C,
) -> Option<&'a (K, V)>
where
    K: Borrow<Q>,
    Q: Eq + ?Sized,
{
    // The hash bits not yet used, the next slot's lowest.
    let mut rest = hash;
    // Every step that does not reach a child leaves with what it found, so
    // that the key is compared in one place (one copy of it in each `get`).
    let found = 'walk: {
        let mut node = root;
        for _ in 0..plan.warm_steps {
            node = match node.slot_counting(1 << (rest & MASK), popcnt) {
                Slot::Child(child, _) => child,
                other => break 'walk other,
            };
            rest >>= BITS;
        }
        let mut node = match node.slot_counting(1 << (rest & MASK), popcnt) {
            Slot::Child(child, _) => child,
            other => break 'walk other,
        };
        rest >>= BITS;
        // A large node, of which the lookup reads the header and one child
        // (its first lines too measured even for hits and ~7% slower for
        // misses at 1M).
        node.prefetch_slot((rest & MASK) as u32, plan.children_guess);
        // The shift of `child` below.
        let mut shift = plan.sparse_from;
        loop {
            let (child, at) = match node.slot_in_sparse(1 << (rest & MASK), popcnt) {
                Slot::Child(child, at) => (child, at),
                other => break 'walk other,
            };
            rest >>= BITS;
            if is_collision_level(shift) {
                return child.entries().iter().find(|(k, _)| k.borrow() == key);
            }
            // The key's slot in the child is empty: a miss, known without
            // fetching the child (O1).
            if at.occupancy() & (1 << (rest & MASK)) == 0 {
                return None;
            }
            // A sparse node is small: fetch its first two lines, the header
            // and the start of its arrays (a 1M map's ~4-key leaf is ~90
            // bytes). Four lines measured 3-5% slower for 1M and 2M hits, and
            // even from 200K to 500K (`ab.sh`, 30 rounds, session 11): the
            // other two were memory traffic that the lookup rarely read.
            child.prefetch::<2>();
            node = child;
            shift += BITS;
        }
    };
    match found {
        Slot::Entry(entry) => (entry.0.borrow() == key).then_some(entry),
        Slot::Empty | Slot::Child(..) => None,
    }
}

/// A root holding one entry.
pub(crate) fn singleton<K, V>(hash: u64, key: K, value: V) -> NodeRef<K, V> {
    let mut b = Builder::trie(slot_bit(hash, 0), 0);
    b.push_entry((key, value));
    b.finish()
}

/// What an [`insert`] of a key the trie holds already gives back: the value
/// it replaced, and the key it was given (the stored key is kept). The
/// caller drops that key after it has counted the write: a `Drop` that
/// panics must not make the write look undone.
pub(crate) type Replaced<K, V> = Option<(V, K)>;

/// Inserts or replaces ([`Replaced`]). `len`, the trie's entry
/// count, only tells the descent whether and where its nodes are cold (0 is
/// always correct: a small trie's descent fetches nothing ahead).
///
/// If a `Hash`, `Eq` or `Clone` panics, `*node` still holds the same map.
pub(crate) fn insert<K, V, S>(
    node: &mut NodeRef<K, V>,
    len: usize,
    hash: u64,
    key: K,
    value: V,
    hasher: &S,
) -> Replaced<K, V>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
{
    // Two descents: a small trie's stays the plain one, and the large
    // trie's is out of line. Fetching ahead in a small trie would be
    // instructions only, and even the second descent inlined beside the
    // first made a batch of 1000 writes into a 1K map ~10% slower.
    if len >= GET_PREFETCH_MIN_LEN {
        return insert_fetching_ahead(node, len, hash, key, value, hasher);
    }
    run_with_popcnt(Insert { node, hash, key, value, hasher, ahead: FetchNothing })
}

/// [`insert`] into a large trie: one call more, on a write that waits for
/// memory at least once.
#[inline(never)]
fn insert_fetching_ahead<K, V, S>(
    node: &mut NodeRef<K, V>,
    len: usize,
    hash: u64,
    key: K,
    value: V,
    hasher: &S,
) -> Replaced<K, V>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
{
    let ahead = FetchPlanned(LookupPlan::for_len(len));
    run_with_popcnt(Insert { node, hash, key, value, hasher, ahead })
}

/// The descent of [`insert`], as a [`HotPath`]: a loop, not recursion, so
/// that all of it is compiled with `popcnt` (a write computes two slot
/// indices per level in software otherwise).
struct Insert<'a, K, V, S, A> {
    node: &'a mut NodeRef<K, V>,
    hash: u64,
    key: K,
    value: V,
    hasher: &'a S,
    /// What the descent fetches ahead of itself.
    ahead: A,
}

impl<K, V, S, A> HotPath for Insert<'_, K, V, S, A>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
    A: FetchAhead,
{
    type Output = Replaced<K, V>;

    #[inline(always)]
    fn run(self) -> Replaced<K, V> {
        let Self { node, hash, key, value, hasher, ahead } = self;
        insert_below(node, hash, key, value, hasher, ahead)
    }
}

#[inline(always)]
fn insert_below<K, V, S, A: FetchAhead>(
    mut node: &mut NodeRef<K, V>,
    hash: u64,
    key: K,
    value: V,
    hasher: &S,
    ahead: A,
) -> Replaced<K, V>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
{
    let mut shift = 0;
    // The occupancy that `node`'s parent keeps for it (none for the root).
    let mut occupied: Option<&mut Occupancy> = None;
    loop {
        if is_collision_level(shift) {
            // A collision node's occupancy is all ones, whatever it holds.
            return insert_collision(node, key, value);
        }
        let bit = slot_bit(hash, shift);
        let (dm, nm) = (node.datamap(), node.nodemap());
        match slot(node, bit) {
            Slot::Entry(existing) if existing.0 == key => {
                let (mut entries, _) = node.make_mut();
                return Some((mem::replace(&mut entries.get(index(dm, bit)).1, value), key));
            }
            Slot::Entry(existing) => {
                // Hash the key already there before touching anything: it may panic.
                let existing_hash = hasher.hash_one(&existing.0);
                let make_child = |existing| merge(existing, existing_hash, (key, value), hash, shift + BITS);
                // In place where the batch owns the node and its room takes
                // the child; a copy of a shared node, or of a full one, otherwise.
                let Err(make_child) = node.entry_to_child_in_place(bit, make_child) else {
                    return None;
                };
                let (at, child_at) = (index(dm, bit), index(nm, bit));
                // The entry moves down into a new child: it must be the node's own.
                rebuild_taking(node, Some(at), |from| {
                    let mut to = Builder::trie(dm & !bit, nm | bit);
                    to.take_entries(from, at);
                    let existing = from.next_entry();
                    to.take_entries(from, from.entries_left());
                    to.take_children(from, child_at);
                    to.push_child(make_child(existing));
                    to.take_children(from, from.children_left());
                    to.finish()
                });
                return None;
            }
            Slot::Child(child, _) => {
                ahead.child(child, shift + BITS, hash);
                let (_, children) = node.make_mut();
                let (child, child_occupied) = children.into_child(index(nm, bit));
                (node, occupied) = (child, Some(child_occupied));
            }
            Slot::Empty => {
                // In place where the batch owns the node and it has room, or
                // moved to a larger allocation where it has none; otherwise a
                // copy of a shared node, or a rebuild (a lending node past its
                // room, a node that borrows entries).
                if let Err(entry) = node.insert_entry_in_place(bit, (key, value)) {
                    rebuild_with_entry(node, bit, entry);
                }
                // The one write that fills a slot of a node which has a
                // parent: tell the parent (O1). A rebuild that panicked
                // changed nothing and does not get here.
                if let Some(occupied) = occupied {
                    *occupied |= bit;
                }
                return None;
            }
        }
        shift += BITS;
    }
}

/// What a write's descent fetches ahead of itself, on its way into a child.
trait FetchAhead: Copy {
    /// Called with the child at `shift` that the descent steps into next,
    /// before the parent is copied (if it is shared).
    fn child<K, V>(self, child: &NodeRef<K, V>, shift: u32, hash: u64);
}

/// A small trie's descent: its nodes stay in cache.
#[derive(Clone, Copy)]
struct FetchNothing;

impl FetchAhead for FetchNothing {
    #[inline(always)]
    fn child<K, V>(self, _: &NodeRef<K, V>, _: u32, _: u64) {}
}

/// A large trie's descent (its [`LookupPlan`]), whose nodes below the warm
/// levels are cache misses: it asks for the lines of the child that the
/// write reads next, so that they arrive while the parent is copied. Into
/// the large cold node above the sparse depth, also the lines its header
/// would locate, as a lookup guesses them ([`NodeRef::prefetch_slot`]), so
/// that they do not wait for the header. Insert+publish at 1M keys: ~10%
/// faster (A/B in docs/benchmark-history.md, "What changed in session 21").
#[derive(Clone, Copy)]
struct FetchPlanned(LookupPlan);

impl FetchAhead for FetchPlanned {
    #[inline(always)]
    fn child<K, V>(self, child: &NodeRef<K, V>, shift: u32, hash: u64) {
        child.prefetch::<2>();
        if shift + BITS == self.0.sparse_from {
            child.prefetch_slot(((hash >> shift) & MASK) as u32, self.0.children_guess);
        }
    }
}

fn insert_collision<K, V>(node: &mut NodeRef<K, V>, key: K, value: V) -> Replaced<K, V>
where
    K: Eq + Clone,
    V: Clone,
{
    if let Some(at) = node.entries().iter().position(|(k, _)| *k == key) {
        let (mut entries, _) = node.make_mut();
        return Some((mem::replace(&mut entries.get(at).1, value), key));
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

/// The entry that [`value_mut`] is after.
pub(crate) enum Target<'q, Q: ?Sized> {
    /// The entry of this key, if the trie holds it.
    Key(&'q Q),
    /// The entry an [`insert`] of a new key with this hash just added: the
    /// first entry on the hash's path (any other key there would shadow the
    /// new one, which canonical form rules out), or, in a collision node, the
    /// last one (`insert_collision` and `merge` append it). Runs no user code.
    Inserted,
}

/// The value of `target`, in a node this trie owns alone: each node on the
/// path is copied first if another version still shares it, as a write would
/// copy it. `None` (having copied only nodes above a miss) if `target` is absent.
///
/// If `Eq` panics, `*node` still holds the same map.
pub(crate) fn value_mut<'a, K, V, Q>(node: &'a mut NodeRef<K, V>, hash: u64, target: Target<'_, Q>) -> Option<&'a mut V>
where
    K: Borrow<Q> + Clone,
    V: Clone,
    Q: Eq + ?Sized,
{
    run_with_popcnt(ValueMut { node, hash, target })
}

/// The descent of [`value_mut`], as a [`HotPath`] (see [`Insert`]).
struct ValueMut<'a, 'q, K, V, Q: ?Sized> {
    node: &'a mut NodeRef<K, V>,
    hash: u64,
    target: Target<'q, Q>,
}

impl<'a, K, V, Q> HotPath for ValueMut<'a, '_, K, V, Q>
where
    K: Borrow<Q> + Clone,
    V: Clone,
    Q: Eq + ?Sized,
{
    type Output = Option<&'a mut V>;

    #[inline(always)]
    fn run(self) -> Option<&'a mut V> {
        value_mut_below(self.node, self.hash, self.target)
    }
}

#[inline(always)]
fn value_mut_below<'a, K, V, Q>(mut node: &'a mut NodeRef<K, V>, hash: u64, target: Target<'_, Q>) -> Option<&'a mut V>
where
    K: Borrow<Q> + Clone,
    V: Clone,
    Q: Eq + ?Sized,
{
    let is_target = |k: &K| match target {
        Target::Key(key) => k.borrow() == key,
        Target::Inserted => true,
    };
    let mut shift = 0;
    loop {
        if is_collision_level(shift) {
            let at = match target {
                Target::Key(_) => node.entries().iter().position(|(k, _)| is_target(k))?,
                Target::Inserted => node.entries().len().checked_sub(1)?,
            };
            let (entries, _) = node.make_mut();
            return Some(&mut entries.into_entry(at).1);
        }
        let bit = slot_bit(hash, shift);
        let (dm, nm) = (node.datamap(), node.nodemap());
        match slot(node, bit) {
            Slot::Entry(entry) if is_target(&entry.0) => {
                let (entries, _) = node.make_mut();
                return Some(&mut entries.into_entry(index(dm, bit)).1);
            }
            Slot::Entry(_) | Slot::Empty => return None,
            Slot::Child(..) => {
                let (_, children) = node.make_mut();
                node = children.into_child(index(nm, bit)).0;
            }
        }
        shift += BITS;
    }
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

/// Builds the trie of the entries `items` yields, whose keys are distinct
/// and whose hashes have the trie orders `orders`, in one pass.
///
/// They must come sorted by [`trie_order`](crate::order::trie_order). Every
/// node is allocated once, at its size (with the room a node of plain data
/// has past 64 bytes of arrays), in iteration order (a node
/// before its children, siblings left to right), so a map loaded this way is
/// laid out for its own iteration. Runs no user code: what `items` holds
/// after the last entry it yields is the caller's to drop.
pub(crate) fn build_sorted<K, V>(orders: &[u64], mut items: impl Iterator<Item = (K, V)>) -> Option<NodeRef<K, V>> {
    if orders.is_empty() {
        return None;
    }
    Some(build_level(orders, &mut items, 0))
}

/// The node at `shift` holding `orders.len()` (at least two, or the root's
/// one) entries, taken from `items` in order.
fn build_level<K, V>(orders: &[u64], items: &mut impl Iterator<Item = (K, V)>, shift: u32) -> NodeRef<K, V> {
    if is_collision_level(shift) {
        let mut to = Builder::collision(orders.len());
        for _ in orders {
            to.push_entry(items.next().expect("snapview bug: fewer items than orders"));
        }
        return to.finish();
    }
    let bit = |order: u64| slot_bit_of_order(order, shift);
    let runs = || orders.chunk_by(|a, b| bit(*a) == bit(*b));
    let (mut datamap, mut nodemap) = (0, 0);
    for run in runs() {
        if run.len() == 1 {
            datamap |= bit(run[0]);
        } else {
            nodemap |= bit(run[0]);
        }
    }
    let mut to = Builder::trie(datamap, nodemap);
    for run in runs() {
        if run.len() == 1 {
            to.push_entry(items.next().expect("snapview bug: fewer items than orders"));
        } else {
            to.push_child(build_level(run, items, shift + BITS));
        }
    }
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
        rebuild_taking(node, Some(at), |from| {
            let mut to = Builder::collision(len - 1);
            to.take_entries(from, at);
            removed = Some(from.next_entry());
            to.take_entries(from, from.entries_left());
            to.finish()
        });
        return removed;
    }
    let bit = slot_bit(hash, shift);
    match slot(node, bit) {
        Slot::Entry(entry) if entry.0.borrow() == key => Some(take_inline_entry(node, bit)),
        Slot::Entry(_) | Slot::Empty => None,
        Slot::Child(child, _) if is_pair(child) && !node.is_unique() => {
            // `Eq` runs here, before anything changes.
            let at = child.entries().iter().position(|(k, _)| k.borrow() == key)?;
            Some(fold_pair_into_shared(node, bit, at))
        }
        Slot::Child(child, _) => {
            let child_at = index(node.nodemap(), bit);
            // The child may end up a single entry, folded into this node by a
            // rebuild after the removal below has changed the trie: that
            // rebuild must run no user code. So what it could not move as it
            // is gets owned now, while a panicking `Clone` changes nothing.
            // A child of two items or fewer is the only one that can fold.
            let may_fold = child.entries().len() + child.children().len() <= 2;
            if may_fold {
                own_what_a_fold_moves(node, child_at);
            }
            let (_, mut children) = node.make_mut();
            let removed = remove_at(children.get(child_at), hash, shift + BITS, key)?;
            children.refresh(child_at);
            let child = &children.as_slice()[child_at];
            if child.entries().len() == 1 && child.children().is_empty() {
                // The child and this node are both fresh, unshared copies now:
                // folding moves values only and runs no user code.
                fold_child(node, bit);
            }
            Some(removed)
        }
    }
}

/// Puts `entry` into the empty slot `bit` of `node` by building the node
/// anew: by moves if it is unshared, else as a copy.
pub(crate) fn rebuild_with_entry<K: Clone, V: Clone>(node: &mut NodeRef<K, V>, bit: u64, entry: (K, V)) {
    let (dm, nm) = (node.datamap(), node.nodemap());
    let at = index(dm, bit);
    rebuild(node, |from| {
        let mut to = Builder::trie(dm | bit, nm);
        to.take_entries(from, at);
        to.push_entry(entry);
        to.take_entries(from, from.entries_left());
        to.take_children(from, from.children_left());
        to.finish()
    });
}

/// Takes the entry in slot `bit` of `node` (which must hold one) out of the
/// trie: in place, or moved, where the batch owns `node`
/// ([`NodeRef::take_entry_in_place`]); else `node` is rebuilt without it,
/// copied first if shared.
#[inline]
pub(crate) fn take_inline_entry<K: Clone, V: Clone>(node: &mut NodeRef<K, V>, bit: u64) -> (K, V) {
    let (dm, nm) = (node.datamap(), node.nodemap());
    debug_assert!(dm & bit != 0, "slot {bit:#x} holds no entry");
    if let Some(entry) = node.take_entry_in_place(bit) {
        return entry;
    }
    let at = index(dm, bit);
    let mut removed = None;
    rebuild_taking(node, Some(at), |from| {
        let mut to = Builder::trie(dm & !bit, nm);
        to.take_entries(from, at);
        removed = Some(from.next_entry());
        to.take_entries(from, from.entries_left());
        to.take_children(from, from.children_left());
        to.finish()
    });
    removed.expect("the rebuild runs its closure")
}

/// Makes `node` (copied first if shared) and its child at `child_at` ready
/// for [`fold_child`]: the child's entries its own, since its entry moves
/// into `node`, whose lender is another (E1); and `node`'s own too if it
/// borrows them through a link, which a rebuild by moves cannot pass on.
/// Entries `node` borrows from a counted lender move as they are. Runs
/// `Clone` (at most the child's two entries, unless `node` borrows through a
/// link), so it comes before the trie changes.
fn own_what_a_fold_moves<K: Clone, V: Clone>(node: &mut NodeRef<K, V>, child_at: usize) {
    node.make_mut();
    node.own_entries_to_move(None);
    let (_, mut children) = node.make_mut();
    let child = children.get(child_at);
    // A shared child is rebuilt by clones, and a pair never borrows then
    // (`REBUILD_BORROW_MIN`).
    if child.is_unique() {
        child.own_borrowed_entries();
    }
}

/// Whether `node` is a node of two entries and no children: one that a
/// removal of either entry folds into its parent.
fn is_pair<K, V>(node: &NodeRef<K, V>) -> bool {
    node.entries().len() == 2 && node.children().is_empty()
}

/// Removes entry `at` of the pair (see [`is_pair`]) at `bit` in `node`, a
/// node another version shares, and returns it: `node` is rebuilt once with
/// the other entry inline in the pair's slot, and borrows its own entries
/// from the shared original where they need dropping (E1), where the
/// general way (copy `node`, remove from its copy of the child, then fold)
/// had to own them all first, since the fold comes after the trie below has
/// changed and must run no user code ("Panic safety"). Here the only user
/// code, the two entries' `Clone`, runs while nothing has changed.
fn fold_pair_into_shared<K: Clone, V: Clone>(node: &mut NodeRef<K, V>, bit: u64, at: usize) -> (K, V) {
    let (dm, nm) = (node.datamap(), node.nodemap());
    let (entry_at, child_at) = (index(dm, bit), index(nm, bit));
    let mut removed = None;
    rebuild(node, |from| {
        assert!(!from.is_moving(), "snapview bug: a pair folded by moves into its parent");
        let mut to = Builder::trie(dm | bit, nm & !bit);
        to.take_children(from, child_at);
        let mut pair = Drain::new(from.next_child());
        // Cloned: `node`, shared, still holds the pair.
        assert!(!pair.is_moving(), "snapview bug: a shared node's child taken apart by moves");
        let (first, second) = (pair.next_entry(), pair.next_entry());
        let (gone, kept) = if at == 0 { (first, second) } else { (second, first) };
        removed = Some(gone);
        to.take_children(from, from.children_left());
        to.take_entries(from, entry_at);
        to.push_entry(kept);
        to.take_entries(from, from.entries_left());
        to.finish()
    });
    removed.expect("snapview bug: a fold that removed nothing")
}

/// Replaces the single-entry child at `bit` by its entry, inline.
fn fold_child<K: Clone, V: Clone>(node: &mut NodeRef<K, V>, bit: u64) {
    if node.child_to_entry_in_place(bit) {
        return;
    }
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

/// How many written hashes [`recycle`] follows one by one; past this, the
/// spare is brought up to date by a walk over its private nodes instead.
const WRITTEN_PATHS: usize = 8;

/// The largest buffer of written hashes kept between batches (32 KB).
const KEPT_CAPACITY: usize = 4096;

/// The hashes of the keys a batch wrote: the paths its copies lie on.
#[derive(Default)]
pub(crate) struct WrittenPaths {
    hashes: Vec<u64>,
    /// A load rebuilt the trie: every node is new, and the hashes are not kept.
    rebuilt: bool,
}

impl WrittenPaths {
    /// Notes a write of the key with this hash.
    #[inline]
    pub(crate) fn record(&mut self, hash: u64) {
        self.hashes.push(hash);
    }

    /// Notes that the batch built a new trie from scratch (a load).
    pub(crate) fn rebuilt(&mut self) {
        self.rebuilt = true;
    }

    /// Empties the list, keeping its buffer for the next batch unless a large
    /// batch left it large (the writer would hold that memory for good).
    pub(crate) fn clear(&mut self) {
        if self.hashes.capacity() > KEPT_CAPACITY {
            self.hashes = Vec::new();
        }
        self.hashes.clear();
        self.rebuilt = false;
    }

    /// How many writes were noted.
    pub(crate) fn len(&self) -> usize {
        self.hashes.len()
    }

    /// The hashes written, if few enough for `recycle` to follow one by one.
    fn known(&self) -> Option<&[u64]> {
        (!self.rebuilt && self.hashes.len() <= WRITTEN_PATHS).then_some(&self.hashes[..])
    }
}

/// Settles every copy the batch made ([`settle`]): each lies on the path of
/// a key it wrote. Copies made before a load were dropped by the `clear` that
/// preceded it, and writes after it change new, unshared nodes in place, so
/// the recorded paths find them all. Copies made before a restore went with
/// the working copy it replaced, and so did their paths (`Tx::replace_root`).
pub(crate) fn settle_written<K, V>(root: &NodeRef<K, V>, written: &WrittenPaths) {
    // Through the `popcnt` dispatch: a batch of 1000 writes walks 1000 paths
    // here, and counting bits by hand took most of it.
    run_with_popcnt(SettleWritten { root, hashes: &written.hashes });
}

/// [`settle_written`] as a [`HotPath`].
struct SettleWritten<'a, K, V> {
    root: &'a NodeRef<K, V>,
    hashes: &'a [u64],
}

impl<K, V> HotPath for SettleWritten<'_, K, V> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        for &hash in self.hashes {
            settle_path(self.root, hash);
        }
    }
}

/// Settles each lending node on the path of `hash`, parents first (a
/// parent's settling may release the lender of its child's copy). Every node
/// on the path is visited: a copy that lends nothing (a narrow node, counted)
/// may sit above one that borrows (a leaf whose entries it took, E1).
#[inline(always)]
fn settle_path<K, V>(root: &NodeRef<K, V>, hash: u64) {
    let (mut node, mut shift) = (root, 0);
    loop {
        if node.is_lending() {
            settle_node(node);
        }
        if is_collision_level(shift) {
            return;
        }
        let bit = slot_bit(hash, shift);
        if node.nodemap() & bit == 0 {
            return;
        }
        node = &node.children()[index(node.nodemap(), bit)];
        shift += BITS;
    }
}

/// Makes `spare`, an unshared root that once equalled an older version of
/// `current`, equal to `current` again, or drops it and shares `current`.
///
/// The two differ only along the paths of the keys written since (`written`;
/// elsewhere they hold the same nodes, or private copies equal in content).
/// Along those paths, a node of the spare that is unshared, shaped like its
/// counterpart and made of children alone is patched in place — only the
/// slots that differ change — and stays the spare's private copy; anything
/// else is replaced by a counted reference to `current`'s node. A private
/// copy saves the next write through it one count increment per child (to
/// copy it) and one decrement per child (to free the replaced one later).
/// Nodes holding entries are never kept private: their clones would be
/// instances of values that no version holds; nor are nodes below depth 1
/// (see [`PRIVATE_DEPTH`]). So the memory this costs is at most one extra
/// copy of the root's entry-free children: 64 nodes of at most 1080 bytes
/// (a 24-byte header, 16 bytes per child with its occupancy, a 32-byte
/// lending tail), 69 KB.
///
/// If a `Clone` panics, the half-updated spare is dropped during unwinding;
/// `current` is untouched.
pub(crate) fn recycle<K: Clone, V: Clone>(
    mut spare: NodeRef<K, V>,
    current: &NodeRef<K, V>,
    written: &WrittenPaths,
) -> Option<NodeRef<K, V>> {
    if !patchable(&spare, current) {
        return Some(current.clone());
    }
    match written.known() {
        Some(hashes) => {
            for &hash in hashes {
                sync_path(&mut spare, current, hash, 0);
            }
        }
        None => sync_all(&mut spare, current, 0),
    }
    if let Some((entries, _)) = spare.get_mut() {
        for (mine, theirs) in entries.into_slice().iter_mut().zip(current.entries()) {
            *mine = theirs.clone();
        }
    }
    Some(spare)
}

/// Whether `mine` may be made equal to `theirs` in place: it is unshared and
/// has the same shape.
fn patchable<K, V>(mine: &NodeRef<K, V>, theirs: &NodeRef<K, V>) -> bool {
    mine.datamap() == theirs.datamap()
        && mine.nodemap() == theirs.nodemap()
        && mine.entries().len() == theirs.entries().len()
        && mine.is_unique()
}

/// Whether a node is made of children alone (no inline entries), so a private
/// copy of it holds no value instances.
fn is_index<K, V>(node: &NodeRef<K, V>) -> bool {
    node.entries().is_empty() && !node.children().is_empty()
}

/// Private copies are kept for the root's children only (depth 1). Each one
/// costs `diff` and `==` a scan of its child pointers (it is never the same
/// allocation as its counterpart in another version), so their number is
/// bounded by the root's 64 slots: at most 4096 pointer comparisons per diff,
/// whatever the size of the map.
const PRIVATE_DEPTH: u32 = 1;

/// Makes the child of `mine` (at `shift`) at `at` equal to that of `theirs`,
/// patching it in place where it may stay private, with `sync` for the levels
/// below.
fn sync_child<K: Clone, V: Clone>(
    mine: &mut NodeRef<K, V>,
    theirs: &NodeRef<K, V>,
    shift: u32,
    at: usize,
    sync: impl FnOnce(&mut NodeRef<K, V>, &NodeRef<K, V>),
) {
    let theirs = &theirs.children()[at];
    let Some((_, mut children)) = mine.get_mut() else {
        unreachable!("snapview bug: syncing a shared spare");
    };
    let mine = children.get(at);
    if mine.ptr_eq(theirs) {
        return;
    }
    let private_depth = shift < PRIVATE_DEPTH * BITS && is_index(theirs);
    if private_depth && theirs.is_lending() {
        // A copy of `mine` (the write went through a shared node): it holds
        // `mine` as its lender. Settling it by counts, once, frees `mine` to
        // become a private copy, through which later writes go in place.
        crate::raw::settle_node(theirs);
    }
    if private_depth && patchable(mine, theirs) {
        // Same shape: the occupancy kept for `mine` stays right.
        sync(mine, theirs);
    } else {
        *mine = theirs.clone();
        children.refresh(at);
    }
}

/// Syncs the one path of `hash` below `mine`, an unshared index node shaped
/// like `theirs`.
fn sync_path<K: Clone, V: Clone>(mine: &mut NodeRef<K, V>, theirs: &NodeRef<K, V>, hash: u64, shift: u32) {
    let bit = slot_bit(hash, shift);
    if is_collision_level(shift) || theirs.nodemap() & bit == 0 {
        // Same shape and no entries: an empty slot in both.
        return;
    }
    let at = index(theirs.nodemap(), bit);
    sync_child(mine, theirs, shift, at, |m, t| sync_path(m, t, hash, shift + BITS));
}

/// Syncs every child that differs, when the written paths are not known.
/// Recurses only into private copies, so it costs one pointer comparison per
/// child of the spare's private nodes.
fn sync_all<K: Clone, V: Clone>(mine: &mut NodeRef<K, V>, theirs: &NodeRef<K, V>, shift: u32) {
    for at in 0..theirs.children().len() {
        sync_child(mine, theirs, shift, at, |m, t| sync_all(m, t, shift + BITS));
    }
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
    use crate::order::trie_order;
    use crate::raw::LendGuard;

    #[test]
    fn a_slot_is_read_alike_from_a_hash_and_from_its_order() {
        for hash in (1..5000u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).chain([0, u64::MAX]) {
            for shift in (0..HASH_BITS).step_by(BITS as usize) {
                assert_eq!(slot_bit_of_order(trie_order(hash), shift), slot_bit(hash, shift), "{hash:#x} at {shift}");
            }
        }
    }
    use core::hash::Hasher;

    use crate::testing::Id;

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
                    insert(r, i, h, k, i as u32, &s);
                }
            }
        }
        root.expect("at least one key")
    }

    /// A node the batch owns takes new keys and gives keys up in place while
    /// its room lasts (`insert_below`'s empty slot, `take_inline_entry`),
    /// and turns an entry into a child there (`insert_below`'s entry slot):
    /// the same allocation throughout; past its room it moves to a new one.
    #[test]
    fn writes_to_an_owned_node_stay_in_place_within_its_room() {
        let s = Id::default();
        let entries_at = |root: &NodeRef<u64, u32>| root.entries().as_ptr();
        // The identity hash puts key `k < 64` in root slot `k`.
        let mut root = build(0u64..5);
        let mut at = entries_at(&root);
        for k in 5..12u64 {
            assert!(insert(&mut root, k as usize, s.hash_one(k), k, k as u32, &s).is_none());
            // Entries of 16 bytes: room for 6 up to 6 entries, 8 up to 8, then 12.
            let anew = k == 6 || k == 8;
            assert_eq!(entries_at(&root) != at, anew, "insert of key {k}");
            at = entries_at(&root);
        }
        for k in (8..12u64).rev() {
            assert_eq!(remove(&mut root, s.hash_one(k), &k).map(|e| e.1), Some(k as u32));
            let anew = k == 8;
            assert_eq!(entries_at(&root) != at, anew, "removal of key {k}");
            at = entries_at(&root);
        }
        let keys: Vec<u64> = root.entries().iter().map(|e| e.0).collect();
        assert_eq!(keys, (0..8).collect::<Vec<_>>());
        // Key `64 + k` meets key `k` in its root slot: the first child
        // brings the node its tail (built anew), the next take the bytes of
        // the entries they replace.
        let node_at_of = |root: &NodeRef<u64, u32>| root.children().as_ptr();
        let mut node_at = node_at_of(&root);
        for k in [64u64, 67, 65] {
            assert!(insert(&mut root, k as usize, s.hash_one(k), k, k as u32, &s).is_none());
            assert_eq!(node_at_of(&root) != node_at, k == 64, "insert of key {k}");
            node_at = node_at_of(&root);
        }
        assert_eq!((root.entries().len(), root.children().len()), (5, 3));
        assert!((0..8).chain([64, 65, 67]).all(|k: u64| lookup(&root, &k) == Some(k as u32)));
        assert!((8..12).chain([66, 128]).all(|k: u64| lookup(&root, &k).is_none()));
    }

    /// A lookup by every descent, which must agree: the plain one (a small
    /// trie's), the prefetching one (a large trie's) with its sparse depth
    /// at every depth it can be, and each counting bits both ways (the
    /// `popcnt` instruction, `count_ones`).
    fn lookup<K: Hash + Eq>(root: &NodeRef<K, u32>, k: &K) -> Option<u32> {
        let hash = Id::default().hash_one(k);
        let found = get(root, GET_PREFETCH_MIN_LEN, hash, k).map(|e| e.1);
        assert_eq!(get(root, 0, hash, k).map(|e| e.1), found);
        // The large descent with its sparse depth anywhere, so that the small
        // tries of these tests reach each of its three loops.
        for sparse_from in (2 * BITS..HASH_BITS).step_by(BITS as usize) {
            let plan = LookupPlan::sparse_from(sparse_from, 64);
            assert_eq!(descend_large(root, hash, k, &plan, Compiled).map(|e| e.1), found);
            if let Some(popcnt) = Popcnt::detect() {
                assert_eq!(descend_large(root, hash, k, &plan, popcnt).map(|e| e.1), found);
            }
        }
        // Both ways of counting bits, whichever the plan detected.
        if let Some(popcnt) = Popcnt::detect() {
            assert_eq!(descend(root, hash, k, popcnt).map(|e| e.1), found);
        }
        assert_eq!(descend(root, hash, k, Compiled).map(|e| e.1), found);
        // The out-of-line lookup of a CPU without `popcnt`, small and large.
        for len in [0, GET_PREFETCH_MIN_LEN] {
            let without = LookupPlan { popcnt: None, ..LookupPlan::for_len(len) };
            assert_eq!(get_planned(root, &without, hash, k).map(|e| e.1), found);
        }
        found
    }

    #[test]
    fn only_large_maps_plan_prefetches_and_occupancy_tests() {
        assert_eq!(LookupPlan::for_len(0).sparse_from, LookupPlan::SMALL);
        assert_eq!(LookupPlan::for_len(GET_PREFETCH_MIN_LEN - 1).sparse_from, LookupPlan::SMALL);
        assert_eq!(LookupPlan::for_len(GET_PREFETCH_MIN_LEN).sparse_from, 2 * BITS);
        assert_eq!(LookupPlan::for_len(1 << 20).sparse_from, 3 * BITS);
    }

    #[test]
    fn the_plan_expects_as_many_children_as_random_keys_leave() {
        // 1M keys: 4096 nodes at depth 2, ~3.8 keys per slot: ~57 slots of 64
        // hold two or more.
        assert_eq!(LookupPlan::for_len(1_000_000).children_guess, 57);
        // 512K: ~2 keys per slot, ~38 children; 128K and 2M: full nodes.
        assert_eq!(LookupPlan::for_len(1 << 19).children_guess, 38);
        assert_eq!(LookupPlan::for_len(GET_PREFETCH_MIN_LEN).children_guess, 64);
        assert_eq!(LookupPlan::for_len(2 << 20).children_guess, 64);
        assert_eq!(LookupPlan::for_len(usize::MAX).children_guess, 64);
        // The table against real nodes, one level up (the same count of keys
        // per slot, in a trie small enough to build here): 2 and 3.75 keys
        // per slot of the depth-1 nodes.
        for (keys, expected) in [(8192, EXPECTED_CHILDREN[0]), (15_360, EXPECTED_CHILDREN[7])] {
            let root = build((0..keys).map(mix));
            let level1 = root.children();
            let mean = level1.iter().map(|n| n.children().len()).sum::<usize>() as f64 / level1.len() as f64;
            assert!((mean - f64::from(expected)).abs() < 1.5, "{keys} keys: depth-1 nodes hold {mean:.1} children");
        }
    }

    /// splitmix64's finalizer: random-looking keys for the identity hasher.
    fn mix(k: u64) -> u64 {
        let z = (k ^ (k >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    #[test]
    fn lookups_test_occupancy_from_the_first_depth_whose_nodes_are_sparse() {
        // 128K keys: depth-2 nodes hold ~32 keys of 64 slots.
        assert_eq!(sparse_depth_shift(GET_PREFETCH_MIN_LEN), 2 * BITS);
        // 1M: the leaves, at depth 3, hold ~4.
        assert_eq!(sparse_depth_shift(1 << 20), 3 * BITS);
        assert_eq!(sparse_depth_shift(1 << 24), 3 * BITS);
        assert_eq!(sparse_depth_shift(1 << 25), 4 * BITS);
        assert_eq!(sparse_depth_shift(1), 0);
        assert_eq!(sparse_depth_shift(0), 0);
        assert!(sparse_depth_shift(usize::MAX) < HASH_BITS);
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

    /// A trie of `u64` keys (hashed to themselves) whose values need dropping.
    fn build_rc(keys: &[u64], token: &std::rc::Rc<()>) -> NodeRef<u64, std::rc::Rc<()>> {
        let s = Id::default();
        let mut root = singleton(keys[0], keys[0], token.clone());
        for &k in &keys[1..] {
            insert(&mut root, 0, k, k, token.clone(), &s);
        }
        root
    }

    #[test]
    fn removing_from_a_pair_below_a_shared_node_folds_it_and_borrows_the_nodes_entries() {
        let _lend = LendGuard::allow::<u64, std::rc::Rc<()>>();
        use std::rc::Rc;
        for old_held in [true, false] {
            let token = Rc::new(());
            // Slots 2, 3 and 4 of the root hold keys 2, 3 and 4; slot 1 the
            // pair of 1 and 65.
            let old = build_rc(&[2, 3, 4, 1, 65], &token);
            assert_eq!((old.datamap(), old.nodemap()), (0b11100, 0b10));
            let mut root = old.clone();
            assert!(remove(&mut root, 129, &129).is_none());
            assert!(root.ptr_eq(&old), "a key the pair does not hold changes nothing");
            let removed = remove(&mut root, 65, &65).expect("present");
            assert_eq!(removed.0, 65);
            assert_eq!((root.datamap(), root.nodemap()), (0b11110, 0), "{old_held}: the pair folded");
            assert_eq!(root.entries().iter().map(|e| e.0).collect::<Vec<_>>(), [1, 2, 3, 4]);
            assert_eq!(root.borrowed(), 0b1110, "{old_held}: the root's own entries borrowed, one place on");
            assert_eq!(Rc::strong_count(&token), 1 + 5 + 2, "{old_held}: the pair's two cloned, nothing else");
            drop(removed);
            let held = old_held.then(|| old.clone());
            drop(old);
            crate::raw::settle_node(&root);
            assert_eq!(root.borrowed(), if old_held { 0b1110 } else { 0 }, "{old_held}");
            drop(held);
            assert_eq!(Rc::strong_count(&token), 1 + 4, "{old_held}: the old pair is gone, the rest is the root's");
            for k in 1..=4 {
                assert!(get(&root, 0, k, &k).is_some(), "{old_held}: {k}");
            }
            drop(root);
            assert_eq!(Rc::strong_count(&token), 1, "{old_held}");
        }
    }

    #[test]
    fn a_batchs_later_adds_and_removes_in_a_node_it_copied_move_its_borrowed_entries_on() {
        let _lend = LendGuard::allow::<u64, std::rc::Rc<()>>();
        use std::rc::Rc;
        for old_held in [true, false] {
            let token = Rc::new(());
            let s = Id::default();
            // The root holds keys 2, 3 and 4 inline, and the pair of 1 and 65 at slot 1.
            let old = build_rc(&[2, 3, 4, 1, 65], &token);
            let mut root = old.clone();
            // The first write copies the root, borrowing 2, 3 and 4; the
            // others rebuild that copy by moves.
            insert(&mut root, 0, 5, 5, token.clone(), &s);
            insert(&mut root, 0, 6, 6, token.clone(), &s);
            assert_eq!(root.borrowed(), 0b111, "{old_held}: 2, 3, 4 among 2..=6");
            assert_eq!(Rc::strong_count(&token), 1 + 5 + 2, "{old_held}: nothing cloned");
            let three = remove(&mut root, 3, &3).expect("present");
            assert_eq!(root.borrowed(), 0b11, "{old_held}: 2 and 4 among 2, 4, 5, 6");
            assert_eq!(Rc::strong_count(&token), 1 + 5 + 2 + 1, "{old_held}: the removed entry cloned");
            // The pair, shared with `old`, is rebuilt by clones (both
            // entries), then 1 folds up into the root by moves.
            let sixty_five = remove(&mut root, 65, &65).expect("present");
            assert_eq!((root.datamap(), root.nodemap()), (0b1110110, 0), "{old_held}");
            assert_eq!(root.borrowed(), 0b110, "{old_held}: 2 and 4 among 1, 2, 4, 5, 6");
            assert_eq!(Rc::strong_count(&token), 1 + 5 + 2 + 1 + 2, "{old_held}");
            drop((three, sixty_five));
            let held = old_held.then(|| old.clone());
            drop(old);
            crate::raw::settle_node(&root);
            if old_held {
                // A link cannot move on with the entries: a node borrowing
                // through one owns them all before a rebuild by moves (here
                // 70 pushes 6 down into a pair, then folds it back up).
                assert_eq!(root.borrowed(), 0b110, "through a link");
                insert(&mut root, 0, 70, 70, token.clone(), &s);
                assert_eq!(root.borrowed(), 0, "owned");
                drop(remove(&mut root, 70, &70).expect("present"));
            }
            drop(held);
            assert_eq!(Rc::strong_count(&token), 1 + 5, "{old_held}: 1, 2, 4, 5 and 6, each once");
            for k in [1, 2, 4, 5, 6] {
                assert!(get(&root, 0, k, &k).is_some(), "{old_held}: {k}");
            }
            for k in [3, 65] {
                assert!(get(&root, 0, k, &k).is_none(), "{old_held}: {k}");
            }
            drop(root);
            assert_eq!(Rc::strong_count(&token), 1, "{old_held}");
        }
    }

    #[test]
    fn a_fold_in_a_batch_owns_the_entries_of_the_pair_it_moves_up() {
        let _lend = LendGuard::allow::<u64, std::rc::Rc<()>>();
        use std::rc::Rc;
        let token = Rc::new(());
        let s = Id::default();
        let old = build_rc(&[2, 3, 4, 1, 65], &token);
        let mut root = old.clone();
        // An overwrite copies the root and the pair; the pair's copy borrows 65.
        insert(&mut root, 0, 1, 1, token.clone(), &s);
        assert_eq!(Rc::strong_count(&token), 1 + 5 + 1, "only the overwritten value is new");
        // Removing 1 leaves 65 alone in the pair, to be folded up into the
        // root, whose lender is another: it is cloned first.
        drop(remove(&mut root, 1, &1).expect("present"));
        assert_eq!((root.datamap(), root.nodemap()), (0b11110, 0));
        assert_eq!(root.entries().iter().map(|e| e.0).collect::<Vec<_>>(), [65, 2, 3, 4]);
        assert_eq!(root.borrowed(), 0b1110, "the root's own entries still borrowed");
        assert_eq!(Rc::strong_count(&token), 1 + 5 + 1);
        drop(old);
        crate::raw::settle_node(&root);
        assert_eq!(Rc::strong_count(&token), 1 + 4);
        drop(root);
        assert_eq!(Rc::strong_count(&token), 1);
    }

    #[test]
    fn writing_to_a_shared_trie_copies_only_the_path() {
        let s = Id::default();
        let old = build(0u64..4096);
        let mut new = old.clone();
        insert(&mut new, 0, s.hash_one(5000u64), 5000u64, 1, &s);
        assert!(!new.ptr_eq(&old));
        let shared = old.children().iter().zip(new.children()).filter(|(a, b)| a.ptr_eq(b)).count();
        assert_eq!(shared, old.children().len() - 1, "all but one child still shared");
        assert_eq!(lookup(&old, &5000), None, "the old version is unchanged");
        assert_eq!(lookup(&new, &5000), Some(1));
    }

    /// What `SnapMap::update` does after publishing `new`: settle its root,
    /// recycle `old`, settle the copies on the written paths.
    fn publish<K: Clone, V: Clone>(
        old: NodeRef<K, V>,
        new: &NodeRef<K, V>,
        written: &WrittenPaths,
    ) -> Option<NodeRef<K, V>> {
        crate::raw::settle_node(new);
        let spare = recycle(old, new, written);
        settle_written(new, written);
        assert!(!new.is_lending(), "settled");
        spare
    }

    /// Every key written between `v1` and `v2`, as `recycle` gets them.
    fn paths(keys: &[u64]) -> WrittenPaths {
        let mut written = WrittenPaths::default();
        for k in keys {
            written.record(Id::default().hash_one(k));
        }
        written
    }

    #[test]
    fn a_recycled_spare_equals_the_current_root_and_owns_its_counts() {
        let s = Id::default();
        let make = || {
            let v1 = build((0u64..4096).map(|i| i * 3));
            let mut v2 = v1.clone();
            insert(&mut v2, 0, s.hash_one(7u64), 7u64, 99, &s);
            // `v1` plays the old version nobody holds any more: unique again once `v2` is built.
            (v1, v2)
        };
        for written in [paths(&[7]), paths(&(0..20).collect::<Vec<_>>())] {
            let (v1, v2) = make();
            let spare = publish(v1, &v2, &written).expect("a root");
            assert!(!spare.ptr_eq(&v2));
            assert!(nodes_equal(&spare, &v2, 0));
            assert_occupancy_kept(&spare);
            assert!(
                spare.children().iter().zip(v2.children()).all(|(a, b)| a.ptr_eq(b)),
                "children shared, not copied"
            );
            assert_eq!(get(&spare, 0, s.hash_one(7u64), &7u64).map(|e| e.1), Some(99));
        }
        // A shared or differently shaped spare is not reused.
        let (v1, v2) = make();
        let other = build([1u64]);
        assert!(recycle(other, &v2, &paths(&[7])).expect("a root").ptr_eq(&v2));
        let spare = publish(v1, &v2, &paths(&[7])).expect("a root");
        let held = spare.clone();
        assert!(recycle(spare, &v2, &paths(&[7])).expect("a root").ptr_eq(&v2));
        drop(held);
    }

    /// Where a node lives (its child array is inside its allocation).
    fn addr<K, V>(node: &NodeRef<K, V>) -> *const NodeRef<K, V> {
        node.children().as_ptr()
    }

    /// Keys whose hashes share the first two slots (0 and 0), so they sit in
    /// a third-level node under two index nodes.
    fn deep_keys(n: u64) -> impl Iterator<Item = u64> {
        (0..n).map(|i| i << 12)
    }

    #[test]
    fn index_nodes_on_the_written_path_stay_private_copies_patched_in_place() {
        let s = Id::default();
        let base: Vec<u64> = deep_keys(200).chain(1..64).collect();
        let v1 = build(base.iter().copied());
        let level1 = v1.children()[0].clone();
        assert!(is_index(&level1), "slot 0 of the root is an index node");
        drop(level1);
        // v2 = v1 + one write under slot 0; the write copies v1's path.
        let mut v2 = v1.clone();
        let key = 5u64 << 12 | 1 << 24;
        insert(&mut v2, 0, s.hash_one(key), key, 7, &s);
        let v1_level1 = addr(&v1.children()[0]);
        let spare = publish(v1, &v2, &paths(&[key])).expect("a root");
        assert!(nodes_equal(&spare, &v2, 0));
        assert_eq!(addr(&spare.children()[0]), v1_level1, "the old index node was patched, not replaced");
        assert!(!spare.children()[0].ptr_eq(&v2.children()[0]));
        assert!(spare.children()[0].is_unique() && v2.children()[0].is_unique());
        // Below depth 1 nothing stays private: the next index node is
        // shared with v2 (so `diff` and `==` skip it by pointer).
        let (a, b) = (&spare.children()[0].children()[0], &v2.children()[0].children()[0]);
        assert!(is_index(b) && a.ptr_eq(b));

        // The next write through the private copy mutates it in place.
        let mut v3 = spare;
        let key2 = 9u64 << 12 | 2 << 24;
        insert(&mut v3, 0, s.hash_one(key2), key2, 8, &s);
        assert_eq!(addr(&v3.children()[0]), v1_level1, "no copy of the private index node");
        // And syncing v2 (now the old version) to v3 along that path gives equality.
        let v2_again = publish(v2, &v3, &paths(&[key2])).expect("a root");
        assert!(nodes_equal(&v2_again, &v3, 0));
        assert_occupancy_kept(&v2_again);
        assert_eq!(get(&v2_again, 0, s.hash_one(key2), &key2).map(|e| e.1), Some(8));
        assert_eq!(get(&v2_again, 0, s.hash_one(key), &key).map(|e| e.1), Some(7));
    }

    #[test]
    fn with_unknown_paths_the_walk_syncs_every_private_copy() {
        let s = Id::default();
        let keys: Vec<u64> = deep_keys(300).chain((0..300).map(|i| i << 12 | 3)).collect();
        let v1 = build(keys.iter().copied());
        let mut v2 = v1.clone();
        let written: Vec<u64> = (0..40).map(|i| (i * 7) << 12 | 5 << 6).collect();
        for k in &written {
            insert(&mut v2, 0, s.hash_one(k), *k, 1, &s);
        }
        remove(&mut v2, s.hash_one(3u64 << 12), &(3u64 << 12));
        assert!(paths(&written).known().is_none(), "more than WRITTEN_PATHS");
        let spare = publish(v1, &v2, &paths(&written)).expect("a root");
        assert!(nodes_equal(&spare, &v2, 0));
        assert_occupancy_kept(&spare);
    }

    fn bulk<K: Hash + Eq + Clone>(keys: impl IntoIterator<Item = K>) -> NodeRef<K, u32> {
        let s = Id::default();
        let mut entries: Vec<(u64, K, u32)> =
            keys.into_iter().enumerate().map(|(i, k)| (s.hash_one(&k), k, i as u32)).collect();
        entries.sort_by_key(|e| trie_order(e.0));
        let orders: Vec<u64> = entries.iter().map(|e| trie_order(e.0)).collect();
        build_sorted(&orders, entries.into_iter().map(|(_, k, v)| (k, v))).expect("at least one key")
    }

    #[test]
    fn a_sorted_build_has_the_shape_of_inserting_one_by_one() {
        let keys: Vec<u64> = (1..3000u64)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
            .chain(deep_keys(300))
            .chain([1 << 18 | 1 << 30])
            .collect();
        let distinct: std::collections::HashSet<u64> = keys.iter().copied().collect();
        assert_eq!(distinct.len(), keys.len(), "build_sorted takes distinct keys");
        assert!(nodes_equal(&bulk(keys.iter().copied()), &build(keys.iter().copied()), 0));
        assert_occupancy_kept(&bulk(keys.iter().copied()));
        assert!(nodes_equal(&bulk([42u64]), &build([42u64]), 0));
        let colliding: Vec<_> =
            (0..40).map(|tag| Colliding { hash: if tag % 2 == 0 { 7 } else { 7 | 1 << 40 }, tag }).collect();
        let b = bulk(colliding.clone());
        assert!(nodes_equal(&b, &build(colliding.clone()), 0));
        for (i, k) in colliding.iter().enumerate() {
            assert_eq!(lookup(&b, k), Some(i as u32));
        }
        assert!(build_sorted::<u64, u32>(&[], core::iter::empty()).is_none());
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

    /// O1 over a whole trie: each parent's record of its child's occupied slots.
    fn assert_occupancy_kept<K, V>(node: &NodeRef<K, V>) {
        for (child, &kept) in node.children().iter().zip(node.child_occupancy()) {
            assert_eq!(kept, child.occupancy(), "a parent's record of its child's occupied slots is stale");
            assert_occupancy_kept(child);
        }
    }

    /// Each child slot, by both steps, hands out the child in slot order and
    /// a `ChildAt` that reads the occupancy the parent keeps for it.
    fn assert_child_slots_read_their_occupancy<K, V>(node: &NodeRef<K, V>) {
        let mut child_bits = node.nodemap();
        for (i, (child, &kept)) in node.children().iter().zip(node.child_occupancy()).enumerate() {
            let bit = child_bits & child_bits.wrapping_neg();
            child_bits &= !bit;
            for slot in [node.slot_counting(bit, Compiled), node.slot_in_sparse(bit, Compiled)] {
                let Slot::Child(found, at) = slot else { panic!("child {i} not found by its slot") };
                assert!(found.ptr_eq(child), "child {i}: another child");
                assert_eq!(at.occupancy(), kept, "child {i}: another child's occupancy");
            }
            assert_child_slots_read_their_occupancy(child);
        }
    }

    #[test]
    fn a_child_slot_reads_the_occupancy_kept_for_that_child() {
        // Full nodes (the root of 20K keys), sparse ones and leaves.
        assert_child_slots_read_their_occupancy(&build((0..20_000).map(mix)));
        assert_child_slots_read_their_occupancy(&build((0..300).map(mix)));
        // A collision node's record is all ones.
        let root = build([Colliding { hash: 7, tag: 1 }, Colliding { hash: 7, tag: 2 }]);
        assert_child_slots_read_their_occupancy(&root);
    }

    #[test]
    fn a_miss_stops_at_the_parent_of_a_child_whose_slot_is_empty() {
        // 1 and 1 | 1 << 6 share the root's slot 1; their child holds slots 0 and 1.
        let root = build([1u64, 1 | 1 << 6]);
        assert_eq!(root.child_occupancy(), &[0b11]);
        assert_eq!(lookup(&root, &(1 | 2 << 6)), None);
        assert_eq!(lookup(&root, &(1 | 1 << 6)), Some(1));
        // A key whose whole hash collides with another sits in a collision
        // node, whose occupancy lets every lookup through to compare keys.
        let colliding = build((0..3).map(|tag| Colliding { hash: 5, tag }));
        assert_eq!(lookup(&colliding, &Colliding { hash: 5, tag: 9 }), None);
        assert_eq!(lookup(&colliding, &Colliding { hash: 5, tag: 2 }), Some(2));
        assert_occupancy_kept(&colliding);
    }

    #[test]
    fn every_write_keeps_each_childs_occupancy_in_its_parent() {
        let s = Id::default();
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut random = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        // Few hashes, sharing long prefixes, some in full: deep paths, folds
        // on removal, and collision nodes.
        let hash_of = |r: u64| match r % 4 {
            0 => r >> 2 & 0xFFF,
            1 => (r >> 2 & 0x7) << 54 | 0x15,
            2 => u64::MAX - (r >> 2 & 1),
            _ => r >> 2 & 0x3F | (r >> 8 & 0x3) << 42,
        };
        let mut model = std::collections::HashMap::new();
        let mut root = singleton(0, Colliding { hash: 0, tag: 0 }, 0);
        model.insert(Colliding { hash: 0, tag: 0 }, 0);
        let mut held = Vec::new();
        for step in 0..3000u32 {
            let r = random();
            let key = Colliding { hash: hash_of(r >> 8), tag: (r & 3) as u32 };
            let h = s.hash_one(&key);
            // Keep some versions alive, so that writes copy shared paths.
            if r >> 60 == 0 {
                held.push(root.clone());
            }
            if held.len() > 4 {
                held.remove(0);
            }
            if r >> 7 & 1 == 0 || model.len() < 2 {
                assert_eq!(
                    insert(&mut root, model.len(), h, key.clone(), step, &s).map(|(old, _)| old),
                    model.insert(key, step)
                );
            } else if model.contains_key(&key) {
                assert_eq!(remove(&mut root, h, &key).map(|e| e.1), model.remove(&key));
            }
            assert_occupancy_kept(&root);
            let probe = Colliding { hash: hash_of(random() >> 8), tag: (r >> 3 & 3) as u32 };
            assert_eq!(lookup(&root, &probe), model.get(&probe).copied());
        }
        for (k, v) in &model {
            assert_eq!(lookup(&root, k), Some(*v));
        }
        held.iter().for_each(assert_occupancy_kept);
    }
}
