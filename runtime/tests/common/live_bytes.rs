//! Global allocators that count live heap bytes, for the tests that
//! measure what a map keeps allocated (each installs one in its own test
//! crate: `#[global_allocator] static A: LiveBytes = LiveBytes;`).
//!
//! [`LiveBytes`] counts every thread in one shared counter;
//! [`ThreadLiveBytes`] counts each thread's own allocations less its own
//! frees, for a test whose maps live on one thread while other threads (the
//! harness's, a telemetry thread's in the `--all-features` build) allocate
//! or exit and would move a shared count by a few hundred bytes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicI64, Ordering};

/// Counts live heap bytes, all threads, in one shared counter: fine for
/// tests whose subject is memory, not speed.
pub struct LiveBytes;

/// The live heap bytes now.
pub static LIVE: AtomicI64 = AtomicI64::new(0);
/// The most live heap bytes so far.
pub static PEAK: AtomicI64 = AtomicI64::new(0);

fn track_shared(delta: i64) {
    let now = LIVE.fetch_add(delta, Ordering::Relaxed) + delta;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

/// Counts the live heap bytes the calling thread allocated less those it
/// freed; read with [`thread_live`].
pub struct ThreadLiveBytes;

thread_local! {
    static THREAD_LIVE: Cell<i64> = const { Cell::new(0) };
}

fn track_thread(delta: i64) {
    // try_with: the counter may be gone while a thread is torn down.
    let _ = THREAD_LIVE.try_with(|live| live.set(live.get() + delta));
}

/// The bytes this thread allocated less those it freed, under
/// [`ThreadLiveBytes`].
pub fn thread_live() -> i64 {
    THREAD_LIVE.with(Cell::get)
}

/// Implements `GlobalAlloc` for `$allocator` by forwarding every call to
/// `System` unchanged and booking the change in live bytes with `$track`,
/// which must not allocate.
macro_rules! counting_allocator {
    ($allocator:ty, $track:path) => {
        // SAFETY: every call is forwarded to `System` unchanged; the
        // bookkeeping (two atomics, or a const-initialised thread-local
        // without a destructor) never allocates.
        unsafe impl GlobalAlloc for $allocator {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                $track(layout.size() as i64);
                // SAFETY: forwarded with the caller's guarantees.
                unsafe { System.alloc(layout) }
            }

            unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
                $track(layout.size() as i64);
                // SAFETY: forwarded with the caller's guarantees.
                unsafe { System.alloc_zeroed(layout) }
            }

            unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
                $track(new_size as i64 - layout.size() as i64);
                // SAFETY: forwarded with the caller's guarantees.
                unsafe { System.realloc(ptr, layout, new_size) }
            }

            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                $track(-(layout.size() as i64));
                // SAFETY: forwarded with the caller's guarantees.
                unsafe { System.dealloc(ptr, layout) }
            }
        }
    };
}

counting_allocator!(LiveBytes, track_shared);
counting_allocator!(ThreadLiveBytes, track_thread);
