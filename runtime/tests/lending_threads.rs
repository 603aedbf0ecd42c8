//! Entry lending across threads (docs/design.md §3, E1/E2): `String` keys and
//! values that own memory, so a write's copies borrow their source's entries
//! instead of cloning them, while readers on other threads hold old versions
//! and drop them at random. The lender's last reference then goes on a reader
//! thread, racing the writer that settles, rebuilds or drops the copy that
//! borrows from it: exactly the handshake on the lender's `refs` word.
//!
//! Checked: every snapshot's amounts add up to the invariant total and its
//! iteration yields `len()` entries; a held snapshot reads the very same value
//! instances when dropped as when taken (ids, not only amounts); instances a
//! snapshot reads are alive; no instance is dropped twice (a `Tag` panics);
//! and at the end only the current version's values are alive, then none.
//!
//! And the same across maps: clones of one map share its trie, and their
//! writers copy, borrow from and settle the same nodes at once, each under
//! its own lock, while readers clone the maps they read and write the clones
//! (`cloned_maps_short`). Each map keeps the invariant on its own; at the
//! end exactly the values its current versions reach are alive, then none.
//!
//! The writers also restore versions they kept, of their own map or of
//! another (`SnapMap::restore`): old nodes, lenders whose entries later
//! copies borrow, become current and are copied again.
//!
//! The `_short` tests run for about two seconds each; the `_long` ones
//! (ignored: `cargo test --test lending_threads -- --ignored`) for a minute,
//! or for `SNAPVIEW_STRESS_SECS` seconds if set.

mod common;

use std::collections::HashSet;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{Registry, Rng, Tag, lending_map};
use snapview::{SnapMap, Snapshot};

/// Enough accounts that a write's copies hold tens of entries each.
const ACCOUNTS: u64 = 3_000;
const INITIAL: i64 = 1_000;
const TOTAL: i64 = ACCOUNTS as i64 * INITIAL;
/// Scratch keys come and go (rebuilds of borrowing copies); always 0.
const SCRATCH: u64 = 64;
const READERS: usize = 2;
/// Snapshots a reader holds at most.
const HELD: usize = 24;

#[derive(Clone)]
struct Val {
    amount: i64,
    tag: Tag,
}

// SAFETY: numbers and a `Tag`: nothing changes through a shared reference.
unsafe impl snapview::Lendable for Val {}

type Map = SnapMap<String, Val>;

fn account(i: u64) -> String {
    format!("/accounts/{i:05}")
}

fn scratch(i: u64) -> String {
    format!("/scratch/{i:02}")
}

/// The amounts a view holds, by key.
fn amounts(snap: &Snapshot<String, Val>) -> Vec<(&str, i64)> {
    let mut amounts: Vec<_> = snap.iter().map(|(k, v)| (k.as_str(), v.amount)).collect();
    amounts.sort_unstable();
    amounts
}

/// The instances a view reads, in a form that changes if any of them does.
fn fingerprint(snap: &Snapshot<String, Val>) -> u64 {
    let mut sum = 0u64;
    for (k, v) in snap.iter() {
        let mut h = DefaultHasher::new();
        (k, v.amount, v.tag.id()).hash(&mut h);
        sum = sum.wrapping_add(h.finish());
    }
    sum
}

fn check_consistent(snap: &Snapshot<String, Val>, reg: &Registry) {
    let (mut total, mut count) = (0i64, 0usize);
    for (k, v) in snap.iter() {
        total += v.amount;
        count += 1;
        if k.starts_with("/scratch/") {
            assert_eq!(v.amount, 0, "scratch key {k} holds an amount");
        }
    }
    assert_eq!(count, snap.len(), "iteration and len disagree");
    assert_eq!(total, TOTAL, "amounts do not add up in version {}", snap.version());
    // A few instances, looked up by key (a lookup walks other nodes than iteration).
    for i in [0, ACCOUNTS / 2, ACCOUNTS - 1] {
        let v = snap.get(account(i).as_str()).expect("accounts never go");
        assert!(reg.is_live(v.tag.id()), "version {} reads a dropped value", snap.version());
    }
}

