//! Multi-threaded stress: writers move amounts between accounts in batches
//! (so the total never changes; half of the batches write in place, through
//! `get_mut` and `entry`) and atomically add or remove pairs of keys
//! whose values cancel out; readers check, in every snapshot and read guard
//! they take, that the total is the invariant, that the pairs are whole, that
//! iteration yields exactly `len()` entries, that versions never go backwards,
//! and that snapshots they hold on to never change.
//!
//! `stress_short` runs for about two seconds; `stress_long` (ignored by
//! default: `cargo test --test stress -- --ignored`) for a minute, or for
//! `SNAPVIEW_STRESS_SECS` seconds if set.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::Rng;
use snapview::{SnapMap, Snapshot, View};

const ACCOUNTS: u32 = 64;
const INITIAL: i64 = 1_000;
const TOTAL: i64 = ACCOUNTS as i64 * INITIAL;
/// Writer `w`'s scratch key is `SCRATCH + w`, present or not, always 0.
const SCRATCH: u32 = 500_000;
/// Pair keys are `PAIRS + 2 * n` and `PAIRS + 2 * n + 1`, with values `x` and `-x`.
const PAIRS: u32 = 1_000_000;
/// Pair numbers per writer: writer `w` owns pairs `w * PAIRS_PER_WRITER ..`.
const PAIRS_PER_WRITER: u32 = 32;
const WRITERS: u32 = 2;
const READERS: usize = 3;

type Map = SnapMap<u32, i64>;
/// A snapshot a reader holds on to, and what it looked like when taken.
type Held = (Snapshot<u32, i64>, Fingerprint);

/// What a reader remembers of a snapshot, to see later that it did not change.
#[derive(Debug, PartialEq)]
struct Fingerprint {
    version: u64,
    len: usize,
    entries: Vec<(u32, i64)>,
}

fn fingerprint<S: std::hash::BuildHasher>(view: &View<u32, i64, S>) -> Fingerprint {
    let mut entries: Vec<(u32, i64)> = view.iter().map(|(k, v)| (*k, *v)).collect();
    entries.sort_unstable();
    Fingerprint { version: view.version(), len: view.len(), entries }
}

/// Every invariant one version must satisfy on its own.
fn check_consistent<S: std::hash::BuildHasher>(view: &View<u32, i64, S>) {
    let mut sum = 0i64;
    let mut count = 0usize;
    let mut accounts = 0u32;
    for (&k, &v) in view.iter() {
        sum += v;
        count += 1;
        if k < ACCOUNTS {
            accounts += 1;
        } else if (SCRATCH..SCRATCH + WRITERS).contains(&k) {
            assert_eq!(v, 0, "scratch key {k} is not 0 in version {}", view.version());
        } else {
            assert!(k >= PAIRS, "unexpected key {k} in version {}", view.version());
            let partner = k ^ 1;
            assert_eq!(
                view.get(&partner),
                Some(&-v),
                "half a pair in version {}: {k} without {partner}",
                view.version()
            );
        }
    }
    assert_eq!(count, view.len(), "iter().count() != len() in version {}", view.version());
    assert_eq!(view.iter().len(), view.len());
    assert_eq!(accounts, ACCOUNTS, "an account is missing in version {}", view.version());
    assert_eq!(sum, TOTAL, "the total is not invariant in version {}", view.version());
}

