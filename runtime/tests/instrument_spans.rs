//! The spans a map emits, seen by a real `tracing` layer: names, counts,
//! fields, and nesting under the caller's span.
#![cfg(feature = "instrument")]

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, LazyLock, Mutex};

use snapview::SnapMap;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::NoSubscriber;
use tracing::{Dispatch, Level, Subscriber};
use tracing_subscriber::Registry;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// One span as the layer saw it.
#[derive(Clone, Debug, Default)]
struct SeenSpan {
    name: &'static str,
    fields: HashMap<String, String>,
    parent: Option<&'static str>,
    closed: bool,
}

/// Every span created while it is installed, in creation order.
#[derive(Clone, Default)]
struct SpanLog(Arc<Mutex<Vec<SeenSpan>>>);

impl SpanLog {
    fn named(&self, name: &str) -> Vec<SeenSpan> {
        self.0.lock().unwrap().iter().filter(|s| s.name == name).cloned().collect()
    }
}

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

/// The index of a span in the log, kept in the registry's extensions.
struct Index(usize);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for SpanLog {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut seen = SeenSpan { name: attrs.metadata().name(), ..Default::default() };
        attrs.record(&mut Fields(&mut seen.fields));
        let span = ctx.span(id).expect("the registry knows a new span");
        seen.parent = span.parent().map(|p| p.name());
        let mut log = self.0.lock().unwrap();
        span.extensions_mut().insert(Index(log.len()));
        log.push(seen);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let span = ctx.span(id).expect("recorded span exists");
        let Some(Index(i)) = span.extensions().get::<Index>().map(|i| Index(i.0)) else { return };
        values.record(&mut Fields(&mut self.0.lock().unwrap()[i].fields));
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let span = ctx.span(&id).expect("closing span exists");
        if let Some(index) = span.extensions().get::<Index>() {
            self.0.lock().unwrap()[index.0].closed = true;
        }
    }
}

/// A second `Dispatch`, registered for the whole run before any log is.
/// While exactly one is registered, tracing-core 0.1.36 caches a callsite's
/// interest from the default of whichever thread reaches the callsite first
/// (tokio-rs/tracing#3611): a test outside `with_log` (building its map)
/// could cache "never" for a span that another test's log, installed on
/// its own thread meanwhile, was waiting for. With two registered it asks
/// each of them.
static ANCHOR: LazyLock<Dispatch> = LazyLock::new(|| Dispatch::new(NoSubscriber::default()));

fn with_log(level: Level, f: impl FnOnce()) -> SpanLog {
    LazyLock::force(&ANCHOR);
    let log = SpanLog::default();
    let filter = Targets::new().with_default(LevelFilter::from_level(level));
    let subscriber = Registry::default().with(log.clone().with_filter(filter));
    tracing::subscriber::with_default(subscriber, f);
    log
}

fn map_with(name: &str, n: u64) -> SnapMap<u64, u64> {
    let map = SnapMap::builder().name(name).build();
    map.update(|tx| {
        (0..n).for_each(|i| {
            tx.insert(i, i * 10);
        })
    });
    map
}

#[test]
fn n_snapshots_give_n_snapshot_spans_with_map_and_version() {
    let map = map_with("spans.snapshots", 5);
    let log = with_log(Level::DEBUG, || {
        for _ in 0..7 {
            drop(map.snapshot());
        }
        drop(map.read());
    });
    let spans = log.named("snapview.snapshot");
    assert_eq!(spans.len(), 7);
    for span in &spans {
        assert_eq!(span.fields["map"], "spans.snapshots");
        assert_eq!(span.fields["version"], "1");
        assert!(span.closed);
    }
    assert_eq!(log.named("snapview.read").len(), 1);
}

#[test]
fn an_iteration_gives_one_iter_span_and_one_next_span_per_item() {
    let map = map_with("spans.iter", 100);
    let snap = map.snapshot();
    let log = with_log(Level::TRACE, || {
        let request = tracing::info_span!("request");
        let _in_request = request.enter();
        assert_eq!(snap.iter().count(), 100);
    });
    let iters = log.named("snapview.iter");
    assert_eq!(iters.len(), 1);
    let iter = &iters[0];
    assert_eq!(iter.fields["items"], "100");
    assert_eq!(iter.fields["map"], "spans.iter");
    assert_eq!(iter.fields["version"], "1");
    assert!(iter.fields["duration_ns"].parse::<u64>().unwrap() > 0);
    let max_next: u64 = iter.fields["max_next_ns"].parse().unwrap();
    assert!(max_next > 0 && max_next <= iter.fields["duration_ns"].parse().unwrap());
    assert_eq!(iter.parent, Some("request"));
    let nexts = log.named("snapview.iter.next");
    assert_eq!(nexts.len(), 100);
    assert!(nexts.iter().all(|s| s.parent == Some("snapview.iter") && s.fields["version"] == "1"));
}

#[test]
fn a_dropped_iteration_records_the_items_it_yielded() {
    let map = map_with("spans.partial", 50);
    let snap = map.snapshot();
    let log = with_log(Level::DEBUG, || {
        let mut keys = snap.keys();
        keys.by_ref().take(12).for_each(drop);
        drop(keys);
        // Never advanced: no iteration at all.
        drop(snap.values());
    });
    let iters = log.named("snapview.iter");
    assert_eq!(iters.len(), 1);
    assert_eq!(iters[0].fields["items"], "12");
    assert!(log.named("snapview.iter.next").is_empty(), "TRACE is off");
}

#[test]
fn publish_and_diff_spans_carry_their_changes_under_the_callers_span() {
    let map = map_with("spans.publish", 10);
    let before = map.snapshot();
    let log = with_log(Level::DEBUG, || {
        let reload = tracing::info_span!("reload");
        let _in_reload = reload.enter();
        map.update(|tx| {
            tx.insert(100, 1);
            tx.insert(101, 1);
            tx.remove(&3);
        });
        map.remove(&12345); // absent: nothing published
        let after = map.snapshot();
        assert_eq!(before.diff(&after).count(), 3);
    });
    let publishes = log.named("snapview.publish");
    assert_eq!(publishes.len(), 2);
    assert_eq!((publishes[0].fields["changes"].as_str(), publishes[0].fields["version"].as_str()), ("3", "2"));
    assert_eq!((publishes[1].fields["changes"].as_str(), publishes[1].fields["version"].as_str()), ("0", "2"));
    assert!(publishes.iter().all(|s| s.parent == Some("reload") && s.fields["map"] == "spans.publish"));
    let diffs = log.named("snapview.diff");
    assert_eq!(diffs.len(), 1);
    assert_eq!(diffs[0].fields["changes"], "3");
    assert_eq!((diffs[0].fields["from_version"].as_str(), diffs[0].fields["version"].as_str()), ("1", "2"));
    assert_eq!(diffs[0].parent, Some("reload"));
}

#[test]
fn info_level_emits_no_snapview_span() {
    let map = map_with("spans.info", 10);
    let log = with_log(Level::INFO, || {
        let snap = map.snapshot();
        assert_eq!(snap.iter().count(), 10);
        map.insert(1, 1);
    });
    assert!(log.0.lock().unwrap().iter().all(|s| !s.name.starts_with("snapview.")));
}
