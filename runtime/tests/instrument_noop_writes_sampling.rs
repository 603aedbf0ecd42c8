//! A write that publishes nothing (removing an absent key, a `try_update`
//! that returns `Err`) is not counted as a publish, and leaves its sample to
//! the next write that is: with a no-op write every other call, the timed
//! calls of an even interval all fell on the no-ops, and the `publish`
//! histogram stayed empty for good.
#![cfg(feature = "instrument")]

mod common;

use common::calls_and_samples;
use snapview::SnapMap;
use snapview::instrument::Op;

const ROUNDS: u64 = 640;
const EVERY: u32 = 64;

#[test]
fn removes_of_absent_keys_leave_the_samples_to_inserts() {
    let name = "noop_sampling.remove";
    let map: SnapMap<u64, u64> = SnapMap::builder().name(name).sample_every(EVERY).build();
    for i in 0..ROUNDS {
        assert_eq!(map.remove(&u64::MAX), None);
        map.insert(i, i);
    }
    let (calls, samples) = calls_and_samples(name, Op::Publish);
    assert_eq!(calls, ROUNDS, "only the inserts published");
    assert!(samples >= ROUNDS / u64::from(EVERY), "{samples} samples of {calls} publishes");
}

#[test]
fn refused_batches_leave_the_samples_to_accepted_ones() {
    let name = "noop_sampling.try_update";
    let map: SnapMap<u64, u64> = SnapMap::builder().name(name).sample_every(EVERY).build();
    for i in 0..ROUNDS {
        let refused: Result<(), &str> = map.try_update(|tx| {
            tx.insert(i, i);
            Err("refused")
        });
        assert!(refused.is_err());
        map.insert(i, i);
    }
    let (calls, samples) = calls_and_samples(name, Op::Publish);
    assert_eq!((calls, map.version()), (ROUNDS, ROUNDS));
    assert!(samples >= ROUNDS / u64::from(EVERY), "{samples} samples of {calls} publishes");
}
