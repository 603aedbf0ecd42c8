//! A table sorted into trie order: what a bulk load and `Tx::assign` work from.
//!
//! The entries stay where the table put them; what is sorted is a pair per
//! entry, its hash's [`trie_order`] and its index, by radix passes over the
//! order's leading bits (then a comparison sort of each run that shares
//! them, almost always a single pair). The entries are then taken out by
//! index, in order, each prefetched a few steps ahead. Before session 20,
//! `sort_by_cached_key` sorted the entries themselves: a comparison sort of
//! the pairs, then a permutation of the entries in place whose chains of
//! dependent swaps missed the cache at every step (at 1M entries, `perf` put
//! ~45% of a load in the two). Loads got 1.6-2.2x faster at 100K entries
//! and 1.1-1.8x at 1M (docs/benchmark-history.md, "What changed in session 20"),
//! for 8 more bytes per entry at the load's peak.

use core::hash::{BuildHasher, Hash};

use crate::raw::prefetch;
use crate::trie::{BITS, HASH_BITS};

/// Below this many entries, a comparison sort of the pairs costs less than
/// the radix passes' histograms.
const RADIX_MIN_LEN: usize = 128;
/// How far ahead of the gather its reads are prefetched.
const GATHER_AHEAD: usize = 16;
/// The widest digit of a radix pass: 2^11 counts (16 KB) stay in L1.
const DIGIT_MAX_BITS: u32 = 11;

/// The order in which the trie keeps hashes: slot at depth 0 first, then
/// depth 1, and so on. Sorting by it lists entries in the order a bulk build
/// places them; iteration differs in that it hands out a node's own entries
/// before its children's (keys hashing to 5, then 3 and 67 under an
/// identity hash: the trie order is 3, 67, 5, the iteration 5, 3, 67).
#[inline]
pub(crate) fn trie_order(hash: u64) -> u64 {
    // The 6-bit slot indices, most significant first (the last, 4-bit one
    // fills the low bits: 10 * 6 + 4 = 64).
    let mut order = 0;
    let mut shift = 0;
    while shift < HASH_BITS {
        let width = BITS.min(HASH_BITS - shift);
        order = (order << width) | ((hash >> shift) & ((1 << width) - 1));
        shift += BITS;
    }
    order
}

/// The bit of the slot at `shift` (below [`HASH_BITS`]) of the hash whose
/// trie order is `order`: the bit `trie::slot_bit` gives for that hash.
#[inline(always)]
pub(crate) fn slot_bit_of_order(order: u64, shift: u32) -> u64 {
    let width = BITS.min(HASH_BITS - shift);
    1 << ((order >> (HASH_BITS - shift - width)) & ((1 << width) - 1))
}

/// The hash whose [`trie_order`] is `order`: the order only moves bits, so
/// the pairs need not carry the hash too.
#[inline]
pub(crate) fn hash_of_order(order: u64) -> u64 {
    let mut hash = 0;
    let mut shift = 0;
    // How many of the order's bits, from the top, are not read yet.
    let mut unread = HASH_BITS;
    while shift < HASH_BITS {
        let width = BITS.min(HASH_BITS - shift);
        unread -= width;
        hash |= ((order >> unread) & ((1 << width) - 1)) << shift;
        shift += BITS;
    }
    hash
}

/// A table's entries in trie order, one of equal keys kept (the last value
/// under the first key).
pub(crate) struct TrieOrdered<K, V> {
    /// The trie order of each kept entry's hash, sorted (equal orders in
    /// the table's order).
    orders: Vec<u64>,
    /// Where in `slots` each of `orders` is. Apart from the orders so that
    /// a binary search (`assign` makes one per key of the map) reads 8
    /// bytes per step, not 16.
    at: Vec<usize>,
    /// The entries where the table yielded them (or in trie order, once
    /// [`laid_out_in_order`](Self::laid_out_in_order)), until taken out.
    slots: Vec<Option<(K, V)>>,
    /// How many entries the table yielded, repeated keys included.
    yielded: usize,
}