/// Moves amounts between accounts and toggles its own pairs; returns how many
/// versions it published.
fn writer(map: &Map, id: u32, stop: &AtomicBool) -> u64 {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ u64::from(id + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
    let mut present = vec![false; PAIRS_PER_WRITER as usize];
    let mut scratch = false;
    let mut published = 0u64;
    while !stop.load(Ordering::Relaxed) {
        match rng.below_u32(10) {
            // A batch of several transfers.
            0..=5 => {
                let transfers = 1 + rng.below_u32(4);
                let moves: Vec<(u32, u32, i64)> = (0..transfers)
                    .map(|_| (rng.below_u32(ACCOUNTS), rng.below_u32(ACCOUNTS), i64::from(rng.below_u32(100)) - 50))
                    .collect();
                // Half of the batches write in place (`get_mut`, `entry`).
                let in_place = rng.below_u32(2) == 0;
                map.update(|tx| {
                    for &(from, to, amount) in &moves {
                        if in_place {
                            *tx.get_mut(&from).expect("accounts are never removed") -= amount;
                            let b = tx.entry(to).or_insert_with(|| unreachable!("accounts are never removed"));
                            *b += amount;
                            continue;
                        }
                        let a = *tx.get(&from).expect("accounts are never removed");
                        tx.insert(from, a - amount);
                        // Reads see the batch's own writes (from == to included).
                        let b = *tx.get(&to).expect("accounts are never removed");
                        tx.insert(to, b + amount);
                    }
                    let sum: i64 = tx.iter().map(|(_, v)| *v).sum();
                    assert_eq!(sum, TOTAL, "the batch sees its own writes");
                });
                published += 1;
            }
            // Add or remove one of this writer's pairs, atomically.
            6..=8 => {
                let n = rng.below_u32(PAIRS_PER_WRITER);
                let key = PAIRS + 2 * (id * PAIRS_PER_WRITER + n);
                let was = present[n as usize];
                let x = i64::from(rng.below_u32(1_000)) + 1;
                map.update(|tx| {
                    if was {
                        assert!(tx.remove(&key).is_some());
                        assert!(tx.remove(&(key + 1)).is_some());
                    } else {
                        assert!(tx.insert(key, x).is_none());
                        assert!(tx.insert(key + 1, -x).is_none());
                    }
                });
                present[n as usize] = !was;
                published += 1;
            }
            // A single insert or remove of this writer's zero-valued scratch key.
            _ => {
                let key = SCRATCH + id;
                if scratch {
                    assert_eq!(map.remove(&key), Some(0));
                } else {
                    assert_eq!(map.insert(key, 0), None);
                }
                scratch = !scratch;
                published += 1;
            }
        }
    }
    published
}

/// Takes snapshots and read guards in a loop and checks them; returns the
/// snapshots it still holds at the end, with their fingerprints, and how many
/// distinct versions it saw.
fn reader(map: &Map, id: usize, stop: &AtomicBool) -> (Vec<Held>, usize) {
    let mut rng = Rng(0xA076_1D64_78BD_642F ^ (id as u64 + 1));
    let mut last_version = 0u64;
    let mut held: Vec<Held> = Vec::new();
    let mut seen: HashMap<u64, Fingerprint> = HashMap::new();
    let mut distinct = 0usize;
    let mut previous: Option<Snapshot<u32, i64>> = None;
    while !stop.load(Ordering::Relaxed) {
        let snap = if rng.below_u32(2) == 0 { map.snapshot() } else { map.read().to_snapshot() };
        assert!(snap.version() >= last_version, "version went back from {last_version} to {}", snap.version());
        if snap.version() > last_version {
            distinct += 1;
        }
        last_version = snap.version();
        check_consistent(&snap);

        // Two snapshots of one version have the same contents.
        let fp = fingerprint(&snap);
        match seen.get(&fp.version) {
            Some(earlier) => assert_eq!(earlier, &fp, "two snapshots of version {} differ", fp.version),
            None => {
                if seen.len() > 64 {
                    seen.clear();
                }
                seen.insert(fp.version, fingerprint(&snap));
            }
        }

        // A borrowed read guard: at least as new, and consistent too.
        {
            let guard = map.read();
            assert!(guard.version() >= last_version, "read guard older than an earlier snapshot");
            last_version = guard.version();
            check_consistent(&guard);
        }
        assert!(map.version() >= last_version);

        // The net change between two versions is zero.
        if let Some(prev) = &previous {
            let net: i64 = prev
                .diff(&snap)
                .map(|c| match c {
                    snapview::Change::Added(_, v) => *v,
                    snapview::Change::Removed(_, v) => -*v,
                    snapview::Change::Updated { old, new, .. } => new - old,
                })
                .sum();
            assert_eq!(net, 0, "diff from version {} to {} is not balanced", prev.version(), snap.version());
        }
        previous = Some(snap.clone());

        // Hold some snapshots for a while and check they never change.
        if rng.below_u32(8) == 0 {
            if held.len() >= 8 {
                let (old, old_fp) = held.swap_remove(rng.below_u32(8) as usize);
                assert_eq!(fingerprint(&old), old_fp, "a held snapshot changed");
                check_consistent(&old);
            }
            held.push((snap, fp));
        }
        for (old, old_fp) in &held {
            assert_eq!(old.version(), old_fp.version);
            assert_eq!(old.len(), old_fp.len, "a held snapshot's len changed");
        }
    }
    (held, distinct)
}

fn stress(duration: Duration) {
    let map = Arc::new(Map::new());
    map.update(|tx| tx.extend((0..ACCOUNTS).map(|k| (k, INITIAL))));
    assert_eq!(map.version(), 1);
    let stop = Arc::new(AtomicBool::new(false));

    let writers: Vec<_> = (0..WRITERS)
        .map(|id| {
            let (map, stop) = (Arc::clone(&map), Arc::clone(&stop));
            thread::spawn(move || writer(&map, id, &stop))
        })
        .collect();
    let readers: Vec<_> = (0..READERS)
        .map(|id| {
            let (map, stop) = (Arc::clone(&map), Arc::clone(&stop));
            thread::spawn(move || reader(&map, id, &stop))
        })
        .collect();

    let start = Instant::now();
    while start.elapsed() < duration {
        thread::sleep(Duration::from_millis(20));
        if writers.iter().any(|h| h.is_finished()) || readers.iter().any(|h| h.is_finished()) {
            break; // a thread panicked: stop early, join reports it
        }
    }
    stop.store(true, Ordering::Relaxed);

    let published: u64 = writers.into_iter().map(|h| h.join().expect("writer panicked")).sum();
    let results: Vec<_> = readers.into_iter().map(|h| h.join().expect("reader panicked")).collect();

    // Every write was effective: one version each, plus the initial batch.
    assert_eq!(map.version(), published + 1, "versions published != effective writes");
    assert!(published > 0, "writers made no progress");
    let distinct: usize = results.iter().map(|(_, d)| d).sum();
    eprintln!("stress: {published} versions published, readers saw {distinct} new versions");
    assert!(distinct > READERS, "readers never saw the map change");
    check_consistent(&map.snapshot());

    // Held snapshots came across threads and outlive the map, unchanged.
    drop(map);
    for (held, _) in &results {
        for (snap, fp) in held {
            assert_eq!(&fingerprint(snap), fp, "a held snapshot changed");
            check_consistent(snap);
        }
    }
}

#[test]
fn stress_short() {
    stress(Duration::from_secs(2));
}

#[test]
#[ignore = "long: run with --ignored (SNAPVIEW_STRESS_SECS overrides the 60 s)"]
fn stress_long() {
    let secs = std::env::var("SNAPVIEW_STRESS_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    stress(Duration::from_secs(secs));
}
