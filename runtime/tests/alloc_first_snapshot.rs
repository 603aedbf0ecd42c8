//! The thread that builds a map can read it without allocating, from the
//! first snapshot on: arc-swap's per-thread record (allocated on a thread's
//! first load) is taken when the map is built, not by the first `snapshot()`.
//!
//! A test binary of its own with one test, on a thread that has touched no
//! map before: in a binary of many tests, a record freed by an ended test
//! thread would be reused and hide the allocation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;

use snapview::SnapMap;

struct Counting;

thread_local! {
    /// This thread's allocations: the harness's own thread allocates while
    /// the test runs.
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded to `System` unchanged; the counter is a
// const-initialised thread-local without a destructor, which never
// allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // try_with: the counter may be gone while a thread is torn down.
        let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// How many allocations `f` made on this thread.
fn allocations<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let before = ALLOCS.with(Cell::get);
    let r = black_box(f());
    (r, ALLOCS.with(Cell::get) - before)
}

#[test]
fn a_new_maps_first_reads_allocate_nothing() {
    let mut map: SnapMap<u64, u64> = SnapMap::new();
    // Before any write: a write would take the records itself.
    let ((snapshot, guard), allocs) = allocations(|| (map.snapshot(), map.read()));
    assert_eq!(allocs, 0, "the first snapshot and read guard on the thread that built the map allocated");
    assert_eq!((snapshot.len(), guard.len()), (0, 0));
    drop((snapshot, guard));

    map.extend((0..1000).map(|i| (i, i * 2)));
    let ((found, sum), allocs) = allocations(|| {
        let snapshot = map.snapshot();
        (snapshot.get(&7).copied(), snapshot.iter().map(|(_, v)| v).sum::<u64>())
    });
    assert_eq!(allocs, 0, "the first lookup and iteration allocated");
    assert_eq!((found, sum), (Some(14), 999 * 1000));
}