impl<K: Hash + Eq, V> TrieOrdered<K, V> {
    /// Hashes and sorts `entries`, and keeps one entry of equal keys: the
    /// last value, under the first key.
    /// If a `Hash` or `Eq` panics, the entries are dropped and nothing else
    /// has happened.
    pub(crate) fn new(entries: impl Iterator<Item = (K, V)>, hasher: &impl BuildHasher) -> Self {
        let (lower, _) = entries.size_hint();
        let mut pairs = Vec::with_capacity(lower);
        let mut slots = Vec::with_capacity(lower);
        for (key, value) in entries {
            pairs.push((trie_order(hasher.hash_one(&key)), slots.len()));
            slots.push(Some((key, value)));
        }
        sort_pairs(&mut pairs);
        keep_one_of_equal_keys(&mut pairs, &mut slots);
        let (orders, at) = pairs.into_iter().unzip();
        let yielded = slots.len();
        Self { orders, at, slots, yielded }
    }

    /// The position in trie order of `key`, whose hash is `hash`.
    pub(crate) fn position(&self, hash: u64, key: &K) -> Option<usize> {
        let order = trie_order(hash);
        let first = self.orders.partition_point(|&o| o < order);
        let run = self.orders[first..].iter().take_while(|&&o| o == order).count();
        let found = self.at[first..first + run].iter().position(|&at| slot(&self.slots, at).0 == *key);
        found.map(|i| first + i)
    }
}

impl<K, V> TrieOrdered<K, V> {
    /// How many distinct keys the table holds.
    pub(crate) fn len(&self) -> usize {
        self.orders.len()
    }

    /// Whether the table holds no entry.
    pub(crate) fn is_empty(&self) -> bool {
        self.orders.is_empty()
    }

    /// How many entries the table yielded, repeated keys included.
    pub(crate) fn yielded(&self) -> usize {
        self.yielded
    }

    /// The value at `position` in trie order.
    pub(crate) fn value(&self, position: usize) -> &V {
        &slot(&self.slots, self.at[position]).1
    }

    /// The trie orders of the entries' hashes, sorted, and the entries in
    /// that order.
    pub(crate) fn into_parts(self) -> (Vec<u64>, Entries<K, V>) {
        (self.orders, Entries { at: self.at.into_iter(), slots: self.slots })
    }

    /// The table with its entries moved into trie order in memory, for a
    /// caller that reads them in nearly that order: `assign` walks the
    /// map's entries (slot by slot within a node, a node's own entries
    /// before its children's) and compares each with the table's. Read where the table put them, every comparison was a cache
    /// miss (55% of `assign`'s own time in a 100K reload of `String` keys);
    /// laid out, they stream.
    pub(crate) fn laid_out_in_order(self) -> Self {
        let Self { orders, at, mut slots, yielded } = self;
        let mut laid_out = Vec::with_capacity(at.len());
        for (i, &from) in at.iter().enumerate() {
            laid_out.push(Some(take_prefetching(&mut slots, from, at.get(i + GATHER_AHEAD).copied())));
        }
        Self { orders, at: (0..laid_out.len()).collect(), slots: laid_out, yielded }
    }
}

/// Keeps one entry of each key: the last value, under the first key given,
/// which is what `insert`s in the table's order would leave (std's
/// `collect` too: an `insert` that replaces a value keeps the stored key).
/// Equal keys have equal hashes, so they sit in one run of equal orders, in
/// the table's order. The first key passes down to each later entry of its
/// key in turn, and the pair of every entry whose key appears again later
/// is dropped.
fn keep_one_of_equal_keys<K: Eq, V>(pairs: &mut Vec<(u64, usize)>, slots: &mut [Option<(K, V)>]) {
    let mut superseded: Vec<usize> = Vec::new();
    let mut start = 0;
    for run in pairs.chunk_by(|a, b| a.0 == b.0) {
        if run.len() > 1 {
            for (i, &(_, at)) in run.iter().enumerate() {
                let next_of_key = run[i + 1..].iter().find(|&&(_, later)| slot(slots, later).0 == slot(slots, at).0);
                if let Some(&(_, later)) = next_of_key {
                    pass_key_on(slots, at, later);
                    superseded.push(start + i);
                }
            }
        }
        start += run.len();
    }
    if superseded.is_empty() {
        return;
    }
    let mut position = 0;
    let mut next = superseded.iter().peekable();
    pairs.retain(|_| {
        let drop = next.next_if_eq(&&position).is_some();
        position += 1;
        !drop
    });
}

