//! A concurrent hash map with O(1) point-in-time snapshot views.
//!
//! Services share maps between threads: routing tables, hot-reloaded config,
//! feature flags, label caches. [`SnapMap`] gives their readers a consistent
//! view for free: [`SnapMap::snapshot`] is one `ArcSwap::load_full` (a few
//! uncontended atomic operations and a reference-count increment), takes no lock, copies nothing and allocates nothing, and the [`Snapshot`]
//! it returns can be held, iterated and sent across threads while writers go
//! on (the first snapshot a thread ever takes may allocate arc-swap's
//! per-thread record, once, reused after the thread ends). Two snapshots
//! of one map diff in O(changes) ([`View::diff`]: the keys written between
//! them, times the trie's depth); snapshots of two different maps (a
//! map's clone aside) diff by look-ups, in O(len).
//!
//! ```
//! use snapview::{Change, SnapMap};
//!
//! let routes = SnapMap::<String, u16>::builder().name("routes").build();
//! routes.insert("/api".to_string(), 8080);
//! let before = routes.snapshot();
//! routes.update(|tx| {
//!     tx.insert("/static".to_string(), 8081);
//!     tx.remove("/api");
//! });
//! assert_eq!(before.get("/api"), Some(&8080)); // a snapshot never changes
//! let now = routes.snapshot();
//! assert_eq!(now.version(), 2);
//! assert_eq!(before.diff(&now).count(), 2); // /api removed, /static added
//! assert!(before.diff(&now).any(|c| matches!(c, Change::Added(k, 8081) if k == "/static")));
//! ```
//!
//! # Consistency
//!
//! - A [`Snapshot`] (or [`ReadGuard`]) is exactly the map after one published
//!   version: every write published before it, none after, never part of a
//!   batch. It stays unchanged for as long as it is held, whatever writers do.
//! - Every write publishes at most one version: [`SnapMap::insert`],
//!   [`SnapMap::remove`] of a present key, and [`SnapMap::update`] with at least
//!   one effective write each publish exactly one; a call that performs no
//!   write (removing an absent key, clearing an empty map, a batch of only
//!   reads or absent removals, an `assign` of an identical table) publishes
//!   none. `insert` always publishes, even of an equal value, as does a batch
//!   whose writes cancel out (insert then remove of a new key).
//!   [`Tx::get_mut`] of a present key, and an [`Entry`] handing out its value
//!   mutably, count as writes even if the value is left as it was.
//!   [`View::version`] counts published versions from 0.
//! - Versions are totally ordered (writers take turns). A snapshot taken after
//!   a write call returned sees that write, on any thread: publication is a
//!   release store that the snapshot's load acquires.
//! - Iteration ([`View::iter`]) walks one version only and returns exactly
//!   [`View::len`] entries, whatever writers do meanwhile.
//! - If user code panics during a write (`Hash`, `Eq`, `Clone`, or the
//!   [`update`](SnapMap::update) closure), nothing is published: the map stays
//!   at its last version and the next writer proceeds normally. The same
//!   holds for a [`try_update`](SnapMap::try_update) whose closure returns
//!   `Err`; an `update` closure's return value, `Err` or not, never cancels
//!   its writes. A panic that comes *after* the publish leaves the version
//!   published and then goes on out of the write call (`insert`, `remove`,
//!   `update`, ...): one from a replaced value's `Drop`, as the writer frees
//!   what only the old version held; from a `tracing` layer (feature
//!   `instrument`); or from a subscription's `Waker` (every waiting
//!   subscription is woken first; dropping the map does the same).
//! - Every key and value is dropped exactly once, once no version that holds
//!   it is current or held by a snapshot, a read guard or a subscription
//!   (while any subscription lives, the map's subscriptions share the newest
//!   version published, even past the map's end, until the last
//!   subscription goes): by the writer, or by the thread that
//!   let go last. Two versions that hold the same entry may
//!   share one instance of it (copies borrow entries rather than clone them),
//!   so a value that a later version still holds is not dropped when an
//!   older one goes.
//! - Versions share every node a write did not copy, and the values in it.
//!   A value that changes through `&V` (a `Mutex`, an atomic, a `Cell`
//!   inside it) changes in every version that shares it, as with any
//!   persistent map; a write clones such values rather than lend them
//!   ([`Lendable`]), so the copies it makes are each version's own.
//! - A clone of a map (`map.clone()`) starts from the version current when
//!   it is made, and shares its nodes and entries with it as versions of one
//!   map do (a value that changes through `&V` changes in both); from then
//!   on the two are separate maps: neither, nor its snapshots, sees the
//!   other's writes, and each numbers its own versions.
//! - [`SnapMap::restore`] (or [`Tx::restore`]) of a held version publishes
//!   a new version (the current number + 1) whose entries are exactly that
//!   version's: the same instances, sharing its nodes, when it is a version
//!   of this map or of a clone of it; clones of its entries otherwise, or
//!   when a clone's writer is still settling the version it has just
//!   published. Restoring a version that holds the current version's trie
//!   publishes nothing: the current version itself, a version restored
//!   since without copying and not written after, or a clone's version
//!   that neither map has written since the clone.
//!
//! # Costs
//!
//! Reads: `snapshot()` is one `ArcSwap::load_full` (a reference-count
//! increment and arc-swap's few uncontended atomics); [`SnapMap::read`] is cheaper
//! still for short reads; `get` walks at most 11 levels of a 64-way trie and
//! a collision node (4 levels for a million keys, the top ones cached); iteration walks each node's inline
//! entries as a slice. Writes copy the path from the root to the changed slot
//! (children shared; entries copied bit for bit where they own nothing, and
//! otherwise, for the listed std types or the [`Lendable`] types of a map built with
//! [`lend_entries`](SnapMapBuilder::lend_entries), borrowed from the node copied, only the written one cloned, or
//! the one a key added or removed moves, and kept borrowed when the batch
//! rebuilds its copy for another key), then swap one pointer; the
//! writer keeps its own copies of the root and of the root's entry-free
//! children between writes, so those are patched rather than copied. A
//! batch copies each node once and then mutates its copy in place. `extend`
//! into an empty map radix-sorts the entries into the trie's order and
//! builds it in one pass, in iteration order, so that a full iteration
//! streams through memory (while it builds, it holds the entries and 16
//! bytes per entry beside the map: 40 bytes per entry for `u64` keys and
//! values); a map grown by many single writes
//! has its nodes wherever the allocator put them, and once it outgrows the
//! CPU's last-level cache (around a million entries) iterating it can take
//! twice as long. A batch that calls `clear()` and then `extend` lays the
//! map out afresh; to reload a whole table and keep what did not change
//! shared with the last version, [`Tx::assign`] writes only what differs
//! (an unchanged table publishes nothing). An old
//! version's memory is freed by whoever drops its last snapshot, and costs
//! only what that version did not share; in a map of plain data (entries
//! without destructors) whose small write a reader held up, the write's
//! replaced path stays until the writer's next write, `clone` or drop (docs/design.md,
//! "Settling later"). See `docs/design.md` for invariants
//! and memory orders.
//!
//! # Change notification
//!
//! [`SnapMap::subscribe`] returns a [`Subscription`] whose `changed().await`
//! resolves with the next published version (versions published in between
//! are coalesced; diff against the previous snapshot to see them all), and
//! with `None` once the map is dropped. It only uses the `Waker` it is polled
//! with, so it works under any executor. A map nobody subscribes to pays one
//! reference-count check per publish.
//!
//! # Features
//!
//! - `serde`: `serde::Serialize` for [`Snapshot`], [`ReadGuard`], [`View`]
//!   and [`SnapMap`] (its current version) as a map, and
//!   `serde::Deserialize` for [`SnapMap`] (from a map, one version; version 0
//!   if the map is empty).
//!   Requires the `serde` crate.
//! - `instrument`: every snapshot, read guard, iteration, publish and diff
//!   (and, if a map asks, every look-up) is counted, sampled into latency
//!   histograms and traced with `tracing` spans; see `snapview::instrument`. Requires
//!   `snapview-instrument` (and through it `tracing`, `tracing-subscriber`,
//!   `hdrhistogram`, `quanta`, `thread_local` and `serde`).
//!   Without it the crate compiles to the uninstrumented code. Code that
//!   compiles without it compiles with it (features unify across a build):
//!   an iterator or a diff records its iteration when dropped, from a part
//!   that needs neither the snapshot nor the keys and values alive, so it
//!   may still be dropped after them (an edition-2021 tail expression such
//!   as `snap.values().any(..)`, an iterator declared before its snapshot,
//!   or one that outlives what borrowed keys borrow). Auto traits (`Send`,
//!   `Sync`, `UnwindSafe`) are the same with and without it.
//! - `otlp`: `instrument`, plus OTLP export of spans and histograms from
//!   `instrument::Telemetry`. Requires the OpenTelemetry crates.
//! - `otlp-tls`: `otlp`, plus TLS for `https://` collectors, with the
//!   platform's roots or a given CA, and client certificates. Requires
//!   rustls with aws-lc-rs (a C library built from source: a C compiler).
//! - `console`: `instrument`, plus tokio-console support in the telemetry
//!   pipeline. Requires `console-subscriber` (and `humantime`, already in
//!   its build) and `--cfg tokio_unstable`.
//! - `pprof`: `instrument`, plus the `/debug/pprof` endpoint
//!   (`snapview::debug`): an axum router serving CPU profiles, view-cost
//!   flamegraphs, the histograms and Prometheus metrics. Requires
//!   `snapview-flame` (axum, tokio, pprof-rs) and a Unix target (pprof-rs
//!   samples with `SIGPROF`).

