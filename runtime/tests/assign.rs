//! `Tx::assign`: a hot reload that writes only what differs.

mod common;

use std::sync::Arc;

use common::{Registry, Tag, lending_map_of};
use snapview::{Change, SnapMap, Snapshot};

/// A value that counts its instances; equal by `n` alone.
#[derive(Clone, Debug)]
struct Val {
    n: u32,
    _tag: Tag,
}

// SAFETY: numbers and a `Tag`: nothing changes through a shared reference.
unsafe impl snapview::Lendable for Val {}

impl PartialEq for Val {
    fn eq(&self, other: &Self) -> bool {
        self.n == other.n
    }
}

fn table(reg: &Arc<Registry>, keys: impl Iterator<Item = u32>) -> Vec<(u32, Val)> {
    keys.map(|k| (k, Val { n: k, _tag: Tag::new(reg) })).collect()
}

#[test]
fn a_reload_keeps_what_it_did_not_write_shared_with_the_last_version() {
    let reg = Registry::new();
    const N: u32 = 10_000;
    let map: SnapMap<u32, Val> = lending_map_of(table(&reg, 0..N));
    let before = map.snapshot();
    assert_eq!(reg.live_count(), N as usize);

    // The same table read again, with 5 dropped, 1 changed and 2 added.
    let mut reloaded = table(&reg, (5..N + 2).filter(|&k| k != 100));
    reloaded.iter_mut().find(|(k, _)| *k == 7).expect("kept").1.n = 70;
    let written = map.update(|tx| tx.assign(reloaded));
    assert_eq!(written, 5 + 1 + 1 + 2);

    let after = map.snapshot();
    assert_eq!(after.version(), before.version() + 1);
    assert_eq!(after.len(), N as usize - 6 + 2);
    let mut changes: Vec<String> = before
        .diff(&after)
        .map(|c| match c {
            Change::Added(k, _) => format!("+{k}"),
            Change::Removed(k, _) => format!("-{k}"),
            Change::Updated { key, old, new } => format!("{key}: {} -> {}", old.n, new.n),
        })
        .collect();
    changes.sort();
    assert_eq!(changes, ["+10000", "+10001", "-0", "-1", "-100", "-2", "-3", "-4", "7: 7 -> 70"]);

    // Both versions alive: what the reload did not write is the same
    // instances in both, not a second copy of the map (a `clear` and
    // `extend` would hold all 10K values twice). What is there beyond the
    // first version's values: the new ones, and the entries of the nodes
    // that the 9 writes copied (tens each at this size).
    let extra = reg.live_count() - N as usize;
    assert!(extra < 9 * 64, "{extra} values beyond one version's: the reload copied far more than its paths");
    drop(before);
    assert_eq!(reg.live_count(), after.len());
}

#[test]
fn reloading_an_unchanged_table_publishes_nothing() {
    let reg = Registry::new();
    let map: SnapMap<u32, Val> = lending_map_of(table(&reg, 0..3000));
    let before = map.snapshot();
    assert_eq!(map.update(|tx| tx.assign(table(&reg, (0..3000).rev()))), 0);
    assert!(Snapshot::ptr_eq(&before, &map.snapshot()), "a version was published");
    // The table's own instances are dropped; the map's are the ones it had.
    assert_eq!(reg.live_count(), 3000);
}

#[test]
fn of_a_repeated_key_the_last_value_wins() {
    let map: SnapMap<&str, u32> = [("a", 1), ("b", 2)].into();
    let written = map.update(|tx| tx.assign([("a", 5), ("c", 3), ("a", 1), ("c", 4)]));
    assert_eq!(written, 2, "b removed, c added; a ends as it was");
    let now = map.snapshot();
    assert_eq!((now.get("a"), now.get("b"), now.get("c")), (Some(&1), None, Some(&4)));
}

#[test]
fn an_empty_table_empties_the_map_and_an_empty_map_loads_the_table() {
    let map: SnapMap<u32, u32> = (0..500).map(|k| (k, k)).collect();
    assert_eq!(map.update(|tx| tx.assign([])), 500);
    assert!(map.is_empty());
    assert_eq!(map.update(|tx| tx.assign((0..700).map(|k| (k, k + 1)))), 700);
    assert_eq!(map.len(), 700);
    assert_eq!(map.snapshot().get(&699), Some(&700));
}

#[test]
fn assign_sees_and_overrides_the_batch_s_own_earlier_writes() {
    let map: SnapMap<u32, u32> = (0..100).map(|k| (k, k)).collect();
    let before = map.snapshot();
    let written = map.update(|tx| {
        tx.insert(1000, 1);
        tx.remove(&5);
        // Back to the table as it was, but for key 6.
        tx.assign((0..100).map(|k| (k, if k == 6 { 60 } else { k })))
    });
    assert_eq!(written, 3, "1000 removed, 5 added back, 6 changed");
    let after = map.snapshot();
    let changes: Vec<Change<'_, u32, u32>> = before.diff(&after).collect();
    assert_eq!(changes, [Change::Updated { key: &6, old: &6, new: &60 }]);
}
