//! snapview against its peers with `String` keys: a routing table.
//!
//! `peers.rs` measures `u64 -> u64`, the figures. The maps this crate
//! is for (routes, config, labels) are mostly keyed by strings, where a lookup
//! hashes and compares bytes behind a pointer and a copy-on-write write clones
//! every key of the nodes it copies. This file measures that, with the same
//! method as `peers.rs`: one `foldhash::fast::RandomState` instance for every
//! map, keys from a fixed-seed generator, each map built once per size.
//!
//! Keys are URL paths of 2 to 4 segments (`/api/orders/3f9a`, 5-37 bytes,
//! 19 on average: about a quarter over the 23 bytes a small-string type would
//! keep inline, so such a type would spare most copies the allocation that a
//! `String` key costs every map here), values `u64`; lookups take a `&str`,
//! as a router does with a request's path.
//!
//! Ids are `CASE/SIZE/PEER`, e.g. `str_get_hit/100000/snapview`. Sizes:
//! 100_000, or the comma list in `SNAPVIEW_BENCH_SIZES`.
//!
//! Cases (per size), as in `peers.rs`:
//! - `str_get_hit`, `str_get_miss`: one lookup by `&str`, keys walked in a
//!   pre-shuffled order through a handle held across iterations (throughput).
//! - `str_iter`: a full iteration summing the values (`fold`); throughput `n`
//!   elements.
//! - `str_insert_publish`: insert an absent key (a clone of a prepared
//!   `String`, made inside the timed loop for every map alike) and remove it
//!   again, each write published on its own; throughput 2 elements.
//! - `str_batch_publish`: 1000 overwrites of present keys in one version (the
//!   key cloned for `insert`, for every map alike); throughput 1000 elements.
//! - `str_batch_churn`: 1000 writes in one version that turn keys over: an
//!   absent key added and one that the batch before added removed, 500
//!   times; throughput 1000 elements.
//! - `str_batch_held`: the same batches while another thread keeps taking
//!   snapshots (`snapshot()`, `ArcSwap::load_full`) and holding each for
//!   50 µs, as a metrics scrape or a config dump does; the peers that have
//!   no snapshot (hashbrown, dashmap, papaya) are left out.
//! - `str_batch_beside`: the `str_batch_publish` batches while another thread
//!   writes the same kind of batches into a second map of the same kind (its
//!   own entries, built apart): what one map's writer costs another's when a
//!   service writes several maps from several threads; the persistent peers
//!   only.
//! - `str_batch_route`: 1000 overwrites in one version, as `str_batch_publish`,
//!   of a map whose values are a type of the user's own (`Route`, an
//!   upstream `String` and a weight): snapview as built by default, whose
//!   copies clone such values (and their keys), and built with
//!   `lend_entries` (`Route` is `Lendable`), whose copies lend them; imbl
//!   behind an `ArcSwap` for reference. Each write makes a new `Route` (its
//!   upstream cloned), for every map alike.
//! - `str_batch_stats`: the same with a `Copy` value (`Stats`, two counters):
//!   snapview by default, whose copies clone the keys of the nodes they copy,
//!   and built with `lend_copy_values`, whose copies lend them (no `unsafe
//!   impl` needed); imbl behind an `ArcSwap`.
//! - `str_reload`: a hot reload of the whole table, alternating between two
//!   tables that differ in 10 keys (5 values changed, 3 keys added, 2
//!   removed), each handed over as a freshly read `Vec<(String, u64)>` (its
//!   clone is in the timed loop, for every map alike): snapview's
//!   `Tx::assign` (writes the 10 differences), snapview's `clear` + `extend`
//!   (rebuilds), and rebuilding an `imbl::HashMap` or a `hashbrown::HashMap`
//!   behind an `ArcSwap`. Per reload.
//! - `str_rollback`: a rollback to a held version, alternating between the
//!   two tables' versions, both held throughout: snapview's
//!   `SnapMap::restore` (O(1): the held trie, published again), snapview's
//!   `Tx::assign` of the held version's entries (cloned in the timed loop:
//!   the rollback without `restore`), and an `ArcSwap` store of the held
//!   `Arc<imbl::HashMap>` (the floor: a pointer swap). Per rollback.

use std::hint::black_box;
use std::sync::Arc;

use arc_swap::ArcSwap;
use criterion::{Criterion, SamplingMode, Throughput};
use snapview::{SnapMap, SnapMapBuilder};

mod common;
use common::{SplitMix64, bench_sizes};
#[path = "common/criterion.rs"]
mod setup;
use setup::{config, group};

type H = foldhash::fast::RandomState;
type ImblMap = imbl::GenericHashMap<String, u64, H, imbl::shared_ptr::DefaultSharedPtr>;
type RpdsMap = rpds::HashTrieMapSync<String, u64, H>;
type ImblArcMap = imbl::GenericHashMap<Arc<str>, u64, H, imbl::shared_ptr::DefaultSharedPtr>;

