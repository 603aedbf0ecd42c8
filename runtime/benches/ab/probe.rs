//! In-process A/B of two builds of snapview: `ab.sh` (one directory up)
//! builds this program against two commits (one copy of the crate renamed
//! `snapview-a`, so that cargo links both) and runs it.
//!
//! Both builds get the same keys, the same fixed-seed hasher, and maps
//! filled the same way; the program alternates them (and hashbrown, for
//! scale) in bursts of 2^20 operations (lookups; iterations by `fold` and
//! by a `for` loop, `next`), so that a burst of noise on a shared
//! host hits all of them alike. It prints, per size and case, the fastest,
//! first-quartile and median burst of each, in ns per operation.
//!
//! Not a cargo target of this package (it names crates only `ab.sh` sets
//! up): `ab.sh` copies it into `target/ab/probe` as that program's `main.rs`.
//!
//! Usage: `[AB_PROBES=N] [AB_FILL=insert] [AB_WRITES=1] [AB_STRINGS=1] [AB_HOLD=µs] snapview-ab [ROUNDS] [SIZE...]`
//! (default 30 rounds; 1000 100000 1000000; 65536 probe keys; maps loaded
//! by one `extend`; reads only: `AB_WRITES=1` adds publishing writes,
//! `publ`, and batches of 1000 overwrites, `bat`; `AB_STRINGS=1` the same
//! two on maps keyed by `String`, `spub` and `sbat`, whose entries need
//! dropping, and `schu`, batches that turn keys over (500 added, the 500
//! the batch before added removed); `AB_HOLD` with `AB_STRINGS=1` adds `shld`: four passes of
//! `sbat` over the same keys while another thread keeps taking snapshots
//! of the map and holding each for that many microseconds, as a scrape or
//! a long iteration would).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

#[macro_use]
mod common;
use common::SplitMix64;

type Hasher = foldhash::fast::FixedState;

const BURST: usize = 1 << 20;

fn hasher() -> Hasher {
    foldhash::fast::FixedState::with_seed(0x5EED)
}

/// Nanoseconds per operation of `burst`, which makes `ops` operations.
fn time(ops: usize, burst: impl FnOnce() -> u64) -> f64 {
    let start = Instant::now();
    black_box(burst());
    start.elapsed().as_nanos() as f64 / ops as f64
}

macro_rules! sums {
    ($name:ident, $map:ty) => {
        #[inline(never)]
        fn $name(map: &$map, passes: usize) -> u64 {
            (0..passes)
                .map(|_| black_box(map).iter().fold(0u64, |s, (_, v)| s.wrapping_add(*v)))
                .fold(0, u64::wrapping_add)
        }
    };
}

lookups!(get_a, snap_a::Snapshot<u64, u64, Hasher>);
lookups!(get_b, snap_b::Snapshot<u64, u64, Hasher>);
lookups!(get_hashbrown, hashbrown::HashMap<u64, u64, Hasher>);
sums!(iter_a, snap_a::Snapshot<u64, u64, Hasher>);
sums!(iter_b, snap_b::Snapshot<u64, u64, Hasher>);
sums!(iter_hashbrown, hashbrown::HashMap<u64, u64, Hasher>);
loops!(next_a, snap_a::Snapshot<u64, u64, Hasher>);
loops!(next_b, snap_b::Snapshot<u64, u64, Hasher>);
loops!(next_hashbrown, hashbrown::HashMap<u64, u64, Hasher>);

/// Whether the snapview maps are grown by one insert per key, their nodes
/// scattered over the heap as a map's written over time are
/// (`AB_FILL=insert`), rather than loaded in one `extend`, which lays the
/// nodes out in iteration order.
fn grown_by_inserts() -> bool {
    match std::env::var("AB_FILL").as_deref() {
        Ok("insert") => true,
        Ok("extend") | Err(_) => false,
        Ok(other) => panic!("AB_FILL: `insert` or `extend`, not {other:?}"),
    }
}

/// Whether each round also times publishing writes (`AB_WRITES=1`), after
/// the reads: they move the written paths' nodes, so reads of later rounds
/// see a map laid out a little differently.
fn with_writes() -> bool {
    std::env::var("AB_WRITES").is_ok_and(|w| w == "1")
}

/// Insert-and-remove pairs per write burst (~10 ms at 1M entries).
const WRITE_BURST: usize = 1 << 12;

macro_rules! publishes {
    ($name:ident, $map:ty) => {
        #[inline(never)]
        fn $name<K: Clone + Eq + std::hash::Hash>(map: &$map, fresh: &[K]) -> u64 {
            let mut sum = 0u64;
            for k in fresh {
                sum = sum.wrapping_add(black_box(map.insert(k.clone(), 1)).unwrap_or(0));
                sum = sum.wrapping_add(black_box(map.remove(k)).unwrap_or(0));
            }
            sum
        }
    };
}

publishes!(publish_a, snap_a::SnapMap<K, u64, Hasher>);
publishes!(publish_b, snap_b::SnapMap<K, u64, Hasher>);

/// Writes per batch (`bat`, `sbat`): the batch size.
const BATCH: usize = 1000;

