//! `SnapMap::restore` and `Tx::restore`: a held version's entries published
//! again. For a version of the map (or of a clone of it) that clones no
//! entry; for another map's version it copies every entry; and restoring
//! the version a batch started from undoes the batch.

mod common;

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::{Registry, Tag, Tagged, lending_map_of};
use snapview::{SnapMap, Snapshot};

type Map = SnapMap<String, Tagged>;

fn tagged(reg: &std::sync::Arc<Registry>, n: u64) -> Tagged {
    Tagged { n, tag: Tag::new(reg) }
}

/// A map of `key-0..key-{len}`, each value its number.
fn map_of(reg: &std::sync::Arc<Registry>, len: u64) -> Map {
    lending_map_of((0..len).map(|n| (format!("key-{n}"), tagged(reg, n))))
}

/// The entries as (key, number) pairs, sorted.
fn contents(snap: &Snapshot<String, Tagged>) -> Vec<(String, u64)> {
    let mut entries: Vec<_> = snap.iter().map(|(k, v)| (k.clone(), v.n)).collect();
    entries.sort();
    entries
}

#[test]
fn an_older_version_comes_back_as_a_new_version_cloning_nothing() {
    let reg = Registry::new();
    let map = map_of(&reg, 1000);
    let last_good = map.snapshot();
    let expected = contents(&last_good);
    map.update(|tx| {
        tx.insert("key-1".into(), tagged(&reg, 99));
        tx.remove("key-2");
        tx.insert("new".into(), tagged(&reg, 7));
    });
    let bad = map.snapshot();
    let created = reg.created();

    map.restore(&last_good);

    let now = map.snapshot();
    assert_eq!(now.version(), bad.version() + 1, "a restore is a new version");
    assert_eq!(contents(&now), expected);
    assert_eq!(now, last_good);
    assert_eq!(reg.created(), created, "restoring a version of the map clones no entry");
    // Every value is the instance the restored version held.
    for (k, v) in &*last_good {
        assert_eq!(now[k.as_str()].tag.id(), v.tag.id(), "{k}: another instance");
    }
    // The versions in between are untouched, and the diff runs both ways.
    assert_eq!(bad.get("key-1").map(|v| v.n), Some(99));
    assert_eq!(bad.diff(&now).count(), 3);
    assert_eq!(last_good.diff(&now).count(), 0);
}

#[test]
fn writes_after_a_restore_apply_to_the_restored_entries() {
    let reg = Registry::new();
    let map = map_of(&reg, 100);
    let last_good = map.snapshot();
    map.clear();
    map.update(|tx| {
        tx.restore(&last_good);
        assert_eq!(tx.len(), 100);
        tx.insert("key-5".into(), tagged(&reg, 55));
        tx.remove("key-6");
    });
    let now = map.snapshot();
    assert_eq!(now.len(), 99);
    assert_eq!(now.get("key-5").map(|v| v.n), Some(55));
    assert_eq!(now.get("key-6"), None);
    assert_eq!(last_good.get("key-5").map(|v| v.n), Some(5), "the restored version is never changed");
    assert_eq!(last_good.diff(&now).count(), 2);
}

#[test]
fn restoring_the_current_version_publishes_nothing() {
    let reg = Registry::new();
    let map = map_of(&reg, 100);
    // A publish leaves the writer a spare root (equal in contents): the
    // restore must see through it.
    map.insert("key-1".into(), tagged(&reg, 1));
    let current = map.snapshot();
    map.restore(&current);
    assert!(Snapshot::ptr_eq(&current, &map.snapshot()), "restoring the current version published");
    map.restore(&map.read());
    assert_eq!(map.version(), current.version());
}

#[test]
fn restoring_the_batch_s_start_undoes_its_writes() {
    let reg = Registry::new();
    let map = map_of(&reg, 100);
    let start = map.snapshot();
    map.update(|tx| {
        tx.insert("key-1".into(), tagged(&reg, 11));
        tx.clear();
        tx.restore(&start);
        assert_eq!(tx.get("key-1").map(|v| v.n), Some(1));
    });
    assert!(Snapshot::ptr_eq(&start, &map.snapshot()), "an undone batch published");
    // Writes after the undo are published, on top of the start.
    map.update(|tx| {
        tx.remove("key-1");
        tx.restore(&start);
        tx.remove("key-2");
    });
    let now = map.snapshot();
    assert_eq!(now.version(), start.version() + 1);
    assert_eq!(start.diff(&now).count(), 1);
    assert_eq!(now.get("key-1").map(|v| v.n), Some(1));
    drop((start, now, map));
    assert_eq!(reg.live_count(), 0);
}