/// One publishing step; returns how many versions it published.
fn write_step(map: &Map, reg: &Arc<Registry>, rng: &mut Rng) -> u64 {
    let val = |amount| Val { amount, tag: Tag::new(reg) };
    match rng.below(10) {
        // A batch of transfers: copies of shared nodes borrow their entries.
        0..=4 => {
            let moves = 1 + rng.below(40);
            map.update(|tx| {
                for _ in 0..moves {
                    let (from, to) = (account(rng.below(ACCOUNTS)), account(rng.below(ACCOUNTS)));
                    let amount = rng.below(50) as i64;
                    let a = tx.get(from.as_str()).map(|v| v.amount).expect("accounts never go");
                    tx.insert(from, val(a - amount));
                    let b = tx.get(to.as_str()).map(|v| v.amount).expect("accounts never go");
                    tx.insert(to, val(b + amount));
                }
            });
        }
        // One overwrite, published alone: the path's copies lend and borrow.
        5..=6 => {
            let k = account(rng.below(ACCOUNTS));
            let a = map.snapshot().get(k.as_str()).map(|v| v.amount).expect("accounts never go");
            map.insert(k, val(a));
        }
        // A key added or removed: a rebuild, which owns borrowed entries first.
        7 => {
            map.insert(scratch(rng.below(SCRATCH)), val(0));
        }
        8 => {
            if map.remove(scratch(rng.below(SCRATCH)).as_str()).is_none() {
                return 0;
            }
        }
        // A batch that overwrites, adds and removes.
        _ => {
            map.update(|tx| {
                for _ in 0..8 {
                    let k = scratch(rng.below(SCRATCH));
                    if tx.remove(k.as_str()).is_none() {
                        tx.insert(k, val(0));
                    }
                    let a = account(rng.below(ACCOUNTS));
                    let amount = tx.get(a.as_str()).map(|v| v.amount).expect("accounts never go");
                    tx.insert(a, val(amount));
                }
            });
        }
    }
    1
}

/// Writes `maps[id]`; now and then keeps a version of one of the maps and
/// later restores a kept one: the restored version's nodes, which later
/// copies borrowed from and readers may be the last to hold, become current
/// again, and a version of another map (a clone) is written by two writers.
fn writer(maps: &[Arc<Map>], reg: &Arc<Registry>, id: usize, stop: &AtomicBool) -> u64 {
    let map = &maps[id];
    let mut rng = Rng(0x1e4d_1a6e + id as u64);
    // Versions kept, and whether each is of this writer's own map.
    let mut kept: Vec<(Snapshot<String, Val>, bool)> = Vec::new();
    let mut published = 0;
    while !stop.load(Ordering::Relaxed) {
        match rng.below(24) {
            0 if kept.len() < 4 => {
                let from = rng.below(maps.len() as u64) as usize;
                kept.push((maps[from].snapshot(), from == id));
            }
            1 | 2 if !kept.is_empty() || maps.len() > 1 => {
                let version = map.version();
                // A kept version, or another map's latest at once: one that
                // its writer may still be settling.
                let (restored, own) = match kept.is_empty() || rng.below(2) == 0 {
                    true => {
                        let other = (id + 1) % maps.len();
                        (maps[other].snapshot(), other == id)
                    }
                    false => kept.swap_remove(rng.below(kept.len() as u64) as usize),
                };
                map.restore(&restored);
                let now = map.snapshot();
                if own {
                    // The same instances, not copies: the restore shares them.
                    assert_eq!(fingerprint(&now), fingerprint(&restored), "a restored version holds its entries");
                } else {
                    // Shared too, unless its writer was still settling it
                    // (just published): then copied.
                    assert_eq!(amounts(&now), amounts(&restored), "a restored version holds its entries");
                }
                check_consistent(&now, reg);
                published += map.version() - version;
            }
            _ => published += write_step(map, reg, &mut rng),
        }
    }
    published
}

