//! The standard OpenTelemetry variables the pipeline reads itself:
//! `otlp_from_env()` exports when an endpoint variable is set, with the
//! protocol `OTEL_EXPORTER_OTLP_PROTOCOL` names; `OTEL_SDK_DISABLED=true`
//! turns export off even when the builder asks for it;
//! `OTEL_EXPORTER_OTLP_TIMEOUT` bounds exports and shutdown;
//! `OTEL_BSP_MAX_QUEUE_SIZE` bounds the span queue; a value the pipeline
//! cannot use is an error naming its variable. The environment is
//! process-wide, so each case's exporting side runs as a child process:
//! this test binary, running one of the ignored `child_*` tests with the
//! environment the case gives it.
#![cfg(feature = "otlp")]

#[path = "support/child.rs"]
mod child;
#[path = "support/otlp_http_receiver.rs"]
mod otlp_http_receiver;
#[path = "support/otlp_receiver.rs"]
mod otlp_receiver;

use std::ffi::OsStr;
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use child::{run_child, run_child_os};
use otlp_receiver::spans_named;
use snapview_instrument::probe::MapProbe;
use snapview_instrument::{Op, Protocol, Telemetry, TelemetryError};

/// Builds with the builder `configure` gives, checks the protocol the guard
/// reports, emits one span and flushes on drop.
fn export_one_span(
    configure: impl FnOnce(snapview_instrument::TelemetryBuilder) -> snapview_instrument::TelemetryBuilder,
    expected: Option<Protocol>,
) {
    let (subscriber, guard) = configure(Telemetry::builder().fmt(false)).build().unwrap();
    assert_eq!(guard.otlp_protocol(), expected);
    tracing::subscriber::with_default(subscriber, || {
        drop(tracing::debug_span!(target: "snapview", "snapview.snapshot", map = "from-env", version = 1u64));
    });
    drop(guard);
}

#[test]
fn from_the_environment_http_protobuf_when_the_protocol_says_so() {
    let receiver = otlp_http_receiver::start();
    run_child(
        "child_exports_over_http",
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint), ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")],
    );
    assert!(receiver.wait_for_request("/v1/traces"), "no trace export reached {}", receiver.endpoint);
}

#[test]
#[ignore = "run by from_the_environment_http_protobuf_when_the_protocol_says_so"]
fn child_exports_over_http() {
    if !child::in_child() {
        return;
    }
    export_one_span(|builder| builder.otlp_from_env(), Some(Protocol::HttpProtobuf));
}

#[test]
fn from_the_environment_grpc_by_default() {
    let (endpoint, receiver) = otlp_receiver::start();
    run_child("child_exports_over_grpc", &[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &endpoint)]);
    assert!(
        receiver.wait_until(Duration::from_secs(10), |r| !spans_named(&r.spans(), "snapview.snapshot").is_empty()),
        "no span reached {endpoint}"
    );
}

#[test]
#[ignore = "run by from_the_environment_grpc_by_default"]
fn child_exports_over_grpc() {
    if !child::in_child() {
        return;
    }
    export_one_span(|builder| builder.otlp_from_env(), Some(Protocol::Grpc));
}

#[test]
fn from_the_environment_nothing_without_an_endpoint() {
    run_child("child_exports_nothing", &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")]);
}

#[test]
#[ignore = "run by from_the_environment_nothing_without_an_endpoint and ..._when_both_exporters_are_none"]
fn child_exports_nothing() {
    if !child::in_child() {
        return;
    }
    export_one_span(|builder| builder.otlp_from_env(), None);
}

/// `OTEL_METRICS_EXPORTER=none` (say, for Jaeger, which takes no metrics)
/// exports the spans alone; `OTEL_TRACES_EXPORTER=none` the metrics alone.
#[test]
fn from_the_environment_a_signal_whose_exporter_is_none_is_not_exported() {
    let (endpoint, receiver) = otlp_receiver::start();
    run_child(
        "child_times_a_snapshot",
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint), ("OTEL_METRICS_EXPORTER", "none")],
    );
    assert!(
        receiver.wait_until(Duration::from_secs(10), |r| !spans_named(&r.spans(), "snapview.snapshot").is_empty()),
        "no span reached {endpoint}"
    );
    assert!(receiver.metrics().is_empty(), "metrics exported with OTEL_METRICS_EXPORTER=none");

    let (endpoint, receiver) = otlp_receiver::start();
    run_child(
        "child_times_a_snapshot",
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint), ("OTEL_TRACES_EXPORTER", "none")],
    );
    assert!(
        receiver.wait_until(Duration::from_secs(10), |r| r.metrics().iter().any(|m| m.name == "snapview.op.duration")),
        "no latency histogram reached {endpoint}"
    );
    assert!(receiver.spans().is_empty(), "spans exported with OTEL_TRACES_EXPORTER=none");
}