#[test]
fn a_clone_s_version_restores_without_copying() {
    let reg = Registry::new();
    let map = map_of(&reg, 500);
    let clone = map.clone();
    clone.insert("key-3".into(), tagged(&reg, 33));
    let theirs = clone.snapshot();
    let created = reg.created();
    map.restore(&theirs);
    assert_eq!(reg.created(), created, "the clone's version is restored by sharing");
    assert_eq!(map.snapshot(), theirs);
    assert_eq!(map.snapshot().diff(&theirs).count(), 0);
    // The two maps go on apart.
    map.insert("key-4".into(), tagged(&reg, 44));
    assert_eq!(clone.snapshot().get("key-4").map(|v| v.n), Some(4));
}

#[test]
fn another_map_s_version_is_copied_and_hashed_anew() {
    let reg = Registry::new();
    let map = map_of(&reg, 10);
    // Another map, with another hasher: its trie places keys elsewhere.
    let other: SnapMap<String, Tagged> = SnapMap::builder().lend_entries().build();
    other.update(|tx| (100..400).for_each(|n| _ = tx.insert(format!("key-{n}"), tagged(&reg, n))));
    let theirs = other.snapshot();
    let created = reg.created();
    map.restore(&theirs);
    assert_eq!(reg.created() - created, 300, "each of the 300 values cloned");
    let now = map.snapshot();
    assert_eq!(contents(&now), contents(&theirs));
    for n in 100..400 {
        assert_eq!(now.get(format!("key-{n}").as_str()).map(|v| v.n), Some(n), "key-{n} found by this map's hasher");
    }
    assert_eq!(now.get("key-1"), None);
    assert_eq!(now.version(), 2);
}

/// A value whose clone panics when its number says so.
#[derive(Debug, PartialEq)]
struct Fragile(u64);

impl Clone for Fragile {
    fn clone(&self) -> Self {
        assert!(self.0 != 13, "the clone of 13 panics");
        Self(self.0)
    }
}

#[test]
fn a_copy_whose_clone_panics_leaves_the_batch_and_the_map_as_they_were() {
    let map: SnapMap<u64, Fragile> = (0..5).map(|n| (n, Fragile(n))).collect();
    let other: SnapMap<u64, Fragile> = (10..20).map(|n| (n, Fragile(n))).collect();
    let before = map.snapshot();
    let theirs = other.snapshot();
    map.update(|tx| {
        tx.insert(7, Fragile(7));
        let copy = catch_unwind(AssertUnwindSafe(|| tx.restore(&theirs)));
        assert!(copy.is_err(), "the copy panicked");
        assert_eq!(tx.len(), 6, "the batch as it was before the restore");
        assert_eq!(tx.get(&7), Some(&Fragile(7)));
    });
    assert_eq!(map.snapshot().len(), 6);
    let unwound = catch_unwind(AssertUnwindSafe(|| map.restore(&theirs)));
    assert!(unwound.is_err());
    assert_eq!(map.version(), before.version() + 1, "a panicking restore publishes nothing");
    assert_eq!(map.snapshot().len(), 6);
}

#[test]
fn a_restore_inside_the_map_s_own_batch_panics() {
    let map: SnapMap<u64, u64> = (0..5).map(|n| (n, n)).collect();
    let snap = map.snapshot();
    let unwound = catch_unwind(AssertUnwindSafe(|| map.update(|_| map.restore(&snap))));
    let message = unwound.expect_err("a restore of the map inside its batch waits for itself");
    let message = message.downcast_ref::<&str>().expect("the message");
    assert!(message.contains("restore"), "{message}");
    assert_eq!(map.version(), 1);
}

