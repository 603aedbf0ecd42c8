//! View-cost profiling: the wall time spent in snapview spans over a window,
//! stacked under the caller's spans (`request;snapview.snapshot{map=routes}`),
//! for flamegraphs.
//!
//! A [`ViewProfiler`] owns one tracing layer ([`ViewProfiler::layer`]; the
//! [`Telemetry`](crate::Telemetry) pipeline installs it). Its filter is
//! reloadable and is `off` while nobody profiles, so the layer records
//! nothing then and the level check of a disabled snapview span stays the
//! fast one; the application's enabled spans and events pay a little (their
//! callsites, always-on for the other layers, become sometimes-on with this
//! layer's never, so each asks every per-layer filter again; docs/operations.md).
//! [`ViewProfiler::start`] switches the filter to [`WINDOW_FILTER`] until the
//! last open [`ViewWindow`] ends.
//!
//! Only spans opened while a window is open are seen: an enclosing span
//! opened before (a worker's lifelong span) is missing from the stacks, as
//! tracing's per-layer filtering hides from a layer every span its filter
//! did not take when the span opened. The layer being free between windows
//! costs that.
//!
//! Each snapview span contributes its *self* time: its duration minus that of
//! the snapview spans inside it (a batch's minus an iteration its closure
//! runs), so that nested spans' widths add up. An iteration's span is never
//! entered, as its loop's body runs in the caller's span between `next()`s:
//! snapview spans made in that body stand beside the iteration and count in
//! both frames. A span open across windows gives each the share of its life
//! that window saw.

use std::collections::HashMap;
use std::fmt::{self, Write};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Registry, reload};

use crate::spans::TARGET;
use crate::telemetry::BoxedLayer;

/// What the layer takes while a window is open: the snapview spans, and the
/// application's spans they nest under (INFO and up).
///
/// Enabling them is what a window costs the application beyond the layer's
/// own work: every snapshot, read and publish builds its span, and every
/// iteration is traced, which times each `next()` (two clock reads, for the
/// span's `max_next_ns`) where an untraced one runs plain `next()`s. So
/// `snapview.iter` frames show an iteration's time with those reads in it,
/// more per element than the same loop costs with no window open.
pub const WINDOW_FILTER: &str = "info,snapview=debug";

/// How many windows may be open at once. Each open window costs every
/// snapview span's close a hash-map update, and each holds one of the debug
/// server's connections for up to its length: without a bound, a few clients
/// could slow the application and take every connection the server allows.
pub const MAX_WINDOWS: usize = 4;

/// How many distinct stacks a window keeps; the time of stacks past them
/// goes to one [`OVERFLOW_STACK`]. A stack is the span names it nests
/// under, so an application that names spans after what varies (a raw
/// request path in `otel.name`) would otherwise grow each window without
/// bound for as long as it is open (up to 300 s at the debug endpoint).
pub const MAX_STACKS: usize = 10_000;

/// The stack that collects the time of stacks past [`MAX_STACKS`] in one
/// window: one frame, which says so in a flamegraph.
pub const OVERFLOW_STACK: &str = "(stacks past the first 10000)";
const _: () = assert!(MAX_STACKS == 10_000, "OVERFLOW_STACK names the number");

/// The process-wide profiler, the one the [`Telemetry`](crate::Telemetry)
/// pipeline installs and the `/debug/pprof/views` endpoint reads.
pub fn profiler() -> &'static ViewProfiler {
    static PROFILER: OnceLock<ViewProfiler> = OnceLock::new();
    PROFILER.get_or_init(ViewProfiler::default)
}

/// Collects view costs for the windows that are open. See the module docs.
#[derive(Default)]
pub struct ViewProfiler {
    /// The filters of the layers made so far whose subscribers still live
    /// (a failed build's, or a replaced subscriber's, go when seen dead).
    /// Lock order: `windows`, then `filters`.
    filters: Mutex<Vec<reload::Handle<EnvFilter, Registry>>>,
    /// The open windows; the filters are on exactly while this is non-empty.
    windows: Mutex<Vec<Weak<Stacks>>>,
}

/// Why a view profile could not start.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ViewsError {
    /// No subscriber carries this profiler's layer.
    NotInstalled,
    /// [`MAX_WINDOWS`] windows are open already.
    TooManyWindows,
}

impl fmt::Display for ViewsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ViewsError::NotInstalled => f.write_str(
                "view profiling is not installed: build the subscriber with snapview's Telemetry pipeline, \
                 or add `snapview_instrument::views::profiler().layer()` to it",
            ),
            ViewsError::TooManyWindows => {
                write!(f, "{MAX_WINDOWS} view profiles are being taken already; retry when one ends")
            }
        }
    }
}

