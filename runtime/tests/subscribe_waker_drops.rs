//! A waker is the executor's code, and its drop may drop anything its task
//! owned, a subscription of the same map included: the subscriptions run no
//! waker's clone or drop while they hold their lock (before session 39, a
//! re-polled subscription dropped its old waker under it, and a waker that
//! owned a subscription deadlocked the thread).

use std::sync::Arc;
use std::sync::mpsc;
use std::task::{Context, Wake, Waker};
use std::thread;
use std::time::Duration;

use snapview::{SnapMap, Subscription};

/// A waker whose last reference owns a subscription (held only to be
/// dropped with the waker).
struct Owning(#[allow(dead_code)] Subscription<u32, u32>);

impl Wake for Owning {
    fn wake(self: Arc<Self>) {}
}

/// Never dropped: a test that finds a deadlock must fail, not hang in the
/// map's drop, which takes the lock the deadlocked thread holds.
fn leaked_map() -> &'static SnapMap<u32, u32> {
    Box::leak(Box::new(SnapMap::new()))
}

/// A subscription of a fresh leaked map, polled once (pending) with a waker
/// that owns another subscription of the same map; the caller's reference to
/// that waker is gone, so the subscription's stored copy is its last.
fn waiting_on_an_owning_waker() -> (&'static SnapMap<u32, u32>, Subscription<u32, u32>) {
    let map = leaked_map();
    let mut first = map.subscribe();
    let waker = Waker::from(Arc::new(Owning(map.subscribe())));
    assert!(first.poll_changed(&mut Context::from_waker(&waker)).is_pending());
    (map, first)
}

/// Runs `f` on another thread; fails if it has not returned within 10 s.
fn returns(what: &str, f: impl FnOnce() + Send + 'static) {
    let (done, finished) = mpsc::channel();
    thread::spawn(move || {
        f();
        done.send(()).unwrap();
    });
    assert!(finished.recv_timeout(Duration::from_secs(10)).is_ok(), "{what}: deadlocked");
}

#[test]
fn a_replaced_waker_that_owns_a_subscription() {
    let (_map, mut first) = waiting_on_an_owning_waker();
    // Polled again with another waker: the stored one goes, and with it the
    // subscription it owns.
    returns("re-polled", move || assert!(first.poll_changed(&mut Context::from_waker(Waker::noop())).is_pending()));
}

/// A publish takes every waiting waker off the list (and drops it outside
/// the lock), so a ready poll finds none of its own left to drop: this case
/// passed before session 39 too, and guards the ready path.
#[test]
fn a_waker_that_owns_a_subscription_left_when_ready() {
    let (map, mut first) = waiting_on_an_owning_waker();
    map.insert(1, 1);
    returns("ready", move || {
        let ready = first.poll_changed(&mut Context::from_waker(Waker::noop()));
        assert!(matches!(ready, std::task::Poll::Ready(Some(ref s)) if s.get(&1) == Some(&1)));
    });
}

#[test]
fn a_waker_that_owns_a_subscription_left_when_dropped() {
    let (map, first) = waiting_on_an_owning_waker();
    returns("dropped", move || drop(first));
    // The map goes on, and so do new subscriptions.
    let mut next = map.subscribe();
    map.insert(2, 2);
    assert!(next.poll_changed(&mut Context::from_waker(Waker::noop())).is_ready());
}
