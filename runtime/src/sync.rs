//! The one place atomics come from, so that `--cfg snapview_loom` can swap in loom's model-checked ones.

#[cfg(snapview_loom)]
#[cfg_attr(snapview_tsan, allow(unused_imports))]
use loom::sync::atomic::fence;
#[cfg(snapview_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};
#[cfg(not(snapview_loom))]
#[cfg_attr(snapview_tsan, allow(unused_imports))]
use std::sync::atomic::fence;
#[cfg(not(snapview_loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};

/// The Acquire half of freeing on the last decrement: `fence(Acquire)`, or,
/// under ThreadSanitizer (`--cfg snapview_tsan`), an Acquire load of the
/// count, which orders the same and which TSan (unlike a fence) models; std's
/// `Arc` makes the same switch in a TSan build.
#[inline]
pub(crate) fn acquire_after_last_decrement(count: &AtomicU32) {
    #[cfg(snapview_tsan)]
    let _ = count.load(Ordering::Acquire);
    #[cfg(not(snapview_tsan))]
    {
        let _ = count;
        fence(Ordering::Acquire);
    }
}

/// std's atomics even under loom, for what is no part of a protocol between
/// threads that loom should check (a thread's own mark, a setting): loom's
/// would only add states to explore, and cannot be built in a `static`.
pub(crate) mod unmodelled {
    pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
}
