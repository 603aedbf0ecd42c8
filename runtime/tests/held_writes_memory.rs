//! Writes while a reader holds the version each one replaces, in a map of
//! plain data, whose publish leaves the settling of its copies to the next
//! batch (docs/design.md, "Settling later"): the replaced path is freed by
//! that batch, so a long run of them keeps no more memory than one, and a
//! map dropped while a snapshot of its last such write is held leaks
//! nothing once the snapshot goes.

mod common;

use std::sync::atomic::Ordering;

use common::Rng;
use common::live_bytes::{LIVE, LiveBytes};
use snapview::SnapMap;

#[global_allocator]
static ALLOCATOR: LiveBytes = LiveBytes;

const KEYS: u64 = 100_000;

fn live() -> i64 {
    LIVE.load(Ordering::Relaxed)
}

/// Writes `n` keys, each while a snapshot of the version it replaces is held.
fn held_writes(map: &SnapMap<u64, u64>, rng: &mut Rng, n: u64) {
    for i in 0..n {
        let held = map.snapshot();
        map.insert(rng.below(KEYS), i);
        drop(held);
    }
}

/// Named and unsampled: with `instrument`, a name's statistics are made
/// once and kept for the process, and a sampled write may grow them.
fn plain_map() -> SnapMap<u64, u64> {
    SnapMap::builder().name("held_writes_memory").sample_every(0).build()
}

#[test]
fn held_writes_keep_one_replaced_path_and_leak_nothing() {
    // What a first map allocates for good (its name's statistics, this
    // thread's arc-swap record) is not the map's.
    drop(plain_map());
    let before_map = live();
    let mut map = plain_map();
    map.extend((0..KEYS).map(|k| (k, k)));
    let mut rng = Rng(7);
    held_writes(&map, &mut rng, 100);
    let after_warm_up = live();
    held_writes(&map, &mut rng, 5_000);
    let after_run = live();
    // One path's copies (a few nodes of at most ~1 KB each), whatever the
    // run's length; a leak of one path per write would be megabytes.
    assert!(
        after_run - after_warm_up < 64 * 1024,
        "live heap grew by {} B over 5000 held writes",
        after_run - after_warm_up
    );
    assert_eq!(map.len() as u64, KEYS);

    let held = map.snapshot();
    map.insert(KEYS + 1, 0);
    let last = map.snapshot();
    drop(map);
    assert_eq!((held.get(&(KEYS + 1)), last.get(&(KEYS + 1))), (None, Some(&0)));
    drop((held, last));
    assert!(
        live() - before_map < 4 * 1024,
        "{} B still live after the map and its snapshots went",
        live() - before_map
    );
}
