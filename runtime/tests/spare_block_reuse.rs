//! A map's writes reuse the node block the last one freed (docs/design.md,
//! §5): a write that copies a node of 1-4 KB (past glibc's per-thread
//! cache) and frees the one it replaced allocates no new block of that
//! size, however the batch ends: published, given up (`try_update`'s
//! `Err`), or with nothing changed (a removal of an absent key). Each of the three ends hands the block
//! back to the map; one that dropped it instead would allocate anew at
//! every write.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ops::RangeInclusive;

use foldhash::fast::FixedState;
use snapview::SnapMap;

/// The sizes a map keeps a block of.
const KEPT: RangeInclusive<usize> = 1024..=4096;

struct CountingKept;

thread_local! {
    /// Allocations of a kept size on this thread (tests run on threads of
    /// their own).
    static KEPT_ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn count(size: usize) {
    if KEPT.contains(&size) {
        // try_with: the counter may be gone while a thread is torn down.
        let _ = KEPT_ALLOCS.try_with(|c| c.set(c.get() + 1));
    }
}

fn kept_allocs() -> u64 {
    KEPT_ALLOCS.with(Cell::get)
}

// SAFETY: every call is forwarded to `System` unchanged; the counter is a
// const-initialised thread-local without a destructor, which never allocates.
unsafe impl GlobalAlloc for CountingKept {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingKept = CountingKept;

/// 64-byte entries: a root holding ~20 of them is 1-4 KB.
type Wide = [u64; 7];

#[test]
#[cfg_attr(snapview_no_spare, ignore = "a build for a memory checker keeps no block")]
fn each_write_reuses_the_block_the_last_one_freed() {
    // A fixed seed: the root's shape, so its size, is the same in every run.
    let mut map: SnapMap<u64, Wide, FixedState> =
        SnapMap::builder().name("spare_block_reuse").sample_every(0).hasher(FixedState::with_seed(7)).build();
    // 48 keys: a root of entries (~23 of them) and a few small children. A
    // root that holds entries is copied by every write and, with no reader
    // holding the version it replaced, freed at the publish.
    map.extend((0..48).map(|k| (k, [k; 7])));
    let before = kept_allocs();
    map.insert(0, [1; 7]);
    assert!(
        kept_allocs() > before,
        "the first write allocated no block of 1-4 KB: the root is not of that size, and this test needs one"
    );

    let before = kept_allocs();
    for i in 0..50 {
        map.insert(i % 48, [i; 7]);
        let given_up: Result<(), ()> = map.try_update(|tx| {
            tx.insert(i % 48, [0; 7]);
            Err(())
        });
        assert!(given_up.is_err());
        // Nothing to remove: the batch copies the root on its way and
        // changes nothing.
        map.update(|tx| assert_eq!(tx.remove(&1_000), None));
    }
    let allocated = kept_allocs() - before;
    assert!(allocated <= 1, "{allocated} blocks of 1-4 KB allocated over 150 writes that each free one");
    assert_eq!(map.snapshot().get(&1), Some(&[49; 7]));
}
