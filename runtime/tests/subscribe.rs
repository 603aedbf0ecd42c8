//! `SnapMap::subscribe`: each `changed()` resolves with the next version,
//! coalescing bursts, wakes a waiting task from another thread, and ends with
//! `None` when the map is dropped; all without an async runtime.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use snapview::SnapMap;

/// A waker that unparks the thread that polls, and says it woke it.
struct Unpark {
    thread: Thread,
    woken: AtomicBool,
}

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // SeqCst: a test flag, read after the park below.
        self.woken.store(true, Ordering::SeqCst);
        self.thread.unpark();
    }
}

/// The smallest executor: poll, park until woken, repeat.
/// A wake-up that never comes fails the test after 10 s rather than hang
/// it (and a spurious unpark does not count as one).
fn block_on<F: Future>(future: F) -> F::Output {
    let unpark = Arc::new(Unpark { thread: thread::current(), woken: AtomicBool::new(false) });
    let waker = Waker::from(Arc::clone(&unpark));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !unpark.woken.swap(false, Ordering::SeqCst) {
            let left = deadline.checked_duration_since(Instant::now()).expect("no wake-up within 10 s");
            thread::park_timeout(left);
        }
    }
}

/// Polls once with a waker that does nothing: `Some` if ready now.
fn poll_now<F: Future>(future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => Some(out),
        Poll::Pending => None,
    }
}

#[test]
fn changed_yields_the_next_version_and_coalesces_bursts() {
    let map: SnapMap<u32, u32> = SnapMap::new();
    map.insert(0, 0);
    let mut sub = map.subscribe();
    assert_eq!(sub.seen_version(), 1);
    assert!(poll_now(sub.changed()).is_none(), "nothing published since subscribing");
    map.insert(1, 1);
    let snap = block_on(sub.changed()).unwrap();
    assert_eq!((snap.version(), snap.len()), (2, 2));
    map.insert(2, 2);
    map.insert(3, 3);
    map.remove(&0);
    let snap = block_on(sub.changed()).unwrap();
    assert_eq!((snap.version(), snap.len()), (5, 3), "three versions coalesced into the newest");
    map.remove(&12345); // publishes nothing
    assert!(poll_now(sub.changed()).is_none());
}

#[test]
fn a_waiting_subscriber_is_woken_by_a_writer_thread() {
    let map: Arc<SnapMap<u32, u32>> = Arc::new(SnapMap::new());
    let mut sub = map.subscribe();
    let writer = {
        let map = Arc::clone(&map);
        thread::spawn(move || {
            for i in 0..50 {
                thread::sleep(Duration::from_millis(1));
                map.insert(i, i);
            }
        })
    };
    let mut last = 0;
    while last < 50 {
        let snap = block_on(sub.changed()).unwrap();
        assert!(snap.version() > last, "versions only move forward");
        assert_eq!(snap.len() as u64, snap.version(), "each version is the map after that many inserts");
        last = snap.version();
    }
    writer.join().unwrap();
}

#[test]
fn every_subscription_sees_the_change_and_dropping_the_map_ends_them() {
    let map: SnapMap<String, u8> = SnapMap::new();
    let mut a = map.subscribe();
    let mut b = map.subscribe();
    map.insert("k".into(), 1);
    let moved = thread::spawn(move || block_on(b.changed()).map(|s| s.version()));
    assert_eq!(block_on(a.changed()).map(|s| s.version()), Some(1));
    assert_eq!(moved.join().unwrap(), Some(1));
    map.insert("k".into(), 2);
    drop(map);
    assert_eq!(block_on(a.changed()).map(|s| s.version()), Some(2), "the last version is not lost");
    assert!(block_on(a.changed()).is_none(), "then the stream ends");
}

#[test]
fn a_subscription_made_after_writes_waits_for_the_next_one() {
    let map: SnapMap<u8, u8> = (0..10).map(|i| (i, i)).collect();
    map.insert(100, 1);
    let mut sub = map.subscribe();
    assert!(poll_now(sub.changed()).is_none());
    map.insert(101, 1);
    assert_eq!(block_on(sub.changed()).unwrap().version(), map.version());
}

#[test]
fn subscriptions_and_their_futures_move_into_tasks() {
    fn send_sync_static<T: Send + Sync + 'static>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    let map: SnapMap<String, Vec<u8>> = SnapMap::new();
    let mut sub = map.subscribe();
    send_sync_static(&sub);
    let changed = sub.changed();
    send(&changed);
    drop(changed);
    map.insert("k".into(), vec![1]);
    assert_eq!(block_on(sub.changed()).unwrap().get("k"), Some(&vec![1]));
}

/// While subscriptions exist, the last version they were told of is held for
/// them; once the last one is dropped nothing may keep it (it held its values
/// until the next watched publish, or the map's end).
#[test]
fn dropping_the_last_subscription_lets_go_of_the_version_it_was_told_of() {
    let map: SnapMap<u32, Arc<()>> = SnapMap::new();
    let value = Arc::new(());
    let (first, second) = (map.subscribe(), map.subscribe());
    map.insert(1, Arc::clone(&value));
    drop(first);
    assert_eq!(Arc::strong_count(&value), 2, "the current version holds it");
    drop(second);
    drop(map.remove(&1));
    assert_eq!(Arc::strong_count(&value), 1, "no subscription: nothing holds the removed value");
}
