#![allow(dead_code)] // each test crate uses a different part of it

//! Shared by the integration tests: a registry of live instances (drop
//! counting), a small deterministic generator, and a key type whose hashes
//! collide.
//!
//! Each [`Tag`] gets a unique id when it is created (`new` or `clone`) and
//! removes it from its registry when dropped; dropping an id that is not live
//! (a double drop, or a drop of something never created) panics at once.

pub mod live_bytes;
pub mod placed;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The ids of the live instances of one test.
#[derive(Default)]
pub struct Registry {
    live: Mutex<HashSet<u64>>,
    next: AtomicU64,
}

impl Registry {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashSet<u64>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The ids alive now.
    pub fn live(&self) -> HashSet<u64> {
        self.lock().clone()
    }

    pub fn live_count(&self) -> usize {
        self.lock().len()
    }

    pub fn is_live(&self, id: u64) -> bool {
        self.lock().contains(&id)
    }

    /// Asserts that the live ids are exactly `reachable`: none alive that no
    /// held version reaches (a leak, or an entry a lender kept), none freed
    /// that one still reaches. `when` says where, in the message.
    pub fn assert_live_exactly(&self, reachable: &HashSet<u64>, when: &str) {
        let live = self.live();
        let mut leaked: Vec<_> = live.difference(reachable).collect();
        let mut freed: Vec<_> = reachable.difference(&live).collect();
        leaked.sort_unstable();
        freed.sort_unstable();
        assert!(leaked.is_empty(), "{when}: live but unreachable (leaked, or kept by a lender): {leaked:?}");
        assert!(freed.is_empty(), "{when}: reachable but dropped (freed early): {freed:?}");
    }

    /// How many instances were ever created.
    pub fn created(&self) -> u64 {
        self.next.load(Ordering::Relaxed)
    }
}

/// A tracked instance: embed it in keys and values.
pub struct Tag {
    id: u64,
    registry: Arc<Registry>,
}

// SAFETY: an id and an `Arc`: nothing changes through `&Tag`. A lent copy
// keeps its original's id (its `Clone`, which makes a new one, does not
// run): what the drop-counting tests count on to see each instance dropped
// once.
unsafe impl snapview::Lendable for Tag {}

/// A value with a number to check and a [`Tag`] to count.
#[derive(Clone, Debug)]
pub struct Tagged {
    pub n: u64,
    pub tag: Tag,
}

// SAFETY: a number and a `Tag`: nothing changes through `&Tagged`.
unsafe impl snapview::Lendable for Tagged {}

/// Equal by `n`: the tag tells instances apart, not values (`assign`
/// compares values).
impl PartialEq for Tagged {
    fn eq(&self, other: &Self) -> bool {
        self.n == other.n
    }
}

/// An empty map whose writes lend entries of any [`snapview::Lendable`]
/// types, as the tests of lending need: by default only common std types
/// are lent, not the types these tests count instances of.
pub fn lending_map<K, V>() -> snapview::SnapMap<K, V>
where
    K: snapview::Lendable,
    V: snapview::Lendable,
{
    snapview::SnapMap::builder().lend_entries().build()
}

/// A [`lending_map`] holding `entries`, published as one version.
pub fn lending_map_of<K, V>(entries: impl IntoIterator<Item = (K, V)>) -> snapview::SnapMap<K, V>
where
    K: snapview::Lendable + std::hash::Hash + Eq + Clone,
    V: snapview::Lendable + Clone,
{
    let mut map = lending_map();
    map.extend(entries);
    map
}

impl Tag {
    pub fn new(registry: &Arc<Registry>) -> Self {
        let id = registry.next.fetch_add(1, Ordering::Relaxed);
        assert!(registry.lock().insert(id), "id {id} handed out twice");
        Self { id, registry: Arc::clone(registry) }
    }

    pub fn id(&self) -> u64 {
        self.id
    }
}

impl Clone for Tag {
    fn clone(&self) -> Self {
        Self::new(&self.registry)
    }
}

impl Drop for Tag {
    fn drop(&mut self) {
        let was_live = self.registry.lock().remove(&self.id);
        if !was_live {
            // Aborts if already unwinding: a double drop is a failure either way.
            panic!("instance {} dropped twice (or never created)", self.id);
        }
    }
}

impl std::fmt::Debug for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.id)
    }
}

/// xorshift64*: deterministic per thread, no extra crate.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn below_u32(&mut self, n: u32) -> u32 {
        (self.next() % u64::from(n)) as u32
    }
}

/// A key whose hash is shared by groups of three (`0..3`, `3..6`, ...): full
/// 64-bit collisions, so a trie of them has collision nodes at its deepest
/// level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grouped(pub u64);

impl std::hash::Hash for Grouped {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        (self.0 / 3).hash(h);
    }
}

/// A key whose `Hash` sees only `hash`, a function of `id` chosen by the
/// test: keys with equal `hash` have equal 64-bit hashes under any hasher,
/// so they end in collision nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Colliding {
    pub id: u16,
    pub hash: u16,
}

impl std::hash::Hash for Colliding {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.hash.hash(state);
    }
}

/// A hasher that returns a `u64` key itself, so that a test places its keys:
/// key `k` goes to slot `k % 64` of the root, `(k >> 6) % 64` below.
#[derive(Default)]
pub struct Identity(u64);

impl std::hash::Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, _: &[u8]) {
        unreachable!("u64 keys only")
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The payload of the tests' planned panics, which [`silence_planned_panics`]
/// keeps out of the output.
pub const PLANNED_PANIC: &str = "snapview test: a planned panic";

/// Installs, once per test binary, a panic hook that reports every panic but
/// the planned ones.
pub fn silence_planned_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() != Some(&PLANNED_PANIC) {
                default(info);
            }
        }));
    });
}

/// Runs `f`, catching its panic, with the planned ones kept out of the output.
pub fn quietly<R>(f: impl FnOnce() -> R) -> std::thread::Result<R> {
    silence_planned_panics();
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
}

/// A map called `name`, timing one call in `sample_every`, holding keys
/// `0..len` (each its own value), loaded in one batch.
#[cfg(feature = "instrument")]
pub fn sampled_map(name: &str, sample_every: u32, len: u64) -> snapview::SnapMap<u64, u64> {
    let map = snapview::SnapMap::builder().name(name).sample_every(sample_every).build();
    map.update(|tx| tx.extend((0..len).map(|i| (i, i))));
    map
}

/// The calls and samples the report holds for `op` on the map called `map`.
#[cfg(feature = "instrument")]
pub fn calls_and_samples(map: &str, op: snapview::instrument::Op) -> (u64, u64) {
    snapview::instrument::report().get(map, op).map_or((0, 0), |stats| (stats.calls, stats.samples))
}
