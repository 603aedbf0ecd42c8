//! OTLP export: spans through `tracing-opentelemetry`, the latency histograms
//! as metrics, both to one collector (Jaeger, the OpenTelemetry Collector, ...).
//!
//! Nothing here may stall the application when the collector is down or slow:
//! spans wait in a bounded queue ([`span_queue`](super::span_queue)) drained
//! by the SDK's own thread, every export gives up after the export timeout
//! (as a whole: [`bounded`](super::bounded)), and shutting down waits for
//! the exporters at most that long.

use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{SpanExporter, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tokio::runtime::Runtime;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{FilterExt, LevelFilter, filter_fn};

use super::bounded::{Bound, BoundedSpanExport, Deadline, DeadlineHttpClient};
use super::metric_export::{self, MetricExport};
use super::metrics::{Destination, Histograms, SCOPE, SharedReport};
use super::otlp_env;
use super::process_env;
use super::span_queue::{BoundedSpanProcessor, SpanLosses};
use super::transport::{self, Connect, Signal, TlsFiles};
use super::{BoxedLayer, TelemetryBuilder, TelemetryError, parse_filter};
use crate::sync::unmodelled::{AtomicBool, AtomicUsize, Ordering};

/// The OTLP layer's filter unless [`TelemetryBuilder::otlp_filter`] says
/// otherwise: snapview's spans down to DEBUG, which leaves out the TRACE
/// `snapview.iter.next` span of every iterator step (one per item would
/// flood the export queue), and INFO for everything else.
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub const DEFAULT_OTLP_FILTER: &str = "info,snapview=debug";

/// Default bound of one export, retries included, and of the wait for the
/// exporters when the guard is dropped.
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest export timeout [`TelemetryBuilder::otlp_timeout`] takes.
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub const MAX_EXPORT_TIMEOUT: Duration = Duration::from_secs(60);

/// The shortest export timeout [`TelemetryBuilder::otlp_timeout`] takes: a
/// zero one would fail every export at once, and let the guard's drop return
/// before the final export, losing everything without a word.
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub const MIN_EXPORT_TIMEOUT: Duration = Duration::from_millis(100);

/// The shortest interval between two exports of a signal
/// ([`TelemetryBuilder::metrics_interval`], `OTEL_METRIC_EXPORT_INTERVAL`,
/// `OTEL_BSP_SCHEDULE_DELAY`), which a shorter one, 0 included, is taken
/// as: the SDK's export loops do not wait at all on a zero interval, and
/// would export (and, with the collector away, log an error) without pause.
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub const MIN_EXPORT_INTERVAL: Duration = Duration::from_millis(10);

/// How long spans wait to be exported in a batch when
/// `OTEL_BSP_SCHEDULE_DELAY` is not set: the SDK's default.
const DEFAULT_SCHEDULE_DELAY: Duration = Duration::from_secs(5);

/// How often the metrics are exported when neither the builder nor
/// `OTEL_METRIC_EXPORT_INTERVAL` says: the SDK's default.
const DEFAULT_METRICS_INTERVAL: Duration = Duration::from_secs(60);

/// Crates on the export path. Their spans are never exported, whatever the
/// filter: exporting the spans of an export would feed the queue forever.
/// (The SDK's own log events name their package, hyphen and all.)
const EXPORT_PATH_CRATES: [&str; 10] = [
    "h2",
    "hyper",
    "hyper_util",
    "tonic",
    "tower",
    "reqwest",
    "opentelemetry",
    "opentelemetry_sdk",
    "opentelemetry_otlp",
    "opentelemetry-otlp",
];

/// Transport of the OTLP export.
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Protocol {
    /// gRPC, by default to `http://localhost:4317`.
    #[default]
    Grpc,
    /// Protobuf over HTTP/1.1, by default to `http://localhost:4318`.
    HttpProtobuf,
}

/// Whether the pipeline exports, as the builder last said.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Export {
    #[default]
    Off,
    With(Protocol),
    /// As the environment says, when the pipeline is built.
    AsTheEnvironmentSays,
}

/// The OTLP part of a [`TelemetryBuilder`]. Its `Debug` shows the
/// endpoint without a user part ([`transport::redacted`]).
pub(super) struct OtlpConfig {
    export: Export,
    service_name: Option<String>,
    endpoint: Option<String>,
    filter: String,
    metrics_interval: Option<Duration>,
    /// As given to the builder; else `OTEL_EXPORTER_OTLP_TIMEOUT`, else the default.
    timeout: Option<Duration>,
    tls: TlsFiles,
}

