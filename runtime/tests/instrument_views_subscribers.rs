//! The view profiler follows every subscriber that carries its layer: a
//! build that failed (or a subscriber dropped) leaves the working one
//! profilable, and a subscriber built while a window is open goes back to
//! idle with the others when the window ends.
#![cfg(feature = "instrument")]

use snapview::SnapMap;
use snapview::instrument::{Telemetry, views};
use tracing::level_filters::LevelFilter;

#[test]
fn windows_reach_every_live_subscriber_and_idle_them_all() {
    let map: SnapMap<u64, u64> = SnapMap::builder().name("views.subscribers").build();
    map.insert(1, 1);
    let (working, _guard) = Telemetry::builder().fmt(true).filter("warn").build().unwrap();
    let failed = Telemetry::builder().fmt(false).filtered_layer(tracing_subscriber::fmt::layer(), "snapview=loud");
    assert!(failed.build().is_err(), "a filter that does not parse");

    let working = tracing::Dispatch::new(working);
    tracing::dispatcher::with_default(&working, || {
        let window = views::profiler().start().expect("the working subscriber is still profilable");
        drop(map.snapshot());

        // Built while the window is open: it starts on, and must go off with it.
        let (later, _later_guard) = Telemetry::builder().fmt(true).filter("warn").build().unwrap();
        let later = tracing::Dispatch::new(later);
        let profile = window.finish();
        assert!(profile.folded().contains("snapview.snapshot{map=views.subscribers}"), "{}", profile.folded());
        assert_eq!(LevelFilter::current(), LevelFilter::WARN, "every subscriber idle again");

        // The later subscriber is profiled by the next window too.
        let window = views::profiler().start().unwrap();
        tracing::dispatcher::with_default(&later, || drop(map.snapshot()));
        assert!(!window.finish().is_empty());
        assert_eq!(LevelFilter::current(), LevelFilter::WARN);
    });
}
