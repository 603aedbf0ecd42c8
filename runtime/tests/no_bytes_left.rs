//! Once a map and all its snapshots are gone, every byte they allocated is
//! back: the live heap returns exactly to where it was, whichever way the
//! map was written (publishing writes, batches, writes under a held
//! snapshot, snapshots dropped after the map) and whatever its size. A
//! writer keeps one freed node block for its next write (docs/design.md,
//! §5): it is the map's, and goes with it.

mod common;

use common::Rng;
use common::live_bytes::{ThreadLiveBytes, thread_live};
use snapview::SnapMap;

/// Every map here is written, read and dropped on the test's thread, so the
/// bytes that thread holds are the maps' (and nothing another thread does
/// meanwhile).
#[global_allocator]
static ALLOCATOR: ThreadLiveBytes = ThreadLiveBytes;

/// Named and unsampled: with `instrument`, a name's statistics are made
/// once and kept for the process, and a sampled write may grow them.
fn map<K: std::hash::Hash + Eq + Clone, V: Clone>() -> SnapMap<K, V> {
    SnapMap::builder().name("no_bytes_left").sample_every(0).build()
}

/// Publishing writes, batches and writes under held snapshots on a map of
/// `keys` keys; returns the map and the snapshots it leaves held.
fn written(keys: u64, rng: &mut Rng) -> (SnapMap<u64, u64>, Vec<snapview::Snapshot<u64, u64>>) {
    let mut map = map();
    map.extend((0..keys).map(|k| (k, k)));
    for i in 0..200 {
        map.insert(rng.below(2 * keys), i);
        map.remove(&rng.below(2 * keys));
    }
    for round in 0..20 {
        map.update(|tx| {
            for _ in 0..100 {
                tx.insert(rng.below(2 * keys), round);
            }
        });
    }
    for i in 0..200 {
        let held = map.snapshot();
        map.insert(rng.below(2 * keys), i);
        drop(held);
    }
    let kept = vec![map.snapshot()];
    map.insert(keys, 0);
    // A batch given up frees its copies (the root's, ~1 KB) inside the
    // write: the map's kept block, which must go with the map.
    let given_up: Result<(), ()> = map.try_update(|tx| {
        tx.insert(keys + 1, 0);
        Err(())
    });
    assert!(given_up.is_err());
    (map, kept)
}

#[test]
fn a_map_and_its_snapshots_leave_no_byte_allocated() {
    // What a first map allocates for good (its name's statistics, this
    // thread's arc-swap record) is not the map's. A small one: its nodes
    // are all small.
    drop(written(8, &mut Rng(1)));
    let mut rng = Rng(7);
    // 1K: a root of 64 children, a block of ~1 KB; 40K: index nodes of 64
    // children under the root, and private copies of them.
    for keys in [1_000, 40_000] {
        let before = thread_live();
        let (map, kept) = written(keys, &mut rng);
        drop(map);
        assert!(kept.iter().all(|snap| snap.len() as u64 >= keys - 400));
        drop(kept);
        assert_eq!(thread_live() - before, 0, "bytes still live after a map of {keys} keys and its snapshots went");

        // The other order: the map's last snapshot outlives it.
        let before = thread_live();
        let (map, kept) = written(keys, &mut rng);
        let last = map.snapshot();
        drop(map);
        drop(kept);
        assert_eq!(last.get(&keys), Some(&0));
        drop(last);
        assert_eq!(thread_live() - before, 0, "bytes still live after the last snapshot of a map of {keys} keys went");
    }

    // Entries that drop (`String`), whose copies settle at each publish.
    let before = thread_live();
    let strings = map::<String, String>();
    for i in 0..2_000 {
        strings.insert(format!("/route/{i}"), format!("backend-{}", i % 7));
    }
    for i in 0..300 {
        let held = strings.snapshot();
        strings.insert(format!("/route/{}", rng.below(4_000)), format!("{i}"));
        drop(held);
    }
    let last = strings.snapshot();
    drop(strings);
    drop(last);
    assert_eq!(thread_live() - before, 0, "bytes still live after a map of strings went");
}
