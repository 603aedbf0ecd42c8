//! One call that installs a tracing subscriber for an application: a
//! `RUST_LOG`-style filter, a fmt layer, OpenTelemetry OTLP export of spans
//! and of the latency histograms (feature `otlp`), tokio-console (feature
//! `console`), and any extra layers.
//!
//! ```no_run
//! # fn main() -> Result<(), snapview_instrument::TelemetryError> {
//! let guard = snapview_instrument::Telemetry::builder().filter("info").install()?;
//! // ... run the application ...
//! drop(guard); // flushes what is still queued, within a bounded time
//! # Ok(())
//! # }
//! ```
//!
//! Every layer gets its own filter: a layer without one would make every
//! callsite interesting to the subscriber and cost the disabled fast path of
//! `tracing` for all of them. The filters are `EnvFilter`s, whose interest
//! tracing caches per callsite.

use std::error::Error;
use std::fmt;

use tracing::Subscriber;
use tracing::subscriber::SetGlobalDefaultError;
use tracing_subscriber::filter::ParseError;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer, Registry};

#[cfg(feature = "otlp")]
mod bounded;
#[cfg(feature = "console")]
mod console;
#[cfg(feature = "otlp")]
mod metric_export;
#[cfg(feature = "otlp")]
mod metrics;
#[cfg(feature = "otlp")]
mod otlp;
#[cfg(feature = "otlp")]
mod otlp_env;
#[cfg(feature = "otlp")]
mod span_queue;
#[cfg(feature = "otlp")]
mod transport;

#[cfg(feature = "otlp")]
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub use metrics::MAX_OTLP_MAPS;
#[cfg(feature = "otlp")]
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub use otlp::{
    DEFAULT_EXPORT_TIMEOUT, DEFAULT_OTLP_FILTER, MAX_EXPORT_TIMEOUT, MIN_EXPORT_INTERVAL, MIN_EXPORT_TIMEOUT, Protocol,
};

/// The process's environment, as the pipeline reads its variables: one
/// that is not valid Unicode is reported as its lossy text, so that the
/// error names it rather than taking it for unset. (The console's reading
/// does the same from `var_os`, which its recording path needs.)
#[cfg(feature = "otlp")]
fn process_env(var: &str) -> Option<String> {
    std::env::var_os(var).map(|value| value.to_string_lossy().into_owned())
}

/// A layer over the [`Registry`] every telemetry subscriber is built on, as
/// [`TelemetryBuilder::layer`] takes it.
pub type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync + 'static>;

/// Filter of the fmt layer and of extra layers when neither the builder nor
/// `RUST_LOG` gives one.
const DEFAULT_FILTER: &str = "info";

/// Entry point of the telemetry pipeline; see [`Telemetry::builder`].
#[derive(Debug)]
pub struct Telemetry;

impl Telemetry {
    /// A builder with the defaults: filter from `RUST_LOG` (else `info`), a
    /// fmt layer to stderr, the view-cost profiler's layer
    /// ([`views`](TelemetryBuilder::views)), no OTLP export, no console.
    pub fn builder() -> TelemetryBuilder {
        TelemetryBuilder {
            filter: None,
            fmt: true,
            views: true,
            layers: Vec::new(),
            #[cfg(feature = "otlp")]
            otlp: otlp::OtlpConfig::default(),
            #[cfg(feature = "console")]
            console: false,
        }
    }
}

/// Configures the subscriber; finish with [`install`](Self::install) or
/// [`build`](Self::build).
#[must_use = "a TelemetryBuilder does nothing until `install` or `build`"]
pub struct TelemetryBuilder {
    filter: Option<String>,
    fmt: bool,
    views: bool,
    /// Extra layers, each with its own directives or, if `None`, the builder's.
    layers: Vec<(BoxedLayer, Option<String>)>,
    #[cfg(feature = "otlp")]
    otlp: otlp::OtlpConfig,
    #[cfg(feature = "console")]
    console: bool,
}

impl fmt::Debug for TelemetryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("TelemetryBuilder");
        d.field("filter", &self.filter).field("fmt", &self.fmt).field("views", &self.views);
        d.field("layers", &self.layers.len());
        #[cfg(feature = "otlp")]
        d.field("otlp", &self.otlp);
        #[cfg(feature = "console")]
        d.field("console", &self.console);
        d.finish()
    }
}

impl Default for TelemetryBuilder {
    /// [`Telemetry::builder()`].
    fn default() -> Self {
        Telemetry::builder()
    }
}

