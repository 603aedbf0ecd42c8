//! A design probe, not snapview code: how fast would a 1M-key lookup be if
//! the trie's last level were buckets whose hash tags sit in the parent?
//! (docs/benchmark-history.md, "What changed in session 12".)
//!
//! The structure is built once and only looked up: two levels of 64
//! pointers, then 4096 nodes of 16 slots. Each such node keeps, per slot,
//! where its keys start (`u16` offsets, inline in the level above), an array
//! of 7-bit tags of the keys' hashes (one byte per key, like hashbrown's
//! control bytes), and the entries of all its slots in one array. A lookup walks the two pointer levels,
//! matches the tags of its slot 16 at a time (SSE2), and reads an entry only
//! for a matching tag. Measured against hashbrown and snapview on the same
//! keys, hasher and probes, alternating in bursts as `ab.sh` does.
//!
//! `runtime/benches/ab/bucket.sh [ROUNDS]` builds and runs it (x86-64 only).

use std::arch::x86_64::{__m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8};
use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::hint::black_box;
use std::time::Instant;

#[macro_use]
mod common;
use common::SplitMix64;

type Hasher = foldhash::fast::FixedState;

const SIZE: usize = 1_000_000;
const BURST: usize = 1 << 20;
const SLOTS: usize = 16;
/// Tag bytes read past a slot's last key by a 16-byte group load.
const GROUP: usize = 16;

fn hasher() -> Hasher {
    foldhash::fast::FixedState::with_seed(0x5EED)
}

/// A key's tag: the hash's top 7 bits, high bit set.
fn tag(hash: u64) -> u8 {
    (hash >> 57) as u8 | 0x80
}

/// The last level: 16 slots' tags and entries.
struct Leaves {
    /// Where each slot's keys start in `tags` and `entries`, and their count.
    offsets: [u16; SLOTS + 1],
    /// One tag per key, then `GROUP` zero bytes (no key's tag is zero).
    tags: Box<[u8]>,
    entries: Box<[(u64, u64)]>,
}

impl Leaves {
    fn new(slots: &[Vec<(u64, u64)>], hasher: &Hasher) -> Self {
        let mut offsets = [0; SLOTS + 1];
        for (i, slot) in slots.iter().enumerate() {
            offsets[i + 1] = offsets[i] + slot.len() as u16;
        }
        let tags = slots.iter().flatten().map(|&(k, _)| tag(hasher.hash_one(k))).chain([0; GROUP]).collect();
        Self { offsets, tags, entries: slots.iter().flatten().copied().collect() }
    }

    #[inline(always)]
    fn get(&self, hash: u64, key: u64) -> Option<&u64> {
        let slot = ((hash >> 12) as usize) % SLOTS;
        let (from, to) = (self.offsets[slot] as usize, self.offsets[slot + 1] as usize);
        let wanted = tag(hash);
        let mut group = from;
        while group < to {
            let mut matches = match_group(&self.tags[group..group + GROUP], wanted);
            if to - group < GROUP {
                matches &= (1 << (to - group)) - 1;
            }
            while matches != 0 {
                let (k, v) = &self.entries[group + matches.trailing_zeros() as usize];
                if *k == key {
                    return Some(v);
                }
                matches &= matches - 1;
            }
            group += GROUP;
        }
        None
    }
}

/// Bit `i` set where `group[i] == wanted`.
#[inline(always)]
fn match_group(group: &[u8], wanted: u8) -> u32 {
    assert!(group.len() >= 16);
    // SAFETY: the load reads 16 bytes, inside `group` (asserted); SSE2 is
    // part of x86-64.
    unsafe {
        let bytes = _mm_loadu_si128(group.as_ptr().cast::<__m128i>());
        _mm_movemask_epi8(_mm_cmpeq_epi8(bytes, _mm_set1_epi8(wanted as i8))) as u32
    }
}

/// Two levels of 64 pointers above the leaves, as in a trie.
struct Probe {
    root: Box<[Box<[Leaves; 64]>; 64]>,
    hasher: Hasher,
}

impl Probe {
    fn new(keys: &[u64]) -> Self {
        let hasher = hasher();
        let mut slots = vec![vec![vec![Vec::new(); SLOTS]; 64]; 64];
        for &k in keys {
            let h = hasher.hash_one(k);
            slots[(h % 64) as usize][((h >> 6) % 64) as usize][((h >> 12) as usize) % SLOTS].push((k, k));
        }
        let root =
            Box::new(std::array::from_fn(|i| Box::new(std::array::from_fn(|j| Leaves::new(&slots[i][j], &hasher)))));
        Self { root, hasher }
    }

    #[inline(always)]
    fn get(&self, key: &u64) -> Option<&u64> {
        let hash = self.hasher.hash_one(*key);
        self.root[(hash % 64) as usize][((hash >> 6) % 64) as usize].get(hash, *key)
    }
}

lookups!(get_probe, Probe);
lookups!(get_snapview, snapview::Snapshot<u64, u64, Hasher>);
lookups!(get_hashbrown, hashbrown::HashMap<u64, u64, Hasher>);

fn time(burst: impl FnOnce() -> u64) -> f64 {
    let start = Instant::now();
    black_box(burst());
    start.elapsed().as_nanos() as f64 / BURST as f64
}

fn main() {
    let rounds: usize = std::env::args().nth(1).map_or(30, |r| r.parse().expect("bucket_probe [ROUNDS]"));
    let mut rng = SplitMix64(42);
    let keys: Vec<u64> = (0..SIZE).map(|_| rng.next()).collect();
    let probe = Probe::new(&keys);
    let map = snapview::SnapMap::builder().hasher(hasher()).build();
    map.update(|tx| tx.extend(keys.iter().map(|&k| (k, k))));
    let snap = map.snapshot();
    let mut hb = hashbrown::HashMap::with_capacity_and_hasher(SIZE, hasher());
    hb.extend(keys.iter().map(|&k| (k, k)));

    let probes = SIZE.next_power_of_two() / 2;
    let mut hits = keys.clone();
    rng.shuffle(&mut hits);
    hits.truncate(probes);
    let misses: Vec<u64> = (0..probes).map(|_| rng.next()).collect();
    assert_eq!(get_probe(&probe, &hits), BURST as u64, "the probe finds every key");
    assert_eq!(get_probe(&probe, &misses), get_hashbrown(&hb, &misses), "and only those");

    let mut results: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for _ in 0..rounds {
        for (case, keys) in [("hit", &hits), ("miss", &misses)] {
            let mut record = |who: &str, ns: f64| results.entry(format!("{case:4} {who}")).or_default().push(ns);
            record("bucket probe", time(|| get_probe(&probe, keys)));
            record("snapview", time(|| get_snapview(&snap, keys)));
            record("hashbrown", time(|| get_hashbrown(&hb, keys)));
        }
    }
    for (name, mut ns) in results {
        ns.sort_by(f64::total_cmp);
        println!("{SIZE:>8} {name:17} min {:7.2}  median {:7.2} ns", ns[0], ns[ns.len() / 2]);
    }
}
