//! The process's first map may be built inside a subscriber's
//! `register_callsite`, which tracing-core calls while it holds its lock of
//! the dispatcher list. In debug builds the first map registers a dispatcher
//! of its own (`snapview-instrument`'s `interest` module), which takes that
//! lock: done on the calling thread, it would wait for itself. A binary of
//! its own: the first map of the process is the point.

#![cfg(all(feature = "instrument", debug_assertions))]

use std::sync::mpsc;
use std::time::Duration;

use snapview::SnapMap;
use tracing::subscriber::Interest;
use tracing::{Dispatch, Metadata, Subscriber};
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::registry::Registry;

/// Builds a map for every callsite it is asked about.
struct BuildsAMap;

impl<S: Subscriber> Layer<S> for BuildsAMap {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        let map = SnapMap::<u8, u8>::new();
        map.insert(1, 1);
        Interest::always()
    }
}

#[test]
fn a_first_map_built_while_tracing_registers_a_dispatcher_does_not_hang() {
    // A callsite, so that registering the dispatcher below asks the layer.
    tracing::info!("registered before any dispatcher");
    let (returned, waited) = mpsc::channel();
    std::thread::spawn(move || {
        let dispatch = Dispatch::new(Registry::default().with(BuildsAMap));
        let _ = returned.send(dispatch);
    });
    let dispatch = waited.recv_timeout(Duration::from_secs(20)).expect("registering the dispatcher returned");
    tracing::dispatcher::with_default(&dispatch, || tracing::info!("and it works"));
}