impl std::fmt::Debug for OtlpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let OtlpConfig { export, service_name, endpoint, filter, metrics_interval, timeout, tls } = self;
        f.debug_struct("OtlpConfig")
            .field("export", export)
            .field("service_name", service_name)
            .field("endpoint", &endpoint.as_deref().map(transport::redacted))
            .field("filter", filter)
            .field("metrics_interval", metrics_interval)
            .field("timeout", timeout)
            .field("tls", tls)
            .finish()
    }
}

impl Default for OtlpConfig {
    fn default() -> Self {
        OtlpConfig {
            export: Export::Off,
            service_name: None,
            endpoint: None,
            filter: DEFAULT_OTLP_FILTER.to_owned(),
            metrics_interval: None,
            timeout: None,
            tls: TlsFiles::default(),
        }
    }
}

/// What the pipeline starts with: the builder's settings with the
/// environment's filled in.
#[derive(Clone, Copy)]
struct Resolved<'a> {
    config: &'a OtlpConfig,
    protocol: Protocol,
    timeout: Duration,
    max_queued_spans: usize,
    /// Between two exports of the metrics.
    metrics_interval: Duration,
    /// Between two exports of the spans.
    schedule_delay: Duration,
    /// Whether spans are exported (`OTEL_TRACES_EXPORTER` is not `none`).
    traces: bool,
    /// Whether metrics are exported (`OTEL_METRICS_EXPORTER` is not `none`).
    metrics: bool,
}

impl Resolved<'_> {
    fn connect(&self) -> Connect<'_> {
        Connect { endpoint: self.config.endpoint.as_deref(), timeout: self.timeout, tls: &self.config.tls }
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
impl TelemetryBuilder {
    /// Exports spans and the latency histograms over OTLP with `protocol`.
    ///
    /// The endpoint is [`otlp_endpoint`](Self::otlp_endpoint) if given, else
    /// what the OpenTelemetry SDK reads from the environment
    /// (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `..._METRICS_ENDPOINT`, then
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`), else `http://localhost:4317` for gRPC
    /// and `http://localhost:4318` for HTTP. The exporters need no runtime
    /// from the application: gRPC runs on a private one-thread tokio runtime,
    /// HTTP on a blocking client.
    ///
    /// `OTEL_SDK_DISABLED=true` in the environment turns export off all
    /// the same, as it does the SDK's. This call and
    /// [`otlp_from_env`](Self::otlp_from_env) replace each other: the
    /// last one made decides.
    pub fn otlp(mut self, protocol: Protocol) -> Self {
        self.otlp.export = Export::With(protocol);
        self
    }

    /// Exports over OTLP if the environment configures it, the way
    /// deployments configure OpenTelemetry SDKs: when
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (or the traces' or metrics' own
    /// `..._ENDPOINT`) is set and `OTEL_SDK_DISABLED` is not `true`; with
    /// the protocol `OTEL_EXPORTER_OTLP_PROTOCOL` names (`grpc`, the
    /// default, or `http/protobuf`; the own `..._PROTOCOL` variable of each
    /// exported signal is read too, and when both signals are exported the
    /// two must agree, since both go one way). `OTEL_TRACES_EXPORTER=none` or `OTEL_METRICS_EXPORTER=none`
    /// leaves that signal out (`otlp`, the default, is the only other value
    /// taken). Otherwise nothing is exported; the guard's
    /// [`otlp_protocol`](super::TelemetryGuard::otlp_protocol) tells which.
    /// A protocol this pipeline does not speak (`http/json`) makes
    /// [`build`](Self::build) fail with
    /// [`TelemetryError::InvalidEnvironment`].
    pub fn otlp_from_env(mut self) -> Self {
        self.otlp.export = Export::AsTheEnvironmentSays;
        self
    }

    /// The collector's base URL, e.g. `http://127.0.0.1:4317`; for HTTP the
    /// signal paths `/v1/traces` and `/v1/metrics` are appended, as for
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn otlp_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.otlp.endpoint = Some(endpoint.into());
        self
    }