impl TelemetryBuilder {
    /// `RUST_LOG`-style directives (`info,snapview=debug`) for the fmt layer
    /// and for extra layers added without their own. Default: `RUST_LOG`,
    /// else `info`. The OTLP layer has its own, see `otlp_filter` (feature
    /// `otlp`).
    pub fn filter(mut self, directives: impl Into<String>) -> Self {
        self.filter = Some(directives.into());
        self
    }

    /// Whether to log spans' events to stderr in tracing-subscriber's fmt
    /// format (default `true`).
    pub fn fmt(mut self, on: bool) -> Self {
        self.fmt = on;
        self
    }

    /// Whether to install the view-cost profiler's layer
    /// ([`views::profiler`](crate::views::profiler)), which the
    /// `/debug/pprof/views` endpoint reads (default `true`). Its filter is
    /// `off` except while a view profile is being taken, so it records nothing
    /// otherwise; the application's own enabled spans and events then pay a
    /// filter check each (docs/operations.md, "View-cost flamegraphs").
    pub fn views(mut self, on: bool) -> Self {
        self.views = on;
        self
    }

    /// Adds a layer, filtered by the builder's [`filter`](Self::filter).
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<Registry> + Send + Sync + 'static,
    {
        self.layers.push((layer.boxed(), None));
        self
    }

    /// Adds a layer with its own `RUST_LOG`-style directives.
    pub fn filtered_layer<L>(mut self, layer: L, directives: impl Into<String>) -> Self
    where
        L: Layer<Registry> + Send + Sync + 'static,
    {
        self.layers.push((layer.boxed(), Some(directives.into())));
        self
    }

