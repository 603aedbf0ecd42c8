//! Instructions per lookup, and per element of an iteration, counted rather
//! than timed: `instructions.py` (next to this file) runs this program under
//! valgrind's callgrind, counting only inside the `lookups_*`, `iterate_*`
//! and `loop_*` functions, and divides the count by the number of lookups or elements.
//!
//! On a machine whose timings move by 2x from one minute to the next, a count
//! is the one lookup figure that repeats exactly. It also explains the
//! throughput benchmarks (`peers`, `get_hit`/`get_miss`): in a large map, the
//! CPU overlaps independent lookups only as far as its reorder window holds
//! their instructions, so a lookup's instruction count bounds how many of
//! them are in flight (docs/benchmarks.md, "Instructions per lookup").
//!
//! Writes too (session 53), whose times move with the allocator's state as
//! much as with the host: `batch`, per key of batches of 1000 new keys
//! inserted in one version (the `batch_insert` benchmark's; each batch's
//! keys are removed again outside the count), and `publish`, per write of
//! an insert of a new key and its removal, each its own version (the
//! `insert_publish` benchmark's); and since session 54 the same with a
//! reader holding each replaced version (`held`, `insert_publish_held`'s)
//! and batches of 1000 overwrites of present keys under a held version
//! (`overwrite_held`, per key, `batch_publish_held`'s). imbl's in an
//! `ArcSwap`, as there, and hashbrown's without versions (its held cases
//! are its plain writes), for scale. Counted inside the `writes_*`
//! functions.
//!
//! One process measures one map, size and case, from the environment:
//! `SNAPVIEW_PEER` (`snapview`, `hashbrown` or `imbl`), `SNAPVIEW_BENCH_SIZES`
//! (one size, default 1000000) and `SNAPVIEW_CASE` (`hit`, `miss`, `iter`:
//! the `iter` benchmark's fold that sums the values, `next`: the same sum
//! by a `for` loop, `batch`, `publish`, `held` or `overwrite_held`). Keys and maps
//! are those of the `peers` benchmark (random u64 keys from a fixed-seed
//! splitmix64, each map filled by its bulk path), and one foldhash hasher is
//! shared by every map, as there; here its seed is fixed too
//! (`FixedState`), so that the tries, and so the counts, are the same in
//! every run (with a random seed, 1K counts moved by a few tenths).

use std::hint::black_box;

use foldhash::fast::FixedState;

#[macro_use]
mod common;
use common::SplitMix64;

/// Lookups per map: enough to make the set-up's share of a function's count
/// vanish, few enough for valgrind.
const LOOKUPS: usize = 1 << 20;

/// How many of the `LOOKUPS` probes `get` found.
#[inline(never)]
fn lookups_snapview(map: &snapview::Snapshot<u64, u64, FixedState>, probe: &[u64]) -> usize {
    (0..LOOKUPS).filter(|&i| map.get(black_box(&probe[i % probe.len()])).is_some()).count()
}

#[inline(never)]
fn lookups_hashbrown(map: &hashbrown::HashMap<u64, u64, FixedState>, probe: &[u64]) -> usize {
    (0..LOOKUPS).filter(|&i| map.get(black_box(&probe[i % probe.len()])).is_some()).count()
}

type ImblMap = imbl::GenericHashMap<u64, u64, FixedState, imbl::shared_ptr::DefaultSharedPtr>;

#[inline(never)]
fn lookups_imbl(map: &ImblMap, probe: &[u64]) -> usize {
    (0..LOOKUPS).filter(|&i| map.get(black_box(&probe[i % probe.len()])).is_some()).count()
}

/// Elements an iteration case visits in all: whole passes over the map, at
/// least one.
const ELEMENTS: usize = 1 << 20;

/// The sum of the values over `passes` whole iterations.
#[inline(never)]
fn iterate_snapview(map: &snapview::Snapshot<u64, u64, FixedState>, passes: usize) -> u64 {
    (0..passes).map(|_| black_box(map).iter().fold(0u64, |s, (_, v)| s.wrapping_add(*v))).fold(0, u64::wrapping_add)
}

