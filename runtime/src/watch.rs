//! Change notification: [`SnapMap::subscribe`](crate::SnapMap::subscribe)
//! hands out [`Subscription`]s whose [`changed`](Subscription::changed)
//! resolves with the next published version. Runtime-agnostic: plain wakers,
//! no executor assumed.

use core::fmt;
use core::future::poll_fn;
use core::task::{Context, Poll, Waker};
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;

use crate::view::{Snapshot, View};

/// What a map shares with its subscriptions. Writers update it only while
/// someone holds a subscription, so an unwatched map pays one count check per publish.
pub(crate) struct Watchers<K, V, S> {
    state: Mutex<State<K, V, S>>,
}

struct State<K, V, S> {
    /// The newest version published while subscriptions existed; let go when
    /// the last subscription goes, so that it holds no old version's values.
    latest: Option<Arc<View<K, V, S>>>,
    /// Subscriptions alive.
    subscriptions: usize,
    /// The map is gone: no version will come after `latest`.
    closed: bool,
    /// Subscriptions waiting in `changed`, by id (a re-polled future replaces its waker).
    waiting: Vec<(u64, Waker)>,
    next_id: u64,
}

/// The version a publish replaced as the one subscriptions were last told of.
pub(crate) type Replaced<K, V, S> = Option<Arc<View<K, V, S>>>;

/// Subscriptions waiting in `changed`, taken off the list to be woken.
pub(crate) type Waiting = Vec<(u64, Waker)>;

impl<K, V, S> Watchers<K, V, S> {
    pub(crate) fn new() -> Arc<Self> {
        let state = State { latest: None, subscriptions: 0, closed: false, waiting: Vec::new(), next_id: 0 };
        Arc::new(Self { state: Mutex::new(state) })
    }

    /// A new subscription that has seen `version`. The caller holds the
    /// writer lock, so no publish can slip between reading `version` and the
    /// new count that makes writers call [`published`](Self::published).
    pub(crate) fn subscribe(self: &Arc<Self>, version: u64) -> Subscription<K, V, S> {
        let id = {
            let mut state = self.lock();
            state.subscriptions += 1;
            state.next_id += 1;
            state.next_id
        };
        Subscription { watchers: Arc::clone(self), seen: version, id }
    }

    /// Whether any subscription may exist (the map's own reference aside):
    /// the publish's cheap test, which an unwatched map passes with one load.
    /// Called under the writer lock, after which `subscribe` cannot race; a
    /// subscription being dropped still counts here until its `Arc` goes,
    /// which [`published`](Self::published) checks exactly.
    pub(crate) fn watched(self: &Arc<Self>) -> bool {
        Arc::strong_count(self) > 1
    }

    /// A new version was published: it becomes the latest. Returns the
    /// version it replaces as the latest, for the caller to drop once
    /// everything else about the publish is done (dropping it may free that
    /// version, and a value's `Drop` may panic), and the subscriptions
    /// waiting, for the caller to [`wake_all`] then too (a waker is user
    /// code, and may panic).
    #[must_use = "the replaced version and the waiting subscriptions are the caller's to drop and wake"]
    pub(crate) fn published(&self, view: &Arc<View<K, V, S>>) -> (Replaced<K, V, S>, Waiting) {
        let mut state = self.lock();
        // The last subscription may have gone between `watched` and
        // here (its drop ran, its `Arc` not yet): nobody would ask for
        // this version, and nothing would let go of it before the map's end.
        if state.subscriptions == 0 {
            return (None, Waiting::new());
        }
        (state.latest.replace(Arc::clone(view)), core::mem::take(&mut state.waiting))
    }

    /// The map is being dropped. Returns the first panic of a waker.
    pub(crate) fn close(&self) -> thread::Result<()> {
        let waiting = {
            let mut state = self.lock();
            state.closed = true;
            core::mem::take(&mut state.waiting)
        };
        wake_all(waiting)
    }

    fn lock(&self) -> MutexGuard<'_, State<K, V, S>> {
        // No critical section can panic halfway (pushes and takes only), and
        // none runs a waker's code: a waker is cloned, woken and dropped
        // outside, because its drop may drop a subscription of this map,
        // which takes this lock.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<K, V, S> State<K, V, S> {
    /// The waker subscription `id` left, taken off the list.
    fn take_waiting(&mut self, id: u64) -> Option<Waker> {
        let at = self.waiting.iter().position(|(waiting, _)| *waiting == id)?;
        Some(self.waiting.swap_remove(at).1)
    }
}

