//! Large maps, where the writer keeps private copies of the entry-free index
//! nodes between publishes (docs/design.md, "The recycled root"): every
//! version still equals the model, old snapshots never change, and no value
//! instance outlives the versions that reach it.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::{Registry, Rng, Tag, lending_map};
use snapview::{SnapMap, Snapshot};

/// Enough keys that the first two trie levels are made of children alone.
const KEYS: u64 = 40_000;

fn assert_equals_model(snap: &Snapshot<u64, u64>, model: &HashMap<u64, u64>) {
    assert_eq!(snap.len(), model.len());
    assert_eq!(snap.iter().count(), model.len());
    for (k, v) in snap.iter() {
        assert_eq!(model.get(k), Some(v), "key {k}");
    }
}

#[test]
fn single_writes_small_and_large_batches_match_the_model() {
    let mut rng = Rng(0x1234_5678);
    let map: SnapMap<u64, u64> = (0..KEYS).map(|k| (k, k)).collect();
    let mut model: HashMap<u64, u64> = (0..KEYS).map(|k| (k, k)).collect();
    let mut held: Vec<(Snapshot<u64, u64>, HashMap<u64, u64>)> = Vec::new();
    for step in 0..3_000u64 {
        match rng.below(10) {
            0..=3 => {
                let k = rng.below(2 * KEYS);
                assert_eq!(map.insert(k, step), model.insert(k, step));
            }
            4..=6 => {
                let k = rng.below(2 * KEYS);
                assert_eq!(map.remove(&k), model.remove(&k));
            }
            7 => {
                // Few writes: the writer syncs its spare along their paths.
                let keys: Vec<u64> = (0..rng.below(8)).map(|_| rng.below(2 * KEYS)).collect();
                map.update(|tx| {
                    for &k in &keys {
                        if k % 3 == 0 {
                            tx.remove(&k);
                        } else {
                            tx.insert(k, step);
                        }
                    }
                });
                for &k in &keys {
                    if k % 3 == 0 {
                        model.remove(&k);
                    } else {
                        model.insert(k, step);
                    }
                }
            }
            8 => {
                // Many writes: too many paths to list, the spare is synced by a walk.
                let keys: Vec<u64> = (0..200).map(|_| rng.below(2 * KEYS)).collect();
                map.update(|tx| {
                    for &k in &keys {
                        tx.insert(k, !step);
                    }
                });
                for &k in &keys {
                    model.insert(k, !step);
                }
            }
            _ => {
                if held.len() < 4 {
                    held.push((map.snapshot(), model.clone()));
                } else {
                    held.remove(rng.below(4) as usize);
                }
            }
        }
        for _ in 0..8 {
            let k = rng.below(2 * KEYS);
            assert_eq!(map.snapshot().get(&k), model.get(&k), "step {step}, key {k}");
        }
        if step % 500 == 0 {
            assert_equals_model(&map.snapshot(), &model);
            for (snap, then) in &held {
                assert_equals_model(snap, then);
            }
        }
    }
    assert_equals_model(&map.snapshot(), &model);
    for (snap, then) in &held {
        assert_equals_model(snap, then);
    }
}

#[derive(Clone)]
struct Val(#[allow(dead_code)] Tag);

// SAFETY: numbers and a `Tag`: nothing changes through a shared reference.
unsafe impl snapview::Lendable for Val {}

#[test]
fn no_value_instance_outlives_the_versions_that_reach_it() {
    let reg: Arc<Registry> = Registry::new();
    let mut rng = Rng(99);
    let map: SnapMap<u64, Val> = lending_map();
    map.update(|tx| {
        for k in 0..KEYS {
            tx.insert(k, Val(Tag::new(&reg)));
        }
    });
    for step in 0..2_000 {
        match rng.below(3) {
            0 => drop(map.insert(rng.below(KEYS), Val(Tag::new(&reg)))),
            1 => drop(map.remove(&rng.below(KEYS))),
            _ => map.update(|tx| {
                for _ in 0..rng.below(30) {
                    tx.insert(rng.below(KEYS), Val(Tag::new(&reg)));
                }
            }),
        }
        if step % 250 == 0 {
            // Only the current version exists: one live instance per entry.
            assert_eq!(reg.live_count(), map.len(), "step {step}");
        }
    }
    assert_eq!(reg.live_count(), map.len());
    drop(map);
    assert_eq!(reg.live_count(), 0);
}