#[inline(never)]
fn iterate_hashbrown(map: &hashbrown::HashMap<u64, u64, FixedState>, passes: usize) -> u64 {
    (0..passes).map(|_| black_box(map).iter().fold(0u64, |s, (_, v)| s.wrapping_add(*v))).fold(0, u64::wrapping_add)
}

#[inline(never)]
fn iterate_imbl(map: &ImblMap, passes: usize) -> u64 {
    (0..passes).map(|_| black_box(map).iter().fold(0u64, |s, (_, v)| s.wrapping_add(*v))).fold(0, u64::wrapping_add)
}

/// How many batches of new keys the `batch` case writes, of how many keys.
const BATCHES: usize = 64;
const BATCH: usize = 1000;
/// How many keys the `publish` case puts in and takes out (two publishing
/// writes each).
const PUBLISHES: usize = 1 << 14;

type SnapMap = snapview::SnapMap<u64, u64, FixedState>;
type ImblCell = arc_swap::ArcSwap<ImblMap>;

#[inline(never)]
fn writes_batch_snapview(map: &SnapMap, keys: &[u64]) {
    map.update(|tx| {
        for &k in keys {
            tx.insert(k, k);
        }
    });
}

#[inline(never)]
fn writes_publish_snapview(map: &SnapMap, k: u64) {
    black_box(map.insert(k, k));
    black_box(map.remove(&k));
}

/// `publish` while a reader holds each replaced version, letting go of it
/// after the write (the `insert_publish_held` benchmark).
#[inline(never)]
fn writes_held_snapview(map: &SnapMap, k: u64) {
    let held = map.snapshot();
    black_box(map.insert(k, k));
    drop(held);
    let held = map.snapshot();
    black_box(map.remove(&k));
    drop(held);
}

/// A batch of overwrites of present keys while a reader holds the replaced
/// version (the `batch_publish_held` benchmark).
#[inline(never)]
fn writes_overwrite_held_snapview(map: &SnapMap, keys: &[u64], v: u64) {
    let held = map.snapshot();
    map.update(|tx| {
        for &k in keys {
            tx.insert(k, v);
        }
    });
    drop(held);
}

#[inline(never)]
fn writes_batch_imbl(cell: &ImblCell, keys: &[u64]) {
    let mut m = ImblMap::clone(&cell.load());
    for &k in keys {
        m.insert(k, k);
    }
    cell.store(std::sync::Arc::new(m));
}

#[inline(never)]
fn writes_publish_imbl(cell: &ImblCell, k: u64) {
    let mut m = ImblMap::clone(&cell.load());
    m.insert(k, k);
    cell.store(std::sync::Arc::new(m));
    let mut m = ImblMap::clone(&cell.load());
    m.remove(&k);
    cell.store(std::sync::Arc::new(m));
}

#[inline(never)]
fn writes_held_imbl(cell: &ImblCell, k: u64) {
    let held = cell.load_full();
    let mut m = ImblMap::clone(&held);
    m.insert(k, k);
    cell.store(std::sync::Arc::new(m));
    drop(held);
    let held = cell.load_full();
    let mut m = ImblMap::clone(&held);
    m.remove(&k);
    cell.store(std::sync::Arc::new(m));
    drop(held);
}

#[inline(never)]
fn writes_overwrite_held_imbl(cell: &ImblCell, keys: &[u64], v: u64) {
    let held = cell.load_full();
    let mut m = ImblMap::clone(&held);
    for &k in keys {
        m.insert(k, v);
    }
    cell.store(std::sync::Arc::new(m));
    drop(held);
}

#[inline(never)]
fn writes_batch_hashbrown(map: &mut hashbrown::HashMap<u64, u64, FixedState>, keys: &[u64]) {
    for &k in keys {
        map.insert(k, k);
    }
}

#[inline(never)]
fn writes_publish_hashbrown(map: &mut hashbrown::HashMap<u64, u64, FixedState>, k: u64) {
    black_box(map.insert(k, k));
    black_box(map.remove(&k));
}

#[inline(never)]
fn writes_overwrite_hashbrown(map: &mut hashbrown::HashMap<u64, u64, FixedState>, keys: &[u64], v: u64) {
    for &k in keys {
        map.insert(k, v);
    }
}

