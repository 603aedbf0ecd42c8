//! The one place atomics come from, so that `--cfg snapview_loom` can swap in loom's model-checked ones.

#[cfg(snapview_loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, Ordering, fence};
#[cfg(not(snapview_loom))]
pub(crate) use std::sync::atomic::{AtomicU32, Ordering, fence};