/// Takes snapshots, checks each, and holds some for a while: the lender's
/// last reference goes here, on a reader thread, whenever a held version is
/// one that a later copy borrowed from. With several maps, it reads them in
/// turn, and now and then clones one and writes the clone, beside the
/// map's own writer.
fn reader(maps: &[Arc<Map>], reg: &Arc<Registry>, id: u64, stop: &AtomicBool) -> usize {
    let mut rng = Rng(0x5eed + id);
    let mut held: Vec<(Snapshot<String, Val>, u64)> = Vec::new();
    let mut checked = 0;
    while !stop.load(Ordering::Relaxed) {
        let map = &maps[checked % maps.len()];
        let snap = map.snapshot();
        check_consistent(&snap, reg);
        checked += 1;
        if maps.len() > 1 && rng.below(16) == 0 {
            let clone = Map::clone(map);
            let cloned_at = clone.version();
            let published: u64 = (0..4).map(|_| write_step(&clone, reg, &mut rng)).sum();
            assert_eq!(clone.version(), cloned_at + published, "a clone numbers its own versions");
            check_consistent(&clone.snapshot(), reg);
            // The map it came from sees none of it (its writers add no such key).
            let mark = format!("/clone/{id}");
            clone.insert(mark.clone(), Val { amount: 0, tag: Tag::new(reg) });
            assert!(clone.snapshot().contains_key(mark.as_str()));
            assert!(!map.snapshot().contains_key(mark.as_str()), "a clone's write showed in the map it came from");
        }
        if held.len() < HELD && rng.below(3) == 0 {
            let fp = fingerprint(&snap);
            held.push((snap, fp));
        }
        if !held.is_empty() && rng.below(2) == 0 {
            let (old, fp) = held.swap_remove(rng.below(held.len() as u64) as usize);
            assert_eq!(fingerprint(&old), fp, "a held snapshot changed (version {})", old.version());
            check_consistent(&old, reg);
        }
    }
    for (old, fp) in &held {
        assert_eq!(fingerprint(old), *fp, "a held snapshot changed (version {})", old.version());
    }
    checked
}

fn run(duration: Duration, maps: usize) {
    let reg = Registry::new();
    let map: Map = lending_map();
    map.update(|tx| {
        tx.extend((0..ACCOUNTS).map(|i| (account(i), Val { amount: INITIAL, tag: Tag::new(&reg) })));
    });
    // Clones share the whole trie: their writers start on the same nodes.
    let clones: Vec<Arc<Map>> = (1..maps).map(|_| Arc::new(map.clone())).collect();
    let maps: Arc<Vec<Arc<Map>>> = Arc::new([Arc::new(map)].into_iter().chain(clones).collect());
    let stop = Arc::new(AtomicBool::new(false));

    let writers: Vec<_> = (0..maps.len())
        .map(|id| {
            let (maps, reg, stop) = (Arc::clone(&maps), Arc::clone(&reg), Arc::clone(&stop));
            thread::spawn(move || writer(&maps, &reg, id, &stop))
        })
        .collect();
    let readers: Vec<_> = (0..READERS as u64)
        .map(|id| {
            let (maps, reg, stop) = (Arc::clone(&maps), Arc::clone(&reg), Arc::clone(&stop));
            thread::spawn(move || reader(&maps, &reg, id, &stop))
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
    let published: Vec<u64> = writers.into_iter().map(|h| h.join().expect("writer panicked")).collect();
    let checked: usize = readers.into_iter().map(|h| h.join().expect("reader panicked")).sum();
    eprintln!("lending_threads: {published:?} versions published, {checked} snapshots checked");
    assert!(published.iter().all(|&p| p > 0) && checked > READERS, "no progress");
    for (map, published) in maps.iter().zip(&published) {
        // Clones start at the version they were cloned at: 1.
        assert_eq!(map.version(), published + 1);
    }

    // Every old version is gone: only the current ones' values are alive
    // (a lender never settled, or lent entries never dropped, would show
    // here). Clones may still share instances: they count once.
    let current: Vec<_> = maps.iter().map(|map| map.snapshot()).collect();
    let mut reachable = HashSet::new();
    for snap in &current {
        check_consistent(snap, &reg);
        reachable.extend(snap.values().map(|v| v.tag.id()));
    }
    reg.assert_live_exactly(&reachable, "after the run");
    drop(current);
    drop(Arc::into_inner(maps).expect("the threads are done"));
    assert_eq!(reg.live_count(), 0, "instances leaked");
}

fn long_run() -> Duration {
    Duration::from_secs(std::env::var("SNAPVIEW_STRESS_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60))
}

#[test]
fn lending_threads_short() {
    run(Duration::from_secs(2), 1);
}

#[test]
#[ignore = "long: run with --ignored (SNAPVIEW_STRESS_SECS overrides the 60 s)"]
fn lending_threads_long() {
    run(long_run(), 1);
}

#[test]
fn cloned_maps_short() {
    run(Duration::from_secs(2), 2);
}

#[test]
#[ignore = "long: run with --ignored (SNAPVIEW_STRESS_SECS overrides the 60 s)"]
fn cloned_maps_long() {
    run(long_run(), 2);
}
