//! `install()` with a global default already set is refused before any
//! pipeline is built: no exporter starts, nothing is exported, and nothing
//! waits for a collector. Before, the refused pipeline's guard sent a final
//! export as it dropped (a duplicate series) and waited up to the export
//! timeout for a collector that did not answer. A binary of its own: the
//! global default is process-wide.

#![cfg(feature = "otlp")]

#[path = "support/otlp_receiver.rs"]
mod otlp_receiver;

use std::net::TcpListener;
use std::sync::Once;
use std::time::{Duration, Instant};

use snapview_instrument::probe::MapProbe;
use snapview_instrument::{Op, Protocol, Telemetry, TelemetryError};

/// The first install, once per process; and stats for a final export to carry.
fn installed_with_stats() {
    static FIRST: Once = Once::new();
    FIRST.call_once(|| {
        std::mem::forget(Telemetry::builder().fmt(false).install().expect("the first install"));
        let probe = MapProbe::new("install-twice").sample_every(1);
        for version in 0..10 {
            let timer = probe.start(Op::Snapshot);
            probe.snapshot_taken(timer, version);
        }
    });
}

fn refused(error: Option<TelemetryError>) {
    let error = error.expect("a global default is set");
    assert!(matches!(error, TelemetryError::GlobalDefaultAlreadySet(_)), "{error:?}");
}

#[test]
fn a_refused_install_exports_nothing() {
    installed_with_stats();
    let (endpoint, receiver) = otlp_receiver::start();
    let second = Telemetry::builder().fmt(false).otlp(Protocol::Grpc).otlp_endpoint(endpoint).install();
    refused(second.err());
    let exported = receiver.wait_until(Duration::from_secs(2), |r| !r.metrics().is_empty() || !r.spans().is_empty());
    assert!(!exported, "a refused pipeline exported {} metrics", receiver.metrics().len());
}

/// The refusal leaves the installed subscriber's filters as they were: a
/// refusal that registered another subscriber with the callsites would
/// have raised the global level filter to TRACE.
#[test]
fn a_refused_install_leaves_the_level_filter() {
    installed_with_stats();
    let before = tracing::level_filters::LevelFilter::current();
    assert!(before < tracing::level_filters::LevelFilter::TRACE, "the first install filters: {before}");
    refused(Telemetry::builder().fmt(false).install().err());
    assert_eq!(tracing::level_filters::LevelFilter::current(), before);
}

#[test]
fn a_refused_install_waits_for_no_collector() {
    installed_with_stats();
    // A collector that accepts connections and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    std::thread::spawn(move || {
        let held: Vec<_> = silent.incoming().collect();
        drop(held);
    });
    let started = Instant::now();
    let second = Telemetry::builder()
        .fmt(false)
        .otlp(Protocol::HttpProtobuf)
        .otlp_endpoint(endpoint)
        .otlp_timeout(Duration::from_secs(5))
        .install();
    refused(second.err());
    assert!(started.elapsed() < Duration::from_secs(2), "refused after {:?}", started.elapsed());
}