    /// Builds the subscriber without installing it, for tests and for
    /// embedding: use it with `tracing::subscriber::with_default` or
    /// `set_global_default`. Keep the guard for as long as spans should be
    /// exported.
    ///
    /// # Errors
    ///
    /// A filter that does not parse ([`TelemetryError::InvalidFilter`]);
    /// `console` in a build without `--cfg tokio_unstable`
    /// ([`TelemetryError::ConsoleNeedsTokioUnstable`]), or with its address
    /// already taken ([`TelemetryError::ConsoleServer`]); an OTLP exporter
    /// that cannot be built ([`TelemetryError::Exporter`]); an OpenTelemetry
    /// or `TOKIO_CONSOLE_*` environment variable set to a value the pipeline
    /// cannot use ([`TelemetryError::InvalidEnvironment`], or
    /// [`TelemetryError::InvalidHeaders`] for an OTLP headers variable).
    /// Nothing is left running (no exporter, no console server) when it
    /// returns an error.
    pub fn build(
        self,
    ) -> Result<(impl Subscriber + for<'a> LookupSpan<'a> + Send + Sync + 'static, TelemetryGuard), TelemetryError>
    {
        let default_directives = self.default_directives();
        // The console's settings are read and its address bound first, its
        // server started once the filters have parsed, before the OTLP
        // exporters: a console that fails costs them nothing (a final
        // export), and an exporter that fails drops the console's
        // `Serving`, which stops its server.
        #[cfg(feature = "console")]
        let console = if self.console { Some(console::prepare()?) } else { None };
        let mut layers: Vec<BoxedLayer> = Vec::with_capacity(self.layers.len() + 3);
        if self.fmt {
            // Colours only for a terminal: logs piped to a file or a collector stay plain text.
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
            layers.push(fmt.with_filter(parse_filter(&default_directives)?).boxed());
        }
        if self.views {
            layers.push(crate::views::profiler().layer());
        }
        for (layer, directives) in self.layers {
            let filter = parse_filter(directives.as_deref().unwrap_or(&default_directives))?;
            layers.push(layer.with_filter(filter).boxed());
        }
        #[cfg(feature = "console")]
        let console = match console {
            Some(console) => {
                let (layer, serving) = console.spawn()?;
                layers.insert(0, layer);
                Some(serving)
            }
            None => None,
        };
        #[cfg(feature = "otlp")]
        let otlp = match self.otlp.start()? {
            Some((pipeline, layer)) => {
                layers.extend(layer);
                Some(pipeline)
            }
            None => None,
        };
        let guard = TelemetryGuard {
            #[cfg(feature = "otlp")]
            otlp,
            #[cfg(feature = "console")]
            console,
        };
        Ok((Registry::default().with(layers), guard))
    }

    /// Builds the subscriber and sets it as the global default.
    ///
    /// # Errors
    ///
    /// Those of [`build`](Self::build), and a global default subscriber that
    /// is already set. Installs from several threads at once build one
    /// pipeline; code that sets the global default some other way meanwhile
    /// (`tracing_subscriber::fmt().init()`) can still make a pipeline built
    /// here be refused, and its guard then sends a final export as it drops.
    pub fn install(self) -> Result<TelemetryGuard, TelemetryError> {
        // One install at a time, from the check to the set: two at once would
        // both pass the check and build, and the refused one start
        // exporters (and, with `console`, a console server) for nothing.
        static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_at_a_time = INSTALLING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Asked first: a pipeline built only to be refused would start its
        // exporters, and its guard's drop would send a final export (a
        // duplicate series) and wait up to the export timeout for it.
        if global_default_is_set() {
            // The error tracing gives, from a dispatch that is no subscriber's:
            // one made from a subscriber would register with every callsite
            // first, and `NoSubscriber`'s interests would loosen the level
            // filters of the subscriber that is set.
            let refused = tracing::dispatcher::set_global_default(tracing::Dispatch::none());
            return Err(TelemetryError::GlobalDefaultAlreadySet(refused.expect_err("a global default stays set")));
        }
        let (subscriber, guard) = self.build()?;
        tracing::subscriber::set_global_default(subscriber).map_err(TelemetryError::GlobalDefaultAlreadySet)?;
        Ok(guard)
    }

    fn default_directives(&self) -> String {
        self.filter
            .clone()
            .or_else(|| std::env::var(EnvFilter::DEFAULT_ENV).ok())
            .unwrap_or_else(|| DEFAULT_FILTER.to_owned())
    }
}

/// Whether a global default subscriber is set. Asked on a thread of its
/// own, which has no scoped default (`with_default`) to hide the global one
/// behind; `tracing::dispatcher::has_been_set` counts scoped ones too.
fn global_default_is_set() -> bool {
    let global = || tracing::dispatcher::get_default(|dispatch| !dispatch.is::<tracing::subscriber::NoSubscriber>());
    std::thread::scope(|scope| scope.spawn(global).join()).unwrap_or(false)
}

fn parse_filter(directives: &str) -> Result<EnvFilter, TelemetryError> {
    EnvFilter::builder()
        .parse(directives)
        .map_err(|source| TelemetryError::InvalidFilter { directives: directives.to_owned(), source })
}

/// Keeps the exporters and the console's server running; dropping it
/// flushes what is still queued and shuts the exporters down, waiting a
/// bounded time even if the collector is down, and stops the console's
/// server (feature `console`), freeing its address.
#[must_use = "dropping the guard shuts down the exporters and the console's server"]
#[derive(Debug)]
pub struct TelemetryGuard {
    #[cfg(feature = "otlp")]
    otlp: Option<otlp::Pipeline>,
    #[cfg(feature = "console")]
    console: Option<console::Serving>,
}

impl TelemetryGuard {
    /// The protocol the pipeline exports with; `None` if it does not export
    /// (OTLP not asked for, `otlp_from_env` with no endpoint in the
    /// environment or with both `OTEL_TRACES_EXPORTER=none` and
    /// `OTEL_METRICS_EXPORTER=none`, or `OTEL_SDK_DISABLED=true`).
    #[cfg(feature = "otlp")]
    #[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
    pub fn otlp_protocol(&self) -> Option<Protocol> {
        self.otlp.as_ref().map(otlp::Pipeline::protocol)
    }

    /// The address tokio-console's server listens on (the port it got, if
    /// `TOKIO_CONSOLE_BIND` asked for port 0); `None` if the console is off.
    #[cfg(feature = "console")]
    #[cfg_attr(docsrs, doc(cfg(feature = "console")))]
    pub fn console_addr(&self) -> Option<std::net::SocketAddr> {
        self.console.as_ref().map(console::Serving::addr)
    }

    /// Spans that were not exported so far: refused because the export queue
    /// was full, or in a batch whose export failed or gave up (the collector
    /// down, slow, refusing the batch). Not counted: spans the collector
    /// turned down one by one while taking the rest of their batch (a
    /// partial success), which the SDK's exporter only logs, as a warning.
    /// Always 0 without OTLP export.
    pub fn dropped_spans(&self) -> u64 {
        #[cfg(feature = "otlp")]
        if let Some(pipeline) = &self.otlp {
            return pipeline.dropped_spans();
        }
        0
    }

