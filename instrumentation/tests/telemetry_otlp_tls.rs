//! OTLP over TLS (feature `otlp-tls`), end to end against real TLS
//! collectors on loopback: a tonic gRPC server and an HTTPS server (rustls),
//! with certificates made per test (a CA, the server's, a client's). The
//! spans and metrics arrive when the exporter trusts the collector's CA,
//! given to the builder or in `OTEL_EXPORTER_OTLP_CERTIFICATE`; nothing
//! arrives, and the program goes on, when it does not; a collector that
//! asks for a client certificate gets the one given; a certificate file
//! that is missing, not PEM, or half a client identity is an error when
//! the pipeline is built. Cases that need an environment of their own run
//! their exporting side in a child process (`support/child.rs`).
#![cfg(feature = "otlp-tls")]

#[path = "support/child.rs"]
mod child;
#[path = "support/otlp_http_receiver.rs"]
mod otlp_http_receiver;
#[path = "support/otlp_receiver.rs"]
mod otlp_receiver;
#[path = "support/tls_certs.rs"]
mod tls_certs;

use std::time::{Duration, Instant};

use child::run_child;
use otlp_receiver::spans_named;
use snapview_instrument::probe::MapProbe;
use snapview_instrument::{Op, Protocol, Telemetry, TelemetryBuilder, TelemetryError};
use tls_certs::Certificates;

/// Times one snapshot (a `snapview.snapshot` span and a histogram point)
/// through a pipeline `configure` sets up, then flushes and drops it;
/// returns the spans it dropped.
fn export_one_span(configure: impl FnOnce(TelemetryBuilder) -> TelemetryBuilder) -> u64 {
    let (subscriber, guard) =
        configure(Telemetry::builder().fmt(false).otlp_timeout(Duration::from_secs(2))).build().unwrap();
    // A timed snapshot: its span, and a point of the latency histogram.
    let probe = MapProbe::new("tls").sample_every(1);
    tracing::subscriber::with_default(subscriber, || probe.snapshot_taken(probe.start(Op::Snapshot), 1));
    guard.flush();
    let dropped = guard.dropped_spans();
    drop(guard);
    dropped
}

fn has_span(receiver: &otlp_receiver::ReceiverHandle) -> bool {
    !spans_named(&receiver.spans(), "snapview.snapshot").is_empty()
}

#[test]
fn grpc_over_tls_reaches_a_collector_whose_ca_is_trusted() {
    let certs = Certificates::new("grpc");
    let (endpoint, receiver) = otlp_receiver::start_tls(&certs.server.certificate, &certs.server.key, None);
    assert!(endpoint.starts_with("https://"));
    let dropped =
        export_one_span(|b| b.otlp(Protocol::Grpc).otlp_endpoint(&endpoint).otlp_certificate(certs.ca_file()));
    assert_eq!(dropped, 0);
    assert!(receiver.wait_until(Duration::from_secs(10), has_span), "no span reached {endpoint}");
    assert!(
        receiver.wait_until(Duration::from_secs(10), |r| r.metrics().iter().any(|m| m.name == "snapview.op.duration")),
        "no latency histogram reached {endpoint}"
    );
}

/// tonic names the server by the URI's host, which for an IPv6 literal
/// keeps its brackets: no certificate matched `[::1]`.
#[test]
fn grpc_over_tls_reaches_a_collector_at_an_ipv6_literal() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: this host has no IPv6 loopback");
        return;
    }
    let certs = Certificates::new("ipv6");
    let (endpoint, receiver) =
        otlp_receiver::start_tls_on("[::1]:0", &certs.server.certificate, &certs.server.key, None);
    assert!(endpoint.starts_with("https://[::1]:"), "{endpoint}");
    let dropped =
        export_one_span(|b| b.otlp(Protocol::Grpc).otlp_endpoint(&endpoint).otlp_certificate(certs.ca_file()));
    assert_eq!(dropped, 0);
    assert!(receiver.wait_until(Duration::from_secs(10), has_span), "no span reached {endpoint}");
}

#[test]
fn http_over_tls_reaches_a_collector_whose_ca_is_trusted() {
    let certs = Certificates::new("http");
    let receiver = otlp_http_receiver::start_tls(&certs.server.certificate, &certs.server.key, None);
    let endpoint = receiver.endpoint.clone();
    let dropped =
        export_one_span(|b| b.otlp(Protocol::HttpProtobuf).otlp_endpoint(&endpoint).otlp_certificate(certs.ca_file()));
    assert_eq!(dropped, 0);
    let paths = |r: &otlp_http_receiver::HttpReceiver| r.requests().into_iter().map(|r| r.path).collect::<Vec<_>>();
    assert!(
        receiver.wait_until(Duration::from_secs(10), |r| {
            let paths = paths(r);
            paths.iter().any(|p| p == "/v1/traces") && paths.iter().any(|p| p == "/v1/metrics")
        }),
        "{:?} reached {endpoint}",
        paths(&receiver)
    );
}

