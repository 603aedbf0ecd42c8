//! Soak: writers and readers on every core for a while, snapshots held and
//! dropped at random ages, every snapshot checked against the invariant of
//! its version when taken and again when dropped, and the heap measured at
//! the end: once every snapshot is gone, live memory is back near what the
//! map alone needs.
//!
//! `soak_short` runs about 3 s (the CI-sized variant); `soak_long` is ignored
//! by default and runs `SNAPVIEW_SOAK_SECS` seconds (default 300):
//! `SNAPVIEW_SOAK_SECS=600 cargo test --release -p snapview --test soak -- --ignored --nocapture`.

mod common;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::Rng;
use common::live_bytes::{LIVE, LiveBytes, PEAK};
use snapview::{SnapMap, Snapshot};

#[global_allocator]
static ALLOCATOR: LiveBytes = LiveBytes;

const ACCOUNTS: u64 = 10_000;
const INITIAL: u64 = 100;
/// Key holding the number of batches applied; it equals the version minus one
/// (version 1 is the initial fill).
const BATCHES: u64 = u64::MAX;

type Map = SnapMap<u64, u64>;

/// The invariant of every version: all accounts present, amounts conserved,
/// and the batch counter matching the version.
fn check(snap: &Snapshot<u64, u64>) {
    assert_eq!(snap.len() as u64, ACCOUNTS + 1, "version {}", snap.version());
    assert_eq!(snap.get(&BATCHES), Some(&(snap.version() - 1)), "batch counter of version {}", snap.version());
    let total: u64 = snap.iter().filter(|(k, _)| **k != BATCHES).map(|(_, v)| *v).sum();
    assert_eq!(total, ACCOUNTS * INITIAL, "amounts conserved in version {}", snap.version());
}

/// One batch: a few transfers between random accounts, and the counter.
fn transfer_batch(map: &Map, rng: &mut Rng) {
    map.update(|tx| {
        for _ in 0..1 + rng.below(8) {
            let (from, to) = (rng.below(ACCOUNTS), rng.below(ACCOUNTS));
            let have = *tx.get(&from).unwrap();
            let amount = rng.below(have + 1);
            tx.insert(from, have - amount);
            let there = *tx.get(&to).unwrap();
            tx.insert(to, there + amount);
        }
        let batches = *tx.get(&BATCHES).unwrap();
        tx.insert(BATCHES, batches + 1);
    });
}

/// A reader: takes snapshots, keeps up to `keep` of them for random ages,
/// checks each when taken and again (unchanged) when dropped.
fn read_until(map: &Map, stop: &AtomicBool, seed: u64, verified: &AtomicU64) {
    let mut rng = Rng(seed);
    let mut held: VecDeque<(Snapshot<u64, u64>, u64)> = VecDeque::new();
    let mut last_version = 0;
    while !stop.load(Ordering::Relaxed) {
        let snap = map.snapshot();
        assert!(snap.version() >= last_version, "versions never go backwards");
        last_version = snap.version();
        check(&snap);
        let fingerprint = snap.iter().fold(0u64, |h, (k, v)| h ^ k.wrapping_mul(31).wrapping_add(*v).rotate_left(7));
        held.push_back((snap, fingerprint));
        // Random ages: drop a random held snapshot now and then, keep at most 64.
        while held.len() > 64 || (!held.is_empty() && rng.below(4) == 0) {
            let at = rng.below(held.len() as u64) as usize;
            let (old, fingerprint) = held.swap_remove_back(at).unwrap();
            check(&old);
            let again = old.iter().fold(0u64, |h, (k, v)| h ^ k.wrapping_mul(31).wrapping_add(*v).rotate_left(7));
            assert_eq!(again, fingerprint, "a held snapshot changed (version {})", old.version());
            verified.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn soak(duration: Duration) {
    // No timing samples: with the `instrument` feature, histograms grow with
    // what they record and live for the process (by design); this test
    // measures what the map itself keeps.
    let map: Map = SnapMap::builder().name("soak").sample_every(0).build();
    map.update(|tx| {
        (0..ACCOUNTS).for_each(|k| {
            tx.insert(k, INITIAL);
        });
        tx.insert(BATCHES, 0);
    });
    let live_with_map = LIVE.load(Ordering::Relaxed);
    let stop = AtomicBool::new(false);
    let (verified, batches) = (AtomicU64::new(0), AtomicU64::new(0));
    let cores = thread::available_parallelism().map_or(2, |n| n.get());
    let started = Instant::now();
    thread::scope(|s| {
        for w in 0..cores.div_ceil(2) {
            let (map, stop, batches) = (&map, &stop, &batches);
            s.spawn(move || {
                let mut rng = Rng(0x9E37_79B9 + w as u64);
                while !stop.load(Ordering::Relaxed) {
                    transfer_batch(map, &mut rng);
                    batches.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        for r in 0..cores {
            let (map, stop, verified) = (&map, &stop, &verified);
            s.spawn(move || read_until(map, stop, 0xC0FF_EE00 + r as u64, verified));
        }
        thread::sleep(duration);
        stop.store(true, Ordering::Relaxed);
    });
    let last = map.snapshot();
    check(&last);
    assert_eq!(last.version() - 1, batches.load(Ordering::Relaxed), "every batch published exactly one version");
    drop(last);
    let live_end = LIVE.load(Ordering::Relaxed);
    let peak = PEAK.load(Ordering::Relaxed);
    println!(
        "soak: {:.1} s, {} threads, {} batches, {} held snapshots verified, live heap {} KiB with the map -> {} KiB at the end, peak {} KiB",
        started.elapsed().as_secs_f64(),
        cores.div_ceil(2) + cores,
        batches.load(Ordering::Relaxed),
        verified.load(Ordering::Relaxed),
        live_with_map / 1024,
        live_end / 1024,
        peak / 1024,
    );
    assert!(verified.load(Ordering::Relaxed) > 0 && batches.load(Ordering::Relaxed) > 0);
    // Every snapshot is gone: what is live is the current version (same
    // shape as at the start, give or take node sizes), the writer's spare
    // root with its private copies of index nodes, and per-thread
    // bookkeeping. Allow 25% over the map's own size, plus the private
    // copies: at most one per child of the root, ~1 KB each
    // (docs/design.md, "Private index nodes"), which a hasher seed that
    // pairs these keys below the root can make of every child.
    const PRIVATE_COPIES: i64 = 64 * 1100;
    let map_bytes = live_with_map.max(1);
    assert!(
        live_end <= live_with_map + map_bytes / 4 + PRIVATE_COPIES,
        "live heap {live_end} B at the end vs {live_with_map} B with the map at the start"
    );
}

#[test]
fn soak_short() {
    soak(Duration::from_secs(3));
}

#[test]
#[ignore = "minutes long: SNAPVIEW_SOAK_SECS=600 cargo test --release -p snapview --test soak -- --ignored"]
fn soak_long() {
    let secs = std::env::var("SNAPVIEW_SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(300);
    soak(Duration::from_secs(secs));
}
