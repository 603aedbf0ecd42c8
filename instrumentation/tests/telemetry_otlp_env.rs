//! The OTLP pipeline honours `OTEL_EXPORTER_OTLP_ENDPOINT` and
//! `OTEL_SERVICE_NAME` when the builder sets neither. The environment is
//! process-wide, so the exporting side runs as a child process (this same
//! test binary, running the ignored `child_exports_with_the_environment`).
#![cfg(feature = "otlp")]

#[path = "support/otlp_receiver.rs"]
mod otlp_receiver;

use std::process::Command;
use std::time::Duration;

use otlp_receiver::spans_named;
use snapview_instrument::{Protocol, Telemetry};

#[test]
fn endpoint_and_service_name_come_from_the_environment() {
    let (endpoint, receiver) = otlp_receiver::start();
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "child_exports_with_the_environment", "--nocapture"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env("OTEL_SERVICE_NAME", "env-named-service")
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        receiver.wait_until(Duration::from_secs(10), |r| !spans_named(&r.spans(), "snapview.snapshot").is_empty()),
        "no span reached {endpoint}"
    );
    assert!(receiver.service_names().iter().any(|name| name == "env-named-service"), "{:?}", receiver.service_names());
}

#[test]
#[ignore = "run by endpoint_and_service_name_come_from_the_environment, with its environment"]
fn child_exports_with_the_environment() {
    let (subscriber, guard) = Telemetry::builder().fmt(false).otlp(Protocol::Grpc).build().unwrap();
    tracing::subscriber::with_default(subscriber, || {
        drop(tracing::debug_span!(target: "snapview", "snapview.snapshot", map = "env", version = 1u64));
    });
    drop(guard); // flushes
}