/// The platform's roots do not hold the test CA: the handshake fails,
/// every export with it, and the program neither waits nor crashes.
#[test]
fn an_untrusted_collector_gets_nothing_and_the_spans_are_counted_as_dropped() {
    let certs = Certificates::new("untrusted");
    let (endpoint, receiver) = otlp_receiver::start_tls(&certs.server.certificate, &certs.server.key, None);
    let start = Instant::now();
    let dropped = export_one_span(|b| b.otlp(Protocol::Grpc).otlp_endpoint(&endpoint));
    assert!(start.elapsed() < Duration::from_secs(10), "took {:?}", start.elapsed());
    assert_eq!(dropped, 1, "the span of the failed export");
    assert!(receiver.spans().is_empty());
    let http = otlp_http_receiver::start_tls(&certs.server.certificate, &certs.server.key, None);
    let dropped = export_one_span(|b| b.otlp(Protocol::HttpProtobuf).otlp_endpoint(&http.endpoint));
    assert_eq!(dropped, 1, "the span of the failed export, over HTTP");
    assert!(http.requests().is_empty());
}

/// A collector that takes the connection and never answers the TLS
/// handshake: each export gives up after the export timeout, rather than
/// holding the exporter, and every later span, for as long as the
/// connection stays open.
#[test]
fn a_handshake_that_never_ends_is_given_up_after_the_timeout() {
    let certs = Certificates::new("silent");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("https://{}", listener.local_addr().unwrap());
    let held = std::thread::spawn(move || listener.incoming().flatten().take(4).collect::<Vec<_>>());
    let (subscriber, guard) = Telemetry::builder()
        .fmt(false)
        .otlp(Protocol::Grpc)
        .otlp_endpoint(&endpoint)
        .otlp_certificate(certs.ca_file())
        .otlp_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let probe = MapProbe::new("silent").sample_every(1);
    tracing::subscriber::with_default(subscriber, || probe.snapshot_taken(probe.start(Op::Snapshot), 1));
    guard.flush();
    let deadline = Instant::now() + Duration::from_secs(5);
    while guard.dropped_spans() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(guard.dropped_spans(), 1, "the export never gave up its handshake");
    drop(guard);
    drop(held);
}

#[test]
fn a_collector_that_asks_for_a_client_certificate_gets_the_one_given() {
    let certs = Certificates::new("mutual");
    let (endpoint, receiver) =
        otlp_receiver::start_tls(&certs.server.certificate, &certs.server.key, Some(&certs.ca.certificate));
    let trusting =
        |b: TelemetryBuilder| b.otlp(Protocol::Grpc).otlp_endpoint(&endpoint).otlp_certificate(certs.ca_file());
    export_one_span(trusting);
    assert!(receiver.spans().is_empty(), "taken without a client certificate");
    let (certificate, key) = certs.client_files();
    export_one_span(|b| trusting(b).otlp_client_identity(&certificate, &key));
    assert!(receiver.wait_until(Duration::from_secs(10), has_span), "no span reached {endpoint}");
}

/// Over HTTP the certificate and key go to reqwest as one PEM text: a
/// certificate file without a final newline (as some secret stores write
/// them) must not run into the key.
#[test]
fn over_http_too_with_a_certificate_file_without_a_final_newline() {
    let certs = Certificates::new("mutual-http");
    let receiver =
        otlp_http_receiver::start_tls(&certs.server.certificate, &certs.server.key, Some(&certs.ca.certificate));
    let endpoint = receiver.endpoint.clone();
    let trusting =
        |b: TelemetryBuilder| b.otlp(Protocol::HttpProtobuf).otlp_endpoint(&endpoint).otlp_certificate(certs.ca_file());
    assert_eq!(export_one_span(trusting), 1, "taken without a client certificate");
    assert!(receiver.requests().is_empty());
    let certificate = certs.file("client-no-newline.pem", certs.client.certificate.trim_end());
    let (_, key) = certs.client_files();
    assert_eq!(export_one_span(|b| trusting(b).otlp_client_identity(&certificate, &key)), 0);
    assert!(receiver.wait_for_request("/v1/traces"), "no trace export reached {endpoint}");
}

