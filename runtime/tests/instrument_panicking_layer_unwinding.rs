//! A tracing layer that panics while the thread already unwinds from the
//! caller's own panic (a `for` loop's body, a diff's consumer, an `update`
//! closure), as the view's span records its last fields or the write's span
//! is left: the process goes on, and the caller's panic is the one caught.
//!
//! (Before session 43 the iterator's, the diff's and the write's probes
//! recorded and closed their spans in destructors with no guard: a second
//! panic there, during the unwind, aborted the process.)
#![cfg(feature = "instrument")]

use std::any::Any;
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

use snapview::SnapMap;
use tracing::Subscriber;
use tracing::span::{Id, Record};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// Where the layer panics, and in which span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Armed {
    Record(&'static str),
    Exit(&'static str),
}

thread_local! {
    /// The layer panics once, as this thread's span of that name records
    /// or is left. (Per thread: the tests run side by side.)
    static ARMED: Cell<Option<Armed>> = const { Cell::new(None) };
}

fn panic_if_armed(now: impl Fn(&'static str) -> Armed, name: Option<&'static str>) {
    if let Some(name) = name
        && ARMED.get() == Some(now(name))
    {
        ARMED.set(None);
        panic!("the layer panics");
    }
}

struct PanicsOnce;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for PanicsOnce {
    fn on_record(&self, id: &Id, _values: &Record<'_>, ctx: Context<'_, S>) {
        panic_if_armed(Armed::Record, ctx.metadata(id).map(|m| m.name()));
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        panic_if_armed(Armed::Exit, ctx.metadata(id).map(|m| m.name()));
    }
}

/// Traces at DEBUG, where the views' and the writes' spans are, through the
/// global default (see `instrument_panicking_layer.rs` for why not a scoped
/// one).
fn traced() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let subscriber = tracing_subscriber::registry().with(PanicsOnce.with_filter(LevelFilter::DEBUG));
        tracing::subscriber::set_global_default(subscriber).expect("the only global default");
    });
}

fn map(name: &str) -> SnapMap<u64, u64> {
    let mut map = SnapMap::builder().name(name).build();
    map.extend((0..1000).map(|k| (k, 10 * k)));
    map
}

/// Runs `view` with the layer armed at `armed`; asserts that the caller's
/// own panic is the one that comes out, and that the layer did panic.
fn the_callers_panic_comes_out(armed: Armed, view: impl FnOnce()) {
    ARMED.set(Some(armed));
    let caught = catch_unwind(AssertUnwindSafe(view)).expect_err("the caller panicked");
    assert_eq!(ARMED.get(), None, "the layer panicked at {armed:?} during the unwind");
    assert_eq!(message(&*caught), Some("the caller panics"));
}

fn message(payload: &(dyn Any + Send)) -> Option<&str> {
    payload.downcast_ref::<&str>().copied().or_else(|| payload.downcast_ref::<String>().map(String::as_str))
}

#[test]
fn a_layer_panicking_as_an_iteration_dropped_by_a_panic_records_does_not_abort() {
    traced();
    let map = map("unwinding.iter");
    let snap = map.snapshot();
    the_callers_panic_comes_out(Armed::Record("snapview.iter"), || {
        for (i, (k, v)) in snap.iter().enumerate() {
            assert_eq!(*v, 10 * k);
            if i == 10 {
                panic!("the caller panics");
            }
        }
    });
    assert_eq!(snap.iter().count(), 1000, "the snapshot reads as before");
}

#[test]
fn a_layer_panicking_as_a_diff_dropped_by_a_panic_records_does_not_abort() {
    traced();
    let mut map = map("unwinding.diff");
    let old = map.snapshot();
    map.extend((1000..1010).map(|k| (k, k)));
    let new = map.snapshot();
    the_callers_panic_comes_out(Armed::Record("snapview.diff"), || {
        let mut changes = old.diff(&new);
        if changes.next().is_some() {
            panic!("the caller panics");
        }
    });
    assert_eq!(old.diff(&new).count(), 10);
}

#[test]
fn a_layer_panicking_as_a_write_that_panicked_leaves_its_span_does_not_abort() {
    traced();
    let map = map("unwinding.publish");
    let version = map.version();
    the_callers_panic_comes_out(Armed::Exit("snapview.publish"), || {
        map.update(|tx| {
            tx.insert(1000, 1000);
            panic!("the caller panics");
        });
    });
    assert_eq!((map.version(), map.len()), (version, 1000), "the batch published nothing");
    assert_eq!(map.insert(1000, 1000), None, "the next writer proceeds");
    assert_eq!(map.version(), version + 1);
}
