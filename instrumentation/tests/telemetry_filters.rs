//! Every layer has its own filter, so the global level stays at the most
//! verbose one asked for, and tracing's disabled fast path keeps working.
//! One test in this binary: `LevelFilter::current()` is process-wide.

#![cfg(feature = "otlp")]

use std::net::TcpListener;

use snapview_instrument::{Protocol, Telemetry};
use tracing::Level;
use tracing::level_filters::LevelFilter;

#[test]
fn each_layer_has_its_own_filter() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (subscriber, _guard) = Telemetry::builder()
        .filter("info")
        .otlp(Protocol::Grpc)
        .otlp_endpoint(format!("http://127.0.0.1:{port}"))
        .otlp_filter("snapview=debug")
        .build()
        .unwrap();
    tracing::subscriber::with_default(subscriber, || {
        assert_eq!(LevelFilter::current(), LevelFilter::DEBUG, "no layer without a filter raises it to TRACE");
        assert!(tracing::enabled!(target: "snapview", Level::DEBUG), "the OTLP layer takes snapview's DEBUG spans");
        assert!(!tracing::enabled!(target: "snapview", Level::TRACE), "nobody takes snapview's TRACE spans");
        assert!(!tracing::enabled!(Level::DEBUG), "the fmt layer stays at INFO for everything else");
        assert!(tracing::enabled!(Level::INFO));
    });
}
