//! A subscriber set with `with_default` on one thread gets snapview's spans
//! even when another thread, which has no subscriber, reached their callsites
//! first, while that subscriber's was the only dispatcher in the process
//! (tokio-rs/tracing#3611: tracing-core then cached the callsite as wanted
//! by nobody). snapview works around it in debug builds, where tests run
//! (`snapview-instrument`'s `interest` module). A binary of its own: the
//! dispatchers registered are the process's.

#![cfg(all(feature = "instrument", debug_assertions))]

use std::sync::{Arc, Mutex};

use snapview::SnapMap;
use tracing::Dispatch;
use tracing::span::{Attributes, Id};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::Registry;

/// The names of the spans created.
#[derive(Clone, Default)]
struct Names(Arc<Mutex<Vec<&'static str>>>);

impl<S: tracing::Subscriber> Layer<S> for Names {
    fn on_new_span(&self, attributes: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
        self.0.lock().unwrap().push(attributes.metadata().name());
    }
}

#[test]
fn spans_first_reached_on_a_thread_without_a_subscriber_reach_a_scoped_one() {
    let names = Names::default();
    // The process's only dispatcher so far, the default of this thread below.
    let dispatch = Dispatch::new(Registry::default().with(names.clone()));
    // A thread without a subscriber builds a map, writes and takes a snapshot:
    // the first to reach those callsites.
    let map = std::thread::spawn(|| {
        let map = SnapMap::<u64, u64>::new();
        map.insert(1, 1);
        drop(map.snapshot());
        map
    })
    .join()
    .unwrap();
    tracing::dispatcher::with_default(&dispatch, || {
        map.insert(2, 2);
        drop(map.snapshot());
    });
    let names = names.0.lock().unwrap();
    for name in ["snapview.publish", "snapview.snapshot"] {
        assert!(names.contains(&name), "no {name} span: {names:?}");
    }
}