    /// Exports the queued spans and the current histograms now, waiting at
    /// most the export timeout. Dropping the guard does this too. One flush
    /// runs at a time: a call while another thread's runs waits for it, then
    /// flushes, within the same timeout (past it, it returns without).
    pub fn flush(&self) {
        #[cfg(feature = "otlp")]
        if let Some(pipeline) = &self.otlp {
            pipeline.flush();
        }
    }
}

/// Why the telemetry pipeline could not be built or installed.
#[derive(Debug)]
#[non_exhaustive]
pub enum TelemetryError {
    /// A filter is not valid `RUST_LOG` syntax.
    InvalidFilter {
        /// The directives as given.
        directives: String,
        /// What the parser objected to.
        source: ParseError,
    },
    /// tokio-console was asked for, but this build lacks `--cfg tokio_unstable`,
    /// without which tokio emits nothing for the console to show.
    ConsoleNeedsTokioUnstable,
    /// An OTLP exporter, or the runtime it runs on, could not be built.
    Exporter {
        /// Which part failed, e.g. "trace exporter".
        what: &'static str,
        /// The underlying error.
        source: Box<dyn Error + Send + Sync + 'static>,
    },
    /// `install` found a global default subscriber already set.
    GlobalDefaultAlreadySet(SetGlobalDefaultError),
    /// A standard OpenTelemetry environment variable that the pipeline reads
    /// (`OTEL_EXPORTER_OTLP_PROTOCOL`, `OTEL_EXPORTER_OTLP_TIMEOUT`,
    /// `OTEL_BSP_MAX_QUEUE_SIZE`, ...), or one of console-subscriber's
    /// (`TOKIO_CONSOLE_BIND`, ...), is set to a value it cannot use.
    InvalidEnvironment {
        /// The variable.
        var: &'static str,
        /// Its value (lossily decoded if it was not Unicode).
        value: String,
        /// What it may be.
        expected: &'static str,
    },
    /// An OTLP headers variable (`OTEL_EXPORTER_OTLP_HEADERS`,
    /// `OTEL_EXPORTER_OTLP_TRACES_HEADERS`, `OTEL_EXPORTER_OTLP_METRICS_HEADERS`)
    /// has a pair the exporters would skip: without `=`, without a key, or
    /// with a key or value no header can carry; or it is not valid Unicode,
    /// which the SDK's span exporter would take for unset. Its value is not
    /// repeated, here or in the message: headers carry API keys.
    InvalidHeaders {
        /// The variable.
        var: &'static str,
        /// What is wrong, naming the pair's position and its key.
        problem: String,
    },
    /// tokio-console's server cannot listen on its address (taken by
    /// another process, say): `TOKIO_CONSOLE_BIND` chooses another. (Or,
    /// rarely, its thread or its runtime cannot start.)
    ConsoleServer {
        /// The address it was to listen on.
        addr: std::net::SocketAddr,
        /// Why it cannot.
        source: std::io::Error,
    },
}

impl fmt::Display for TelemetryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TelemetryError::InvalidFilter { directives, source } => {
                write!(f, "invalid filter directives {directives:?}: {source}")
            }
            TelemetryError::ConsoleNeedsTokioUnstable => f.write_str(
                "tokio-console needs tokio's unstable instrumentation: build with \
                 RUSTFLAGS=\"--cfg tokio_unstable\" (or `rustflags = [\"--cfg\", \"tokio_unstable\"]` \
                 under [build] in .cargo/config.toml)",
            ),
            TelemetryError::Exporter { what, source } => write!(f, "could not build the OTLP {what}: {source}"),
            TelemetryError::GlobalDefaultAlreadySet(_) => {
                f.write_str("a global default tracing subscriber is already set; use `build` to embed instead")
            }
            TelemetryError::InvalidEnvironment { var, value, expected } => {
                write!(f, "{var}={value:?} is not valid: expected {expected}")
            }
            TelemetryError::InvalidHeaders { var, problem } => write!(
                f,
                "{var} is not valid: {problem} (expected key=value pairs separated by commas, values without \
                 control characters, percent-encoded or not; the value is not shown, it may hold a secret)"
            ),
            TelemetryError::ConsoleServer { addr, source } => {
                write!(f, "tokio-console cannot listen on {addr}: {source} (TOKIO_CONSOLE_BIND sets another address)")
            }
        }
    }
}

impl Error for TelemetryError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            TelemetryError::InvalidFilter { source, .. } => Some(source),
            TelemetryError::ConsoleNeedsTokioUnstable => None,
            TelemetryError::Exporter { source, .. } => Some(source.as_ref()),
            TelemetryError::GlobalDefaultAlreadySet(source) => Some(source),
            TelemetryError::InvalidEnvironment { .. } | TelemetryError::InvalidHeaders { .. } => None,
            TelemetryError::ConsoleServer { source, .. } => Some(source),
        }
    }
}