#[test]
#[ignore = "run by from_the_environment_a_signal_whose_exporter_is_none_is_not_exported"]
fn child_times_a_snapshot() {
    if !child::in_child() {
        return;
    }
    let (subscriber, guard) = Telemetry::builder().fmt(false).otlp_from_env().build().unwrap();
    assert_eq!(guard.otlp_protocol(), Some(Protocol::Grpc));
    let probe = MapProbe::new("from-env.signals").sample_every(1);
    tracing::subscriber::with_default(subscriber, || probe.snapshot_taken(probe.start(Op::Snapshot), 1));
    drop(guard);
}

#[test]
fn from_the_environment_nothing_when_both_exporters_are_none() {
    run_child(
        "child_exports_nothing",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"),
            ("OTEL_TRACES_EXPORTER", "none"),
            ("OTEL_METRICS_EXPORTER", "none"),
        ],
    );
}

#[test]
fn an_exporter_the_pipeline_does_not_have_is_an_error_naming_the_variable() {
    run_child(
        "child_refuses_zipkin",
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"), ("OTEL_TRACES_EXPORTER", "zipkin")],
    );
}

#[test]
#[ignore = "run by an_exporter_the_pipeline_does_not_have_is_an_error_naming_the_variable"]
fn child_refuses_zipkin() {
    if !child::in_child() {
        return;
    }
    let error = Telemetry::builder().fmt(false).otlp_from_env().build().map(drop).unwrap_err();
    assert!(matches!(error, TelemetryError::InvalidEnvironment { var: "OTEL_TRACES_EXPORTER", .. }), "{error:?}");
}

#[test]
fn the_sdk_switch_turns_off_even_an_explicit_protocol() {
    let (endpoint, receiver) = otlp_receiver::start();
    run_child("child_disabled", &[("OTEL_SDK_DISABLED", "true"), ("COLLECTOR", &endpoint)]);
    // The child flushed on exit had it exported anything.
    std::thread::sleep(Duration::from_millis(200));
    assert!(receiver.spans().is_empty(), "{} spans exported with OTEL_SDK_DISABLED=true", receiver.spans().len());
}

#[test]
#[ignore = "run by the_sdk_switch_turns_off_even_an_explicit_protocol"]
fn child_disabled() {
    if !child::in_child() {
        return;
    }
    let endpoint = std::env::var("COLLECTOR").unwrap();
    export_one_span(|builder| builder.otlp(Protocol::Grpc).otlp_endpoint(endpoint), None);
}

#[test]
fn a_protocol_the_pipeline_does_not_speak_is_an_error_naming_the_variable() {
    run_child(
        "child_refuses_json",
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")],
    );
}

#[test]
#[ignore = "run by a_protocol_the_pipeline_does_not_speak_is_an_error_naming_the_variable"]
fn child_refuses_json() {
    if !child::in_child() {
        return;
    }
    let error = Telemetry::builder().fmt(false).otlp_from_env().build().map(drop).unwrap_err();
    assert!(
        matches!(error, TelemetryError::InvalidEnvironment { var: "OTEL_EXPORTER_OTLP_PROTOCOL", .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("OTEL_EXPORTER_OTLP_PROTOCOL=\"http/json\""), "{message}");
}

/// A headers variable with a pair the exporters would skip (a `:` for an
/// `=`: every export would then go without the API key, refused) stops the
/// build, naming the variable and not the key's value.
#[test]
fn a_headers_pair_the_exporters_would_skip_is_an_error_without_the_secret() {
    run_child(
        "child_refuses_bad_headers",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=a,authorization: Bearer s3cret"),
        ],
    );
}

#[test]
#[ignore = "run by a_headers_pair_the_exporters_would_skip_is_an_error_without_the_secret"]
fn child_refuses_bad_headers() {
    if !child::in_child() {
        return;
    }
    let error = Telemetry::builder().fmt(false).otlp_from_env().build().map(drop).unwrap_err();
    assert!(matches!(error, TelemetryError::InvalidHeaders { var: "OTEL_EXPORTER_OTLP_HEADERS", .. }), "{error:?}");
    let (message, debug) = (error.to_string(), format!("{error:?}"));
    assert!(message.contains("pair 2 has no `=`"), "{message}");
    assert!(!message.contains("s3cret") && !debug.contains("s3cret"), "{message} / {debug}");
}

/// A metrics variable that is not Unicode is an error naming it, as every
/// other variable the pipeline reads: read with `std::env::var`, such a
/// temporality preference was taken for unset (cumulative, not the delta
/// asked for) and such a headers variable skipped (every export without
/// its API key), without a word.
#[cfg(unix)]
#[test]
fn a_metrics_variable_that_is_not_unicode_is_an_error_naming_it() {
    use std::os::unix::ffi::OsStrExt;
    for (var, value) in [
        ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", &b"delta\xff"[..]),
        ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", b"api-key=s3cret\xff"),
    ] {
        run_child_os(
            "child_refuses_what_is_not_unicode",
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", OsStr::new("http://127.0.0.1:9")),
                (var, OsStr::from_bytes(value)),
                ("NOT_UNICODE", OsStr::new(var)),
            ],
        );
    }
}