/// Swaps the keys of the entries at `from` and `to`, so that `to` holds the
/// key first given. Equal orders keep the table's order, so `from < to`.
fn pass_key_on<K, V>(slots: &mut [Option<(K, V)>], from: usize, to: usize) {
    debug_assert!(from < to, "equal keys in the table's order");
    let (earlier, later) = slots.split_at_mut(to);
    let (Some(from), Some(to)) = (&mut earlier[from], &mut later[0]) else {
        unreachable!("snapview bug: an entry taken before the table was sorted")
    };
    core::mem::swap(&mut from.0, &mut to.0);
}

fn slot<K, V>(slots: &[Option<(K, V)>], at: usize) -> &(K, V) {
    slots[at].as_ref().expect("snapview bug: an entry read after it was taken")
}

/// The entries of a [`TrieOrdered`], taken out in trie order.
///
/// In a large table each is a cache miss, in an order the CPU cannot guess:
/// the entry [`GATHER_AHEAD`] places on is prefetched at each step, so that
/// the misses overlap with each other and with the building of the trie
/// (read one at a time, they took 70% of a 100K load).
pub(crate) struct Entries<K, V> {
    at: std::vec::IntoIter<usize>,
    slots: Vec<Option<(K, V)>>,
}

impl<K, V> Iterator for Entries<K, V> {
    type Item = (K, V);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let at = self.at.next()?;
        let ahead = self.at.as_slice().get(GATHER_AHEAD - 1).copied();
        Some(take_prefetching(&mut self.slots, at, ahead))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.at.size_hint()
    }
}

impl<K, V> ExactSizeIterator for Entries<K, V> {}

/// Takes the entry at `at` out of `slots`, after asking for the one at
/// `ahead`, which the caller takes [`GATHER_AHEAD`] steps later.
#[inline(always)]
fn take_prefetching<K, V>(slots: &mut [Option<(K, V)>], at: usize, ahead: Option<usize>) -> (K, V) {
    if let Some(ahead) = ahead {
        prefetch(slots.as_ptr().wrapping_add(ahead));
    }
    slots[at].take().expect("snapview bug: an entry taken twice")
}

/// Sorts `(order, index)` pairs: by radix on the orders' leading bits,
/// about two more than it takes to tell `pairs.len()` orders apart, then
/// each run of pairs that share those bits by comparison.
fn sort_pairs(pairs: &mut Vec<(u64, usize)>) {
    let n = pairs.len();
    if n < RADIX_MIN_LEN {
        pairs.sort_unstable();
        return;
    }
    let leading = (usize::BITS - n.leading_zeros() + 2).min(HASH_BITS);
    let passes = leading.div_ceil(DIGIT_MAX_BITS);
    let width = leading.div_ceil(passes);
    // The lowest bit sorted on; the top digit is narrower if this saturates.
    let low = HASH_BITS.saturating_sub(passes * width);
    let shifts: Vec<u32> = (0..passes).map(|pass| low + pass * width).collect();
    let counts = digit_counts(pairs, &shifts, width);
    let mut scratch = vec![(0, 0); n];
    for (shift, counts) in shifts.iter().zip(counts.chunks_exact(1 << width)) {
        // A digit that every order shares moves nothing.
        if counts.contains(&n) {
            continue;
        }
        scatter_by_digit(pairs, &mut scratch, *shift, counts);
        core::mem::swap(pairs, &mut scratch);
    }
    // The radix passes are stable and the pairs came in index order, so
    // what is left is the order's low bits, within runs that share the rest.
    for run in pairs.chunk_by_mut(|a, b| a.0 >> low == b.0 >> low) {
        if run.len() > 1 {
            run.sort_unstable();
        }
    }
}

/// How many orders have each value of the digit at each of `shifts`, in one
/// read of `pairs`: `1 << width` counts per shift, one shift after another.
fn digit_counts(pairs: &[(u64, usize)], shifts: &[u32], width: u32) -> Vec<usize> {
    let mask = (1 << width) - 1;
    let mut counts = vec![0; shifts.len() << width];
    for &(order, _) in pairs {
        for (pass, shift) in shifts.iter().enumerate() {
            counts[(pass << width) | ((order >> shift) & mask) as usize] += 1;
        }
    }
    counts
}

