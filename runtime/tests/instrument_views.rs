//! The view-cost profiler: while a window is open it collects the self time
//! of snapview spans stacked under the caller's spans; otherwise it costs
//! nothing (the global level stays where the application put it).
#![cfg(feature = "instrument")]

use snapview::SnapMap;
use snapview::instrument::{Telemetry, views};
use tracing::level_filters::LevelFilter;

#[test]
fn a_window_collects_view_costs_under_the_callers_spans_and_idles_at_zero_cost() {
    let (subscriber, _guard) = Telemetry::builder().fmt(true).filter("warn").build().unwrap();
    let map: SnapMap<u64, u64> = SnapMap::builder().name("views.routes").build();
    map.update(|tx| {
        for i in 0..1000 {
            tx.insert(i, i);
        }
    });
    tracing::subscriber::with_default(subscriber, || {
        assert_eq!(LevelFilter::current(), LevelFilter::WARN, "idle: the profiler adds no interest");
        let window = views::profiler().start().unwrap();
        assert_eq!(LevelFilter::current(), LevelFilter::DEBUG, "open: snapview spans are on");
        for _ in 0..20 {
            let request = tracing::info_span!("request", otel.name = "GET /route");
            let _in_request = request.enter();
            let snap = map.snapshot();
            assert_eq!(snap.iter().count(), 1000);
        }
        map.insert(5000, 1);
        let profile = window.finish();
        assert_eq!(LevelFilter::current(), LevelFilter::WARN, "closed: back to idle");

        let folded = profile.folded();
        let nanos = |stack: &str| -> u64 {
            folded
                .lines()
                .find_map(|l| l.rsplit_once(' ').filter(|(s, _)| *s == stack).map(|(_, n)| n.parse().unwrap()))
                .unwrap_or_else(|| panic!("no stack {stack:?} in\n{folded}"))
        };
        assert!(nanos("GET /route;snapview.snapshot{map=views.routes}") > 0);
        assert!(nanos("GET /route;snapview.iter{map=views.routes}") > 0);
        assert!(nanos("snapview.publish{map=views.routes}") > 0);
        assert!(!folded.contains("iter.next"), "TRACE spans are not in the window's filter:\n{folded}");
        assert!(profile.duration.as_nanos() > 0);

        // Nothing is collected once the window is closed.
        drop(map.snapshot());
        let again = views::profiler().start().unwrap().finish();
        assert!(again.is_empty(), "{}", again.folded());
    });
}