#[test]
#[ignore = "run by a_metrics_variable_that_is_not_unicode_is_an_error_naming_it"]
fn child_refuses_what_is_not_unicode() {
    if !child::in_child() {
        return;
    }
    let var = std::env::var("NOT_UNICODE").unwrap();
    let error = Telemetry::builder().fmt(false).otlp_from_env().build().map(drop).unwrap_err();
    match &error {
        TelemetryError::InvalidEnvironment { var: named, .. } | TelemetryError::InvalidHeaders { var: named, .. } => {
            assert_eq!(*named, var, "{error:?}")
        }
        other => panic!("{var}: {other:?}"),
    }
    assert!(!error.to_string().contains("s3cret"), "{error}");
}

/// A collector that accepts connections and never answers: every export
/// waits for the export timeout.
struct Silent {
    endpoint: String,
    _held: Arc<Mutex<Vec<TcpStream>>>,
}

fn silent_collector() -> Silent {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&held);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            keep.lock().unwrap().push(stream);
        }
    });
    Silent { endpoint, _held: held }
}

#[test]
fn the_environments_timeout_bounds_the_shutdown() {
    let collector = silent_collector();
    // 2 s by default: the child's bound below would fail.
    run_child(
        "child_shuts_down_within_the_timeout",
        &[("OTEL_EXPORTER_OTLP_TIMEOUT", "300"), ("COLLECTOR", &collector.endpoint)],
    );
}

#[test]
#[ignore = "run by the_environments_timeout_bounds_the_shutdown"]
fn child_shuts_down_within_the_timeout() {
    if !child::in_child() {
        return;
    }
    let endpoint = std::env::var("COLLECTOR").unwrap();
    let (subscriber, guard) =
        Telemetry::builder().fmt(false).otlp(Protocol::Grpc).otlp_endpoint(endpoint).build().unwrap();
    tracing::subscriber::with_default(subscriber, || {
        drop(tracing::debug_span!(target: "snapview", "snapview.snapshot", map = "timeout", version = 1u64));
    });
    let start = Instant::now();
    drop(guard);
    let shutdown = start.elapsed();
    eprintln!("shutdown with a silent collector and a 300 ms timeout: {shutdown:?}");
    assert!(shutdown < Duration::from_millis(1500), "shutdown took {shutdown:?}");
}

#[test]
fn the_environments_queue_size_bounds_the_span_queue() {
    let collector = silent_collector();
    run_child(
        "child_queues_at_most_16",
        &[
            ("OTEL_BSP_MAX_QUEUE_SIZE", "16"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "1000"),
            ("COLLECTOR", &collector.endpoint),
        ],
    );
}

#[test]
#[ignore = "run by the_environments_queue_size_bounds_the_span_queue"]
fn child_queues_at_most_16() {
    if !child::in_child() {
        return;
    }
    const SPANS: u64 = 1000;
    let endpoint = std::env::var("COLLECTOR").unwrap();
    let (subscriber, guard) =
        Telemetry::builder().fmt(false).otlp(Protocol::Grpc).otlp_endpoint(endpoint).build().unwrap();
    tracing::subscriber::with_default(subscriber, || {
        for _ in 0..SPANS {
            drop(tracing::debug_span!(target: "snapview", "snapview.snapshot", map = "queue", version = 1u64));
        }
    });
    // The first export of at most 16 spans waits on the silent collector;
    // nothing else is admitted meanwhile. With the default queue (2048) all
    // 1000 would be admitted, and none dropped yet.
    let dropped = guard.dropped_spans();
    assert!(dropped >= SPANS - 16, "only {dropped} of {SPANS} spans dropped with a queue of 16");
    drop(guard);
}
