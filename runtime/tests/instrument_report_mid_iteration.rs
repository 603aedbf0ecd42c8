//! A report taken while an iteration goes on never shows more samples than
//! calls: a sampled iteration counts its `next()`s up to each one it times
//! before recording that one (it counted them all only at the end, so the
//! report in between, or forever after a leaked iterator, said `samples >
//! calls`, where `sample_every(1)` promises them equal).
#![cfg(feature = "instrument")]

use snapview::SnapMap;
use snapview::instrument::{Op, report};

#[test]
fn samples_never_exceed_calls_during_and_after_an_iteration() {
    let name = "report.mid_iteration";
    let mut map: SnapMap<u64, u64> = SnapMap::builder().name(name).sample_every(1).build();
    map.extend((0..100).map(|i| (i, i)));
    let snap = map.snapshot();
    let mut iter = snap.iter();
    for _ in 0..50 {
        iter.next().unwrap();
    }
    let next = report().get(name, Op::IterNext).cloned().expect("timed next()s are reported");
    assert_eq!((next.calls, next.samples), (50, 50), "every next() so far, counted and timed");

    // A leaked iterator keeps what it counted.
    std::mem::forget(iter);
    let next = report().get(name, Op::IterNext).cloned().unwrap();
    assert_eq!((next.calls, next.samples), (50, 50));

    // One that runs out counts the rest, once.
    assert_eq!(snap.iter().count(), 100);
    let next = report().get(name, Op::IterNext).cloned().unwrap();
    assert!(next.samples <= next.calls, "{next:?}");
    assert_eq!(next.calls, 150, "{next:?}");
}
