//! A tracing layer that panics as a write's `snapview.publish` span records
//! the version it published: the version stands, the subscription waiting
//! for it is woken, the panic goes on out of the write, and the next writer
//! proceeds.
//!
//! (Before session 43 that panic unwound out of the writer after the
//! waiting subscriptions' wakers had been taken out to be woken: they were
//! dropped unwoken, and a task awaiting `changed()` waited for a version
//! that had already come. Dropping the map did not wake it either.)
#![cfg(feature = "instrument")]

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};
use std::task::{Context, Poll, Wake, Waker};

use snapview::SnapMap;
use tracing::Subscriber;
use tracing::span::{Id, Record};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context as LayerContext, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

thread_local! {
    /// Armed: the next `snapview.publish` span this thread records into has
    /// the layer panic, once.
    static ARMED: Cell<bool> = const { Cell::new(false) };
}

struct PanicsOnceOnPublishRecord;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for PanicsOnceOnPublishRecord {
    fn on_record(&self, id: &Id, _values: &Record<'_>, ctx: LayerContext<'_, S>) {
        let publish = ctx.metadata(id).is_some_and(|meta| meta.name() == "snapview.publish");
        if publish && ARMED.replace(false) {
            panic!("the layer panics");
        }
    }
}

/// Traces at DEBUG, where the publish span is, through the global default
/// (see `instrument_panicking_layer.rs` for why not a scoped one).
fn traced() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let layer = PanicsOnceOnPublishRecord.with_filter(LevelFilter::DEBUG);
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
            .expect("the only global default");
    });
}

/// A waker that notes it was woken.
#[derive(Default)]
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn panics_in_the_layer<R>(write: impl FnOnce() -> R) {
    ARMED.set(true);
    let caught = catch_unwind(AssertUnwindSafe(write));
    assert!(caught.is_err(), "the layer's panic goes on out of the write");
    assert!(!ARMED.get(), "the publish span recorded");
}

#[test]
fn a_layer_panicking_as_a_publish_records_still_wakes_the_waiting_subscription() {
    traced();
    let map: SnapMap<u64, u64> = SnapMap::builder().name("panicking_layer.publish").build();
    let mut changes = map.subscribe();
    let flag = Arc::new(Flag::default());
    let waker = Waker::from(Arc::clone(&flag));
    let mut cx = Context::from_waker(&waker);
    assert!(changes.poll_changed(&mut cx).is_pending());

    panics_in_the_layer(|| map.insert(1, 10));
    assert_eq!(map.version(), 1, "the version stands");
    assert!(flag.0.load(Ordering::Relaxed), "the waiting subscription was woken");
    let Poll::Ready(Some(snapshot)) = changes.poll_changed(&mut cx) else { panic!("version 1 is announced") };
    assert_eq!((snapshot.version(), snapshot.get(&1)), (1, Some(&10)));

    assert_eq!(map.insert(2, 20), None, "the next writer proceeds");
    assert_eq!((map.version(), map.len()), (2, 2));
}

#[test]
fn a_layer_panicking_as_a_batch_publishes_leaves_that_batch_published_whole() {
    traced();
    let mut map: SnapMap<u64, u64> = SnapMap::builder().name("panicking_layer.batch").build();
    map.extend((0..100).map(|k| (k, k)));
    let before = map.snapshot();

    panics_in_the_layer(|| {
        map.update(|tx| {
            tx.remove(&0);
            tx.insert(100, 100);
        })
    });
    let after = map.snapshot();
    assert_eq!(after.version(), before.version() + 1, "one version, published");
    assert_eq!((after.get(&0), after.get(&100), after.len()), (None, Some(&100), 100));
    assert_eq!(before.diff(&after).count(), 2);
    assert_eq!(map.remove(&100), Some(100), "the next writer proceeds");
}
