//! A snapview span inside another through an application span (a batch
//! that validates against another map): its time is the inner span's self
//! time only, and is not counted again in the outer one's.
#![cfg(feature = "instrument")]

use std::time::Duration;

use snapview::SnapMap;
use snapview::instrument::{Telemetry, views};

const HELD: Duration = Duration::from_millis(200);

#[test]
fn an_iteration_under_an_application_span_inside_a_batch_counts_once() {
    let (subscriber, _guard) = Telemetry::builder().fmt(true).filter("warn").build().unwrap();
    let routes: SnapMap<u64, u64> = SnapMap::builder().name("nested.routes").build();
    let allowed: SnapMap<u64, u64> = (0..100).map(|i| (i, i)).collect();
    tracing::subscriber::with_default(subscriber, || {
        let window = views::profiler().start().unwrap();
        routes.update(|tx| {
            let _validate = tracing::info_span!("validate").entered();
            let snapshot = allowed.snapshot();
            let mut entries = snapshot.iter();
            entries.next();
            std::thread::sleep(HELD); // inside the iteration
            entries.for_each(drop);
            tx.insert(1, 1);
        });
        let folded = window.finish().folded();
        let nanos = |wanted: &str| -> u64 {
            folded
                .lines()
                .filter_map(|l| l.rsplit_once(' '))
                .filter(|(stack, _)| stack.ends_with(wanted))
                .map(|(_, n)| n.parse::<u64>().unwrap())
                .sum()
        };
        let iteration = nanos("validate;snapview.iter{map=snapmap}");
        let publish = nanos("snapview.publish{map=nested.routes}");
        assert!(iteration >= HELD.as_nanos() as u64, "the iteration holds the sleep:\n{folded}");
        assert!(publish < HELD.as_nanos() as u64 / 2, "the batch's own time counts the iteration again:\n{folded}");
    });
}
