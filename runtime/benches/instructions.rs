//! Instructions per lookup, counted rather than timed: `instructions.py`
//! (next to this file) runs this program under valgrind's callgrind, counting
//! only inside the `lookups_*` functions, and divides the count by the number
//! of lookups.
//!
//! On a machine whose timings move by 2x from one minute to the next, a count
//! is the one lookup figure that repeats exactly. It also explains the
//! throughput benchmarks (`peers`, `get_hit`/`get_miss`): in a large map, the
//! CPU overlaps independent lookups only as far as its reorder window holds
//! their instructions, so a lookup's instruction count bounds how many of
//! them are in flight (docs/benchmarks.md, "Instructions per lookup").
//!
//! One process measures one map, size and case, from the environment:
//! `SNAPVIEW_PEER` (`snapview`, `hashbrown` or `imbl`), `SNAPVIEW_BENCH_SIZES`
//! (one size, default 1000000) and `SNAPVIEW_CASE` (`hit` or `miss`). Keys, hasher and maps are those of the
//! `peers` benchmark: random u64 keys from a fixed-seed splitmix64, one
//! `foldhash::fast::RandomState` shared by every map, each map filled by its
//! bulk path.

use std::hint::black_box;

use foldhash::fast::RandomState;

mod common;
use common::SplitMix64;

/// Lookups per map: enough to make the set-up's share of a function's count
/// vanish, few enough for valgrind.
const LOOKUPS: usize = 1 << 20;

/// How many of the `LOOKUPS` probes `get` found.
#[inline(never)]
fn lookups_snapview(map: &snapview::Snapshot<u64, u64, RandomState>, probe: &[u64]) -> usize {
    (0..LOOKUPS).filter(|&i| map.get(black_box(&probe[i % probe.len()])).is_some()).count()
}

#[inline(never)]
fn lookups_hashbrown(map: &hashbrown::HashMap<u64, u64, RandomState>, probe: &[u64]) -> usize {
    (0..LOOKUPS).filter(|&i| map.get(black_box(&probe[i % probe.len()])).is_some()).count()
}

type ImblMap = imbl::GenericHashMap<u64, u64, RandomState, imbl::shared_ptr::DefaultSharedPtr>;

#[inline(never)]
fn lookups_imbl(map: &ImblMap, probe: &[u64]) -> usize {
    (0..LOOKUPS).filter(|&i| map.get(black_box(&probe[i % probe.len()])).is_some()).count()
}

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
        other => panic!("SNAPVIEW_CASE: `hit` or `miss`, not `{other}`"),
    };
    let hasher = RandomState::default();
    let entries = keys.iter().map(|&k| (k, k));
    let found = match peer.as_str() {
        "snapview" => {
            let map = snapview::SnapMap::builder().hasher(hasher).build();
            map.update(|tx| tx.extend(entries));
            lookups_snapview(&map.snapshot(), &probe)
        }
        "hashbrown" => {
            let mut map = hashbrown::HashMap::with_capacity_and_hasher(n, hasher);
            map.extend(entries);
            lookups_hashbrown(&map, &probe)
        }
        "imbl" => {
            let mut map = ImblMap::with_hasher(hasher);
            for (k, v) in entries {
                map.insert(k, v);
            }
            lookups_imbl(&map, &probe)
        }
        other => panic!("SNAPVIEW_PEER: `snapview`, `hashbrown` or `imbl`, not `{other}`"),
    };
    let expected = if case == "hit" { LOOKUPS } else { 0 };
    assert_eq!(found, expected, "{peer} found {found} of {LOOKUPS} {case}s");
    println!("{peer} {n} {case}: {LOOKUPS} lookups");
}
