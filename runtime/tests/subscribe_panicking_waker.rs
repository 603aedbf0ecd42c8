//! A subscriber's `Waker` is user code and may panic. Every other waiting
//! subscription is still woken (they had been taken off the waiting list,
//! and would have waited for a version that already came), the write that
//! published stays published, and the panic reaches the writer.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use snapview::{SnapMap, Subscription};

struct Boom;

impl Wake for Boom {
    fn wake(self: Arc<Self>) {
        panic!("a waker that panics");
    }
}

#[derive(Default)]
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Flag {
    fn woken(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Registers `subscription`'s wait with `waker`.
fn wait_with<K, V, S>(subscription: &mut Subscription<K, V, S>, waker: Waker) {
    assert!(subscription.poll_changed(&mut Context::from_waker(&waker)).is_pending());
}

/// A map with two subscriptions waiting: `first` with a waker that panics,
/// `second` (registered after it) with one that raises `flag`.
struct Waiting {
    map: SnapMap<u32, u32>,
    first: Subscription<u32, u32>,
    second: Subscription<u32, u32>,
    flag: Arc<Flag>,
}

impl Waiting {
    fn new() -> Waiting {
        let map = SnapMap::new();
        let (mut first, mut second) = (map.subscribe(), map.subscribe());
        let flag = Arc::new(Flag::default());
        wait_with(&mut first, Waker::from(Arc::new(Boom)));
        wait_with(&mut second, Waker::from(Arc::clone(&flag)));
        Waiting { map, first, second, flag }
    }
}

#[test]
fn a_publish_wakes_every_subscription_after_a_panicking_waker() {
    let Waiting { map, first: _first, mut second, flag } = Waiting::new();

    let write = panic::catch_unwind(AssertUnwindSafe(|| map.insert(1, 10)));
    assert!(write.is_err(), "the waker's panic reaches the writer");
    assert!(flag.woken(), "the subscription after the panicking waker was woken");
    assert_eq!((map.version(), map.snapshot().get(&1).copied()), (1, Some(10)), "the write stands");
    match second.poll_changed(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(Some(snapshot)) => assert_eq!(snapshot.version(), 1),
        other => panic!("the second subscription gets version 1, not {:?}", other.map(|s| s.map(|s| s.version()))),
    }
    // The map goes on: the next write publishes and wakes normally.
    let flag = Arc::new(Flag::default());
    wait_with(&mut second, Waker::from(Arc::clone(&flag)));
    map.insert(2, 20);
    assert!(flag.woken());
    assert_eq!(map.version(), 2);
}

#[test]
fn dropping_the_map_wakes_every_subscription_after_a_panicking_waker() {
    let Waiting { map, first: _first, mut second, flag } = Waiting::new();

    assert!(panic::catch_unwind(AssertUnwindSafe(|| drop(map))).is_err(), "the waker's panic goes on");
    assert!(flag.woken(), "the subscription after the panicking waker learns the map is gone");
    assert!(matches!(second.poll_changed(&mut Context::from_waker(Waker::noop())), Poll::Ready(None)));
}

/// While another panic unwinds, the waker's is not raised (that would
/// abort the process); the subscriptions are still woken.
#[test]
fn a_map_dropped_during_a_panic_does_not_abort_on_a_panicking_waker() {
    let Waiting { map, first: _first, second: _second, flag } = Waiting::new();

    let unwound = panic::catch_unwind(AssertUnwindSafe(move || {
        let _map = map;
        panic!("the application's own panic");
    }));
    let message = unwound.unwrap_err();
    assert_eq!(message.downcast_ref::<&str>(), Some(&"the application's own panic"));
    assert!(flag.woken());
}

thread_local! {
    /// Whether the next drop of a `DropPanics` waker panics.
    static DROP_PANICS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A waker (each clone of it) whose drop panics once armed.
fn drop_panics() -> Waker {
    use std::task::{RawWaker, RawWakerVTable};
    fn clone(_: *const ()) -> RawWaker {
        RawWaker::new(std::ptr::null(), &VTABLE)
    }
    fn no_op(_: *const ()) {}
    fn drop(_: *const ()) {
        if DROP_PANICS.replace(false) {
            panic!("a waker whose drop panics");
        }
    }
    static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, no_op, no_op, drop);
    // SAFETY: the vtable's functions ignore the data pointer, and do what a
    // waker may: nothing, or panic in its drop.
    unsafe { Waker::from_raw(RawWaker::new(std::ptr::null(), &VTABLE)) }
}

/// A poll that would hand out a version but unwinds, because a waker it let
/// go of panicked in its drop, has not handed it out: the next poll gives it.
#[test]
fn a_version_whose_poll_panicked_is_given_again() {
    let map: SnapMap<u32, u32> = SnapMap::new();
    let mut changes = map.subscribe();
    map.insert(1, 1);
    let waker = drop_panics();
    DROP_PANICS.set(true);
    // The poll clones the context's waker, and lets go of the clone.
    let unwound = panic::catch_unwind(AssertUnwindSafe(|| changes.poll_changed(&mut Context::from_waker(&waker))));
    // Disarmed before any assertion: a failing one would unwind through the
    // drop of `waker`, and a panic there, during unwinding, aborts.
    DROP_PANICS.set(false);
    assert!(unwound.is_err(), "the waker's drop panicked out of the poll");
    match changes.poll_changed(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(Some(snapshot)) => assert_eq!(snapshot.version(), 1),
        other => panic!("version 1 was lost: {other:?}"),
    }
}
