//! A workaround, in debug builds, for tracing-core's callsite interest while
//! exactly one dispatcher is registered (tokio-rs/tracing#3611).
//!
//! tracing-core caches, per callsite, whether any subscriber wants it. While
//! only one `Dispatch` exists in the process, it asks not that dispatcher but
//! the default of whichever thread reaches the callsite first. A test that
//! sets its subscriber with `with_default` on one thread, while another
//! thread without a subscriber takes the first snapshot or makes the first
//! write, then loses snapview's spans for good: the callsite was cached as
//! wanted by nobody. With two dispatchers registered, tracing-core asks each.
//!
//! So in debug builds (where tests run) snapview keeps one more registered,
//! from the first map built on: a subscriber that wants nothing. It leaves
//! the level filter alone (its hint is `OFF`); the price is that a callsite
//! some subscriber always wants is asked per call instead of cached, which
//! release builds never pay.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};
use std::thread;
use std::time::Duration;

use tracing::level_filters::LevelFilter;
use tracing::subscriber::{Interest, Subscriber};
use tracing::{Dispatch, Event, Metadata, span};

/// How long building the first map waits for the registration. It takes
/// microseconds, unless the map is built inside a subscriber's
/// `register_callsite` (or another call tracing-core makes under its lock
/// of the dispatcher list), where it cannot finish until that call returns.
const WAIT: Duration = Duration::from_millis(500);

/// The second dispatcher, once registered.
static ANCHOR: OnceLock<Dispatch> = OnceLock::new();

/// Set when the first caller has stopped waiting for the registration
/// (done, timed out, or no thread to do it), with the condition variable
/// that later callers wait on meanwhile.
static FIRST_WAIT_OVER: Mutex<bool> = Mutex::new(false);
static FIRST_WAIT_ENDED: Condvar = Condvar::new();

/// Registers the second dispatcher, once per process, and returns once it is
/// registered, or after at most [`WAIT`].
///
/// On a thread of its own: registering takes tracing-core's lock of the
/// dispatcher list, which the caller may hold if it is a subscriber's
/// callback building its first map. Every caller waits, not only the first:
/// a thread building its first map while another's registration is under
/// way would otherwise go on to reach a callsite while one dispatcher is
/// registered, the very case this module exists for.
pub(crate) fn keep_two_dispatchers() {
    static STARTED: AtomicBool = AtomicBool::new(false);
    if ANCHOR.get().is_some() {
        return;
    }
    // Relaxed: the flag only keeps a second registration from starting;
    // what it guards is published through `ANCHOR`, the channel and the lock.
    if STARTED.swap(true, Ordering::Relaxed) {
        wait_for_the_first_caller();
        return;
    }
    let (registered, waited) = mpsc::channel();
    let spawned = thread::Builder::new().name("snapview-interest".into()).spawn(move || {
        let _ = ANCHOR.set(Dispatch::new(WantsNothing));
        let _ = registered.send(());
    });
    if spawned.is_ok() {
        let _ = waited.recv_timeout(WAIT);
    }
    *FIRST_WAIT_OVER.lock().unwrap_or_else(PoisonError::into_inner) = true;
    FIRST_WAIT_ENDED.notify_all();
}

/// Waits, at most [`WAIT`], until the first caller has stopped waiting.
fn wait_for_the_first_caller() {
    let over = FIRST_WAIT_OVER.lock().unwrap_or_else(PoisonError::into_inner);
    let waiting = |over: &mut bool| !*over && ANCHOR.get().is_none();
    drop(FIRST_WAIT_ENDED.wait_timeout_while(over, WAIT, waiting).unwrap_or_else(PoisonError::into_inner));
}

/// A subscriber no callsite, span or event reaches.
struct WantsNothing;

impl Subscriber for WantsNothing {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::never()
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::OFF)
    }

    fn enabled(&self, _: &Metadata<'_>) -> bool {
        false
    }

    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        // Never called: `enabled` is false. Any id would do.
        span::Id::from_u64(1)
    }

    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}

    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}

    fn event(&self, _: &Event<'_>) {}

    fn enter(&self, _: &span::Id) {}

    fn exit(&self, _: &span::Id) {}
}
