//! A waker may run its task at once, on the thread that wakes it, and that
//! task may write to the map that woke it: the writer wakes subscriptions
//! only after it let go of the map's writer lock (before session 40 it woke
//! them under the lock, and such a write panicked as a write from inside
//! its own batch, out of the writer's `insert`).

use std::sync::Arc;
use std::sync::mpsc;
use std::task::{Context, Wake, Waker};
use std::thread;
use std::time::Duration;

use snapview::SnapMap;

/// Writes `key -> key` to the map when woken, as a task run inline would.
struct WritesBack {
    map: Arc<SnapMap<u32, u32>>,
    key: u32,
}

impl Wake for WritesBack {
    fn wake(self: Arc<Self>) {
        self.map.insert(self.key, self.key);
    }
}

#[test]
fn a_waker_that_writes_to_the_map_that_woke_it() {
    let map = Arc::new(SnapMap::new());
    let mut watching = map.subscribe();
    let waker = Waker::from(Arc::new(WritesBack { map: Arc::clone(&map), key: 9 }));
    assert!(watching.poll_changed(&mut Context::from_waker(&waker)).is_pending());
    drop(waker);

    // On another thread, so that a writer that waited for itself fails the
    // test rather than hanging it.
    let (done, finished) = mpsc::channel();
    let writer = Arc::clone(&map);
    thread::spawn(move || {
        writer.insert(1, 1);
        done.send(()).unwrap();
    });
    assert!(finished.recv_timeout(Duration::from_secs(10)).is_ok(), "the writer panicked or waited for itself");

    // The writer's version, then the waker's.
    assert_eq!(map.version(), 2);
    let now = map.snapshot();
    assert_eq!((now.get(&1), now.get(&9)), (Some(&1), Some(&9)));
    let seen = watching.poll_changed(&mut Context::from_waker(Waker::noop()));
    assert!(matches!(seen, std::task::Poll::Ready(Some(ref s)) if s.version() == 2));
}
