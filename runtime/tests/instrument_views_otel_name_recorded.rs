//! An application span whose `otel.name` is recorded after it opens (the
//! OpenTelemetry convention for a name known only once the request is
//! routed) names its frame in a view profile, as one given at its opening
//! does.
#![cfg(feature = "instrument")]

use snapview::SnapMap;
use snapview::instrument::{Telemetry, views};

#[test]
fn an_otel_name_recorded_late_names_the_frame() {
    let (subscriber, _guard) = Telemetry::builder().fmt(true).filter("warn").build().unwrap();
    let map: SnapMap<u64, u64> = SnapMap::builder().name("late.name").build();
    map.insert(1, 1);
    tracing::subscriber::with_default(subscriber, || {
        let window = views::profiler().start().unwrap();
        let request = tracing::info_span!("request", otel.name = tracing::field::Empty);
        request.record("otel.name", "GET /routes");
        request.in_scope(|| drop(map.snapshot()));
        drop(request);
        let folded = window.finish().folded();
        assert!(
            folded.lines().any(|line| line.starts_with("GET /routes;snapview.snapshot{map=late.name} ")),
            "no frame named by the recorded otel.name:\n{folded}"
        );
    });
}