#[test]
fn an_empty_version_restores_and_a_failed_batch_drops_its_restore() {
    let reg = Registry::new();
    let map = map_of(&reg, 50);
    let empty = {
        let map = map.clone();
        map.clear();
        map.snapshot()
    };
    let full = map.snapshot();
    let failed = map.try_update(|tx| {
        tx.restore(&empty);
        assert!(tx.is_empty());
        Err::<(), _>("no")
    });
    assert_eq!(failed, Err("no"));
    assert!(Snapshot::ptr_eq(&full, &map.snapshot()), "a failed batch published its restore");
    map.restore(&empty);
    assert!(map.is_empty());
    assert_eq!(map.version(), full.version() + 1);
    map.restore(&full);
    assert_eq!(map.snapshot(), full);
}

#[test]
fn a_batch_handed_to_another_thread_restores_there() {
    let reg = Registry::new();
    let map = map_of(&reg, 200);
    let last_good = map.snapshot();
    map.clear();
    let created = reg.created();
    map.update(|tx| {
        std::thread::scope(|s| {
            s.spawn(|| {
                tx.restore(&last_good);
                tx.insert("key-0".into(), tagged(&reg, 100));
            });
        });
    });
    assert_eq!(reg.created(), created + 2, "the new value and the clone its write made of a borrowed entry, no more");
    let now = map.snapshot();
    assert_eq!(now.len(), 200);
    assert_eq!(last_good.diff(&now).count(), 1);
    drop((last_good, now, map));
    assert_eq!(reg.live_count(), 0);
}

/// A value that counts its clones and, when dropped, runs the hook armed on
/// its thread, once.
#[derive(Debug, PartialEq)]
struct Hooked(u64);

static HOOKED_CLONES: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static ON_DROP: RefCell<Option<Box<dyn FnOnce()>>> = const { RefCell::new(None) };
}

impl Clone for Hooked {
    fn clone(&self) -> Self {
        HOOKED_CLONES.fetch_add(1, Ordering::Relaxed);
        Self(self.0)
    }
}

impl Drop for Hooked {
    fn drop(&mut self) {
        if let Some(hook) = ON_DROP.with(|h| h.borrow_mut().take()) {
            hook();
        }
    }
}

// SAFETY: a number: nothing changes through a shared reference.
unsafe impl snapview::Lendable for Hooked {}

/// A map's writer publishes, then settles its lending copies; a destructor
/// that runs while it settles restores the new version into a clone. That
/// version is not settled yet, so the clone copies its entries rather than
/// share nodes whose lending state the other writer is still changing.
///
/// The destructor is an old value's: the clone wrote key 7 first, so the
/// leaf holding it lends the clone's copy every entry but that one; the map
/// then writes key 7 too, and when its publish takes the old root back (no
/// snapshot holds it), the old leaf goes, dropping the value of key 7.
#[test]
fn a_version_restored_while_its_writer_settles_it_is_copied() {
    const LEN: u64 = 1000;
    let map: Arc<SnapMap<u64, Hooked>> = Arc::new(SnapMap::builder().lend_entries().build());
    map.update(|tx| (0..LEN).for_each(|n| _ = tx.insert(n, Hooked(n))));
    let clone = Arc::new(SnapMap::clone(&map));
    clone.insert(7, Hooked(70));
    let copied = Arc::new(AtomicU64::new(u64::MAX));
    {
        let (map, clone, copied) = (Arc::clone(&map), Arc::clone(&clone), Arc::clone(&copied));
        ON_DROP.with(|h| {
            *h.borrow_mut() = Some(Box::new(move || {
                let before = HOOKED_CLONES.load(Ordering::Relaxed);
                clone.restore(&map.snapshot());
                copied.store(HOOKED_CLONES.load(Ordering::Relaxed) - before, Ordering::Relaxed);
            }))
        });
    }
    let replaced = map.insert(7, Hooked(71));
    assert!(ON_DROP.with(|h| h.borrow().is_none()), "the hook ran while the map settled");
    assert_eq!(copied.load(Ordering::Relaxed), LEN, "the unsettled version was copied, each value cloned");
    assert_eq!(clone.snapshot(), map.snapshot());
    drop(replaced);
    // Settled now: shared.
    clone.insert(8, Hooked(80));
    let before = HOOKED_CLONES.load(Ordering::Relaxed);
    clone.restore(&map.snapshot());
    assert_eq!(HOOKED_CLONES.load(Ordering::Relaxed), before, "a settled version is shared");
    assert_eq!(clone.snapshot(), map.snapshot());
}