/// Wakes every waiting subscription even if a waker panics (a `Waker` is
/// user code): the ones after it, already taken off the list, would
/// otherwise wait for a version that has come. Returns the first panic.
pub(crate) fn wake_all(waiting: Waiting) -> thread::Result<()> {
    let mut first_panic = Ok(());
    for (_, waker) in waiting {
        if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| waker.wake())) {
            first_panic = first_panic.and(Err(payload));
        }
    }
    first_panic
}

/// A handle that learns of every new version of one map, for reload loops:
///
/// ```
/// # use snapview::SnapMap;
/// # let map: SnapMap<String, u16> = SnapMap::new();
/// let mut changes = map.subscribe();
/// map.insert("/api".into(), 8080);
/// # let reload = async move {
/// while let Some(snapshot) = changes.changed().await {
///     println!("version {}: {} routes", snapshot.version(), snapshot.len());
/// #   return snapshot.version();
/// }
/// # 0
/// # };
/// # // Polled once by hand, as a task's executor would: version 1 is out.
/// # use std::{future::Future, task::{Context, Poll, Waker}};
/// # let polled = std::pin::pin!(reload).poll(&mut Context::from_waker(Waker::noop()));
/// # assert_eq!(polled, Poll::Ready(1));
/// ```
///
/// `changed()` resolves with the newest version published after the last one
/// this subscription returned (or after it was created): versions published
/// in between are coalesced, as with a watch channel; diff two snapshots to
/// see everything that changed. It resolves with `None` once the map is
/// dropped and its last version was returned. It works with any executor
/// (it only uses the `Waker` it is polled with), and the subscription is
/// `'static`, and `Send` and `Sync` when `K`, `V` and `S` are (as a
/// snapshot is): move it into a task.
pub struct Subscription<K, V, S = crate::DefaultHashBuilder> {
    watchers: Arc<Watchers<K, V, S>>,
    seen: u64,
    id: u64,
}

impl<K, V, S> Subscription<K, V, S> {
    /// The next version after the last one seen; `None` when the map is gone.
    pub async fn changed(&mut self) -> Option<Snapshot<K, V, S>> {
        poll_fn(|cx| self.poll_changed(cx)).await
    }

    /// The polling form of [`changed`](Self::changed), for hand-written futures.
    pub fn poll_changed(&mut self, cx: &mut Context<'_>) -> Poll<Option<Snapshot<K, V, S>>> {
        // Cloned, and the waker it replaces dropped, outside the lock (see `Watchers::lock`).
        let mut waker = Some(cx.waker().clone());
        let mut state = self.watchers.lock();
        let (ready, stale) = if let Some(latest) = state.latest.clone().filter(|view| view.version() > self.seen) {
            (Poll::Ready(Some(Snapshot::from_arc(latest))), state.take_waiting(self.id))
        } else if state.closed {
            (Poll::Ready(None), None)
        } else {
            let stale = state.take_waiting(self.id);
            state.waiting.extend(waker.take().map(|waker| (self.id, waker)));
            (Poll::Pending, stale)
        };
        drop(state);
        // A waker's drop is the executor's code, and may panic: the version
        // counts as seen only once every waker this poll lets go of is gone,
        // so that after such a panic the next poll gives it again rather
        // than waiting for a later one.
        // Both go even if the first panics: a second panic while unwinding
        // would abort the process.
        let stale_dropped = panic::catch_unwind(AssertUnwindSafe(|| drop(stale)));
        drop(waker);
        if let Err(payload) = stale_dropped {
            panic::resume_unwind(payload);
        }
        if let Poll::Ready(Some(snapshot)) = &ready {
            self.seen = snapshot.version();
        }
        ready
    }

    /// The version this subscription saw last.
    pub fn seen_version(&self) -> u64 {
        self.seen
    }
}

impl<K, V, S> Drop for Subscription<K, V, S> {
    fn drop(&mut self) {
        let (unwatched, stale) = {
            let mut state = self.watchers.lock();
            let stale = state.take_waiting(self.id);
            state.subscriptions -= 1;
            // The last one: no one will ask for `latest`, and it would keep
            // a version (and its values) alive until the next watched
            // publish, or the map's end.
            (if state.subscriptions == 0 { state.latest.take() } else { None }, stale)
        };
        // Outside the lock: this may free that version, and run user `Drop`s;
        // the waker's drop is the executor's code. Not both, so no guard
        // against a second panic (`poll_changed` needs one): while the map
        // lives, `latest` is its current version (a publish sets it before
        // letting go of the one it replaced), so its drop only counts down;
        // once the map is gone, `close` has taken every waker and no poll
        // leaves one.
        drop(stale);
        drop(unwatched);
    }
}

impl<K, V, S> fmt::Debug for Subscription<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription").field("seen_version", &self.seen).finish_non_exhaustive()
    }
}
