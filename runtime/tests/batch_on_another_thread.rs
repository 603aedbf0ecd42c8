//! A batch's `Tx` is `Send`, so its closure may hand it to another thread and
//! write there. The copies those writes make lend from the old version as any
//! copy does (docs/design.md, "Lending copies"), and must be settled at
//! publish all the same: once the old version is gone, exactly what the
//! current version reaches is alive, nothing kept by a lender.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::{Registry, Tag, Tagged as Val, lending_map_of};
use snapview::{SnapMap, Snapshot};

/// Enough keys that the nodes a write copies have 8 or more children.
const KEYS: u64 = 6_000;

fn reachable(views: &[Snapshot<u64, Val>]) -> HashSet<u64> {
    views.iter().flat_map(|s| s.values().map(|v| v.tag.id()).collect::<Vec<_>>()).collect()
}

fn assert_alive_exactly(reg: &Registry, views: &[Snapshot<u64, Val>], when: &str) {
    reg.assert_live_exactly(&reachable(views), when);
}

/// One batch of overwrites (every 7th key) written by a scoped thread.
fn write_elsewhere(map: &SnapMap<u64, Val>, reg: &Arc<Registry>, n: u64) {
    map.update(|tx| {
        std::thread::scope(|s| {
            s.spawn(|| {
                for k in (0..KEYS).step_by(7) {
                    tx.insert(k, Val { n, tag: Tag::new(reg) });
                }
            });
        })
    });
}

fn check(hold_the_old_version: bool) {
    let reg = Registry::new();
    let map: SnapMap<u64, Val> = lending_map_of((0..KEYS).map(|k| (k, Val { n: 0, tag: Tag::new(&reg) })));
    for round in 1..=3 {
        let old = hold_the_old_version.then(|| map.snapshot());
        write_elsewhere(&map, &reg, round);
        let now = map.snapshot();
        assert_eq!(now.len(), KEYS as usize);
        assert!(now.iter().all(|(k, v)| v.n == if k % 7 == 0 { round } else { 0 }), "round {round}");
        let mut views = vec![now];
        views.extend(old);
        assert_alive_exactly(&reg, &views, &format!("round {round}, old version held: {hold_the_old_version}"));
        drop(views);
        assert_eq!(reg.live_count(), KEYS as usize, "round {round}: only the current version is left");
    }
    drop(map);
    assert_eq!(reg.live_count(), 0);
}

#[test]
fn a_batch_written_on_another_thread_frees_the_old_version_it_copied() {
    check(false);
}

#[test]
fn a_batch_written_on_another_thread_while_the_old_version_is_held_frees_it_when_dropped() {
    check(true);
}
