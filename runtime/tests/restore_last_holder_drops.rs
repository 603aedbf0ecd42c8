//! A batch that restores a version, then lets go of the last snapshot of it,
//! held that version only through the nodes it copied from it (a copy's
//! lender, or the restored node itself). A later write could then be its
//! last holder and free it, running its values' destructors mid-write:
//! - a write that rebuilt a node by moves dropped its lender inside the
//!   region where a panic aborts the process (`raw::build`,
//!   `rebuild_taking`), so a panicking `Drop` aborted;
//! - a write that rebuilt a restored node by clones (one whose entries a
//!   newer version borrows) freed it as it put the copy in its place: a
//!   panic then came after the trie changed, before the write counted the
//!   change, and a batch that caught it went on with a length one short of
//!   its entries.
//!
//! The batch now holds what it restored until it is over (`Tx::restore`):
//! no write of it frees anything, and what only the restored version held
//! is dropped after the publish, where a destructor's panic leaves `update`
//! with the version published, as a replaced value's does.
//!
//! Each case runs in a child process, so that an abort fails the test
//! instead of the test binary.

mod common;

use std::cell::Cell;
use std::hash::BuildHasherDefault;
use std::process::Command;
use std::sync::atomic::{AtomicI64, Ordering};

use common::{Identity, PLANNED_PANIC, quietly};
use snapview::{SnapMap, Snapshot, Tx};

/// Set in the child: the cases return at once when run by hand.
const CHILD: &str = "SNAPVIEW_TEST_CHILD";

type Map = SnapMap<u64, Bomb, BuildHasherDefault<Identity>>;

/// Runs the ignored test `name` in a child process; asserts that it passed.
fn run_child(name: &str) {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", name, "--nocapture"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{name} failed ({:?}):\n{stdout}\n{stderr}", output.status);
    assert!(stdout.contains("test result: ok. 1 passed"), "{name} did not run:\n{stdout}\n{stderr}");
}

#[test]
fn writes_by_moves_after_the_last_snapshot_went_free_nothing() {
    run_child("child_writes_by_moves");
}

#[test]
fn a_fold_after_the_last_snapshot_went_frees_nothing() {
    run_child("child_a_fold");
}

#[test]
fn a_rebuild_by_clones_after_the_last_snapshot_went_frees_nothing() {
    run_child("child_a_rebuild_by_clones");
}

#[test]
fn a_batch_that_publishes_nothing_lets_go_last() {
    run_child("child_publishing_nothing");
}

/// Values alive: created or cloned, not yet dropped.
static LIVE: AtomicI64 = AtomicI64::new(0);

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
}

/// A value whose original (not its clones) panics when dropped while armed,
/// once.
#[derive(Debug)]
struct Bomb(bool);

impl Bomb {
    fn new(armed: bool) -> Self {
        LIVE.fetch_add(1, Ordering::Relaxed);
        Self(armed)
    }
}

impl Clone for Bomb {
    fn clone(&self) -> Self {
        Self::new(false)
    }
}

impl Drop for Bomb {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::Relaxed);
        if self.0 && ARMED.get() && !std::thread::panicking() {
            ARMED.set(false);
            std::panic::panic_any(PLANNED_PANIC);
        }
    }
}

/// A map whose current version is empty, and a snapshot of the one before:
/// keys hashed to themselves, root slots 0..8, each a pair (s, s + 64) of
/// values that panic when dropped armed.
fn emptied_map() -> (Map, Snapshot<u64, Bomb, BuildHasherDefault<Identity>>) {
    let map = Map::default();
    map.update(|tx| {
        for s in 0..8 {
            tx.insert(s, Bomb::new(true));
            tx.insert(s + 64, Bomb::new(true));
        }
    });
    let old = map.snapshot();
    map.clear();
    (map, old)
}

/// In a batch: restores `old` and overwrites keys 0..8, so that the root is
/// copied (lending its 8 children: the copy holds the restored root as its
/// lender) and each child then counted and copied; drops `old`, after which
/// only the batch holds the restored version (without the batch's own hold,
/// only through the copy's lender); arms the values.
fn restore_and_let_go(
    tx: &mut Tx<'_, u64, Bomb, BuildHasherDefault<Identity>>,
    old: Snapshot<u64, Bomb, BuildHasherDefault<Identity>>,
) {
    tx.restore(&old);
    for s in 0..8 {
        tx.insert(s, Bomb::new(false));
    }
    drop(old);
    ARMED.set(true);
}

/// Whether a child process runs the case.
fn in_child() -> bool {
    std::env::var_os(CHILD).is_some()
}

/// Every write must go through: nothing armed is dropped until the batch ends.
fn no_panic<R>(write: impl FnOnce() -> R) -> R {
    quietly(write).unwrap_or_else(|_| panic!("a write of the batch freed a restored value"))
}