    /// The `service.name` resource attribute. Default: `OTEL_SERVICE_NAME`,
    /// else `service.name` in `OTEL_RESOURCE_ATTRIBUTES`, else the
    /// executable's file name (without extension).
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.otlp.service_name = Some(name.into());
        self
    }

    /// `RUST_LOG`-style directives choosing the spans that are exported,
    /// independent of [`filter`](Self::filter). Default
    /// [`DEFAULT_OTLP_FILTER`] (`info,snapview=debug`): no per-`next()` spans.
    pub fn otlp_filter(mut self, directives: impl Into<String>) -> Self {
        self.otlp.filter = directives.into();
        self
    }

    /// How often the histograms are exported. Default:
    /// `OTEL_METRIC_EXPORT_INTERVAL` (milliseconds), else 60 s. Either way at
    /// least [`MIN_EXPORT_INTERVAL`] (10 ms), which a shorter one is taken as.
    pub fn metrics_interval(mut self, interval: Duration) -> Self {
        self.otlp.metrics_interval = Some(interval);
        self
    }

    /// The longest one export may take, retries included, and the longest
    /// dropping the guard waits for the exporters. Default:
    /// `OTEL_EXPORTER_OTLP_TIMEOUT` (milliseconds), else
    /// [`DEFAULT_EXPORT_TIMEOUT`] (2 s). Either way at most [`MAX_EXPORT_TIMEOUT`]
    /// (60 s), which a longer one is taken as, so that a collector that went
    /// away cannot hold a program's exit for longer; at least
    /// [`MIN_EXPORT_TIMEOUT`] (100 ms), which a shorter one is taken as.
    /// It bounds connecting too: a collector host that never answers costs
    /// each export this long, not the system's connect timeout.
    pub fn otlp_timeout(mut self, timeout: Duration) -> Self {
        self.otlp.timeout = Some(timeout);
        self
    }

    /// For an `https://` endpoint: a PEM file of the certificates to trust
    /// for the collector, instead of the platform's roots (a private CA, a
    /// self-signed collector). Default: `OTEL_EXPORTER_OTLP_CERTIFICATE`
    /// (or the signal's own `..._TRACES_CERTIFICATE` /
    /// `..._METRICS_CERTIFICATE`), else the platform's roots. Read and
    /// checked when the pipeline is built: a missing file, or one with no
    /// certificate in it, is a [`TelemetryError::Exporter`].
    #[cfg(feature = "otlp-tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "otlp-tls")))]
    pub fn otlp_certificate(mut self, pem_file: impl Into<std::path::PathBuf>) -> Self {
        self.otlp.tls.certificate = Some(pem_file.into());
        self
    }

    /// For an `https://` endpoint: the client certificate (PEM, the chain)
    /// and its private key (PEM) to present to a collector that asks for
    /// one (mutual TLS). Default: `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`
    /// and `OTEL_EXPORTER_OTLP_CLIENT_KEY` (or the signal's own), else none.
    #[cfg(feature = "otlp-tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "otlp-tls")))]
    pub fn otlp_client_identity(
        mut self,
        certificate_pem_file: impl Into<std::path::PathBuf>,
        key_pem_file: impl Into<std::path::PathBuf>,
    ) -> Self {
        self.otlp.tls.client = Some((certificate_pem_file.into(), key_pem_file.into()));
        self
    }
}

impl OtlpConfig {
    /// Starts the exporters if OTLP is on, returning them and the layer that
    /// feeds them.
    ///
    /// The span queue holds `OTEL_BSP_MAX_QUEUE_SIZE` spans, else
    /// 2048, the SDK's default.
    /// No layer when spans are not exported (`OTEL_TRACES_EXPORTER=none`).
    pub(super) fn start(self) -> Result<Option<(Pipeline, Option<BoxedLayer>)>, TelemetryError> {
        let Some(resolved) = self.resolve(&process_env)? else { return Ok(None) };
        // The hint says "any level" so that the directives' own hint decides
        // the combined one; without it the global level would become TRACE.
        let not_export_path = filter_fn(|meta| !on_export_path(meta.target())).with_max_level_hint(LevelFilter::TRACE);
        let filter = parse_filter(&self.filter)?.and(not_export_path);
        let pipeline = Pipeline::start(&resolved)?;
        let layer = resolved.traces.then(|| {
            let tracer = pipeline.tracer_provider.tracer(env!("CARGO_PKG_NAME"));
            tracing_opentelemetry::layer().with_tracer(tracer).with_filter(filter).boxed()
        });
        Ok(Some((pipeline, layer)))
    }

