//! `try_update`: a batch whose closure returns `Err` publishes none of its
//! writes, frees every instance it made, and leaves the map usable; one that
//! returns `Ok` publishes as `update` does.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::task::{Context, Waker};

use common::{Registry, Tag, Tagged, lending_map};
use snapview::{SnapMap, Snapshot, Tx};

type Map = SnapMap<u64, Tagged>;

fn tagged(reg: &Arc<Registry>, n: u64) -> Tagged {
    Tagged { n, tag: Tag::new(reg) }
}

fn contents(snap: &Snapshot<u64, Tagged>) -> HashMap<u64, u64> {
    snap.iter().map(|(&k, v)| (k, v.n)).collect()
}

fn reachable(snaps: &[&Snapshot<u64, Tagged>]) -> HashSet<u64> {
    snaps.iter().flat_map(|s| s.values().map(|v| v.tag.id())).collect()
}

/// The batches a failing closure may have run before its error: every kind
/// of write, on paths all over the trie.
#[derive(Clone, Copy, Debug)]
enum Writes {
    /// Inserts, overwrites, removals, `get_mut` and `entry`.
    Mixed,
    /// `clear`, then the table loaded again with other values.
    Reload,
    /// `assign` of a table with a third of the keys changed or dropped.
    Assign,
}

fn write(tx: &mut Tx<'_, u64, Tagged>, reg: &Arc<Registry>, writes: Writes) {
    match writes {
        Writes::Mixed => {
            for k in 0..50 {
                tx.insert(10_000 + k, tagged(reg, k));
                tx.insert(k * 7, tagged(reg, 1));
                tx.remove(&(k * 11 + 3));
            }
            tx.get_mut(&500).expect("present").n = 0;
            tx.entry(501).and_modify(|v| v.n = 0);
        }
        Writes::Reload => {
            tx.clear();
            tx.extend((0..1_000).map(|k| (k, tagged(reg, k + 1))));
        }
        Writes::Assign => {
            let table: Vec<(u64, Tagged)> =
                (0..1_000).filter(|k| k % 3 != 0).map(|k| (k, tagged(reg, k + k % 2))).collect();
            assert!(tx.assign(table) > 0);
        }
    }
}

fn an_error_publishes_nothing(mut map: Map, reg: &Arc<Registry>) {
    map.extend((0..1_000).map(|k| (k, tagged(reg, k))));
    let model = contents(&map.snapshot());
    for writes in [Writes::Mixed, Writes::Reload, Writes::Assign] {
        let before = map.snapshot();
        let mut watching = map.subscribe();
        let failed: Result<(), String> = map.try_update(|tx| {
            write(tx, reg, writes);
            assert_ne!(contents_of(tx), model, "{writes:?} wrote something");
            Err(format!("{writes:?} failed"))
        });
        assert_eq!(failed, Err(format!("{writes:?} failed")));
        assert!(Snapshot::ptr_eq(&before, &map.snapshot()), "{writes:?}: a failed batch published a version");
        assert_eq!(map.version(), before.version());
        assert_eq!(map.len(), model.len());
        assert_eq!(contents(&map.snapshot()), model, "{writes:?}: the contents changed");
        assert!(
            watching.poll_changed(&mut Context::from_waker(Waker::noop())).is_pending(),
            "{writes:?}: a failed batch woke a subscriber"
        );
        // Everything the batch made is gone; nothing the map holds is.
        reg.assert_live_exactly(&reachable(&[&before]), &format!("after {writes:?} failed"));
    }

    // The next batch that succeeds publishes once, from the last version.
    let version = map.version();
    let written = map.try_update(|tx| {
        write(tx, reg, Writes::Mixed);
        Ok::<_, ()>(tx.len())
    });
    assert_eq!(written, Ok(map.len()));
    assert_eq!(map.version(), version + 1);
    let now = map.snapshot();
    assert_eq!(now.get(&10_049).map(|v| v.n), Some(49));
    assert!(now.get(&3).is_none(), "removed by the batch");
    reg.assert_live_exactly(&reachable(&[&now]), "after the batch that succeeded");
    drop((map, now));
    assert_eq!(reg.live_count(), 0, "instances left after everything was dropped");
}

fn contents_of(tx: &Tx<'_, u64, Tagged>) -> HashMap<u64, u64> {
    tx.iter().map(|(&k, v)| (k, v.n)).collect()
}

#[test]
fn an_error_publishes_nothing_and_frees_the_batch() {
    let reg = Registry::new();
    an_error_publishes_nothing(Map::new(), &reg);
}

/// A lending map's copies borrow the last version's entries: dropped
/// unpublished, they must give back what they borrowed and free only their
/// own.
#[test]
fn an_error_publishes_nothing_and_frees_the_batch_of_a_lending_map() {
    let reg = Registry::new();
    an_error_publishes_nothing(lending_map(), &reg);
}

#[test]
fn ok_publishes_once_and_an_ok_without_writes_not_at_all() {
    let map: SnapMap<&str, u32> = SnapMap::new();
    assert_eq!(map.try_update(|tx| Ok::<_, ()>(tx.insert("a", 1))), Ok(None));
    assert_eq!(map.version(), 1);
    assert_eq!(map.try_update(|tx| Ok::<_, ()>(tx.get("a").copied())), Ok(Some(1)));
    assert_eq!(map.version(), 1, "a batch that only read published a version");
    // An error without writes changes nothing either, and the map goes on.
    assert_eq!(map.try_update(|_| Err::<(), _>("no")), Err("no"));
    assert_eq!(map.insert("b", 2), None);
    assert_eq!(map.version(), 2);
    assert_eq!(map.snapshot().len(), 2);
}