/// One step of a write case, for a map to run (`write`).
enum Write<'a> {
    /// A batch of new keys: counted.
    Batch(&'a [u64]),
    /// Takes a batch's keys out again: not counted.
    Unbatch(&'a [u64]),
    /// One key put in and taken out, each its own version.
    Publish(u64),
    /// `Publish` with each replaced version held across the write.
    PublishHeld(u64),
    /// A batch of overwrites of present keys with this value, the replaced
    /// version held across it.
    OverwriteHeld(&'a [u64], u64),
}

/// Runs a write case (`batch`, `publish`, `held` or `overwrite_held`) on a
/// map through `step`: the map ends with the keys it began with. `fresh`
/// are absent keys, `present` the map's own.
fn write(case: &str, fresh: &[u64], present: &[u64], mut step: impl FnMut(Write)) {
    match case {
        "batch" => {
            for keys in fresh.chunks_exact(BATCH).take(BATCHES) {
                step(Write::Batch(keys));
                step(Write::Unbatch(keys));
            }
        }
        "publish" => fresh.iter().cycle().take(PUBLISHES).for_each(|&k| step(Write::Publish(k))),
        "held" => fresh.iter().cycle().take(PUBLISHES).for_each(|&k| step(Write::PublishHeld(k))),
        _ => {
            let windows = present.chunks(BATCH).cycle().take(BATCHES);
            windows.zip(1..).for_each(|(keys, round)| step(Write::OverwriteHeld(keys, round)))
        }
    }
}

loops!(loop_snapview, snapview::Snapshot<u64, u64, FixedState>);
loops!(loop_hashbrown, hashbrown::HashMap<u64, u64, FixedState>);
loops!(loop_imbl, ImblMap);

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.into())
}

