//! A bounded span queue that counts what it loses.
//!
//! The SDK's `BatchSpanProcessor` already drops spans when its queue is full,
//! but keeps the count to itself until shutdown, and knows nothing of batches
//! the collector refused. So admission is gated here with the same bound —
//! spans admitted and not yet through an export never exceed it, so the SDK's
//! queue never overflows — and both losses are counted: spans refused at the
//! gate, and spans of failed exports.

use crate::sync::unmodelled::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, Span, SpanData, SpanExporter, SpanProcessor};

/// Spans admitted but not yet through an export, and spans lost.
#[derive(Debug)]
pub(super) struct SpanLosses {
    capacity: usize,
    in_flight: AtomicUsize,
    dropped: AtomicU64,
    /// After shutdown the SDK's processor takes no more spans.
    closed: AtomicBool,
}

impl SpanLosses {
    pub(super) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Takes a place in the queue, or counts the span as dropped.
    fn admit(&self) -> bool {
        let admitted = !self.closed.load(Ordering::Relaxed)
            && self
                .in_flight
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < self.capacity).then_some(n + 1))
                .is_ok();
        if !admitted {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        admitted
    }

    /// Frees the places of an exported batch, counting it if it was lost.
    fn settle(&self, spans: usize, lost: bool) {
        self.in_flight.fetch_sub(spans, Ordering::Relaxed);
        if lost {
            self.dropped.fetch_add(spans as u64, Ordering::Relaxed);
        }
    }
}

/// The SDK's batch processor behind the gate of a [`SpanLosses`].
#[derive(Debug)]
pub(super) struct BoundedSpanProcessor {
    inner: BatchSpanProcessor,
    losses: Arc<SpanLosses>,
}

impl BoundedSpanProcessor {
    /// A processor exporting through `exporter` every `delay` that lets at
    /// most `capacity` spans wait, and the losses it counts.
    pub(super) fn new<E>(exporter: E, capacity: usize, delay: Duration) -> (BoundedSpanProcessor, Arc<SpanLosses>)
    where
        E: SpanExporter + 'static,
    {
        let losses = Arc::new(SpanLosses {
            capacity,
            in_flight: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        });
        let exporter = CountingExporter { inner: exporter, losses: Arc::clone(&losses) };
        let config = BatchConfigBuilder::default().with_max_queue_size(capacity).with_scheduled_delay(delay).build();
        let inner = BatchSpanProcessor::builder(exporter).with_batch_config(config).build();
        (BoundedSpanProcessor { inner, losses: Arc::clone(&losses) }, losses)
    }
}

impl SpanProcessor for BoundedSpanProcessor {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.losses.admit() {
            self.inner.on_end(span);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        // Spans ending from now on would only make the SDK warn, one by one.
        self.losses.closed.store(true, Ordering::Relaxed);
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Settles every batch with the gate once its export is over.
#[derive(Debug)]
struct CountingExporter<E> {
    inner: E,
    losses: Arc<SpanLosses>,
}

impl<E: SpanExporter> SpanExporter for CountingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        self.losses.settle(spans, result.is_err());
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
