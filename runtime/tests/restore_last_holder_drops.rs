//! A batch that restores a version, then lets go of the last snapshot of it,
//! holds that version alone, through the lender of the nodes it copied from
//! it. A later write that rebuilds such a node by moves let go of the lender
//! inside the region where a panic aborts the process (`raw::build`,
//! `rebuild_taking`): the old version's values were dropped there, and one
//! whose `Drop` panicked aborted instead of unwinding out of `update`. The
//! lender now goes after the rebuild, where a panic unwinds like any other
//! destructor's in a batch: the map stays at its version, nothing leaks.
//!
//! The case runs in a child process, so that an abort fails the test instead
//! of the test binary.

mod common;

use std::cell::Cell;
use std::hash::BuildHasherDefault;
use std::process::Command;
use std::sync::atomic::{AtomicI64, Ordering};

use common::{Identity, PLANNED_PANIC, quietly};
use snapview::SnapMap;

/// Set in the child: the case returns at once when run by hand.
const CHILD: &str = "SNAPVIEW_TEST_CHILD";

#[test]
fn a_destructor_panicking_as_a_restored_version_goes_unwinds() {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "child_restored_version_goes_mid_batch", "--nocapture"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the child failed ({:?}):\n{stdout}\n{stderr}", output.status);
    assert!(stdout.contains("test result: ok. 1 passed"), "the child did not run:\n{stdout}\n{stderr}");
}

/// Values alive: created or cloned, not yet dropped.
static LIVE: AtomicI64 = AtomicI64::new(0);

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
}

/// A value whose original (not its clones) panics when dropped while armed.
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

#[test]
#[ignore = "run in a child process by a_destructor_panicking_as_a_restored_version_goes_unwinds"]
fn child_restored_version_goes_mid_batch() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    {
        // Keys hashed to themselves: root slots 0..8, each a pair (s, s + 64).
        let map: SnapMap<u64, Bomb, BuildHasherDefault<Identity>> = SnapMap::default();
        map.update(|tx| {
            for s in 0..8 {
                tx.insert(s, Bomb::new(true));
                tx.insert(s + 64, Bomb::new(true));
            }
        });
        let old = map.snapshot();
        map.clear();
        let version = map.version();
        let outcome = quietly(|| {
            map.update(move |tx| {
                tx.restore(&old);
                // The root is copied, lending its 8 children (so the copy
                // holds the restored root as its lender); each child is then
                // counted and copied.
                for s in 0..8 {
                    tx.insert(s, Bomb::new(false));
                }
                // Now only the copy's lender holds the restored version.
                drop(old);
                ARMED.set(true);
                // An empty root slot: the root is rebuilt by moves, and its
                // lender goes, the last holder of the old version's values.
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