const DEFAULT_SIZES: &[usize] = &[100_000];
const BATCH: usize = 1_000;
const WORDS: &[&str] =
    &["api", "v1", "v2", "users", "orders", "static", "billing", "search", "auth", "metrics", "admin", "assets"];

/// A random path: 1 to 3 words, then a hex id.
fn path(rng: &mut SplitMix64) -> String {
    let words = 1 + rng.below(3);
    let mut p = String::new();
    for _ in 0..words {
        p.push('/');
        p.push_str(WORDS[rng.below(WORDS.len())]);
    }
    let id = rng.next() >> (4 * rng.below(12) as u32 + 16);
    p.push_str(&format!("/{id:x}"));
    p
}

fn value_of(key: &str) -> u64 {
    key.len() as u64 * 31 + key.as_bytes()[key.len() - 1] as u64
}

struct Fixture {
    n: usize,
    /// The one hasher instance every map was built with.
    hasher: H,
    keys: Vec<String>,
    /// 2^k present keys, shuffled.
    hits: Vec<String>,
    /// 2^k keys absent from the maps.
    misses: Vec<String>,
    /// `hits` and `misses` as `Arc<str>`, for the maps keyed by it.
    arc_hits: Vec<Arc<str>>,
    arc_misses: Vec<Arc<str>>,
    snapview: SnapMap<String, u64, H>,
    /// The same entries keyed by `Arc<str>`: a copy-on-write copy clones a
    /// key by a count increment instead of an allocation and a `memcpy`.
    snapview_arc: SnapMap<Arc<str>, u64, H>,
    imbl_arc: ImblArcMap,
    hashbrown: hashbrown::HashMap<String, u64, H>,
    imbl: ImblMap,
    rpds: RpdsMap,
    dashmap: dashmap::DashMap<String, u64, H>,
    papaya: papaya::HashMap<String, u64, H>,
}

impl Fixture {
    fn new(n: usize) -> Self {
        let mut rng = SplitMix64(0x57_0000 ^ n as u64);
        let mut seen = hashbrown::HashSet::with_capacity(2 * n);
        let mut fresh = |count: usize, rng: &mut SplitMix64| {
            let mut out = Vec::with_capacity(count);
            while out.len() < count {
                let p = path(rng);
                if seen.insert(p.clone()) {
                    out.push(p);
                }
            }
            out
        };
        let keys = fresh(n, &mut rng);
        let m = n.next_power_of_two();
        let misses = fresh(m, &mut rng);
        let mut hits: Vec<String> = (0..m).map(|i| keys[i % n].clone()).collect();
        rng.shuffle(&mut hits);

        let hasher = H::default();
        let entries = || keys.iter().map(|k| (k.clone(), value_of(k)));
        let snapview = SnapMap::builder().hasher(hasher.clone()).build();
        snapview.update(|tx| tx.extend(entries()));
        let mut hb = hashbrown::HashMap::with_hasher(hasher.clone());
        hb.extend(entries());
        // Each map in a pass of its own, as the two above: built in one loop,
        // each map's key copies would lie among the other maps' allocations,
        // spread over five times the addresses a lookup's key bytes span.
        let mut imbl = ImblMap::with_hasher(hasher.clone());
        for (k, v) in entries() {
            imbl.insert(k, v);
        }
        let mut rpds = RpdsMap::new_with_hasher_and_ptr_kind(hasher.clone());
        for (k, v) in entries() {
            rpds.insert_mut(k, v);
        }
        let dashmap = dashmap::DashMap::with_hasher(hasher.clone());
        for (k, v) in entries() {
            dashmap.insert(k, v);
        }
        let papaya = papaya::HashMap::builder().hasher(hasher.clone()).build();
        {
            let p = papaya.pin();
            for (k, v) in entries() {
                p.insert(k, v);
            }
        }
        // One `Arc<str>` per key, shared by both maps and the probe arrays,
        // as a service would intern them.
        let interned: hashbrown::HashMap<&str, Arc<str>> =
            keys.iter().chain(&misses).map(|k| (k.as_str(), Arc::from(k.as_str()))).collect();
        let arc = |list: &[String]| list.iter().map(|k| interned[k.as_str()].clone()).collect::<Vec<_>>();
        let (arc_hits, arc_misses) = (arc(&hits), arc(&misses));
        let arc_entries = || keys.iter().map(|k| (interned[k.as_str()].clone(), value_of(k)));
        let snapview_arc = SnapMap::builder().hasher(hasher.clone()).build();
        snapview_arc.update(|tx| tx.extend(arc_entries()));
        let mut imbl_arc = ImblArcMap::with_hasher(hasher.clone());
        for (k, v) in arc_entries() {
            imbl_arc.insert(k, v);
        }
        drop(interned);
        Self {
            n,
            hasher,
            keys,
            hits,
            misses,
            arc_hits,
            arc_misses,
            snapview,
            snapview_arc,
            imbl_arc,
            hashbrown: hb,
            imbl,
            rpds,
            dashmap,
            papaya,
        }
    }
}