impl std::error::Error for ViewsError {}

impl fmt::Debug for ViewProfiler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ViewProfiler").field("installed", &self.is_installed()).finish_non_exhaustive()
    }
}

impl ViewProfiler {
    /// The layer that collects view costs for this profiler, with its own
    /// (reloadable) filter, for a subscriber built on
    /// `tracing_subscriber::Registry`: `off` while no window is open. It may
    /// be called again (a subscriber per test, a rebuilt pipeline): windows
    /// turn on the filter of every such layer that still lives, and a layer
    /// made while a window is open starts on.
    pub fn layer(&'static self) -> BoxedLayer {
        let windows = lock(&self.windows);
        let any_open = windows.iter().any(|w| w.strong_count() > 0);
        let (filter, handle) = reload::Layer::new(if any_open { window_filter() } else { idle_filter() });
        lock(&self.filters).push(handle);
        drop(windows);
        ViewLayer { profiler: self }.with_filter(filter).boxed()
    }

    /// Whether a layer [`layer`](Self::layer) made still lives (presumably
    /// in an installed subscriber).
    pub fn is_installed(&self) -> bool {
        lock(&self.filters).iter().any(is_alive)
    }

    /// Opens a window: view costs are collected into it until it is
    /// [`finish`](ViewWindow::finish)ed or dropped. Up to [`MAX_WINDOWS`]
    /// windows may overlap, each collecting everything while it is open.
    ///
    /// # Errors
    ///
    /// [`ViewsError::NotInstalled`] if no layer was made;
    /// [`ViewsError::TooManyWindows`] if [`MAX_WINDOWS`] are open.
    pub fn start(&'static self) -> Result<ViewWindow, ViewsError> {
        let stacks = Arc::new(Stacks::default());
        let mut windows = lock(&self.windows);
        {
            let mut filters = lock(&self.filters);
            filters.retain(is_alive);
            if filters.is_empty() {
                return Err(ViewsError::NotInstalled);
            }
            windows.retain(|w| w.strong_count() > 0);
            if windows.len() >= MAX_WINDOWS {
                return Err(ViewsError::TooManyWindows);
            }
            if windows.is_empty() {
                set_filters(&filters, window_filter);
            }
        }
        windows.push(Arc::downgrade(&stacks));
        // The window's duration counts from when its shares do
        // (`Stacks::share`): from a later clock, taken after switching the
        // filters, a window could hold more of a span than it lasted.
        Ok(ViewWindow { profiler: self, started: stacks.opened, stacks: Some(stacks) })
    }

    fn close(&self, stacks: &Arc<Stacks>) {
        let mut windows = lock(&self.windows);
        windows.retain(|w| w.strong_count() > 0 && !core::ptr::eq(w.as_ptr(), Arc::as_ptr(stacks)));
        if windows.is_empty() {
            set_filters(&lock(&self.filters), idle_filter);
        }
    }

    /// Adds to every open window the share of a span's self time
    /// (`self_ns`, over its life from `started` to `closed`) that falls
    /// inside the window.
    fn record(&self, stack: &str, started: Instant, closed: Instant, self_ns: u64) {
        for window in lock(&self.windows).iter().filter_map(Weak::upgrade) {
            window.add(stack, window.share(started, closed, self_ns));
        }
    }
}

fn idle_filter() -> EnvFilter {
    EnvFilter::new("off")
}

fn window_filter() -> EnvFilter {
    EnvFilter::new(WINDOW_FILTER)
}

fn set_filters(handles: &[reload::Handle<EnvFilter, Registry>], filter: fn() -> EnvFilter) {
    for handle in handles {
        // Fails only if the subscriber holding the layer is gone; then there
        // is nothing to filter.
        let _ = handle.reload(filter());
    }
}

/// Whether the layer of `handle` still exists.
fn is_alive(handle: &reload::Handle<EnvFilter, Registry>) -> bool {
    handle.with_current(|_| ()).is_ok()
}

/// Folded stack -> nanoseconds, for one window, and when it opened.
struct Stacks {
    times: Mutex<HashMap<String, u64>>,
    opened: Instant,
}

impl Default for Stacks {
    fn default() -> Self {
        Self { times: Mutex::default(), opened: Instant::now() }
    }
}

