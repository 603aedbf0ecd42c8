//! The builder without any feature: filters, the fmt layer, extra layers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use snapview_instrument::{Telemetry, TelemetryError};
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

/// Counts the events it sees.
struct Counter(Arc<AtomicUsize>);

impl<S: Subscriber> Layer<S> for Counter {
    fn on_event(&self, _event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn extra_layers_take_the_builder_filter_or_their_own() {
    let (by_default, own) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (subscriber, guard) = Telemetry::builder()
        .fmt(false)
        .filter("warn")
        .layer(Counter(Arc::clone(&by_default)))
        .filtered_layer(Counter(Arc::clone(&own)), "debug")
        .build()
        .unwrap();
    tracing::subscriber::with_default(subscriber, || {
        tracing::warn!("both");
        tracing::info!("only the layer with its own filter");
    });
    assert_eq!((by_default.load(Ordering::Relaxed), own.load(Ordering::Relaxed)), (1, 2));
    assert_eq!(guard.dropped_spans(), 0);
}

#[test]
fn a_bad_filter_is_a_clear_error() {
    let error = Telemetry::builder().filter("info,snapview=loudly").build().err().expect("bad directive");
    assert!(matches!(error, TelemetryError::InvalidFilter { .. }), "{error:?}");
    assert!(error.to_string().contains("info,snapview=loudly"), "{error}");
    assert!(std::error::Error::source(&error).is_some());
}