/// Times `get(probe[i])` for `i` walking `probe` (2^k keys) in order.
fn lookups(b: &mut criterion::Bencher<'_>, probe: &[String], get: impl Fn(&str) -> Option<u64>) {
    let mask = probe.len() - 1;
    let mut i = 0;
    b.iter(|| {
        i = (i + 1) & mask;
        black_box(get(probe[i].as_str()))
    })
}

fn bench_get(c: &mut Criterion, fx: &Fixture, case: &str, probe: &[String]) {
    assert!(probe.len().is_power_of_two());
    let mut g = group(c, case, fx.n);
    let snap = fx.snapview.snapshot();
    g.bench_function("snapview", |b| lookups(b, probe, |k| snap.get(k).copied()));
    drop(snap);
    let snap = fx.snapview_arc.snapshot();
    g.bench_function("snapview<Arc<str>>", |b| lookups(b, probe, |k| snap.get(k).copied()));
    drop(snap);
    g.bench_function("hashbrown", |b| lookups(b, probe, |k| fx.hashbrown.get(k).copied()));
    g.bench_function("imbl", |b| lookups(b, probe, |k| fx.imbl.get(k).copied()));
    g.bench_function("rpds", |b| lookups(b, probe, |k| fx.rpds.get(k).copied()));
    g.bench_function("dashmap", |b| lookups(b, probe, |k| fx.dashmap.get(k).map(|r| *r)));
    let pinned = fx.papaya.pin();
    g.bench_function("papaya", |b| lookups(b, probe, |k| pinned.get(k).copied()));
    drop(pinned);
    g.finish();
}

fn bench_iter(c: &mut Criterion, fx: &Fixture) {
    let expected = fx.keys.iter().fold(0u64, |s, k| s.wrapping_add(value_of(k)));
    let mut g = group(c, "str_iter", fx.n);
    g.throughput(Throughput::Elements(fx.n as u64));
    g.sampling_mode(SamplingMode::Flat);
    macro_rules! sum {
        ($name:literal, $iter:expr) => {
            let sum = || $iter.fold(0u64, |s, (_, v)| s.wrapping_add(*v));
            assert_eq!(sum(), expected, $name);
            g.bench_function($name, |b| b.iter(|| black_box(sum())));
        };
    }
    let snap = fx.snapview.snapshot();
    sum!("snapview", snap.iter());
    sum!("hashbrown", fx.hashbrown.iter());
    sum!("imbl", fx.imbl.iter());
    sum!("rpds", fx.rpds.iter());
    g.finish();
}

/// Insert an absent key, publish; remove it, publish. Size stays `n`.
fn bench_insert_publish(c: &mut Criterion, fx: &mut Fixture) {
    let fresh = &fx.misses;
    let mut g = group(c, "str_insert_publish", fx.n);
    g.throughput(Throughput::Elements(2));
    // Runs `pair(key)` for each fresh key in turn.
    fn each_fresh<T>(b: &mut criterion::Bencher<'_>, fresh: &[T], mut pair: impl FnMut(&T)) {
        let mask = fresh.len() - 1;
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & mask;
            pair(&fresh[i])
        })
    }

    let map = &fx.snapview;
    g.bench_function("snapview", |b| {
        each_fresh(b, fresh, |k| {
            black_box(map.insert(k.clone(), 1));
            black_box(map.remove(k.as_str()));
        })
    });
    assert_eq!(map.len(), fx.n);

    let map = &fx.snapview_arc;
    g.bench_function("snapview<Arc<str>>", |b| {
        each_fresh(b, &fx.arc_misses, |k| {
            black_box(map.insert(k.clone(), 1));
            black_box(map.remove(&**k));
        })
    });
    assert_eq!(map.len(), fx.n);

    let cell = ArcSwap::from_pointee(fx.imbl_arc.clone());
    g.bench_function("imbl<Arc<str>>+ArcSwap", |b| {
        each_fresh(b, &fx.arc_misses, |k| {
            let mut m = ImblArcMap::clone(&cell.load());
            m.insert(k.clone(), 1);
            cell.store(Arc::new(m));
            let mut m = ImblArcMap::clone(&cell.load());
            m.remove(&**k);
            cell.store(Arc::new(m));
        })
    });
    assert_eq!(cell.load().len(), fx.n);
    drop(cell);

    let cell = ArcSwap::from_pointee(fx.imbl.clone());
    g.bench_function("imbl+ArcSwap", |b| {
        each_fresh(b, fresh, |k| {
            let mut m = ImblMap::clone(&cell.load());
            m.insert(k.clone(), 1);
            cell.store(Arc::new(m));
            let mut m = ImblMap::clone(&cell.load());
            m.remove(k.as_str());
            cell.store(Arc::new(m));
        })
    });
    assert_eq!(cell.load().len(), fx.n);
    drop(cell);

    let cell = ArcSwap::from_pointee(fx.rpds.clone());
    g.bench_function("rpds+ArcSwap", |b| {
        each_fresh(b, fresh, |k| {
            let m = cell.load().insert(k.clone(), 1);
            cell.store(Arc::new(m));
            let m = cell.load().remove(k.as_str());
            cell.store(Arc::new(m));
        })
    });
    assert_eq!(cell.load().size(), fx.n);
    drop(cell);

    let dm = &fx.dashmap;
    g.bench_function("dashmap", |b| {
        each_fresh(b, fresh, |k| {
            black_box(dm.insert(k.clone(), 1));
            black_box(dm.remove(k.as_str()));
        })
    });
    assert_eq!(dm.len(), fx.n);

    let pinned = fx.papaya.pin();
    g.bench_function("papaya", |b| {
        each_fresh(b, fresh, |k| {
            black_box(pinned.insert(k.clone(), 1));
            black_box(pinned.remove(k.as_str()));
        })
    });
    assert_eq!(pinned.len(), fx.n);
    drop(pinned);

    let hb = &mut fx.hashbrown;
    g.bench_function("hashbrown", |b| {
        each_fresh(b, fresh, |k| {
            black_box(hb.insert(k.clone(), 1));
            black_box(hb.remove(k.as_str()));
        })
    });
    assert_eq!(hb.len(), fx.n);
    g.finish();
}

