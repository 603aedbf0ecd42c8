//! The warnings and errors a test's pipeline logs, for the tests of what it
//! tells about a collector: its export threads log to the global
//! subscriber, which [`Complaints::collect`] sets.
//!
//! Include it with `#[path = "support/complaints.rs"] mod complaints;`.

use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// Every WARN or ERROR event, as `LEVEL target: fields`.
#[derive(Clone, Default)]
pub struct Complaints(Arc<Mutex<Vec<String>>>);

impl Complaints {
    /// Sets the global subscriber to one that keeps every complaint from
    /// now on, which the returned handle reads. Once a process: a test that
    /// calls it runs in a process of its own, or alone in its test binary.
    pub fn collect() -> Complaints {
        let complaints = Complaints::default();
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(complaints.clone())).unwrap();
        complaints
    }

    /// The complaints so far, oldest first.
    #[allow(dead_code)] // Not every including test file reads them in place.
    pub fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// The complaints so far, oldest first; the next read starts afresh.
    #[allow(dead_code)] // Not every including test file reads them in turn.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={value:?}", field.name()));
    }
}

impl<S: Subscriber> Layer<S> for Complaints {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let meta = event.metadata();
        if *meta.level() <= Level::WARN {
            let mut message = Message(format!("{} {}:", meta.level(), meta.target()));
            event.record(&mut message);
            self.0.lock().unwrap().push(message.0);
        }
    }
}