impl Stacks {
    /// The part of a span's self time that this window saw: all of it if the
    /// span opened inside the window, else the share of its life (from
    /// `started` to `closed`) since the window opened, its self time taken
    /// as spread evenly over its life. Without this, a span opened in an
    /// earlier window (an iteration held across windows) gave its whole
    /// life to a window it closed in, more than that window lasted.
    fn share(&self, started: Instant, closed: Instant, self_ns: u64) -> u64 {
        if started >= self.opened {
            return self_ns;
        }
        let life = closed.saturating_duration_since(started).as_nanos();
        let inside = closed.saturating_duration_since(self.opened).as_nanos();
        let share = u128::from(self_ns) * inside / life.max(1);
        u64::try_from(share).unwrap_or(u64::MAX)
    }

    /// Adds `nanos` to `stack`, or to [`OVERFLOW_STACK`] once the window has
    /// [`MAX_STACKS`] others; a stack seen before costs no allocation.
    fn add(&self, stack: &str, nanos: u64) {
        let mut stacks = lock(&self.times);
        if let Some(total) = stacks.get_mut(stack) {
            *total += nanos;
            return;
        }
        let stack = if stacks.len() < MAX_STACKS { stack } else { OVERFLOW_STACK };
        *stacks.entry(stack.to_owned()).or_insert(0) += nanos;
    }
}

/// An open profiling window. Dropping it without [`finish`](Self::finish) discards it.
#[must_use = "a window collects until it is finished or dropped"]
pub struct ViewWindow {
    profiler: &'static ViewProfiler,
    stacks: Option<Arc<Stacks>>,
    started: Instant,
}

impl fmt::Debug for ViewWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ViewWindow")
            .field("open", &self.stacks.is_some())
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

impl ViewWindow {
    /// Closes the window and returns what it collected.
    pub fn finish(mut self) -> ViewProfile {
        let stacks = self.stacks.take().expect("a window is finished once");
        self.profiler.close(&stacks);
        let mut stacks: Vec<(String, u64)> = lock(&stacks.times).drain().collect();
        stacks.sort();
        ViewProfile { duration: self.started.elapsed(), stacks }
    }
}

impl Drop for ViewWindow {
    fn drop(&mut self) {
        if let Some(stacks) = self.stacks.take() {
            self.profiler.close(&stacks);
        }
    }
}

/// What one window collected: wall time in nanoseconds per stack of span
/// frames (root first), each ending in a snapview span.
#[derive(Clone, Debug)]
pub struct ViewProfile {
    /// How long the window was open.
    pub duration: Duration,
    /// `(frames joined by ';', nanoseconds)`, sorted by stack.
    stacks: Vec<(String, u64)>,
}

impl ViewProfile {
    /// Each stack as its frames (root first) and its nanoseconds.
    pub fn stacks(&self) -> impl Iterator<Item = (impl Iterator<Item = &str>, u64)> {
        self.stacks.iter().map(|(stack, nanos)| (stack.split(';'), *nanos))
    }

    /// Whether nothing was collected.
    pub fn is_empty(&self) -> bool {
        self.stacks.is_empty()
    }

    /// The folded-stacks text flamegraph tools read (`inferno`, Brendan
    /// Gregg's `flamegraph.pl`): one `frame;frame;frame nanoseconds` line per stack.
    pub fn folded(&self) -> String {
        let mut out = String::new();
        for (stack, nanos) in &self.stacks {
            let _ = writeln!(out, "{stack} {nanos}");
        }
        out
    }
}

/// The collecting layer.
struct ViewLayer {
    profiler: &'static ViewProfiler,
}

/// Per span: its frame label, when it started, and the time of the snapview
/// spans inside it, directly or through application spans (subtracted from
/// its own).
struct Timing {
    frame: String,
    started: Instant,
    children_ns: u64,
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for ViewLayer {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let frame = frame_label(attrs);
        span.extensions_mut().insert(Timing { frame, started: Instant::now(), children_ns: 0 });
    }