/// Runs `batch(base, value)` for the next 1000 keys (`hits[base..]`,
/// wrapping) and a new value each time.
fn each_batch(b: &mut criterion::Bencher<'_>, mut batch: impl FnMut(usize, u64)) {
    let (mut base, mut round) = (0usize, 0u64);
    b.iter(|| {
        base = base.wrapping_add(BATCH);
        round += 1;
        batch(base, round)
    })
}

/// One batch into snapview: each key cloned and inserted with `v`, one version.
fn snapview_batch<'k, K: Clone + Eq + std::hash::Hash + 'k>(
    map: &SnapMap<K, u64, H>,
    keys: impl Iterator<Item = &'k K>,
    v: u64,
) {
    map.update(|tx| {
        for k in keys {
            tx.insert(k.clone(), v);
        }
    })
}

/// One batch into an `imbl` map behind an `ArcSwap`: clone, insert, store.
fn imbl_batch<'k, K: Clone + Eq + std::hash::Hash + 'k>(
    cell: &ArcSwap<imbl::GenericHashMap<K, u64, H, imbl::shared_ptr::DefaultSharedPtr>>,
    keys: impl Iterator<Item = &'k K>,
    v: u64,
) {
    let mut m = imbl::GenericHashMap::clone(&cell.load());
    for k in keys {
        m.insert(k.clone(), v);
    }
    cell.store(Arc::new(m));
}

/// One batch into an `rpds` map behind an `ArcSwap`: clone, insert, store.
fn rpds_batch<'k>(cell: &ArcSwap<RpdsMap>, keys: impl Iterator<Item = &'k String>, v: u64) {
    let mut m = RpdsMap::clone(&cell.load());
    for k in keys {
        m.insert_mut(k.clone(), v);
    }
    cell.store(Arc::new(m));
}

/// 1000 overwrites of present keys with new values, published as one version.
fn bench_batch_publish(c: &mut Criterion, fx: &mut Fixture) {
    let hits = &fx.hits;
    let mask = hits.len() - 1;
    let mut g = group(c, "str_batch_publish", fx.n);
    g.throughput(Throughput::Elements(BATCH as u64));
    let keys = |base: usize| (0..BATCH).map(move |t| &hits[(base + t) & mask]);
    let arc_hits = &fx.arc_hits;
    let arc_keys = |base: usize| (0..BATCH).map(move |t| &arc_hits[(base + t) & mask]);

    let map = &fx.snapview;
    g.bench_function("snapview", |b| each_batch(b, |base, v| snapview_batch(map, keys(base), v)));
    assert_eq!(map.len(), fx.n);

    let map = &fx.snapview_arc;
    g.bench_function("snapview<Arc<str>>", |b| each_batch(b, |base, v| snapview_batch(map, arc_keys(base), v)));
    assert_eq!(map.len(), fx.n);

    let cell = ArcSwap::from_pointee(fx.imbl_arc.clone());
    g.bench_function("imbl<Arc<str>>+ArcSwap", |b| each_batch(b, |base, v| imbl_batch(&cell, arc_keys(base), v)));
    assert_eq!(cell.load().len(), fx.n);
    drop(cell);

    let cell = ArcSwap::from_pointee(fx.imbl.clone());
    g.bench_function("imbl+ArcSwap", |b| each_batch(b, |base, v| imbl_batch(&cell, keys(base), v)));
    assert_eq!(cell.load().len(), fx.n);
    drop(cell);

    let cell = ArcSwap::from_pointee(fx.rpds.clone());
    g.bench_function("rpds+ArcSwap", |b| each_batch(b, |base, v| rpds_batch(&cell, keys(base), v)));
    assert_eq!(cell.load().size(), fx.n);
    drop(cell);

    let hb = &mut fx.hashbrown;
    g.bench_function("hashbrown", |b| {
        each_batch(b, |base, v| {
            for k in keys(base) {
                hb.insert(k.clone(), v);
            }
        })
    });
    assert_eq!(hb.len(), fx.n);
    g.finish();
}

