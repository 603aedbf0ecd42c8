//! A snapview span opened in one view window and closed in a later one
//! (an iteration held across them) gives the later window only the part of
//! its life that window saw, not all of it: a window never holds more of a
//! stack than it lasted.
#![cfg(feature = "instrument")]

use std::time::Duration;

use snapview::SnapMap;
use snapview::instrument::{Telemetry, views};

/// How long the iteration stays open between the two windows.
const BETWEEN: Duration = Duration::from_millis(300);

#[test]
fn a_span_held_across_windows_gives_the_later_one_its_share_only() {
    let (subscriber, _guard) = Telemetry::builder().fmt(true).filter("warn").build().unwrap();
    let map: SnapMap<u64, u64> = SnapMap::builder().name("clipped").build();
    map.update(|tx| tx.extend((0..100).map(|i| (i, i))));
    tracing::subscriber::with_default(subscriber, || {
        let snapshot = map.snapshot();
        let first = views::profiler().start().unwrap();
        let mut entries = snapshot.iter();
        entries.next(); // the iteration's span opens in the first window
        drop(first.finish());
        std::thread::sleep(BETWEEN);

        let second = views::profiler().start().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        entries.for_each(drop); // and closes in the second
        let profile = second.finish();
        let iteration: u64 = profile
            .stacks()
            .filter_map(|(frames, nanos)| (frames.last() == Some("snapview.iter{map=clipped}")).then_some(nanos))
            .sum();
        assert!(iteration > 0, "the second window saw the iteration close:\n{}", profile.folded());
        let window = u64::try_from(profile.duration.as_nanos()).unwrap();
        assert!(
            iteration <= window,
            "the second window ({window} ns) holds {iteration} ns of the iteration:\n{}",
            profile.folded()
        );
    });
}
