//! The one place the recording path's atomics and locks come from, so that
//! `--cfg snapview_loom` can swap in loom's model-checked ones.

#[cfg(snapview_loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
#[cfg(snapview_loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};
#[cfg(not(snapview_loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
#[cfg(not(snapview_loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};

/// std's atomics even under loom, for what is no part of the recording
/// path's protocol (settings, the telemetry pipeline's counters): loom's
/// would only add states to explore, and cannot be built in a `static`.
pub(crate) mod unmodelled {
    pub(crate) use std::sync::atomic::AtomicU32;
    #[cfg(feature = "otlp")]
    pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
}