    /// The protocol, timeout and queue size to start with, or `None` if
    /// nothing is exported. Reads the environment through `env`.
    fn resolve(&self, env: &impl Fn(&str) -> Option<String>) -> Result<Option<Resolved<'_>>, TelemetryError> {
        if otlp_env::sdk_disabled(env) {
            return Ok(None);
        }
        let (protocol, (traces, metrics)) = match self.export {
            Export::Off => return Ok(None),
            Export::With(protocol) => (protocol, (true, true)),
            Export::AsTheEnvironmentSays if !otlp_env::endpoint_configured(env) => return Ok(None),
            Export::AsTheEnvironmentSays => {
                let signals = otlp_env::signals(env)?;
                (otlp_env::protocol(env, signals)?, signals)
            }
        };
        if !traces && !metrics {
            return Ok(None);
        }
        let timeout = match self.timeout {
            Some(timeout) => timeout,
            None => otlp_env::timeout(env)?.unwrap_or(DEFAULT_EXPORT_TIMEOUT),
        };
        let timeout = timeout.clamp(MIN_EXPORT_TIMEOUT, MAX_EXPORT_TIMEOUT);
        // A signal's own variables are read only if it is exported: a bad
        // value in one that would not be used is no error.
        let max_queued_spans =
            if traces { otlp_env::max_queued_spans(env)? } else { otlp_env::DEFAULT_MAX_QUEUED_SPANS };
        let metrics_interval = match self.metrics_interval {
            Some(interval) => interval,
            None if metrics => otlp_env::metric_export_interval(env)?.unwrap_or(DEFAULT_METRICS_INTERVAL),
            None => DEFAULT_METRICS_INTERVAL,
        };
        let schedule_delay = if traces {
            otlp_env::schedule_delay(env)?.unwrap_or(DEFAULT_SCHEDULE_DELAY)
        } else {
            DEFAULT_SCHEDULE_DELAY
        };
        Ok(Some(Resolved {
            config: self,
            protocol,
            timeout,
            max_queued_spans,
            metrics_interval: metrics_interval.max(MIN_EXPORT_INTERVAL),
            schedule_delay: schedule_delay.max(MIN_EXPORT_INTERVAL),
            traces,
            metrics,
        }))
    }

    /// The SDK's resource (which reads `OTEL_RESOURCE_ATTRIBUTES`) with the
    /// `service.name` of the builder, else of `OTEL_SERVICE_NAME`, else of
    /// `OTEL_RESOURCE_ATTRIBUTES`, else the executable's name rather than
    /// the SDK's `unknown_service`.
    fn resource(&self) -> Resource {
        // An empty variable is an unset one, as the specification reads them.
        let from_env = std::env::var("OTEL_SERVICE_NAME").ok().filter(|name| !name.trim().is_empty());
        let name = self.service_name.clone().or(from_env);
        if let Some(name) = name {
            return Resource::builder().with_service_name(name).build();
        }
        let resource = Resource::builder().build();
        let service_name = resource.get(&opentelemetry::Key::from_static_str("service.name"));
        let unnamed = service_name.is_none_or(|name| name.as_str().starts_with("unknown_service"));
        match executable_name() {
            Some(name) if unnamed => Resource::builder().with_service_name(name).build(),
            _ => resource,
        }
    }
}

fn executable_name() -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    Some(exe.file_stem()?.to_string_lossy().into_owned())
}

fn on_export_path(target: &str) -> bool {
    let krate = target.split("::").next().unwrap_or(target);
    EXPORT_PATH_CRATES.contains(&krate)
}

/// The running exporters. Dropping it shuts them down, bounded in time.
#[derive(Debug)]
pub(super) struct Pipeline {
    tracer_provider: SdkTracerProvider,
    meter_provider: SdkMeterProvider,
    /// `None` when spans are not exported.
    span_losses: Option<Arc<SpanLosses>>,
    protocol: Protocol,
    timeout: Duration,
    /// The gRPC exporters' connections live here; `None` for HTTP.
    runtime: Option<Runtime>,
    /// Whether a flush's tasks are still running (they may outlive the
    /// wait of the flush that started them).
    flushing: Arc<AtomicBool>,
}

impl Pipeline {
    fn start(resolved: &Resolved<'_>) -> Result<Pipeline, TelemetryError> {
        // Read before the export runtime exists: an error would drop it.
        metric_export::check_headers(|var: &str| std::env::var_os(var), resolved.traces, resolved.metrics)?;
        let temporality = match resolved.metrics {
            true => metric_export::temporality_preference(process_env)?,
            false => Temporality::Cumulative,
        };
        Self::start_with(resolved, temporality)
    }

