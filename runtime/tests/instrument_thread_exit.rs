//! A map written from an application's thread-local destructor (a buffer
//! flushed as its thread ends) while `instrument` records: the thread ends
//! normally, and the calls it makes then never go to a shard that a new
//! thread owns.
#![cfg(feature = "instrument")]

use std::cell::RefCell;
use std::sync::Arc;

use snapview::SnapMap;

type Map = Arc<SnapMap<u64, u64>>;

/// Writes `count` keys into its maps when its thread ends.
struct FlushOnExit(RefCell<Vec<(Map, u64)>>);

impl Drop for FlushOnExit {
    fn drop(&mut self) {
        for (map, count) in self.0.take() {
            for key in 0..count {
                map.insert(key, key);
                drop(map.snapshot());
            }
        }
    }
}

thread_local! {
    static FLUSH: FlushOnExit = const { FlushOnExit(RefCell::new(Vec::new())) };
}

/// The flushing thread-local is registered first, so it is destroyed after
/// everything the thread's later map calls registered: `thread_local`'s
/// guard, which gives the thread's id (and its shards) to the next thread,
/// is gone by then. A map used before (its shard cached) and one used for
/// the first time in the destructor: before, the second panicked inside the
/// destructor, which aborted the whole test process.
#[test]
fn maps_written_as_a_thread_ends_neither_abort_nor_share_a_shard() {
    let used_before: Map = Arc::new(SnapMap::builder().name("exit.used_before").build());
    let first_used_at_exit: Map = Arc::new(SnapMap::builder().name("exit.first_used_at_exit").build());
    for round in 0..4 {
        let (before, at_exit) = (Arc::clone(&used_before), Arc::clone(&first_used_at_exit));
        std::thread::spawn(move || {
            FLUSH.with(|flush| {
                flush.0.borrow_mut().push((Arc::clone(&before), 100));
                flush.0.borrow_mut().push((at_exit, 100));
            });
            before.insert(1_000 + round, 0);
        })
        .join()
        .expect("the thread ends normally");
        // A thread that starts now may take the ended thread's id.
        std::thread::spawn({
            let used_before = Arc::clone(&used_before);
            move || used_before.insert(2_000 + round, 0)
        })
        .join()
        .unwrap();
    }
    assert_eq!(used_before.len(), 108);
    assert_eq!(first_used_at_exit.len(), 100);
}

/// Threads ending at once share each map's discarding shard; with every
/// call timed, their samples fill its ring concurrently (a debug build's
/// overflow check on the ring's counters would abort inside the destructor).
#[test]
fn threads_ending_together_with_every_call_timed_end_normally() {
    let map: Map = Arc::new(SnapMap::builder().name("exit.together").sample_every(1).build());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let map = Arc::clone(&map);
            std::thread::spawn(move || {
                FLUSH.with(|flush| flush.0.borrow_mut().push((Arc::clone(&map), 2_000)));
                map.insert(u64::MAX, 0);
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("the thread ends normally");
    }
    assert_eq!(map.len(), 2_001);
}
