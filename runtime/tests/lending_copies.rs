//! Maps large enough that a write's path copies *lend* their source's
//! children instead of counting each (docs/design.md, "Lending copies"), with
//! snapshots held and dropped at random: after every write, exactly the value
//! instances that some held version reaches are alive (none kept by a lender
//! that was never settled, none freed while still reachable), and every held
//! snapshot still reads as it did.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use common::{Registry, Rng, Tag, Tagged as Val, lending_map};
use snapview::{SnapMap, Snapshot};

/// Enough keys that the nodes a write copies have 8 or more children.
const KEYS: u64 = 6_000;

struct Held {
    snap: Snapshot<u64, Val>,
    then: HashMap<u64, u64>,
}

fn reachable(views: impl IntoIterator<Item = Snapshot<u64, Val>>) -> HashSet<u64> {
    views.into_iter().flat_map(|s| s.values().map(|v| v.tag.id()).collect::<Vec<_>>()).collect()
}

fn assert_reads(snap: &Snapshot<u64, Val>, model: &HashMap<u64, u64>) {
    assert_eq!(snap.len(), model.len());
    for (k, v) in snap.iter() {
        assert_eq!(model.get(k), Some(&v.n), "key {k}");
    }
}

fn run(steps: u64, seed: u64) {
    let reg: Arc<Registry> = Registry::new();
    let mut rng = Rng(seed);
    let map: SnapMap<u64, Val> = lending_map();
    let mut model: HashMap<u64, u64> = HashMap::new();
    map.update(|tx| {
        for k in 0..KEYS {
            tx.insert(k, Val { n: k, tag: Tag::new(&reg) });
            model.insert(k, k);
        }
    });
    let mut held: Vec<Held> = Vec::new();
    for step in 0..steps {
        let n = 1_000_000 + step;
        match rng.below(8) {
            0..=2 => {
                let k = rng.below(2 * KEYS);
                let old = map.insert(k, Val { n, tag: Tag::new(&reg) }).map(|v| v.n);
                assert_eq!(old, model.insert(k, n));
            }
            3 => {
                let k = rng.below(2 * KEYS);
                assert_eq!(map.remove(&k).map(|v| v.n), model.remove(&k));
            }
            4 | 5 => {
                // Small batches are settled along their paths, large ones too
                // (and their spare is synced by a walk).
                let count = if rng.below(2) == 0 { rng.below(8) } else { 50 + rng.below(300) };
                let keys: Vec<u64> = (0..count).map(|_| rng.below(2 * KEYS)).collect();
                map.update(|tx| {
                    for &k in &keys {
                        if k % 5 == 0 {
                            tx.remove(&k);
                        } else {
                            tx.insert(k, Val { n, tag: Tag::new(&reg) });
                        }
                    }
                });
                for &k in &keys {
                    if k % 5 == 0 {
                        model.remove(&k);
                    } else {
                        model.insert(k, n);
                    }
                }
            }
            6 => {
                if held.len() < 3 {
                    held.push(Held { snap: map.snapshot(), then: model.clone() });
                }
            }
            _ => {
                if !held.is_empty() {
                    held.remove(rng.below(held.len() as u64) as usize);
                }
            }
        }
        if step % 16 == 0 {
            let views = std::iter::once(map.snapshot()).chain(held.iter().map(|h| h.snap.clone()));
            reg.assert_live_exactly(&reachable(views), &format!("step {step}"));
            assert_reads(&map.snapshot(), &model);
            for h in &held {
                assert_reads(&h.snap, &h.then);
            }
        }
    }
    drop(held);
    assert_eq!(reg.live_count(), map.len(), "only the current version is left");
    drop(map);
    assert_eq!(reg.live_count(), 0);
}

/// Steps of the default run: `SNAPVIEW_TEST_STEPS` (the valgrind run in CI
/// uses fewer), 1200 by default.
fn steps() -> u64 {
    std::env::var("SNAPVIEW_TEST_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(1_200)
}

#[test]
fn live_instances_are_exactly_those_held_versions_reach() {
    run(steps(), 0xC0FF_EE00);
}

/// The long run: `cargo test -p snapview --test lending_copies -- --ignored`.
#[test]
#[ignore]
fn live_instances_are_exactly_those_held_versions_reach_long() {
    for seed in 1..=20 {
        run(5_000, seed);
    }
}