    /// [`start`](Self::start), the metrics exported with `temporality`.
    fn start_with(resolved: &Resolved<'_>, temporality: Temporality) -> Result<Pipeline, TelemetryError> {
        let Resolved { config, protocol, timeout, max_queued_spans, metrics_interval, schedule_delay, .. } = *resolved;
        let runtime = match protocol {
            Protocol::Grpc => Some(export_runtime()?),
            Protocol::HttpProtobuf => None,
        };
        let resource = config.resource();
        // With delta temporality, the destination's record is looked up at
        // the first collection, which only a pipeline built whole makes: a
        // failed build leaves no record in the process.
        let destination = || Destination::new(protocol, metrics_endpoint(resolved), &resource);
        let shared = Arc::new(SharedReport::new(temporality, destination));
        let histograms = Histograms::new(Arc::clone(&shared));
        let (span_exporter, metric_exporter) = match build_exporters(resolved, runtime.as_ref(), histograms) {
            Ok(exporters) => exporters,
            Err(error) => {
                // Dropping the runtime would block, and panic inside an
                // application's async context, where the builder may run.
                if let Some(runtime) = runtime {
                    runtime.shutdown_background();
                }
                return Err(error);
            }
        };

        let tracer_provider = SdkTracerProvider::builder().with_resource(resource.clone());
        let (tracer_provider, span_losses) = match span_exporter {
            Some(exporter) => {
                let (processor, span_losses) = BoundedSpanProcessor::new(exporter, max_queued_spans, schedule_delay);
                (tracer_provider.with_span_processor(processor).build(), Some(span_losses))
            }
            None => (tracer_provider.build(), None),
        };

        let mut meter_provider = super::metrics::with_cardinality_limits(SdkMeterProvider::builder());
        if let Some(exporter) = metric_exporter {
            let reader = PeriodicReader::builder(exporter).with_interval(metrics_interval);
            meter_provider = meter_provider.with_reader(reader.build());
        }
        let meter_provider = meter_provider.with_resource(resource).build();
        let meter = opentelemetry::metrics::MeterProvider::meter(&meter_provider, SCOPE);
        super::metrics::register(&meter, &shared);

        let flushing = Arc::new(AtomicBool::new(false));
        Ok(Pipeline { tracer_provider, meter_provider, span_losses, protocol, timeout, runtime, flushing })
    }

    pub(super) fn protocol(&self) -> Protocol {
        self.protocol
    }

    pub(super) fn dropped_spans(&self) -> u64 {
        self.span_losses.as_ref().map_or(0, |losses| losses.dropped())
    }

    /// One flush at a time: the SDK's metrics flush queues behind the last
    /// with no timeout, so flushes called from many threads while the
    /// collector is silent would each leave their threads parked behind it,
    /// a pile that grows with every call. A call made while one runs waits
    /// for it to end, then flushes (what it ended meanwhile may have missed
    /// the other), all within the timeout: if the other is not done by
    /// then, it returns without a flush of its own.
    pub(super) fn flush(&self) {
        let deadline = Instant::now() + self.timeout;
        // Relaxed: the flag orders nothing; the exports it guards synchronize
        // through the SDK's own channels.
        while self.flushing.swap(true, Ordering::Relaxed) {
            if Instant::now() >= deadline {
                return;
            }
            thread::sleep(Duration::from_millis(5));
        }
        let (traces, metrics) = (self.tracer_provider.clone(), self.meter_provider.clone());
        let [first, second] = FlushDone::pair(&self.flushing);
        // Errors are already reported by the SDK's internal logs. A task's
        // `FlushDone` goes with it, run or not (no thread for it).
        let _ = run_bounded(
            deadline.saturating_duration_since(Instant::now()),
            [
                Box::new(move || {
                    let _done = first;
                    drop(traces.force_flush());
                }),
                Box::new(move || {
                    let _done = second;
                    drop(metrics.force_flush());
                }),
            ],
        );
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        let (traces, metrics) = (self.tracer_provider.clone(), self.meter_provider.clone());
        let timeout = self.timeout;
        // Both shut down at once, each with a final export; errors are already
        // reported by the SDK's internal logs.
        let finished = run_bounded(
            timeout,
            [Box::new(move || drop(traces.shutdown_with_timeout(timeout))), Box::new(move || drop(metrics.shutdown()))],
        );
        if let Some(losses) = &self.span_losses {
            losses.report_at_shutdown(finished, timeout);
        }
        if let Some(runtime) = self.runtime.take() {
            // Never blocks, unlike dropping a runtime, which would also panic
            // inside an application's async context. An export still running
            // fails at once when its connection task goes.
            runtime.shutdown_background();
        }
    }
}

/// Both exporters, built inside `runtime` if there is one: tonic's channel
/// spawns its connection task on the runtime current while it is built, and
/// keeps using that runtime from the SDK's export threads.
fn build_exporters(
    resolved: &Resolved<'_>,
    runtime: Option<&Runtime>,
    histograms: Histograms,
) -> Result<(Option<BoundedSpanExport<SpanExporter>>, Option<MetricExport>), TelemetryError> {
    let _entered = runtime.map(Runtime::enter);
    let spans = resolved.traces.then(|| span_exporter(resolved, runtime)).transpose()?;
    let metrics = resolved.metrics.then(|| metric_exporter(resolved, runtime, histograms)).transpose()?;
    Ok((spans, metrics))
}