/// A map value of the user's own type: what a gateway keeps per path.
#[derive(Clone, Debug)]
struct Route {
    upstream: String,
    weight: u64,
}

// SAFETY: a `String` and a number: nothing changes through `&Route`.
unsafe impl snapview::Lendable for Route {}

/// A `Copy` map value: what a service counts per path.
#[derive(Clone, Copy, Debug)]
struct Stats {
    ok: u64,
    failed: u64,
}

/// 1000 overwrites of `Route` values, published as one version: what
/// lending buys a type of the user's own that says it may be lent.
fn bench_batch_route(c: &mut Criterion, fx: &Fixture) {
    let route = |k: &String, weight: u64| Route { upstream: k.clone(), weight };
    let lending = ("snapview, lend_entries", SnapMapBuilder::lend_entries as fn(_) -> _);
    bench_batch_of_values(c, fx, "str_batch_route", route, lending, |k, r| r.upstream == *k && r.weight > 0);
}

/// 1000 overwrites of `Stats` values, published as one version: what
/// `lend_copy_values` buys a `Copy` value (its map's keys lent, not cloned).
fn bench_batch_stats(c: &mut Criterion, fx: &Fixture) {
    let stats = |_: &String, ok: u64| Stats { ok, failed: ok / 7 };
    let lending = ("snapview, lend_copy_values", SnapMapBuilder::lend_copy_values as fn(_) -> _);
    bench_batch_of_values(c, fx, "str_batch_stats", stats, lending, |_, s| s.ok > 0 && s.failed == s.ok / 7);
}

/// A builder option that makes a map lend its entries.
type Opt<V> = fn(SnapMapBuilder<String, V, H>) -> SnapMapBuilder<String, V, H>;

/// 1000 overwrites of `value(key, v)` values, published as one version:
/// snapview as built by default, and built by `lending` (named); imbl behind
/// an `ArcSwap` for reference. `written` checks a value of the last batch.
fn bench_batch_of_values<V: Clone + Send + Sync + 'static>(
    c: &mut Criterion,
    fx: &Fixture,
    name: &str,
    value: impl Fn(&String, u64) -> V,
    lending: (&str, Opt<V>),
    written: impl Fn(&String, &V) -> bool,
) {
    let hits = &fx.hits;
    let mask = hits.len() - 1;
    let mut g = group(c, name, fx.n);
    g.throughput(Throughput::Elements(BATCH as u64));
    let keys = |base: usize| (0..BATCH).map(move |t| &hits[(base + t) & mask]);
    let entries = || fx.keys.iter().map(|k| (k.clone(), value(k, value_of(k))));

    for (name, build) in [("snapview", None), (lending.0, Some(lending.1))] {
        let builder = SnapMap::builder().hasher(fx.hasher.clone());
        let builder = match build {
            Some(lend) => lend(builder),
            None => builder,
        };
        let mut map: SnapMap<String, V, H> = builder.build();
        map.extend(entries());
        g.bench_function(name, |b| {
            each_batch(b, |base, v| {
                map.update(|tx| {
                    for k in keys(base) {
                        tx.insert(k.clone(), value(k, v));
                    }
                })
            })
        });
        assert_eq!(map.len(), fx.n);
        assert!(map.snapshot().get(&hits[0]).is_some_and(|v| written(&hits[0], v)));
    }

    let mut imbl =
        imbl::GenericHashMap::<String, V, H, imbl::shared_ptr::DefaultSharedPtr>::with_hasher(fx.hasher.clone());
    imbl.extend(entries());
    let cell = ArcSwap::from_pointee(imbl);
    g.bench_function("imbl+ArcSwap", |b| {
        each_batch(b, |base, v| {
            let mut m = imbl::GenericHashMap::clone(&cell.load());
            for k in keys(base) {
                m.insert(k.clone(), value(k, v));
            }
            cell.store(Arc::new(m));
        })
    });
    assert_eq!(cell.load().len(), fx.n);
    assert!(cell.load().get(&hits[0]).is_some_and(|v| written(&hits[0], v)));
    g.finish();
}

