//! The spans, one function each, so that names, levels and fields are written
//! down once. Every span has target [`TARGET`] and fields `map` and `version`,
//! and takes the caller's current span as its parent unless told otherwise.
//!
//! The span macros ask the level filter first and build nothing when the level
//! is off: a disabled span costs one cached check.

use tracing::Span;
use tracing::field::Empty;

/// The target of every snapview span and event, for filters such as `snapview=debug`.
pub const TARGET: &str = "snapview";

/// A number as a span field: an `i64`, saturating at `i64::MAX` (no
/// version, count or duration in nanoseconds reaches it). tracing-opentelemetry
/// 0.34 exports `i64` fields as OTLP integers, but `u64` and `usize` ones
/// (it has no `record_u64`) through `Debug`, as strings, which a trace
/// backend cannot compare as numbers (`duration_ns > 1000`).
#[inline]
pub(crate) fn int(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

/// `snapview.snapshot` (DEBUG): an owned snapshot was taken. It has no extent;
/// it marks in the caller's trace which version the caller saw.
pub(crate) fn snapshot(map: &str, version: u64) {
    drop(tracing::debug_span!(target: "snapview", "snapview.snapshot", map, version = int(version)));
}

/// `snapview.read` (DEBUG): a borrowed read guard was taken.
pub(crate) fn read(map: &str, version: u64) {
    drop(tracing::debug_span!(target: "snapview", "snapview.read", map, version = int(version)));
}

/// `snapview.publish` (DEBUG): one write, from its start to its publication;
/// `version` and `changes` are recorded when it ends.
pub(crate) fn publish(map: &str) -> Span {
    tracing::debug_span!(target: "snapview", "snapview.publish", map, version = Empty, changes = Empty)
}

/// `snapview.iter` (DEBUG): one iteration, from its first `next()` to its end;
/// `items`, `duration_ns` and `max_next_ns` are recorded when it ends.
pub(crate) fn iter(map: &str, version: u64) -> Span {
    tracing::debug_span!(
        target: "snapview",
        "snapview.iter",
        map,
        version = int(version),
        items = Empty,
        duration_ns = Empty,
        max_next_ns = Empty
    )
}

/// `snapview.iter.next` (TRACE): one `next()`, under its iteration's span.
pub(crate) fn iter_next(parent: &Span, map: &str, version: u64) -> Span {
    tracing::trace_span!(target: "snapview", parent: parent, "snapview.iter.next", map, version = int(version))
}

/// Whether `snapview.iter.next` spans are wanted at all; asked once per iteration.
pub(crate) fn iter_next_enabled() -> bool {
    tracing::enabled!(target: "snapview", tracing::Level::TRACE)
}

/// `snapview.diff` (DEBUG): one diff walk, from its first `next()` to its end;
/// `version` is the newer version, `from_version` the older, and `changes` is
/// recorded when it ends.
pub(crate) fn diff(map: &str, from_version: u64, version: u64) -> Span {
    tracing::debug_span!(target: "snapview", "snapview.diff", map, version = int(version), from_version = int(from_version), changes = Empty)
}