#![cfg_attr(docsrs, feature(doc_cfg))]

mod diff;
mod entry;
mod hooks;
mod iter;
mod map;
mod order;
mod raw;
mod sync;
#[cfg(test)]
mod testing;
mod trie;
mod tx;
mod view;
mod watch;

pub use diff::{Change, Diff};
pub use entry::{Entry, OccupiedEntry, VacantEntry};
pub use iter::{Iter, Keys, Values};
pub use map::{DEFAULT_NAME, SnapMap, SnapMapBuilder};
pub use raw::Lendable;
pub use tx::Tx;
pub use view::{ReadGuard, Snapshot, View};
pub use watch::Subscription;

/// Latency histograms, call counts and spans of every map view.
///
/// Each map's operations are recorded under its name ([`SnapMapBuilder::name`],
/// else [`DEFAULT_NAME`]): calls exactly, durations for one call in
/// [`default_sample_every`](instrument::default_sample_every) (per map:
/// [`SnapMapBuilder::sample_every`]; for `iter.next`, one `next()` in that
/// many of one iteration in that many). Read them with [`report`](instrument::report())
/// or as Prometheus text with [`prometheus::render_current`](instrument::prometheus::render_current).
///
/// Spans (target `snapview`): `snapview.snapshot`, `snapview.read`,
/// `snapview.iter` (fields `items`, `duration_ns`, `max_next_ns` filled when
/// the iteration ends), `snapview.publish` (field `changes`), `snapview.diff`
/// (fields `from_version`, `changes`) at DEBUG; `snapview.iter.next` at
/// TRACE. All have fields `map` and `version` and nest under the caller's
/// current span.
///
/// [`Telemetry`](instrument::Telemetry) installs a subscriber for an
/// application in one call (filter, fmt logs, OTLP export with the `otlp`
/// feature, tokio-console with `console`, and the idle
/// [view-cost profiler](instrument::views)). See `docs/instrumentation.md`.
#[cfg(feature = "instrument")]
#[cfg_attr(docsrs, doc(cfg(feature = "instrument")))]
pub mod instrument {
    pub use snapview_instrument::*;
}

/// The `/debug/pprof` endpoint: CPU profiles and view-cost flamegraphs for
/// `go tool pprof`, the histogram report and `/metrics`, as an axum router
/// to mount ([`debug::router`]) or a standalone server ([`debug::serve`]).
/// See `docs/operations.md`.
#[cfg(feature = "pprof")]
#[cfg_attr(docsrs, doc(cfg(feature = "pprof")))]
pub mod debug {
    pub use snapview_flame::*;
}

/// The default hasher: foldhash's fast hasher, seeded at random per map so
/// that an attacker who picks keys cannot aim them at one slot.
pub type DefaultHashBuilder = foldhash::fast::RandomState;

/// The README's example, compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