/// Batch `k` of `str_batch_churn`: the keys it adds and those it removes
/// (the ones batch `k - 1` added), `BATCH / 2` each, in pairs.
fn churn_pairs<T>(list: &[T], k: usize) -> impl Iterator<Item = (&T, &T)> {
    let (half, mask) = (BATCH / 2, list.len() - 1);
    assert!(list.len() >= BATCH, "two batches' keys must not overlap");
    (0..half).map(move |t| (&list[(k * half + t) & mask], &list[((k - 1) * half + t) & mask]))
}

/// Runs `churn(k)` for k = 1, 2, ..
fn each_churn(b: &mut criterion::Bencher<'_>, mut churn: impl FnMut(usize)) {
    let mut k = 0;
    b.iter(|| {
        k += 1;
        churn(k)
    })
}

/// 1000 writes in one version that turn keys over: 500 absent keys added
/// and the 500 that the batch before added removed, one of each in turn (a
/// session or label table). Each added key is cloned in the timed loop, for
/// every map alike.
fn bench_batch_churn(c: &mut Criterion, fx: &mut Fixture) {
    let mut g = group(c, "str_batch_churn", fx.n);
    g.throughput(Throughput::Elements(BATCH as u64));
    let (misses, arc_misses) = (&fx.misses, &fx.arc_misses);

    /// Batch `k` into snapview, keyed by `String` or `Arc<str>`.
    fn snapview_churn<K: Clone + Eq + std::hash::Hash + std::borrow::Borrow<str>>(
        map: &SnapMap<K, u64, H>,
        fresh: &[K],
        k: usize,
    ) {
        map.update(|tx| {
            for (add, gone) in churn_pairs(fresh, k) {
                tx.insert(add.clone(), 1);
                tx.remove(gone.borrow());
            }
        })
    }
    g.bench_function("snapview", |b| each_churn(b, |k| snapview_churn(&fx.snapview, misses, k)));
    g.bench_function("snapview<Arc<str>>", |b| each_churn(b, |k| snapview_churn(&fx.snapview_arc, arc_misses, k)));
    fx.snapview.update(|tx| misses.iter().for_each(|k| _ = tx.remove(k.as_str())));
    fx.snapview_arc.update(|tx| arc_misses.iter().for_each(|k| _ = tx.remove(&**k)));
    assert_eq!((fx.snapview.len(), fx.snapview_arc.len()), (fx.n, fx.n));

    let cell = ArcSwap::from_pointee(fx.imbl.clone());
    g.bench_function("imbl+ArcSwap", |b| {
        each_churn(b, |k| {
            let mut m = ImblMap::clone(&cell.load());
            for (add, gone) in churn_pairs(misses, k) {
                m.insert(add.clone(), 1);
                m.remove(gone.as_str());
            }
            cell.store(Arc::new(m));
        })
    });
    drop(cell);

    let cell = ArcSwap::from_pointee(fx.rpds.clone());
    g.bench_function("rpds+ArcSwap", |b| {
        each_churn(b, |k| {
            let mut m = RpdsMap::clone(&cell.load());
            for (add, gone) in churn_pairs(misses, k) {
                m.insert_mut(add.clone(), 1);
                m.remove_mut(gone.as_str());
            }
            cell.store(Arc::new(m));
        })
    });
    drop(cell);

    let hb = &mut fx.hashbrown;
    g.bench_function("hashbrown", |b| {
        each_churn(b, |k| {
            for (add, gone) in churn_pairs(misses, k) {
                hb.insert(add.clone(), 1);
                hb.remove(gone.as_str());
            }
        })
    });
    misses.iter().for_each(|k| _ = hb.remove(k.as_str()));
    assert_eq!(hb.len(), fx.n);
    g.finish();
}

/// How long `str_batch_held`'s reader holds each snapshot.
const HOLD: std::time::Duration = std::time::Duration::from_micros(50);

/// Runs `body` while another thread runs `other` until `body` is done.
fn beside(other: impl FnOnce(&std::sync::atomic::AtomicBool) + Send, body: impl FnOnce()) {
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| other(&stop));
        body();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
}

/// Runs `body` while another thread keeps taking snapshots (`take`) and
/// holding each for [`HOLD`].
fn while_held<S>(take: impl Fn() -> S + Sync, body: impl FnOnce()) {
    beside(|stop| common::hold_snapshots(&take, HOLD, stop), body)
}

