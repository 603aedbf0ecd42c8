//! Drop counting: every key and value instance the map creates (by clone, when
//! a write copies a path) is dropped exactly once, and at the right time.
//!
//! The precise check, after every operation: the set of live instances equals
//! the set of instances reachable from the current version and from the
//! snapshots and read guards still held. So nothing leaks (everything live is
//! reachable), nothing is freed early (everything reachable is live), and an
//! old version's own instances go exactly when its last snapshot goes. The
//! random runs also clone the map, write on to a clone or to the map, and
//! drop clones: an instance that clones share lives exactly as long as one
//! of them, or a snapshot, still reaches it. And they restore held
//! versions, which makes a version's instances current again.

mod common;

use std::collections::HashSet;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use common::{Registry, Rng, Tag, lending_map};
use snapview::{ReadGuard, SnapMap, Snapshot, View};

/// A key equal by `n`, hashed by `group` only (equal groups collide fully).
#[derive(Clone, Debug)]
struct Key {
    n: u32,
    group: u32,
    tag: Tag,
}

// SAFETY: numbers and a `Tag`: nothing changes through a shared reference.
unsafe impl snapview::Lendable for Key {}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.n == other.n
    }
}

impl Eq for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.group.hash(state);
    }
}

#[derive(Clone, Debug)]
struct Val {
    n: u32,
    tag: Tag,
}

// SAFETY: numbers and a `Tag`: nothing changes through a shared reference.
unsafe impl snapview::Lendable for Val {}

impl PartialEq for Val {
    fn eq(&self, other: &Self) -> bool {
        self.n == other.n
    }
}

type Map = SnapMap<Key, Val>;

struct Env {
    reg: Arc<Registry>,
    grouping: fn(u32) -> u32,
}

impl Env {
    fn key(&self, n: u32) -> Key {
        Key { n, group: (self.grouping)(n), tag: Tag::new(&self.reg) }
    }

    fn val(&self, n: u32) -> Val {
        Val { n, tag: Tag::new(&self.reg) }
    }

    /// Asserts that the live instances are exactly those reachable from `views`.
    fn check<S: BuildHasher>(&self, views: &[&View<Key, Val, S>]) {
        let mut reachable = HashSet::new();
        for view in views {
            let mut in_view = 0;
            for (k, v) in view.iter() {
                reachable.insert(k.tag.id());
                reachable.insert(v.tag.id());
                in_view += 2;
            }
            let distinct: HashSet<u64> = view.iter().flat_map(|(k, v)| [k.tag.id(), v.tag.id()]).collect();
            assert_eq!(distinct.len(), in_view, "an instance appears twice in one version");
        }
        self.reg.assert_live_exactly(&reachable, "after this step");
    }
}

