//! A bounded span queue that counts what it loses.
//!
//! The SDK's `BatchSpanProcessor` already drops spans when its queue is full,
//! but keeps the count to itself until shutdown, and knows nothing of batches
//! the collector refused. So admission is gated here with the same bound —
//! spans admitted and not yet through an export never exceed it, so the SDK's
//! queue never overflows — and both losses are counted: spans refused at the
//! gate, and spans of failed exports (given up on at the export timeout
//! included, [`bounded`](super::bounded)). Spans a collector rejects one by
//! one in a partial success are not: the SDK's exporter reads that answer
//! and only logs it, and what an export returns says nothing of it.

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
    /// Whether the first span refused at a full queue was logged.
    told_full: AtomicBool,
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
            if !self.closed.load(Ordering::Relaxed) && !self.told_full.swap(true, Ordering::Relaxed) {
                warn_queue_full(self.capacity);
            }
        }
        admitted
    }

    /// Logs what was lost, once the pipeline's shutdown is over or given
    /// up on (`finished` false): what [`dropped`](Self::dropped) counted,
    /// which nobody can ask for once the guard is gone, and the spans still
    /// waiting then, which are lost too.
    pub(super) fn report_at_shutdown(&self, finished: bool, timeout: Duration) {
        let dropped = self.dropped();
        // Read whether or not the wait ran out: the SDK's own shutdown may
        // have given up on a batch within it.
        let waiting = self.in_flight.load(Ordering::Relaxed);
        if dropped == 0 && waiting == 0 {
            return;
        }
        let left = match (waiting, finished) {
            (0, _) => String::new(),
            (_, false) => format!(", and {waiting} were still waiting when the shutdown's wait ({timeout:?}) ran out"),
            (_, true) => format!(", and {waiting} were never exported"),
        };
        tracing::warn!(
            dropped,
            waiting,
            "OTLP: {dropped} spans were not exported (refused at a full queue, or their export failed){left}"
        );
    }

    /// Frees the places of an exported batch, counting it if it was lost.
    fn settle(&self, spans: usize, lost: bool) {
        self.in_flight.fetch_sub(spans, Ordering::Relaxed);
        if lost {
            self.dropped.fetch_add(spans as u64, Ordering::Relaxed);
        }
    }
}

/// The first span refused at a full queue: the SDK's own warning never
/// comes, since the gate keeps its queue from filling.
#[cold]
fn warn_queue_full(capacity: usize) {
    tracing::warn!(
        capacity,
        "OTLP: the span queue is full ({capacity} spans waiting for the collector): spans are dropped, \
         and counted (TelemetryGuard::dropped_spans) until it drains; this is logged once"
    );
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
            told_full: AtomicBool::new(false),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn losses(capacity: usize) -> SpanLosses {
        SpanLosses {
            capacity,
            in_flight: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            told_full: AtomicBool::new(false),
        }
    }

    /// What `f` logs, as the fmt layer writes it.
    fn logged(f: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Log(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Log {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let log = Log::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
        tracing::subscriber::with_default(subscriber, f);
        String::from_utf8(log.0.lock().unwrap().clone()).unwrap()
    }

    /// The SDK never warns of a full queue behind the gate, so the gate
    /// does, once, and the count goes on.
    #[test]
    fn a_full_queue_is_logged_once_and_counted_throughout() {
        let losses = losses(2);
        let log = logged(|| {
            let admitted: Vec<bool> = (0..10).map(|_| losses.admit()).collect();
            assert_eq!(admitted, [true, true, false, false, false, false, false, false, false, false]);
        });
        assert_eq!(log.matches("the span queue is full (2 spans waiting").count(), 1, "{log}");
        assert_eq!(losses.dropped(), 8);
        // After shutdown spans are refused without a word (the SDK's
        // processor is gone); they still count.
        losses.closed.store(true, Ordering::Relaxed);
        losses.told_full.store(false, Ordering::Relaxed);
        assert_eq!(logged(|| assert!(!losses.admit())), "");
        assert_eq!(losses.dropped(), 9);
    }

    /// At shutdown, what was lost is logged: the count nobody can ask for
    /// once the guard is gone, and the spans a shutdown that gave up left.
    #[test]
    fn the_losses_are_logged_at_shutdown() {
        let losses = losses(8);
        assert_eq!(logged(|| losses.report_at_shutdown(true, Duration::from_secs(2))), "", "nothing lost");
        (0..3).for_each(|_| assert!(losses.admit()));
        losses.settle(1, true);
        let log = logged(|| losses.report_at_shutdown(false, Duration::from_secs(2)));
        assert!(log.contains("WARN") && log.contains("1 spans were not exported"), "{log}");
        assert!(log.contains(", and 2 were still waiting when the shutdown's wait (2s) ran out"), "{log}");
        let log = logged(|| losses.report_at_shutdown(true, Duration::from_secs(2)));
        assert!(log.contains("(refused at a full queue, or their export failed), and 2 were never exported"), "{log}");
        losses.settle(2, false);
        let log = logged(|| losses.report_at_shutdown(true, Duration::from_secs(2)));
        assert!(log.contains("1 spans were not exported") && !log.contains("still waiting"), "{log}");
        assert!(!log.contains("never exported"), "{log}");
    }
}