    /// An application span's `otel.name` recorded after it opened (declared
    /// `field::Empty`, filled in once the route is known) names its frame
    /// from then on.
    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        if span.metadata().target() == TARGET {
            return;
        }
        let mut fields = LabelFields::default();
        values.record(&mut fields);
        if let Some(name) = fields.otel_name
            && let Some(timing) = span.extensions_mut().get_mut::<Timing>()
        {
            timing.frame = crate::text::folded_frame(&name).into_owned();
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        if span.metadata().target() != TARGET {
            return;
        }
        let closed = Instant::now();
        let Some((started, children)) = span.extensions().get::<Timing>().map(|t| (t.started, t.children_ns)) else {
            return;
        };
        let elapsed = saturating_nanos(closed.saturating_duration_since(started));
        // Subtracted from the nearest snapview span around it, not merely
        // its parent: an application span in between records no time of its
        // own, so that enclosing snapview span's self time would count this
        // span's time a second time (`publish;validate;iter` and `publish`).
        if let Some(outer) = span.scope().skip(1).find(|s| s.metadata().target() == TARGET)
            && let Some(timing) = outer.extensions_mut().get_mut::<Timing>()
        {
            timing.children_ns = timing.children_ns.saturating_add(elapsed);
        }
        let mut frames: Vec<String> = Vec::new();
        for ancestor in span.scope() {
            match ancestor.extensions().get::<Timing>() {
                Some(timing) => frames.push(timing.frame.clone()),
                None => frames.push(crate::text::folded_frame(ancestor.name()).into_owned()),
            }
        }
        frames.reverse();
        self.profiler.record(&frames.join(";"), started, closed, elapsed.saturating_sub(children));
    }
}

fn saturating_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A span's frame in the stack: `name{map=...}` for snapview spans; for
/// others the `otel.name` field if there is one (the OpenTelemetry
/// convention for a dynamic name such as `GET /route`), else the span name.
fn frame_label(attrs: &Attributes<'_>) -> String {
    let meta: &Metadata<'_> = attrs.metadata();
    let mut fields = LabelFields::default();
    attrs.record(&mut fields);
    let label = if meta.target() == TARGET {
        match fields.map {
            Some(map) => format!("{}{{map={map}}}", meta.name()),
            None => meta.name().to_owned(),
        }
    } else {
        fields.otel_name.unwrap_or_else(|| meta.name().to_owned())
    };
    crate::text::folded_frame(&label).into_owned()
}

#[derive(Default)]
struct LabelFields {
    map: Option<String>,
    otel_name: Option<String>,
}

impl Visit for LabelFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "map" => self.map = Some(value.to_owned()),
            "otel.name" => self.otel_name = Some(value.to_owned()),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "map" => self.map = Some(format!("{value:?}")),
            "otel.name" => self.otel_name = Some(format!("{value:?}")),
            _ => {}
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_max_windows_are_open_at_once() {
        let profiler: &'static ViewProfiler = Box::leak(Box::default());
        let _layer = profiler.layer();
        let mut open: Vec<ViewWindow> = (0..MAX_WINDOWS).map(|_| profiler.start().unwrap()).collect();
        assert_eq!(profiler.start().unwrap_err(), ViewsError::TooManyWindows);
        // A window dropped or finished makes room.
        drop(open.pop());
        open.push(profiler.start().unwrap());
        let _ = open.pop().unwrap().finish();
        assert!(profiler.start().is_ok());
    }

    #[test]
    fn a_window_takes_the_share_of_a_span_s_life_it_saw() {
        let stacks = Stacks::default();
        let opened = stacks.opened;
        let at = |ms: u64| opened + Duration::from_millis(ms);
        // Opened inside the window: all of its self time.
        assert_eq!(stacks.share(at(10), at(20), 7_000), 7_000);
        // Opened 300 ms before the window, closed 100 ms into it: a quarter.
        let before = opened.checked_sub(Duration::from_millis(300)).expect("a clock past 300 ms");
        assert_eq!(stacks.share(before, at(100), 400_000_000), 100_000_000);
    }

    /// Past [`MAX_STACKS`] distinct stacks, a window adds time to one
    /// overflow stack; the stacks it kept go on adding their own.
    #[test]
    fn a_window_keeps_at_most_max_stacks_and_one_overflow() {
        let stacks = Stacks::default();
        for i in 0..MAX_STACKS + 5 {
            stacks.add(&format!("GET /item/{i};snapview.snapshot{{map=routes}}"), 10);
        }
        stacks.add("GET /item/0;snapview.snapshot{map=routes}", 1);
        stacks.add("GET /item/new;snapview.snapshot{map=routes}", 7);
        let stacks = stacks.times.into_inner().unwrap();
        assert_eq!(stacks.len(), MAX_STACKS + 1);
        assert_eq!(stacks[OVERFLOW_STACK], 5 * 10 + 7);
        assert_eq!(stacks["GET /item/0;snapview.snapshot{map=routes}"], 11);
        assert!(!stacks.contains_key("GET /item/new;snapview.snapshot{map=routes}"));
    }
}
