//! An iterator moved to another thread mid-way (`Iter` is `Send`) counts and
//! samples each `next()` in the per-thread state of the thread that makes
//! it: that state has one writer, its own thread. No subscriber: the
//! iterations are sampled, not traced.
#![cfg(feature = "instrument")]

mod common;

use std::sync::mpsc;
use std::thread;

use common::{calls_and_samples, sampled_map};
use snapview::instrument::{Op, report};

#[test]
fn an_iterator_moved_to_another_thread_samples_there() {
    const ROUNDS: u64 = 3000;
    let map = sampled_map("moved", 1, 64);
    let snapshot = map.snapshot();
    thread::scope(|scope| {
        let (send, moved) = mpsc::sync_channel::<snapview::Iter<'_, u64, u64>>(16);
        scope.spawn(move || {
            for iter in moved {
                assert_eq!(iter.count(), 63);
            }
        });
        scope.spawn(|| {
            for _ in 0..100 {
                let _ = report();
            }
        });
        // This thread keeps iterating the same map while the other one
        // finishes the iterations it started: if both wrote to this
        // thread's state, samples would be lost or counted twice.
        for _ in 0..ROUNDS {
            let mut iter = snapshot.iter();
            iter.next();
            send.send(iter).unwrap();
            assert_eq!(snapshot.iter().count(), 64);
        }
    });
    let (calls, samples) = calls_and_samples("moved", Op::IterNext);
    assert_eq!(calls, 2 * ROUNDS * 64);
    assert_eq!(samples, calls, "with sample_every(1) every next() is timed");
}
