//! A batch that restores a version, then lets go of the last snapshot of it,
//! holds that version alone, through the lender of the root it copied from
//! it. A later write that rebuilt that root by moves let go of the lender
//! inside the region where a panic aborts the process (`raw::build`,
//! `rebuild_taking`): the old version's values were dropped there, and one
//! whose `Drop` panicked aborted instead of unwinding out of `update`. A
//! lender nothing borrows from any more now goes before the write changes
//! anything (`NodeRef::drop_unused_lender`): a panic there leaves the map at
//! its version, and, caught inside the batch, leaves the batch whole (its
//! length, its keys, a removal's fold) for the writes after it.
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
fn a_panicking_destructor_of_a_restored_version_leaves_update() {
    run_child("child_the_panic_leaves_update");
}

#[test]
fn an_insert_that_caught_it_leaves_the_batch_whole() {
    run_child("child_an_insert_catches_it");
}

#[test]
fn a_removal_that_caught_it_leaves_the_batch_whole() {
    run_child("child_a_removal_catches_it");
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
/// lender) and each child then counted and copied; drops `old`, which
/// leaves the copy's lender the restored version's last holder; arms the
/// values.
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

#[test]
#[ignore = "run in a child process by a_panicking_destructor_of_a_restored_version_leaves_update"]
fn child_the_panic_leaves_update() {
    if !in_child() {
        return;
    }
    {
        let (map, old) = emptied_map();
        let version = map.version();
        let outcome = quietly(|| {
            map.update(move |tx| {
                restore_and_let_go(tx, old);
                // An empty root slot: the root is rebuilt by moves.
                tx.insert(8, Bomb::new(false));
            })
        });
        assert!(outcome.is_err(), "the destructor's panic leaves `update`");
        assert_eq!(map.version(), version, "the batch published nothing");
        assert!(map.is_empty());
        map.insert(1, Bomb::new(false));
        assert_eq!(map.len(), 1, "the map takes the next write");
    }
    assert_eq!(LIVE.load(Ordering::Relaxed), 0, "every value was dropped exactly once");
}

#[test]
#[ignore = "run in a child process by an_insert_that_caught_it_leaves_the_batch_whole"]
fn child_an_insert_catches_it() {
    if !in_child() {
        return;
    }
    {
        let (map, old) = emptied_map();
        map.update(move |tx| {
            restore_and_let_go(tx, old);
            assert!(quietly(|| tx.insert(8, Bomb::new(false))).is_err(), "the destructor panicked");
            assert_eq!((tx.len(), tx.iter().count()), (16, 16), "the insert that panicked wrote nothing");
            assert!(tx.get(&8).is_none());
            assert!(tx.insert(8, Bomb::new(false)).is_none(), "the batch takes the next write");
            assert_eq!((tx.len(), tx.iter().count()), (17, 17));
        });
        let snapshot = map.snapshot();
        assert_eq!((snapshot.len(), snapshot.iter().count()), (17, 17));
        assert!((0..9).chain(64..72).all(|k| snapshot.contains_key(&k)));
    }
    assert_eq!(LIVE.load(Ordering::Relaxed), 0, "every value was dropped exactly once");
}

#[test]
#[ignore = "run in a child process by a_removal_that_caught_it_leaves_the_batch_whole"]
fn child_a_removal_catches_it() {
    if !in_child() {
        return;
    }
    {
        let (map, old) = emptied_map();
        map.update(move |tx| {
            restore_and_let_go(tx, old);
            // Key 64 leaves the pair (0, 64), which folds into the root.
            assert!(quietly(|| tx.remove(&64)).is_err(), "the destructor panicked");
            assert_eq!((tx.len(), tx.iter().count()), (16, 16), "the removal that panicked removed nothing");
            assert!(tx.contains_key(&64));
            assert!(tx.remove(&64).is_some(), "the batch takes the next write");
            assert_eq!((tx.len(), tx.iter().count()), (15, 15));
        });
        let snapshot = map.snapshot();
        assert_eq!((snapshot.len(), snapshot.iter().count()), (15, 15));
        assert!(!snapshot.contains_key(&64) && snapshot.contains_key(&0));
    }
    assert_eq!(LIVE.load(Ordering::Relaxed), 0, "every value was dropped exactly once");
}
