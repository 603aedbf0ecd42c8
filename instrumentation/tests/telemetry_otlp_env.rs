//! The OTLP pipeline honours `OTEL_EXPORTER_OTLP_ENDPOINT` and
//! `OTEL_SERVICE_NAME` (or the `service.name` of `OTEL_RESOURCE_ATTRIBUTES`)
//! when the builder sets neither. The environment is
//! process-wide, so the exporting side runs as a child process (this same
//! test binary, running the ignored `child_exports_with_the_environment`).
#![cfg(feature = "otlp")]

#[path = "support/child.rs"]
mod child;
#[path = "support/otlp_receiver.rs"]
mod otlp_receiver;

use std::time::Duration;

use child::run_child;
use otlp_receiver::spans_named;
use snapview_instrument::{Protocol, Telemetry};

#[test]
fn endpoint_and_service_name_come_from_the_environment() {
    let receiver = export_from_a_child(&[("OTEL_SERVICE_NAME", "env-named-service")]);
    assert!(receiver.service_names().iter().any(|name| name == "env-named-service"), "{:?}", receiver.service_names());
}

/// Runs `child_exports_with_the_environment` with `OTEL_EXPORTER_OTLP_ENDPOINT`
/// naming a receiver, `vars` and no other naming variable; returns the
/// receiver once the child's span reached it.
fn export_from_a_child(vars: &[(&str, &str)]) -> otlp_receiver::ReceiverHandle {
    let (endpoint, receiver) = otlp_receiver::start();
    let vars: Vec<(&str, &str)> =
        [("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())].into_iter().chain(vars.iter().copied()).collect();
    run_child("child_exports_with_the_environment", &vars);
    assert!(
        receiver.wait_until(Duration::from_secs(10), |r| !spans_named(&r.spans(), "snapview.snapshot").is_empty()),
        "no span reached {endpoint}"
    );
    receiver
}

#[test]
#[ignore = "run by endpoint_and_service_name_come_from_the_environment, with its environment"]
fn child_exports_with_the_environment() {
    if !child::in_child() {
        return;
    }
    let (subscriber, guard) = Telemetry::builder().fmt(false).otlp(Protocol::Grpc).build().unwrap();
    tracing::subscriber::with_default(subscriber, || {
        drop(tracing::debug_span!(target: "snapview", "snapview.snapshot", map = "env", version = 1u64));
    });
    drop(guard); // flushes
}

/// Without `OTEL_SERVICE_NAME`, the `service.name` of
/// `OTEL_RESOURCE_ATTRIBUTES` is kept, not replaced by the executable's
/// name; the other attributes go along.
#[test]
fn the_service_name_of_the_resource_attributes_is_kept() {
    let attributes = "service.name=attribute-named-service,deployment.environment=test";
    // Empty is unset, as the specification reads variables.
    let receiver = export_from_a_child(&[("OTEL_RESOURCE_ATTRIBUTES", attributes), ("OTEL_SERVICE_NAME", "")]);
    assert_eq!(receiver.service_names(), ["attribute-named-service"]);
}