/// `update(batch)` on `map`, whose restored values go after the publish:
/// the panic of the armed one leaves `update`, with the version published.
fn publishes_then_panics(map: &Map, batch: impl FnOnce(&mut Tx<'_, u64, Bomb, BuildHasherDefault<Identity>>)) {
    let version = map.version();
    let outcome = quietly(|| map.update(batch));
    assert!(outcome.is_err(), "the restored values' destructor panicked at the batch's end");
    assert_eq!(map.version(), version + 1, "after the publish");
    let snapshot = map.snapshot();
    assert_eq!(snapshot.len(), snapshot.iter().count());
}

#[test]
#[ignore = "run in a child process by writes_by_moves_after_the_last_snapshot_went_free_nothing"]
fn child_writes_by_moves() {
    if !in_child() {
        return;
    }
    {
        let (map, old) = emptied_map();
        publishes_then_panics(&map, move |tx| {
            restore_and_let_go(tx, old);
            // An empty root slot: the root is rebuilt by moves, and so it is
            // again as key 64 leaves the pair (0, 64), which folds into it.
            no_panic(|| tx.insert(8, Bomb::new(false)));
            assert!(no_panic(|| tx.remove(&64)).is_some());
            assert_eq!((tx.len(), tx.iter().count()), (16, 16));
        });
        let snapshot = map.snapshot();
        assert!(snapshot.contains_key(&8) && !snapshot.contains_key(&64) && snapshot.contains_key(&0));
        map.insert(64, Bomb::new(false));
        assert_eq!(map.len(), 17, "the map takes the next write");
    }
    assert_eq!(LIVE.load(Ordering::Relaxed), 0, "every value was dropped exactly once");
}

#[test]
#[ignore = "run in a child process by a_fold_after_the_last_snapshot_went_frees_nothing"]
fn child_a_fold() {
    if !in_child() {
        return;
    }
    {
        let (map, old) = emptied_map();
        publishes_then_panics(&map, move |tx| {
            restore_and_let_go(tx, old);
            // Key 64 leaves the pair (0, 64), which folds into the root: a
            // rebuild by moves of the root copy, whose lender (the restored
            // root) nothing borrows from any more.
            assert!(no_panic(|| tx.remove(&64)).is_some());
            assert_eq!((tx.len(), tx.iter().count()), (15, 15));
        });
        let snapshot = map.snapshot();
        assert!(!snapshot.contains_key(&64) && snapshot.contains_key(&0));
    }
    assert_eq!(LIVE.load(Ordering::Relaxed), 0, "every value was dropped exactly once");
}

#[test]
#[ignore = "run in a child process by a_batch_that_publishes_nothing_lets_go_last"]
fn child_publishing_nothing() {
    if !in_child() {
        return;
    }
    {
        let (map, old) = emptied_map();
        let version = map.version();
        let current = map.snapshot();
        // Undone: restoring the version the batch started from.
        let outcome = quietly(|| {
            map.update(|tx| {
                restore_and_let_go(tx, old);
                no_panic(|| tx.insert(8, Bomb::new(false)));
                tx.restore(&current);
            })
        });
        assert!(outcome.is_err(), "the restored values' destructor panicked as the batch ended");
        assert_eq!(map.version(), version, "nothing was published");
        assert!(map.is_empty());
        map.insert(1, Bomb::new(false));
        assert_eq!(map.len(), 1, "the map takes the next write");
    }
    {
        let (map, old) = emptied_map();
        let version = map.version();
        // Refused: `try_update` returning `Err`.
        let outcome = quietly(|| {
            map.try_update(|tx| {
                restore_and_let_go(tx, old);
                no_panic(|| tx.insert(8, Bomb::new(false)));
                Err::<(), _>("refused")
            })
        });
        assert!(outcome.is_err(), "the restored values' destructor panicked as the batch ended");
        assert_eq!(map.version(), version, "nothing was published");
        map.insert(1, Bomb::new(false));
        assert_eq!(map.len(), 1, "the map takes the next write");
    }
    assert_eq!(LIVE.load(Ordering::Relaxed), 0, "every value was dropped exactly once");
}

/// A value that may be lent: copies of its nodes borrow it.
#[derive(Debug)]
struct LentBomb(Bomb);

impl Clone for LentBomb {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

// SAFETY: nothing in a `Bomb` changes through `&Bomb` (a plain bool).
unsafe impl snapview::Lendable for LentBomb {}

#[test]
#[ignore = "run in a child process by a_rebuild_by_clones_after_the_last_snapshot_went_frees_nothing"]
fn child_a_rebuild_by_clones() {
    if !in_child() {
        return;
    }
    {
        type LendingMap = SnapMap<u64, LentBomb, BuildHasherDefault<Identity>>;
        let map: LendingMap = SnapMap::builder().hasher(BuildHasherDefault::default()).lend_entries().build();
        // A root of 5 entries (keys hashed to themselves: slots 0..5).
        map.update(|tx| (0..5).for_each(|k| _ = tx.insert(k, LentBomb(Bomb::new(true)))));
        let old = map.snapshot();
        // The copy borrows the old root's other entries, which `old` keeps,
        // so the old root stays marked as lending them.
        map.insert(0, LentBomb(Bomb::new(false)));
        let version = map.version();
        let outcome = quietly(|| {
            map.update(move |tx| {
                tx.restore(&old);
                drop(old);
                ARMED.set(true);
                // The restored root lends its entries, so it is rebuilt by
                // clones; the copy takes its place.
                no_panic(|| tx.insert(5, LentBomb(Bomb::new(false))));
                assert_eq!((tx.len(), tx.iter().count()), (6, 6));
            })
        });
        assert!(outcome.is_err(), "the restored values' destructor panicked at the batch's end");
        assert_eq!(map.version(), version + 1, "after the publish");
        let snapshot = map.snapshot();
        assert_eq!((snapshot.len(), snapshot.iter().count()), (6, 6));
    }
    assert_eq!(LIVE.load(Ordering::Relaxed), 0, "every value was dropped exactly once");
}