fn main() {
    let n: usize = env("SNAPVIEW_BENCH_SIZES", "1000000").trim().parse().expect("SNAPVIEW_BENCH_SIZES: one size");
    let (case, peer) = (env("SNAPVIEW_CASE", "hit"), env("SNAPVIEW_PEER", "snapview"));
    let mut rng = SplitMix64(0x5EED ^ n as u64);
    let keys: Vec<u64> = (0..n).map(|_| rng.next()).collect();
    let present: std::collections::HashSet<u64> = keys.iter().copied().collect();
    let probe: Vec<u64> = match case.as_str() {
        "hit" => keys.iter().step_by((n / 65_536).max(1)).copied().collect(),
        "miss" => (0..65_536).map(|_| rng.next()).filter(|k| !present.contains(k)).collect(),
        "batch" | "publish" | "held" => {
            (0..).map(|_| rng.next()).filter(|k| !present.contains(k)).take(BATCH * BATCHES).collect()
        }
        "iter" | "next" | "overwrite_held" => Vec::new(),
        other => panic!(
            "SNAPVIEW_CASE: `hit`, `miss`, `iter`, `next`, `batch`, `publish`, `held` or `overwrite_held`, not `{other}`"
        ),
    };
    let writing = WRITE_CASES.contains(&case.as_str());
    let passes = (ELEMENTS / present.len()).max(1);
    let sum = present.iter().fold(0u64, |s, &k| s.wrapping_add(k)).wrapping_mul(passes as u64);
    // A fixed seed, so that the tries, and the counts, are the same in every run.
    let hasher = FixedState::with_seed(0x5EED);
    let entries = keys.iter().map(|&k| (k, k));
    let (iterating, looping) = (case == "iter", case == "next");
    // The lookups found, or the iterations' sum.
    let result = match peer.as_str() {
        "snapview" => {
            let mut builder = snapview::SnapMap::builder().hasher(hasher);
            // With `instrument`: how often a call is timed (every one with 1,
            // so that the counts are those of the watched path).
            if let Ok(every) = std::env::var("SNAPVIEW_SAMPLE_EVERY") {
                builder = builder.sample_every(every.parse().expect("SNAPVIEW_SAMPLE_EVERY: a number"));
            }
            let map = builder.build();
            map.update(|tx| tx.extend(entries));
            if writing {
                write(&case, &probe, &keys, |step| match step {
                    Write::Batch(keys) => writes_batch_snapview(&map, keys),
                    Write::Unbatch(keys) => map.update(|tx| {
                        for k in keys {
                            tx.remove(k);
                        }
                    }),
                    Write::Publish(k) => writes_publish_snapview(&map, k),
                    Write::PublishHeld(k) => writes_held_snapview(&map, k),
                    Write::OverwriteHeld(keys, v) => writes_overwrite_held_snapview(&map, keys, v),
                });
                map.len() as u64
            } else {
                let snap = map.snapshot();
                match (iterating, looping) {
                    (true, _) => iterate_snapview(&snap, passes),
                    (_, true) => loop_snapview(&snap, passes),
                    _ => lookups_snapview(&snap, &probe) as u64,
                }
            }
        }
        "hashbrown" => {
            let mut map = hashbrown::HashMap::with_capacity_and_hasher(n, hasher);
            map.extend(entries);
            if writing {
                // No versions to hold: the held cases are the plain writes, for scale.
                write(&case, &probe, &keys, |step| match step {
                    Write::Batch(keys) => writes_batch_hashbrown(&mut map, keys),
                    Write::Unbatch(keys) => keys.iter().for_each(|k| _ = map.remove(k)),
                    Write::Publish(k) | Write::PublishHeld(k) => writes_publish_hashbrown(&mut map, k),
                    Write::OverwriteHeld(keys, v) => writes_overwrite_hashbrown(&mut map, keys, v),
                });
                return finish(&peer, n, &case, map.len() as u64, n as u64, operations(&case));
            }
            match (iterating, looping) {
                (true, _) => iterate_hashbrown(&map, passes),
                (_, true) => loop_hashbrown(&map, passes),
                _ => lookups_hashbrown(&map, &probe) as u64,
            }
        }
        "imbl" => {
            let mut map = ImblMap::with_hasher(hasher);
            for (k, v) in entries {
                map.insert(k, v);
            }
            if writing {
                let cell = ImblCell::from_pointee(map);
                write(&case, &probe, &keys, |step| match step {
                    Write::Batch(keys) => writes_batch_imbl(&cell, keys),
                    Write::Unbatch(keys) => {
                        let mut m = ImblMap::clone(&cell.load());
                        for k in keys {
                            m.remove(k);
                        }
                        cell.store(std::sync::Arc::new(m));
                    }
                    Write::Publish(k) => writes_publish_imbl(&cell, k),
                    Write::PublishHeld(k) => writes_held_imbl(&cell, k),
                    Write::OverwriteHeld(keys, v) => writes_overwrite_held_imbl(&cell, keys, v),
                });
                return finish(&peer, n, &case, cell.load().len() as u64, n as u64, operations(&case));
            }
            match (iterating, looping) {
                (true, _) => iterate_imbl(&map, passes),
                (_, true) => loop_imbl(&map, passes),
                _ => lookups_imbl(&map, &probe) as u64,
            }
        }
        other => panic!("SNAPVIEW_PEER: `snapview`, `hashbrown` or `imbl`, not `{other}`"),
    };
    let (expected, operations) = match case.as_str() {
        "hit" => (LOOKUPS as u64, LOOKUPS),
        "miss" => (0, LOOKUPS),
        c if WRITE_CASES.contains(&c) => (present.len() as u64, operations(&case)),
        _ => (sum, passes * present.len()),
    };
    finish(&peer, n, &case, result, expected, operations);
}

/// The writes a write case counts: keys inserted, or publishing writes.
fn operations(case: &str) -> usize {
    match case {
        "batch" => BATCH * BATCHES,
        "overwrite_held" => BATCH * BATCHES,
        _ => 2 * PUBLISHES,
    }
}

/// The cases that write, each counted in the `writes_*` functions.
const WRITE_CASES: &[&str] = &["batch", "publish", "held", "overwrite_held"];

/// Checks a case's result and prints its count of operations, which
/// `instructions.py` divides by.
fn finish(peer: &str, n: usize, case: &str, result: u64, expected: u64, operations: usize) {
    assert_eq!(result, expected, "{peer} {n} {case}: wrong result");
    println!("{peer} {n} {case}: {operations} operations");
}