fn build_error(configure: impl FnOnce(TelemetryBuilder) -> TelemetryBuilder) -> String {
    let error = configure(Telemetry::builder().fmt(false)).build().map(drop).unwrap_err();
    assert!(matches!(error, TelemetryError::Exporter { .. }), "{error:?}");
    error.to_string()
}

#[test]
fn a_certificate_file_that_is_missing_or_holds_no_certificate_is_an_error() {
    let certs = Certificates::new("bad-files");
    let https = |b: TelemetryBuilder| b.otlp(Protocol::Grpc).otlp_endpoint("https://127.0.0.1:9");
    let missing = certs.dir().join("missing.pem");
    let message = build_error(|b| https(b).otlp_certificate(&missing));
    assert!(message.contains("missing.pem"), "{message}");
    let not_pem = certs.file("not.pem", "not a certificate\n");
    let message = build_error(|b| https(b).otlp_certificate(&not_pem));
    assert!(message.contains("no PEM certificate"), "{message}");
    let message =
        build_error(|b| https(b).otlp_certificate(certs.ca_file()).otlp_client_identity(certs.ca_file(), &not_pem));
    assert!(message.contains("no PEM private key"), "{message}");
    // Over HTTP too, and only for an https endpoint: a plain one reads no file.
    let message =
        build_error(|b| b.otlp(Protocol::HttpProtobuf).otlp_endpoint("https://127.0.0.1:9").otlp_certificate(&missing));
    assert!(message.contains("missing.pem"), "{message}");
    let (_, guard) = Telemetry::builder()
        .fmt(false)
        .otlp(Protocol::Grpc)
        .otlp_endpoint("http://127.0.0.1:9")
        .otlp_certificate(&missing)
        .build()
        .unwrap();
    drop(guard);
}

#[test]
fn the_certificates_come_from_the_environment() {
    let certs = Certificates::new("env");
    let (endpoint, receiver) =
        otlp_receiver::start_tls(&certs.server.certificate, &certs.server.key, Some(&certs.ca.certificate));
    let (client_certificate, client_key) = certs.client_files();
    run_child(
        "child_exports_with_the_environments_certificates",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", certs.ca_file().to_str().unwrap()),
            ("OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE", client_certificate.to_str().unwrap()),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", client_key.to_str().unwrap()),
            ("OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE", client_certificate.to_str().unwrap()),
        ],
    );
    assert!(receiver.wait_until(Duration::from_secs(10), has_span), "no span reached {endpoint}");
}

#[test]
#[ignore = "run by the_certificates_come_from_the_environment"]
fn child_exports_with_the_environments_certificates() {
    if !child::in_child() {
        return;
    }
    assert_eq!(export_one_span(TelemetryBuilder::otlp_from_env), 0);
}

#[test]
fn half_a_client_identity_in_the_environment_is_an_error() {
    let certs = Certificates::new("half");
    let (client_certificate, _) = certs.client_files();
    run_child(
        "child_refuses_half_an_identity",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://127.0.0.1:9"),
            ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", client_certificate.to_str().unwrap()),
        ],
    );
}

#[test]
#[ignore = "run by half_a_client_identity_in_the_environment_is_an_error"]
fn child_refuses_half_an_identity() {
    if !child::in_child() {
        return;
    }
    let message = build_error(TelemetryBuilder::otlp_from_env);
    assert!(message.contains("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE is set without its pair"), "{message}");
}

/// reqwest sets TLS up for every client it builds, loading the platform's
/// roots unless given some: on a host with no CA store (a `scratch` image)
/// that failed the build of a plain `http://` exporter, which needs none.
/// The child's store is emptied through `rustls-native-certs`' variables.
#[test]
fn a_plain_http_endpoint_needs_no_ca_store() {
    let receiver = otlp_http_receiver::start();
    let empty = std::env::temp_dir().join(format!("snapview-tls-empty-store-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    run_child(
        "child_exports_over_plain_http",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint),
            ("SSL_CERT_FILE", empty.join("none.pem").to_str().unwrap()),
            ("SSL_CERT_DIR", empty.to_str().unwrap()),
        ],
    );
    let _ = std::fs::remove_dir_all(&empty);
    assert!(receiver.wait_for_request("/v1/traces"), "no trace export reached {}", receiver.endpoint);
}

#[test]
#[ignore = "run by a_plain_http_endpoint_needs_no_ca_store"]
fn child_exports_over_plain_http() {
    if !child::in_child() {
        return;
    }
    assert_eq!(export_one_span(|b| b.otlp(Protocol::HttpProtobuf)), 0);
}
