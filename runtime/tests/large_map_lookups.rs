//! Look-ups in maps large enough (128K entries and more) for a lookup to
//! prefetch and to stop at the parent of a sparse child whose slot for the
//! key is empty (its occupancy, kept beside the pointer): after loads, single
//! writes, batches that insert, replace and remove, and with old snapshots
//! held, every key present is found with its value and no absent key is.

mod common;

use std::collections::HashMap;

use common::Rng;
use snapview::{SnapMap, Snapshot};

/// Above `GET_PREFETCH_MIN_LEN` (128K), so lookups use the occupancy.
const LEN: u64 = 160_000;

fn check(snapshot: &Snapshot<u64, u64>, model: &HashMap<u64, u64>, rng: &mut Rng) {
    assert_eq!(snapshot.len(), model.len());
    for (k, v) in model {
        assert_eq!(snapshot.get(k), Some(v), "key {k} present");
    }
    for _ in 0..50_000 {
        let k = rng.next();
        assert_eq!(snapshot.get(&k), model.get(&k), "key {k}");
    }
}

#[test]
fn every_present_key_is_found_and_no_absent_one_after_writes_of_every_kind() {
    let mut rng = Rng(0x5eed_0cc0);
    let mut model: HashMap<u64, u64> = (0..LEN).map(|i| (i * 7, i)).collect();
    let map: SnapMap<u64, u64> = model.iter().map(|(k, v)| (*k, *v)).collect();
    check(&map.snapshot(), &model, &mut rng);

    let mut held = Vec::new();
    for round in 0..40u64 {
        // Keys both old (multiples of 7) and new, so writes replace, add and remove.
        let key = |rng: &mut Rng| if rng.below(2) == 0 { rng.below(LEN) * 7 } else { rng.below(4 * LEN) };
        for _ in 0..20 {
            let k = key(&mut rng);
            assert_eq!(map.insert(k, round), model.insert(k, round));
            let k = key(&mut rng);
            assert_eq!(map.remove(&k), model.remove(&k));
        }
        map.update(|tx| {
            for _ in 0..300 {
                let k = key(&mut rng);
                if rng.below(3) == 0 {
                    assert_eq!(tx.remove(&k), model.remove(&k));
                } else {
                    assert_eq!(tx.insert(k, round + 1000), model.insert(k, round + 1000));
                }
                let probe = key(&mut rng);
                assert_eq!(tx.get(&probe), model.get(&probe), "a batch sees its own writes");
            }
        });
        if round % 8 == 0 {
            held.push((map.snapshot(), model.clone()));
        }
    }
    check(&map.snapshot(), &model, &mut rng);
    for (snapshot, then) in &held {
        check(snapshot, then, &mut rng);
    }
}