/// One stable radix pass: `from` into `to`, by the digit at `shift`, whose
/// values' counts are `counts`.
fn scatter_by_digit(from: &[(u64, usize)], to: &mut [(u64, usize)], shift: u32, counts: &[usize]) {
    let mask = counts.len() as u64 - 1;
    let mut next: Vec<usize> = counts
        .iter()
        .scan(0, |start, &count| {
            let at = *start;
            *start += count;
            Some(at)
        })
        .collect();
    for &pair in from {
        let digit = ((pair.0 >> shift) & mask) as usize;
        to[next[digit]] = pair;
        next[digit] += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    use crate::testing::Id;

    #[test]
    fn trie_order_sorts_by_the_slot_at_each_depth_in_turn() {
        assert_eq!(trie_order(0), 0);
        assert_eq!(trie_order(1), 1 << 58, "slot 1 at depth 0 is the most significant");
        assert_eq!(trie_order(1 << 6), 1 << 52);
        assert_eq!(trie_order(1 << 63), 1 << 3, "the last 4-bit group is the least significant");
        assert!(trie_order(63 << 6) < trie_order(1), "depth 0 decides before depth 1");
    }

    #[test]
    fn the_hash_comes_back_from_its_order() {
        for hash in (0..10_000).map(mix).chain([0, u64::MAX, 1 << 63, 15 << 60]) {
            assert_eq!(hash_of_order(trie_order(hash)), hash);
        }
    }

    /// What `sort_pairs` must produce: the pairs sorted, as a comparison sort does.
    fn check_sort(orders: impl IntoIterator<Item = u64>) {
        let mut pairs: Vec<(u64, usize)> = orders.into_iter().enumerate().map(|(i, o)| (o, i)).collect();
        let mut expected = pairs.clone();
        expected.sort();
        sort_pairs(&mut pairs);
        assert!(pairs == expected, "{} pairs sorted wrongly", pairs.len());
    }

    #[test]
    fn radix_sorting_agrees_with_a_comparison_sort() {
        for n in [0, 1, 2, RADIX_MIN_LEN - 1, RADIX_MIN_LEN, 5_000, 70_000] {
            check_sort((0..n as u64).map(mix));
            // Few distinct orders: long runs of equal leading bits.
            check_sort((0..n as u64).map(|i| mix(i % 7)));
            // Orders equal in their leading bits, apart in their low ones.
            check_sort((0..n as u64).map(|i| mix(i) >> 40));
            // One digit shared by all: its pass is skipped.
            check_sort((0..n as u64).map(|i| mix(i) & !(0x7ff << 53)));
            // Already sorted, and reversed.
            check_sort(0..n as u64);
            check_sort((0..n as u64).rev());
        }
    }

    #[test]
    fn the_last_of_equal_keys_stays_and_entries_come_out_in_trie_order() {
        let keys: Vec<u64> = (0..3000).map(mix).collect();
        // Every key twice, then a third of them again: the last value wins.
        let table = keys
            .iter()
            .map(|&k| (k, 0))
            .chain(keys.iter().map(|&k| (k, 1)))
            .chain(keys.iter().step_by(3).map(|&k| (k, 2)));
        let ordered = TrieOrdered::new(table, &Id::default());
        assert_eq!(ordered.yielded(), 3000 + 3000 + 1000);
        assert_eq!(ordered.len(), keys.len());
        for (i, &k) in keys.iter().enumerate() {
            let at = ordered.position(k, &k).expect("every key is there");
            assert_eq!(*ordered.value(at), if i % 3 == 0 { 2 } else { 1 });
        }
        assert_eq!(ordered.position(mix(5000), &mix(5000)), None);
        let (orders, entries) = ordered.into_parts();
        let entries: Vec<(u64, i32)> = entries.collect();
        assert_eq!(orders.len(), entries.len());
        assert!(entries.iter().zip(&orders).all(|((key, _), &order)| trie_order(*key) == order), "the identity hash");
        assert!(orders.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn equal_hashes_of_different_keys_are_kept_apart() {
        #[derive(PartialEq, Eq)]
        struct SameHash(u32);
        impl Hash for SameHash {
            fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
                state.write_u64(7);
            }
        }
        let table = (0..2000).map(|i| (SameHash(i % 500), i));
        let ordered = TrieOrdered::new(table, &Id::default());
        assert_eq!((ordered.yielded(), ordered.len()), (2000, 500));
        for key in 0..500 {
            let at = ordered.position(7, &SameHash(key)).expect("present");
            assert_eq!(*ordered.value(at), key + 1500, "the last value of key {key}");
        }
        // Of equal hashes, the table's order.
        assert!(ordered.into_parts().1.map(|(key, _)| key.0).eq(0..500));
    }
}