/// 1000 overwrites in one version while a reader holds snapshots: a copy
/// made while the old version is held cannot take its source's entries over
/// at publish, which is where a persistent map's writes cost most.
fn bench_batch_held(c: &mut Criterion, fx: &Fixture) {
    let hits = &fx.hits;
    let mask = hits.len() - 1;
    let mut g = group(c, "str_batch_held", fx.n);
    g.throughput(Throughput::Elements(BATCH as u64));
    let keys = |base: usize| (0..BATCH).map(move |t| &hits[(base + t) & mask]);

    let map = &fx.snapview;
    g.bench_function("snapview", |b| {
        while_held(|| map.snapshot(), || each_batch(b, |base, v| snapview_batch(map, keys(base), v)))
    });
    assert_eq!(map.len(), fx.n);

    let cell = ArcSwap::from_pointee(fx.imbl.clone());
    g.bench_function("imbl+ArcSwap", |b| {
        while_held(|| cell.load_full(), || each_batch(b, |base, v| imbl_batch(&cell, keys(base), v)))
    });
    assert_eq!(cell.load().len(), fx.n);
    drop(cell);

    let cell = ArcSwap::from_pointee(fx.rpds.clone());
    g.bench_function("rpds+ArcSwap", |b| {
        while_held(|| cell.load_full(), || each_batch(b, |base, v| rpds_batch(&cell, keys(base), v)))
    });
    assert_eq!(cell.load().size(), fx.n);
    g.finish();
}

/// Runs `body` while another thread keeps running `write(round)`.
fn while_written_beside(write: impl Fn(u64) + Sync, body: impl FnOnce()) {
    beside(
        |stop| {
            let mut round = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                round += 1;
                write(round);
            }
        },
        body,
    )
}

/// 1000 overwrites in one version while another thread writes batches into
/// a second map: the maps share nothing, so whatever the measured writer
/// loses beyond what the hardware takes (shared cache, memory bandwidth,
/// the allocator) is state the library shares between maps.
fn bench_batch_beside(c: &mut Criterion, fx: &Fixture) {
    let hits = &fx.hits;
    let mask = hits.len() - 1;
    let mut g = group(c, "str_batch_beside", fx.n);
    g.throughput(Throughput::Elements(BATCH as u64));
    let keys = |base: usize| (0..BATCH).map(move |t| &hits[(base + t) & mask]);
    // The other writer goes through the keys in another order.
    let other_keys = |round: u64| (0..BATCH).map(move |t| &hits[mask.wrapping_sub(round as usize * BATCH + t) & mask]);
    let entries = || fx.keys.iter().map(|k| (k.clone(), value_of(k)));

    let map = &fx.snapview;
    let other: SnapMap<String, u64, H> = SnapMap::builder().hasher(fx.hasher.clone()).build();
    other.update(|tx| tx.extend(entries()));
    g.bench_function("snapview", |b| {
        while_written_beside(
            |round| snapview_batch(&other, other_keys(round), round),
            || each_batch(b, |base, v| snapview_batch(map, keys(base), v)),
        )
    });
    assert_eq!((map.len(), other.len()), (fx.n, fx.n));
    drop(other);

    let cell = ArcSwap::from_pointee(fx.imbl.clone());
    let other = ArcSwap::from_pointee(entries().fold(ImblMap::with_hasher(fx.hasher.clone()), |mut m, (k, v)| {
        m.insert(k, v);
        m
    }));
    g.bench_function("imbl+ArcSwap", |b| {
        while_written_beside(
            |round| imbl_batch(&other, other_keys(round), round),
            || each_batch(b, |base, v| imbl_batch(&cell, keys(base), v)),
        )
    });
    assert_eq!((cell.load().len(), other.load().len()), (fx.n, fx.n));
    drop((cell, other));

    let cell = ArcSwap::from_pointee(fx.rpds.clone());
    let other = ArcSwap::from_pointee(entries().fold(
        RpdsMap::new_with_hasher_and_ptr_kind(fx.hasher.clone()),
        |mut m, (k, v)| {
            m.insert_mut(k, v);
            m
        },
    ));
    g.bench_function("rpds+ArcSwap", |b| {
        while_written_beside(
            |round| rpds_batch(&other, other_keys(round), round),
            || each_batch(b, |base, v| rpds_batch(&cell, keys(base), v)),
        )
    });
    assert_eq!((cell.load().size(), other.load().size()), (fx.n, fx.n));
    g.finish();
}

/// Two tables of the map's entries that differ in 10 keys: 5 values
/// changed, 2 keys removed and 3 added.
fn reload_tables(fx: &Fixture) -> [Vec<(String, u64)>; 2] {
    let base: Vec<(String, u64)> = fx.keys.iter().map(|k| (k.clone(), value_of(k))).collect();
    let mut edited = base.clone();
    for (_, v) in edited.iter_mut().step_by(fx.n / 5).take(5) {
        *v += 1;
    }
    edited.truncate(fx.n - 2);
    edited.extend(fx.misses[..3].iter().map(|k| (k.clone(), 1)));
    [base, edited]
}

