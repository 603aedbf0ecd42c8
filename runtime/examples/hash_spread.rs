//! How evenly the default hasher (foldhash's fast hasher) spreads sequential
//! integer keys over the trie, across random seeds: the figures behind
//! docs/reliability.md, "Tests that do not depend on luck".
//!
//! `cargo run --release -p snapview --example hash_spread -- [keys] [seeds]`
//! (defaults 4000 and 400). For each seed (shared and per-hasher parts drawn
//! from a fixed xorshift, so runs repeat) it hashes keys `0..keys` and prints
//! quantiles over the seeds of
//! - the keys alone in their 12-bit hash prefix (the trie reads 6 bits a
//!   level, lowest first): inline in a node below the root, not pushed down;
//! - the mean depth of a key: the levels a lookup walks to reach it.

use std::hash::BuildHasher;

use foldhash::SharedSeed;
use foldhash::fast::SeedableRandomState;

/// Bits of the hash one trie level reads.
const BITS: u32 = 6;

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>().expect("a number"));
    let keys = args.next().unwrap_or(4000);
    let seeds = args.next().unwrap_or(400);
    let mut rng = 0x1234_5678_9abc_def1_u64;
    let mut alone = Vec::new();
    let mut depth = Vec::new();
    for _ in 0..seeds {
        // `SeedableRandomState` wants a `&'static` shared seed: ~100 bytes a
        // seed, left for the process's exit.
        let shared: &'static SharedSeed = Box::leak(Box::new(SharedSeed::from_u64(xorshift(&mut rng))));
        let state = SeedableRandomState::with_seed(xorshift(&mut rng), shared);
        let mut hashes: Vec<u64> = (0..keys).map(|k| state.hash_one(k)).collect();
        alone.push(alone_in_prefix(&hashes, 2 * BITS) as f64);
        depth.push(mean_depth(&mut hashes));
    }
    println!("{keys} sequential keys, {seeds} seeds: quantiles 0 / 1% / 10% / 50% / 90% / 99% / 100%");
    println!("  keys alone in their 12-bit prefix: {}", quantiles(&mut alone, 0));
    println!("  mean depth of a key:               {}", quantiles(&mut depth, 3));
}

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// How many hashes no other hash shares the lowest `bits` bits with.
fn alone_in_prefix(hashes: &[u64], bits: u32) -> usize {
    let mut counts = std::collections::HashMap::new();
    for h in hashes {
        *counts.entry(h & ((1 << bits) - 1)).or_insert(0u32) += 1;
    }
    counts.values().filter(|&&n| n == 1).count()
}

/// The mean number of levels a lookup walks to each key: one more than the
/// whole levels of the longest low-bit prefix the key shares with another.
fn mean_depth(hashes: &mut [u64]) -> f64 {
    // Bit-reversed and sorted, keys sharing a low-bit prefix are neighbours.
    for h in hashes.iter_mut() {
        *h = h.reverse_bits();
    }
    hashes.sort_unstable();
    let shared_bits = |a: u64, b: u64| (a ^ b).leading_zeros();
    let total: u64 = (0..hashes.len())
        .map(|i| {
            let before = i.checked_sub(1).map_or(0, |j| shared_bits(hashes[i], hashes[j]));
            let after = hashes.get(i + 1).map_or(0, |&n| shared_bits(hashes[i], n));
            u64::from(before.max(after) / BITS + 1)
        })
        .sum();
    total as f64 / hashes.len() as f64
}

fn quantiles(values: &mut [f64], decimals: usize) -> String {
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    [0.0, 0.01, 0.1, 0.5, 0.9, 0.99, 1.0].map(|q| format!("{:.decimals$}", at(q))).join(" / ")
}