/// A one-thread runtime for the gRPC connections, owned by the pipeline, so
/// the application needs no tokio runtime of its own.
fn export_runtime() -> Result<Runtime, TelemetryError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("snapview-otlp")
        .enable_all()
        .build()
        .map_err(|source| TelemetryError::Exporter { what: "export runtime", source: source.into() })
}

/// The SDK's span exporter, each export of it bounded as a whole: on the
/// export runtime for gRPC, through the deadline its HTTP client shares for
/// HTTP.
fn span_exporter(
    resolved: &Resolved<'_>,
    runtime: Option<&Runtime>,
) -> Result<BoundedSpanExport<SpanExporter>, TelemetryError> {
    let connect = resolved.connect();
    let signal = &Signal::TRACES;
    let deadline = Arc::new(Deadline::default());
    let built = match resolved.protocol {
        Protocol::Grpc => SpanExporter::builder()
            .with_tonic()
            .with_timeout(connect.timeout)
            .with_channel(transport::grpc_channel(connect, signal)?)
            .build(),
        Protocol::HttpProtobuf => {
            let url = transport::http_url(connect.endpoint, signal, process_env);
            let client = transport::http_client(&url, connect, signal)?;
            SpanExporter::builder()
                .with_http()
                .with_http_client(DeadlineHttpClient::new(client, Arc::clone(&deadline), connect.timeout))
                .with_endpoint(url)
                .with_timeout(connect.timeout)
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .build()
        }
    };
    let exporter = built.map_err(|source| TelemetryError::Exporter { what: signal.what, source: source.into() })?;
    let bound = match runtime {
        Some(runtime) => Bound::Runtime(runtime.handle().clone()),
        None => Bound::Blocking(deadline),
    };
    Ok(BoundedSpanExport::new(exporter, bound, connect.timeout))
}

/// Where the metrics exporter sends, as [`metric_exporter`] resolves it: the
/// gRPC endpoint, or the URL posted to over HTTP.
fn metrics_endpoint(resolved: &Resolved<'_>) -> String {
    let connect = resolved.connect();
    match resolved.protocol {
        Protocol::Grpc => transport::grpc_endpoint(connect.endpoint, &Signal::METRICS, process_env),
        Protocol::HttpProtobuf => transport::http_url(connect.endpoint, &Signal::METRICS, process_env),
    }
}

/// Our own metrics exporter (`metric_export`): the SDK's cannot carry the
/// latency histograms.
fn metric_exporter(
    resolved: &Resolved<'_>,
    runtime: Option<&Runtime>,
    histograms: Histograms,
) -> Result<MetricExport, TelemetryError> {
    let connect = resolved.connect();
    let signal = &Signal::METRICS;
    Ok(match resolved.protocol {
        Protocol::Grpc => {
            let runtime = runtime.ok_or_else(|| signal.error("gRPC export needs the export runtime"))?;
            let channel = transport::grpc_channel(connect, signal)?;
            MetricExport::grpc(channel, runtime.handle().clone(), connect.timeout, histograms)
        }
        Protocol::HttpProtobuf => {
            let url = metrics_endpoint(resolved);
            MetricExport::http(transport::http_client(&url, connect, signal)?, url, connect.timeout, histograms)
        }
    })
}

/// One of a flush's tasks; the last of them to go clears the flag.
struct FlushDone {
    left: Arc<AtomicUsize>,
    flushing: Arc<AtomicBool>,
}

impl FlushDone {
    fn pair(flushing: &Arc<AtomicBool>) -> [FlushDone; 2] {
        let left = Arc::new(AtomicUsize::new(2));
        [(); 2].map(|()| FlushDone { left: Arc::clone(&left), flushing: Arc::clone(flushing) })
    }
}

impl Drop for FlushDone {
    fn drop(&mut self) {
        // Relaxed, as the flag's swap in `flush`.
        if self.left.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.flushing.store(false, Ordering::Relaxed);
        }
    }
}