/// Reloads of the whole table, alternating between two that differ in 10 keys.
fn bench_reload(c: &mut Criterion, fx: &Fixture) {
    let tables = reload_tables(fx);
    let mut g = group(c, "str_reload", fx.n);
    g.sampling_mode(SamplingMode::Flat);
    // Runs `reload(table)` with a fresh copy of each table in turn.
    fn each_reload(
        b: &mut criterion::Bencher<'_>,
        tables: &[Vec<(String, u64)>; 2],
        mut reload: impl FnMut(Vec<(String, u64)>),
    ) {
        let mut i = 0;
        b.iter(|| {
            i ^= 1;
            reload(tables[i].clone())
        })
    }

    let map: SnapMap<String, u64, H> = SnapMap::builder().hasher(fx.hasher.clone()).build();
    map.update(|tx| tx.extend(tables[0].clone()));
    // `None` when a filter left the case out.
    let mut written = None;
    g.bench_function("snapview-assign", |b| each_reload(b, &tables, |t| written = Some(map.update(|tx| tx.assign(t)))));
    assert!(matches!(written, None | Some(10)), "two tables differing in 5 values, 3 added and 2 removed keys");
    g.bench_function("snapview-clear+extend", |b| {
        each_reload(b, &tables, |t| {
            map.update(|tx| {
                tx.clear();
                tx.extend(t)
            })
        })
    });
    drop(map);

    let cell = ArcSwap::from_pointee(ImblMap::with_hasher(fx.hasher.clone()));
    g.bench_function("imbl+ArcSwap", |b| {
        each_reload(b, &tables, |t| {
            let mut m = ImblMap::with_hasher(fx.hasher.clone());
            m.extend(t);
            cell.store(Arc::new(m))
        })
    });
    drop(cell);

    let cell = ArcSwap::from_pointee(hashbrown::HashMap::with_hasher(fx.hasher.clone()));
    g.bench_function("hashbrown+ArcSwap", |b| {
        each_reload(b, &tables, |t| {
            let mut m = hashbrown::HashMap::with_hasher(fx.hasher.clone());
            m.extend(t);
            cell.store(Arc::new(m))
        })
    });
    g.finish();
}

/// Rollbacks to a held version, alternating between two versions (the
/// tables of [`reload_tables`]), both held for the whole case.
fn bench_rollback(c: &mut Criterion, fx: &Fixture) {
    let tables = reload_tables(fx);
    let mut g = group(c, "str_rollback", fx.n);
    g.sampling_mode(SamplingMode::Flat);

    let map: SnapMap<String, u64, H> = SnapMap::builder().hasher(fx.hasher.clone()).build();
    map.update(|tx| tx.extend(tables[0].clone()));
    let good = map.snapshot();
    map.update(|tx| tx.assign(tables[1].clone()));
    let held = [good, map.snapshot()];
    let mut i = 0;
    g.bench_function("snapview-restore", |b| {
        b.iter(|| {
            i ^= 1;
            map.restore(&held[i])
        })
    });
    assert!(map.snapshot() == held[i], "the map holds the version restored last");
    // Without `restore`: the held version's entries, cloned, assigned.
    g.bench_function("snapview-assign", |b| {
        b.iter(|| {
            i ^= 1;
            map.update(|tx| tx.assign(held[i].iter().map(|(k, v)| (k.clone(), *v))))
        })
    });
    assert!(map.snapshot() == held[i], "the map holds the version assigned last");
    drop((map, held));

    let versions = tables.map(|t| {
        let mut m = ImblMap::with_hasher(fx.hasher.clone());
        m.extend(t);
        Arc::new(m)
    });
    let cell = ArcSwap::new(Arc::clone(&versions[0]));
    g.bench_function("imbl+ArcSwap", |b| {
        b.iter(|| {
            i ^= 1;
            cell.store(Arc::clone(&versions[i]))
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    for n in bench_sizes(DEFAULT_SIZES) {
        let mut fx = Fixture::new(n);
        bench_get(c, &fx, "str_get_hit", &fx.hits);
        bench_get(c, &fx, "str_get_miss", &fx.misses);
        bench_iter(c, &fx);
        bench_insert_publish(c, &mut fx);
        bench_batch_publish(c, &mut fx);
        bench_batch_churn(c, &mut fx);
        bench_batch_held(c, &fx);
        bench_batch_beside(c, &fx);
        bench_batch_route(c, &fx);
        bench_batch_stats(c, &fx);
        bench_reload(c, &fx);
        bench_rollback(c, &fx);
    }
}

fn main() {
    let mut c = config().configure_from_args();
    benches(&mut c);
    c.final_summary();
}