/// Batches per burst: `keys` cut into batches of [`BATCH`] overwrites, each
/// batch one version (the `batch_publish` benches' step).
macro_rules! batches {
    ($name:ident, $map:ty, $key:ty) => {
        #[inline(never)]
        fn $name(map: &$map, keys: &[$key], value: u64) -> u64 {
            for batch in keys.chunks(BATCH) {
                map.update(|tx| {
                    for k in batch {
                        tx.insert(k.clone(), value);
                    }
                });
            }
            map.version()
        }
    };
}

batches!(batch_a, snap_a::SnapMap<u64, u64, Hasher>, u64);
batches!(batch_b, snap_b::SnapMap<u64, u64, Hasher>, u64);
batches!(sbatch_a, snap_a::SnapMap<String, u64, Hasher>, String);
batches!(sbatch_b, snap_b::SnapMap<String, u64, Hasher>, String);

/// Batches per burst of `schu`.
const CHURN_BATCHES: usize = 4;

/// `schu`: batches of [`BATCH`] writes that turn keys over (the
/// `str_batch_churn` bench's step): each adds the next `BATCH / 2` keys of
/// `fresh` (absent from the map) and removes the ones the batch before
/// added, one of each in turn. `next` numbers the batches across bursts.
macro_rules! churns {
    ($name:ident, $map:ty) => {
        #[inline(never)]
        fn $name(map: &$map, fresh: &[String], next: &mut usize) -> u64 {
            let (half, len) = (BATCH / 2, fresh.len());
            assert!(len >= BATCH, "two batches' keys must not overlap");
            for _ in 0..CHURN_BATCHES {
                let k = *next;
                *next += 1;
                map.update(|tx| {
                    for t in 0..half {
                        tx.insert(fresh[(k * half + t) % len].clone(), 1);
                        tx.remove(&fresh[(k * half + len - half + t) % len]);
                    }
                });
            }
            map.version()
        }
    };
}

churns!(churn_a, snap_a::SnapMap<String, u64, Hasher>);
churns!(churn_b, snap_b::SnapMap<String, u64, Hasher>);

/// Whether each round also times writes to maps keyed by `String`
/// (`AB_STRINGS=1`): URL-like keys of 19-24 bytes, too long to sit inline in
/// a small-string type, so every clone allocates.
fn with_strings() -> bool {
    std::env::var("AB_STRINGS").is_ok_and(|w| w == "1")
}

/// How long the reader of `shld` holds each snapshot (`AB_HOLD`, in µs).
fn hold() -> Option<std::time::Duration> {
    std::env::var("AB_HOLD").ok().map(|h| std::time::Duration::from_micros(h.parse().expect("AB_HOLD: microseconds")))
}

/// Passes of `shld` over its keys per burst.
const HOLD_PASSES: usize = 4;

fn string_key(k: u64) -> String {
    format!("/routes/{:x}", k >> (k % 24))
}

