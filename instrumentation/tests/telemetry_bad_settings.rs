//! OTLP settings that cannot work are a clear error or are bounded, never a
//! panic. An exporter that cannot be built is an error also when the builder
//! runs inside an application's async runtime: the pipeline's own export
//! runtime, started before the exporters, must then go without blocking
//! (dropping a runtime there panics).
#![cfg(feature = "otlp")]

#[path = "support/otlp_receiver.rs"]
mod otlp_receiver;

use std::time::Duration;

use otlp_receiver::spans_named;
use snapview_instrument::{Protocol, Telemetry, TelemetryError};

fn build_with_endpoint(endpoint: &str) -> TelemetryError {
    Telemetry::builder()
        .fmt(false)
        .otlp(Protocol::Grpc)
        .otlp_endpoint(endpoint)
        .build()
        .err()
        .expect("this endpoint cannot make an exporter")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_bad_endpoint_is_an_error_inside_an_async_runtime() {
    let error = build_with_endpoint("http://bad host:4317");
    assert!(matches!(error, TelemetryError::Exporter { .. }), "{error:?}");
    assert!(error.to_string().contains("exporter"), "{error}");
    // The runtime that called the builder goes on working.
    tokio::time::sleep(Duration::from_millis(1)).await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_bad_endpoint_is_an_error_on_a_current_thread_runtime() {
    let error = build_with_endpoint("http://bad host:4317");
    assert!(matches!(error, TelemetryError::Exporter { .. }), "{error:?}");
}

#[test]
fn a_bad_endpoint_is_an_error_outside_any_runtime() {
    let error = build_with_endpoint("http://bad host:4317");
    assert!(matches!(error, TelemetryError::Exporter { .. }), "{error:?}");
}

/// A user part in the endpoint (`user:password@`) is a secret: errors and
/// the builder's `Debug` show it as `***@`.
#[test]
fn an_endpoints_user_part_is_not_shown() {
    for protocol in [Protocol::Grpc, Protocol::HttpProtobuf] {
        let built =
            Telemetry::builder().fmt(false).otlp(protocol).otlp_endpoint("http://user:s3cret@bad host:4318").build();
        let error = built.err().expect("this endpoint cannot make an exporter").to_string();
        assert!(error.contains("http://***@bad host:4318") && !error.contains("s3cret"), "{protocol:?}: {error}");
    }
    let builder = Telemetry::builder().otlp(Protocol::Grpc).otlp_endpoint("http://user:s3cret@collector:4317");
    let debug = format!("{builder:?}");
    assert!(debug.contains("http://***@collector:4317") && !debug.contains("s3cret"), "{debug}");
}

/// Over HTTP too: the clients are built without the URL, which every
/// export would then fail on.
#[test]
fn a_bad_http_endpoint_is_an_error() {
    for endpoint in ["http://bad host:4318", "http://:4318"] {
        let built = Telemetry::builder().fmt(false).otlp(Protocol::HttpProtobuf).otlp_endpoint(endpoint).build();
        let error = built.err().expect("this endpoint cannot make an exporter");
        assert!(matches!(error, TelemetryError::Exporter { .. }), "{endpoint}: {error:?}");
        assert!(error.to_string().contains(endpoint), "{endpoint}: {error}");
    }
}

/// Without the `otlp-tls` feature no TLS is compiled in: an `https`
/// endpoint fails when it is built, not at the first export, and the error
/// says what would take it. (CI runs this file without the feature too.)
#[cfg(not(feature = "otlp-tls"))]
#[tokio::test]
async fn an_https_endpoint_is_an_error() {
    let error = build_with_endpoint("https://localhost:4317");
    assert!(matches!(error, TelemetryError::Exporter { .. }), "{error:?}");
    assert!(error.to_string().contains("otlp-tls"), "{error}");
}

/// `Instant + Duration::MAX` overflows: the guard's drop, which waits for the
/// exporters at most the timeout, panicked on it.
#[test]
fn the_longest_timeout_is_taken_and_the_guard_drops_cleanly() {
    let (endpoint, receiver) = otlp_receiver::start();
    let (subscriber, guard) = Telemetry::builder()
        .fmt(false)
        .otlp(Protocol::Grpc)
        .otlp_endpoint(endpoint)
        .otlp_timeout(Duration::MAX)
        .build()
        .unwrap();
    tracing::subscriber::with_default(subscriber, || {
        drop(tracing::debug_span!(target: "snapview", "snapview.snapshot", map = "long", version = 1u64));
    });
    drop(guard);
    assert!(
        receiver.wait_until(Duration::from_secs(10), |r| !spans_named(&r.spans(), "snapview.snapshot").is_empty()),
        "the span was exported"
    );
}
