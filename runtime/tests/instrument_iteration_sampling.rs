//! A traced iteration (its `snapview.iter` span enabled, as the default
//! OTLP filter enables it) samples its `next()`s into `iter.next` one in
//! `sample_every`, as an untraced one does: it watches every `next()`, but
//! only for the span.
#![cfg(feature = "instrument")]

mod common;

use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{calls_and_samples, sampled_map};
use snapview::instrument::Op;
use tracing::span::{Attributes, Id};
use tracing::{Level, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// How many `snapview.iter` spans were created.
static ITER_SPANS: AtomicUsize = AtomicUsize::new(0);

struct CountIterSpans;

impl<S: Subscriber> Layer<S> for CountIterSpans {
    fn on_new_span(&self, attrs: &Attributes<'_>, _id: &Id, _ctx: Context<'_, S>) {
        if attrs.metadata().name() == "snapview.iter" {
            ITER_SPANS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Every test traces at DEBUG, through the global default: a scoped
/// default would leave the callsites' interest to whichever thread reaches
/// them first (tokio-rs/tracing#3611).
fn traced() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let subscriber =
            tracing_subscriber::registry().with(CountIterSpans.with_filter(LevelFilter::from(Level::DEBUG)));
        tracing::subscriber::set_global_default(subscriber).expect("the only global default");
    });
}

#[test]
fn a_traced_iteration_samples_its_nexts_one_in_n() {
    traced();
    let map = sampled_map("sampling.traced", 16, 1000);
    let snapshot = map.snapshot();
    let spans_before = ITER_SPANS.load(Ordering::Relaxed);
    let mut items = 0;
    for _ in snapshot.iter() {
        items += 1;
    }
    assert_eq!(items, 1000);
    assert!(ITER_SPANS.load(Ordering::Relaxed) > spans_before, "the iteration was traced");
    assert_eq!(calls_and_samples("sampling.traced", Op::Iter), (1, 1), "the thread's first iteration is sampled");
    // The 1st, 17th, ... 993rd `next()`.
    assert_eq!(calls_and_samples("sampling.traced", Op::IterNext), (1000, 63));
}
