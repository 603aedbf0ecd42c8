//! `install()` called from several threads at once builds one pipeline:
//! the others are refused before building theirs, so they start no
//! exporter and send no final export as their guards drop. A binary of its
//! own: the global default is process-wide.

#![cfg(feature = "otlp")]

#[path = "support/otlp_receiver.rs"]
mod otlp_receiver;

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use snapview_instrument::probe::MapProbe;
use snapview_instrument::{Op, Protocol, Telemetry, TelemetryError};

const THREADS: usize = 4;

#[test]
fn installs_at_once_build_one_pipeline() {
    // Stats, so that every final export carries a series.
    let probe = MapProbe::new("install-race").sample_every(1);
    for version in 0..10 {
        let timer = probe.start(Op::Snapshot);
        probe.snapshot_taken(timer, version);
    }
    let (endpoint, receiver) = otlp_receiver::start();
    let start = Arc::new(Barrier::new(THREADS));
    let installs: Vec<_> = (0..THREADS)
        .map(|_| {
            let (start, endpoint) = (Arc::clone(&start), endpoint.clone());
            thread::spawn(move || {
                start.wait();
                Telemetry::builder()
                    .fmt(false)
                    .otlp(Protocol::Grpc)
                    .otlp_endpoint(endpoint)
                    // Room for the final export on a loaded machine.
                    .otlp_timeout(Duration::from_secs(10))
                    .metrics_interval(Duration::from_secs(3600))
                    .install()
            })
        })
        .collect();
    let (installed, refused): (Vec<_>, Vec<_>) =
        installs.into_iter().map(|install| install.join().expect("an install thread")).partition(Result::is_ok);
    assert_eq!(installed.len(), 1, "one install succeeds");
    for refusal in refused {
        assert!(matches!(refusal, Err(TelemetryError::GlobalDefaultAlreadySet(_))), "{:?}", refusal.err());
    }
    let exported = receiver.wait_until(Duration::from_secs(2), |r| !r.metrics().is_empty());
    assert!(!exported, "a refused pipeline exported {} metrics", receiver.metrics().len());

    drop(installed);
    let exports = |r: &otlp_receiver::ReceiverHandle| {
        r.metrics().iter().filter(|metric| metric.name == "snapview.op.calls").count()
    };
    assert!(receiver.wait_until(Duration::from_secs(10), |r| exports(r) > 0), "the installed pipeline's final export");
    assert_eq!(exports(&receiver), 1, "one pipeline exported");
}