/// How many keys each lookup burst cycles through.
fn probe_count() -> usize {
    std::env::var("AB_PROBES").map_or(1 << 16, |p| {
        let p: usize = p.parse().expect("AB_PROBES: a number");
        assert!(p.is_power_of_two(), "AB_PROBES: a power of two");
        p
    })
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("ab [ROUNDS] [SIZE...]")).collect();
    let rounds = args.first().copied().unwrap_or(30);
    let sizes = if args.len() > 1 { args[1..].to_vec() } else { vec![1_000, 100_000, 1_000_000] };
    for n in sizes {
        let mut rng = SplitMix64(42);
        let keys: Vec<u64> = (0..n).map(|_| rng.next()).collect();
        let entries = || keys.iter().map(|&k| (k, k));
        let a = snap_a::SnapMap::builder().hasher(hasher()).build();
        let b = snap_b::SnapMap::builder().hasher(hasher()).build();
        if grown_by_inserts() {
            for (k, v) in entries() {
                a.insert(k, v);
                b.insert(k, v);
            }
        } else {
            a.update(|tx| tx.extend(entries()));
            b.update(|tx| tx.extend(entries()));
        }
        let mut hb = hashbrown::HashMap::with_capacity_and_hasher(n, hasher());
        hb.extend(entries());
        let (sa, sb) = (a.snapshot(), b.snapshot());
        let strings: Vec<String> =
            if with_strings() { keys.iter().map(|&k| string_key(k)).collect() } else { Vec::new() };
        let (str_a, str_b) =
            (snap_a::SnapMap::builder().hasher(hasher()).build(), snap_b::SnapMap::builder().hasher(hasher()).build());
        str_a.update(|tx| tx.extend(strings.iter().map(|k| (k.clone(), 0))));
        str_b.update(|tx| tx.extend(strings.iter().map(|k| (k.clone(), 0))));

        // Hits: up to 64Ki present keys (or `AB_PROBES`, a power of two:
        // the criterion benches probe every key) in a shuffled order;
        // misses: random keys.
        let probes = probe_count().min(n.next_power_of_two() / 2);
        let mut hits: Vec<u64> = keys.clone();
        rng.shuffle(&mut hits);
        hits.truncate(probes);
        let misses: Vec<u64> = (0..probes).map(|_| rng.next()).collect();
        let passes = (BURST / n).max(1);

        // `schu`'s keys: absent from the maps, and enough for two batches.
        let churned: Vec<String> = if with_strings() {
            let mut churn_rng = SplitMix64(7);
            (0..WRITE_BURST).map(|_| string_key(churn_rng.next())).collect()
        } else {
            Vec::new()
        };
        let (mut churn_next_a, mut churn_next_b) = (0, 0);
        let mut results: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let mut record =
            |case: &str, who: &str, ns: f64| results.entry(format!("{case:4} {who}")).or_default().push(ns);
        for round in 0..rounds {
            // The two builds take turns going first: in a fixed order the
            // second read up to 6% faster with the same code in both (an
            // A/A run, session 12).
            let builds = if round % 2 == 0 { ["a", "b"] } else { ["b", "a"] };
            for (case, probe) in [("hit", &hits), ("miss", &misses)] {
                for build in builds {
                    let get = || if build == "a" { get_a(&sa, probe) } else { get_b(&sb, probe) };
                    record(case, build, time(BURST, get));
                }
                record(case, "hashbrown", time(BURST, || get_hashbrown(&hb, probe)));
            }
            for build in builds {
                let sum = || if build == "a" { iter_a(&sa, passes) } else { iter_b(&sb, passes) };
                record("iter", build, time(passes * n, sum));
            }
            record("iter", "hashbrown", time(passes * n, || iter_hashbrown(&hb, passes)));
            for build in builds {
                let sum = || if build == "a" { next_a(&sa, passes) } else { next_b(&sb, passes) };
                record("next", build, time(passes * n, sum));
            }
            record("next", "hashbrown", time(passes * n, || next_hashbrown(&hb, passes)));
            if with_writes() {
                // The `insert_publish` bench's step: insert an absent key and
                // remove it again, each write its own version.
                let fresh = &misses[..misses.len().min(WRITE_BURST)];
                for build in builds {
                    let pairs = || if build == "a" { publish_a(&a, fresh) } else { publish_b(&b, fresh) };
                    record("publ", build, time(2 * fresh.len(), pairs));
                }
                let overwrites = &hits[..hits.len().min(WRITE_BURST)];
                for build in builds {
                    let run = || {
                        if build == "a" {
                            batch_a(&a, overwrites, round as u64)
                        } else {
                            batch_b(&b, overwrites, round as u64)
                        }
                    };
                    record("bat", build, time(overwrites.len(), run));
                }
            }
            if with_strings() {
                let fresh: Vec<String> =
                    misses[..misses.len().min(WRITE_BURST)].iter().map(|&k| string_key(k)).collect();
                for build in builds {
                    let pairs = || if build == "a" { publish_a(&str_a, &fresh) } else { publish_b(&str_b, &fresh) };
                    record("spub", build, time(2 * fresh.len(), pairs));
                }
                // The same keys as `hits`, in the same order.
                let overwrites: Vec<String> =
                    hits[..hits.len().min(WRITE_BURST)].iter().map(|&k| string_key(k)).collect();
                for build in builds {
                    let run = || {
                        if build == "a" {
                            sbatch_a(&str_a, &overwrites, round as u64)
                        } else {
                            sbatch_b(&str_b, &overwrites, round as u64)
                        }
                    };
                    record("sbat", build, time(overwrites.len(), run));
                }
                for build in builds {
                    let run = || {
                        if build == "a" {
                            churn_a(&str_a, &churned, &mut churn_next_a)
                        } else {
                            churn_b(&str_b, &churned, &mut churn_next_b)
                        }
                    };
                    record("schu", build, time(CHURN_BATCHES * BATCH, run));
                }
                if let Some(hold) = hold() {
                    for build in builds {
                        let stop = std::sync::atomic::AtomicBool::new(false);
                        let run = || {
                            std::thread::scope(|s| {
                                s.spawn(|| {
                                    if build == "a" {
                                        common::hold_snapshots(|| str_a.snapshot(), hold, &stop)
                                    } else {
                                        common::hold_snapshots(|| str_b.snapshot(), hold, &stop)
                                    }
                                });
                                // The same keys again and again, as a
                                // service rewrites its hot keys: each pass
                                // copies the nodes the one before wrote.
                                let mut version = 0;
                                for pass in 0..HOLD_PASSES {
                                    let value = (round * HOLD_PASSES + pass) as u64;
                                    version = if build == "a" {
                                        sbatch_a(&str_a, &overwrites, value)
                                    } else {
                                        sbatch_b(&str_b, &overwrites, value)
                                    };
                                }
                                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                                version
                            })
                        };
                        record("shld", build, time(HOLD_PASSES * overwrites.len(), run));
                    }
                }
            }
        }
        for (name, mut ns) in results {
            ns.sort_by(f64::total_cmp);
            let at = |q: usize| ns[(ns.len() - 1) * q / 4];
            println!("{n:>8} {name:14} min {:7.2}  q1 {:7.2}  median {:7.2} ns", ns[0], at(1), at(2));
        }
    }
}