/// Runs each task on a thread of its own and waits for them until `timeout`
/// has passed; returns whether they all finished. A task still running then
/// is left to finish on its own: the SDK's flush and shutdown can block far
/// longer than their timeouts (a metrics flush has none), and the caller
/// must not.
fn run_bounded<const N: usize>(timeout: Duration, tasks: [Box<dyn FnOnce() + Send>; N]) -> bool {
    let deadline = Instant::now() + timeout;
    let (done, finished) = mpsc::channel();
    let mut started = 0;
    for task in tasks {
        let done = done.clone();
        let spawned = thread::Builder::new().name("snapview-otlp-shutdown".into()).spawn(move || {
            task();
            // The waiter may have given up already.
            let _ = done.send(());
        });
        // Without a thread the task cannot be bounded; the SDK providers
        // still shut themselves down when dropped.
        started += usize::from(spawned.is_ok());
    }
    for _ in 0..started {
        if finished.recv_timeout(deadline.saturating_duration_since(Instant::now())).is_err() {
            return false;
        }
    }
    started == N
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `config` resolves to in the environment `vars`: protocol,
    /// timeout and queue size, or `None` if nothing is exported.
    fn resolved_with(config: &OtlpConfig, vars: &[(&str, &str)]) -> Option<(Protocol, Duration, usize)> {
        let env = |var: &str| vars.iter().find(|(name, _)| *name == var).map(|(_, value)| (*value).to_owned());
        config.resolve(&env).unwrap().map(|r| (r.protocol, r.timeout, r.max_queued_spans))
    }

    fn config(export: Export, timeout: Option<Duration>) -> OtlpConfig {
        OtlpConfig { export, timeout, ..OtlpConfig::default() }
    }

    const ENDPOINT: (&str, &str) = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
    const HTTP: (&str, &str) = ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf");

    #[test]
    fn from_the_environment_export_needs_an_endpoint() {
        let from_env = config(Export::AsTheEnvironmentSays, None);
        assert_eq!(resolved_with(&from_env, &[HTTP]), None);
        let (protocol, timeout, queue) = resolved_with(&from_env, &[ENDPOINT, HTTP]).unwrap();
        assert_eq!((protocol, timeout, queue), (Protocol::HttpProtobuf, DEFAULT_EXPORT_TIMEOUT, 2048));
        assert_eq!(resolved_with(&from_env, &[ENDPOINT]).unwrap().0, Protocol::Grpc);
    }

    #[test]
    fn the_builders_protocol_wins_and_the_sdk_switch_turns_everything_off() {
        let explicit = config(Export::With(Protocol::Grpc), None);
        assert_eq!(resolved_with(&explicit, &[ENDPOINT, HTTP]).unwrap().0, Protocol::Grpc);
        assert_eq!(resolved_with(&explicit, &[]).unwrap().0, Protocol::Grpc, "an explicit protocol needs no endpoint");
        let disabled = ("OTEL_SDK_DISABLED", "true");
        assert_eq!(resolved_with(&explicit, &[disabled]), None);
        assert_eq!(resolved_with(&config(Export::AsTheEnvironmentSays, None), &[ENDPOINT, disabled]), None);
        assert_eq!(resolved_with(&config(Export::Off, None), &[ENDPOINT]), None);
    }

    #[test]
    fn the_timeout_comes_from_the_builder_then_the_environment_and_is_bounded() {
        let env_timeout = ("OTEL_EXPORTER_OTLP_TIMEOUT", "750");
        let from_env = config(Export::With(Protocol::Grpc), None);
        assert_eq!(resolved_with(&from_env, &[env_timeout]).unwrap().1, Duration::from_millis(750));
        let explicit = config(Export::With(Protocol::Grpc), Some(Duration::from_secs(5)));
        assert_eq!(resolved_with(&explicit, &[env_timeout]).unwrap().1, Duration::from_secs(5));
        assert_eq!(resolved_with(&from_env, &[("OTEL_EXPORTER_OTLP_TIMEOUT", "0")]).unwrap().1, MIN_EXPORT_TIMEOUT);
        let hour = config(Export::With(Protocol::Grpc), Some(Duration::from_secs(3600)));
        assert_eq!(resolved_with(&hour, &[]).unwrap().1, MAX_EXPORT_TIMEOUT);
    }

    /// The metrics' interval and the spans' delay in `vars`.
    fn intervals_with(config: &OtlpConfig, vars: &[(&str, &str)]) -> Result<(Duration, Duration), TelemetryError> {
        let env = |var: &str| vars.iter().find(|(name, _)| *name == var).map(|(_, value)| (*value).to_owned());
        config.resolve(&env).map(|r| r.map(|r| (r.metrics_interval, r.schedule_delay)).expect("exported"))
    }

    #[test]
    fn export_intervals_come_from_the_builder_then_the_environment_and_are_never_zero() {
        let from_env = config(Export::With(Protocol::Grpc), None);
        let ms = Duration::from_millis;
        assert_eq!(intervals_with(&from_env, &[]).unwrap(), (DEFAULT_METRICS_INTERVAL, DEFAULT_SCHEDULE_DELAY));
        let vars = [("OTEL_METRIC_EXPORT_INTERVAL", "1500"), ("OTEL_BSP_SCHEDULE_DELAY", "250")];
        assert_eq!(intervals_with(&from_env, &vars).unwrap(), (ms(1500), ms(250)));
        // Zero would make the SDK's export loops spin.
        let zero = [("OTEL_METRIC_EXPORT_INTERVAL", "0"), ("OTEL_BSP_SCHEDULE_DELAY", "0")];
        assert_eq!(intervals_with(&from_env, &zero).unwrap(), (MIN_EXPORT_INTERVAL, MIN_EXPORT_INTERVAL));
        let explicit =
            OtlpConfig { metrics_interval: Some(Duration::ZERO), ..config(Export::With(Protocol::Grpc), None) };
        assert_eq!(intervals_with(&explicit, &vars).unwrap().0, MIN_EXPORT_INTERVAL, "the builder's wins, bounded");
        let explicit = OtlpConfig { metrics_interval: Some(ms(20)), ..explicit };
        assert_eq!(intervals_with(&explicit, &vars).unwrap().0, ms(20));
        // Read only for a signal that is exported.
        let traces_only = config(Export::AsTheEnvironmentSays, None);
        let vars = [ENDPOINT, ("OTEL_METRICS_EXPORTER", "none"), ("OTEL_METRIC_EXPORT_INTERVAL", "5s")];
        assert_eq!(intervals_with(&traces_only, &vars).unwrap().0, DEFAULT_METRICS_INTERVAL);
        let metrics_only = [ENDPOINT, ("OTEL_TRACES_EXPORTER", "none"), ("OTEL_BSP_SCHEDULE_DELAY", "5s")];
        assert_eq!(intervals_with(&traces_only, &metrics_only).unwrap().1, DEFAULT_SCHEDULE_DELAY);
        let queue = [ENDPOINT, ("OTEL_TRACES_EXPORTER", "none"), ("OTEL_BSP_MAX_QUEUE_SIZE", "0")];
        assert!(intervals_with(&traces_only, &queue).is_ok(), "the span queue's size is not read without spans");
        for var in ["OTEL_METRIC_EXPORT_INTERVAL", "OTEL_BSP_SCHEDULE_DELAY"] {
            match intervals_with(&from_env, &[(var, "5s")]) {
                Err(TelemetryError::InvalidEnvironment { var: named, value, .. }) => {
                    assert_eq!((named, &*value), (var, "5s"))
                }
                other => panic!("{var}=5s: {other:?}"),
            }
        }
    }

    #[test]
    fn the_span_queue_takes_the_sdks_variable() {
        let explicit = config(Export::With(Protocol::Grpc), None);
        assert_eq!(resolved_with(&explicit, &[("OTEL_BSP_MAX_QUEUE_SIZE", "64")]).unwrap().2, 64);
    }

    /// A pipeline whose build fails leaves no record of its destination:
    /// records are kept for the life of the process. (`metrics`' tests
    /// show the record made at a pipeline's first collection: a pipeline
    /// built whole here would export, and could log the once-per-process
    /// warning one of them waits for.)
    #[test]
    fn a_failed_build_leaves_no_delta_record() {
        let config = OtlpConfig {
            service_name: Some("otlp.record.test".to_owned()),
            endpoint: Some("ftp://failed-build.test:4318".to_owned()),
            ..config(Export::With(Protocol::HttpProtobuf), None)
        };
        let resolved = config.resolve(&|_: &str| None).unwrap().unwrap();
        assert!(Pipeline::start_with(&resolved, Temporality::Delta).is_err(), "no such scheme");
        let destination = Destination::new(resolved.protocol, metrics_endpoint(&resolved), &config.resource());
        assert!(!super::super::metrics::has_record(&destination), "a record left behind");
    }

    #[test]
    fn timeouts_are_bounded_both_ways() {
        let timeout = |t| {
            let builder = super::super::Telemetry::builder().otlp(Protocol::Grpc).otlp_timeout(t);
            resolved_with(&builder.otlp, &[]).unwrap().1
        };
        assert_eq!(timeout(Duration::ZERO), MIN_EXPORT_TIMEOUT);
        assert_eq!(timeout(Duration::MAX), MAX_EXPORT_TIMEOUT);
        assert_eq!(timeout(Duration::from_secs(3)), Duration::from_secs(3));
    }
}