/// Steps per random run: `SNAPVIEW_TEST_STEPS` (the valgrind run in CI uses
/// fewer), 1500 by default.
fn steps() -> u32 {
    std::env::var("SNAPVIEW_TEST_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(1500)
}

/// Random inserts, removes, batches and clears, with snapshots and read guards
/// taken and released along the way, checked after every step; in a map
/// whose copies lend entries (`lend`), or clone them, as a map of types not
/// declared `Lendable` does.
fn random_ops(grouping: fn(u32) -> u32, seed: u64, lend: bool) {
    let env = Env { reg: Registry::new(), grouping };
    let mut rng = Rng(seed);
    let mut map: Map = if lend { lending_map() } else { Map::new() };
    let mut held: Vec<Snapshot<Key, Val>> = Vec::new();
    // Clones of the map, which share its nodes and entries until written.
    let mut forks: Vec<Map> = Vec::new();
    let keys = 300;

    map.update(|tx| {
        for n in 0..keys / 2 {
            tx.insert(env.key(n * 2), env.val(n));
        }
    });

    for step in 0..steps() {
        // A read guard held across this step's write, sometimes.
        let guard: Option<ReadGuard<Key, Val>> = (rng.below_u32(6) == 0).then(|| map.read());
        match rng.below_u32(26) {
            0..=6 => {
                let old = map.insert(env.key(rng.below_u32(keys)), env.val(step));
                drop(old);
            }
            7..=11 => {
                let probe = env.key(rng.below_u32(keys));
                let removed = map.remove(&probe);
                if let Some(v) = &removed {
                    assert!(env.reg.is_live(v.tag.id()), "a removed value is handed back alive");
                }
            }
            12..=15 => map.update(|tx| {
                for _ in 0..rng.below_u32(12) {
                    match rng.below_u32(5) {
                        0..=2 => drop(tx.insert(env.key(rng.below_u32(keys)), env.val(step))),
                        3 => drop(tx.remove_entry(&env.key(rng.below_u32(keys)))),
                        _ => {
                            let m = 2 + rng.below_u32(5);
                            tx.retain(|_, v| v.n % m != 0);
                        }
                    }
                }
            }),
            16 => {
                if rng.below_u32(4) == 0 {
                    map.clear();
                }
            }
            17 | 18 => held.push(map.snapshot()),
            19 if forks.len() < 3 => forks.push(map.clone()),
            // Write on to a clone from here, the map set aside.
            20 if !forks.is_empty() => {
                let i = rng.below_u32(forks.len() as u32) as usize;
                std::mem::swap(&mut map, &mut forks[i]);
            }
            21 if !forks.is_empty() => {
                let i = rng.below_u32(forks.len() as u32) as usize;
                drop(forks.swap_remove(i));
            }
            // Back to a held version (of this map or of a clone: it shares
            // the version's nodes and entries), alone or between writes.
            22 if !held.is_empty() => {
                let version = &held[rng.below_u32(held.len() as u32) as usize];
                map.restore(version);
                assert!(map.snapshot() == *version, "a restore holds the version's entries");
            }
            23 if !held.is_empty() => map.update(|tx| {
                tx.insert(env.key(rng.below_u32(keys)), env.val(step));
                tx.restore(&held[rng.below_u32(held.len() as u32) as usize]);
                if rng.below_u32(2) == 0 {
                    drop(tx.remove(&env.key(rng.below_u32(keys))));
                    tx.insert(env.key(rng.below_u32(keys)), env.val(step));
                }
            }),
            // Another map's version: copied, entry by entry.
            24 => {
                let other: Map = (0..rng.below_u32(20)).map(|n| (env.key(n * 3), env.val(step))).collect();
                map.restore(&other.snapshot());
                assert!(map.snapshot() == other.snapshot(), "a restore holds the other map's entries");
            }
            _ => {
                if !held.is_empty() {
                    let i = rng.below_u32(held.len() as u32) as usize;
                    held.swap_remove(i);
                }
            }
        }
        let now = map.snapshot();
        let fork_views: Vec<_> = forks.iter().map(Map::snapshot).collect();
        let mut views: Vec<&View<Key, Val, _>> = held.iter().chain(&fork_views).map(|s| &**s).collect();
        views.push(&now);
        if let Some(g) = &guard {
            views.push(g);
        }
        env.check(&views);
        if held.len() > 10 {
            held.remove(0);
        }
    }

    // The map and its clones go first: their snapshots keep exactly their
    // versions alive.
    drop(map);
    drop(forks);
    env.check(&held.iter().map(|s| &**s).collect::<Vec<_>>());
    while let Some(s) = held.pop() {
        drop(s);
        env.check(&held.iter().map(|s| &**s).collect::<Vec<_>>());
    }
    assert_eq!(env.reg.live_count(), 0, "instances left after the map and all snapshots are gone");
    assert!(env.reg.created() > 2 * u64::from(keys), "the test created few instances: copies are not tracked?");
}

#[test]
fn random_ops_distinct_hashes() {
    for seed in 1..=3 {
        random_ops(|n| n, seed, true);
    }
}

#[test]
fn random_ops_with_collision_nodes() {
    random_ops(|n| n % 4, 11, true);
    random_ops(|n| n / 3, 12, true);
}

#[test]
fn random_ops_cloning_entries() {
    random_ops(|n| n, 21, false);
    random_ops(|n| n / 3, 22, false);
}

#[test]
fn a_replaced_value_lives_until_the_last_old_snapshot_goes() {
    let env = Env { reg: Registry::new(), grouping: |n| n };
    let map: Map = lending_map();
    map.update(|tx| {
        for n in 0..2_000 {
            tx.insert(env.key(n), env.val(n));
        }
    });
    let original = map.snapshot().get(&env.key(7)).expect("inserted").tag.id();
    let old = map.snapshot();
    let old_too = old.clone();
    let guard = map.read();

    let replaced = map.insert(env.key(7), env.val(70)).expect("was present");
    // What insert hands back is a value of the current map's own copy of the
    // path, never the instance the old version still holds.
    assert_ne!(replaced.tag.id(), original);
    drop(replaced);
    assert!(env.reg.is_live(original), "the old version's value was dropped while snapshots hold it");
    env.check(&[&old, &map.snapshot(), &guard]);
    let shared_before = env.reg.live_count();

    drop(old);
    assert!(env.reg.is_live(original), "dropped while a clone of the snapshot holds it");
    drop(guard);
    assert!(env.reg.is_live(original), "dropped while a snapshot holds it");
    drop(old_too);
    assert!(!env.reg.is_live(original), "not dropped when the last old snapshot went");
    env.check(&[&map.snapshot()]);
    // Only the copied path was the old version's own: all but a few nodes
    // were shared and stay alive.
    let freed = shared_before - env.reg.live_count();
    assert!(freed > 0 && freed < 400, "freed {freed} instances: more than one path's worth");

    // Removing: same story.
    let old = map.snapshot();
    let key8 = old.get_key_value(&env.key(8)).expect("present").0.tag.id();
    let removed = map.remove(&env.key(8)).expect("present");
    assert!(env.reg.is_live(key8));
    drop(removed);
    assert!(env.reg.is_live(key8), "the removed key was dropped while a snapshot holds it");
    drop(old);
    assert!(!env.reg.is_live(key8));
    env.check(&[&map.snapshot()]);

    drop(map);
    assert_eq!(env.reg.live_count(), 0);
}

#[test]
fn unshared_writes_move_instead_of_cloning() {
    // With no snapshot held, a batch's second write to a node it already
    // copied changes the copy in place: replacing a value drops exactly the
    // value replaced and clones nothing.
    let env = Env { reg: Registry::new(), grouping: |n| n % 4 };
    let map: Map = lending_map();
    map.update(|tx| {
        for n in 0..40 {
            tx.insert(env.key(n), env.val(n));
        }
        let (k3, v33, k5) = (env.key(3), env.val(33), env.key(5));
        let created = env.reg.created();
        let old = tx.insert(k3, v33).expect("present");
        drop(old);
        let removed = tx.remove_entry(&k5).expect("present");
        drop(removed);
        assert_eq!(env.reg.created(), created, "a write to an unshared copy cloned entries");
        // retain clones the keys it removes (to look them up), and drops them again.
        tx.retain(|k, _| k.n % 7 != 0);
        assert_eq!(tx.len(), 39 - 6);
    });
    env.check(&[&map.snapshot()]);
    map.clear();
    assert_eq!(env.reg.live_count(), 0, "clear with no snapshot held frees everything");
}
