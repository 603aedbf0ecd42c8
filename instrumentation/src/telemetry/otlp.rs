//! OTLP export: spans through `tracing-opentelemetry`, the latency histograms
//! as metrics, both to one collector (Jaeger, the OpenTelemetry Collector, ...).
//!
//! Nothing here may stall the application when the collector is down or slow:
//! spans wait in a bounded queue ([`span_queue`](super::span_queue)) drained
//! by the SDK's own thread, every export gives up after the export timeout,
//! and shutting down waits for the exporters at most that long.

use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{MetricExporter, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tokio::runtime::Runtime;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{FilterExt, LevelFilter, filter_fn};

use super::span_queue::{BoundedSpanProcessor, SpanLosses};
use super::{BoxedLayer, TelemetryBuilder, TelemetryError, parse_filter};

/// The OTLP layer's filter unless [`TelemetryBuilder::otlp_filter`] says
/// otherwise: snapview's spans down to DEBUG, which leaves out the TRACE
/// `snapview.iter.next` span of every iterator step (one per item would
/// flood the export queue), and INFO for everything else.
pub const DEFAULT_OTLP_FILTER: &str = "info,snapview=debug";

/// Default bound of one export, retries included, and of the wait for the
/// exporters when the guard is dropped.
pub const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest export timeout [`TelemetryBuilder::otlp_timeout`] takes.
pub const MAX_EXPORT_TIMEOUT: Duration = Duration::from_secs(60);

/// Spans that may wait for export; more are dropped and counted. The SDK's
/// default, a few batches' worth.
const MAX_QUEUED_SPANS: usize = 2048;

/// Crates on the export path. Their spans are never exported, whatever the
/// filter: exporting the spans of an export would feed the queue forever.
const EXPORT_PATH_CRATES: [&str; 9] = [
    "h2",
    "hyper",
    "hyper_util",
    "tonic",
    "tower",
    "reqwest",
    "opentelemetry",
    "opentelemetry_sdk",
    "opentelemetry_otlp",
];

/// Transport of the OTLP export.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Protocol {
    /// gRPC, by default to `http://localhost:4317`.
    #[default]
    Grpc,
    /// Protobuf over HTTP/1.1, by default to `http://localhost:4318`.
    HttpProtobuf,
}

/// The OTLP part of a [`TelemetryBuilder`]; export is on when `protocol` is.
#[derive(Debug)]
pub(super) struct OtlpConfig {
    protocol: Option<Protocol>,
    service_name: Option<String>,
    endpoint: Option<String>,
    filter: String,
    metrics_interval: Option<Duration>,
    timeout: Duration,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        OtlpConfig {
            protocol: None,
            service_name: None,
            endpoint: None,
            filter: DEFAULT_OTLP_FILTER.to_owned(),
            metrics_interval: None,
            timeout: DEFAULT_EXPORT_TIMEOUT,
        }
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
    pub fn otlp(mut self, protocol: Protocol) -> Self {
        self.otlp.protocol = Some(protocol);
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
    /// else the executable's file name.
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
    /// `OTEL_METRIC_EXPORT_INTERVAL`, else 60 s.
    pub fn metrics_interval(mut self, interval: Duration) -> Self {
        self.otlp.metrics_interval = Some(interval);
        self
    }

    /// The longest one export may take, retries included, and the longest
    /// dropping the guard waits for the exporters. Default
    /// [`DEFAULT_EXPORT_TIMEOUT`] (2 s); at most [`MAX_EXPORT_TIMEOUT`]
    /// (60 s), which a longer one is taken as, so that a collector that went
    /// away cannot hold a program's exit for longer.
    pub fn otlp_timeout(mut self, timeout: Duration) -> Self {
        self.otlp.timeout = timeout.min(MAX_EXPORT_TIMEOUT);
        self
    }
}

impl OtlpConfig {
    /// Starts the exporters if OTLP is on, returning them and the layer that
    /// feeds them.
    pub(super) fn start(self) -> Result<Option<(Pipeline, BoxedLayer)>, TelemetryError> {
        let Some(protocol) = self.protocol else { return Ok(None) };
        // The hint says "any level" so that the directives' own hint decides
        // the combined one; without it the global level would become TRACE.
        let not_export_path = filter_fn(|meta| !on_export_path(meta.target())).with_max_level_hint(LevelFilter::TRACE);
        let filter = parse_filter(&self.filter)?.and(not_export_path);
        let pipeline = Pipeline::start(&self, protocol)?;
        let tracer = pipeline.tracer_provider.tracer(env!("CARGO_PKG_NAME"));
        let layer = tracing_opentelemetry::layer().with_tracer(tracer).with_filter(filter).boxed();
        Ok(Some((pipeline, layer)))
    }

    fn resource(&self) -> Resource {
        let name =
            self.service_name.clone().or_else(|| std::env::var("OTEL_SERVICE_NAME").ok()).or_else(executable_name);
        let builder = Resource::builder();
        match name {
            Some(name) => builder.with_service_name(name).build(),
            None => builder.build(),
        }
    }

    /// `endpoint` for gRPC; for HTTP, `endpoint` with the signal's path.
    fn endpoint(&self, protocol: Protocol, http_path: &str) -> Option<String> {
        let base = self.endpoint.as_deref()?;
        Some(match protocol {
            Protocol::Grpc => base.to_owned(),
            Protocol::HttpProtobuf => format!("{}{http_path}", base.trim_end_matches('/')),
        })
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
    span_losses: Arc<SpanLosses>,
    timeout: Duration,
    /// The gRPC exporters' connections live here; `None` for HTTP.
    runtime: Option<Runtime>,
}

impl Pipeline {
    fn start(config: &OtlpConfig, protocol: Protocol) -> Result<Pipeline, TelemetryError> {
        let runtime = match protocol {
            Protocol::Grpc => Some(export_runtime()?),
            Protocol::HttpProtobuf => None,
        };
        let (span_exporter, metric_exporter) = match build_exporters(config, protocol, runtime.as_ref()) {
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
        let resource = config.resource();

        let (processor, span_losses) = BoundedSpanProcessor::new(span_exporter, MAX_QUEUED_SPANS);
        let tracer_provider =
            SdkTracerProvider::builder().with_span_processor(processor).with_resource(resource.clone()).build();

        let mut reader = PeriodicReader::builder(metric_exporter);
        if let Some(interval) = config.metrics_interval {
            reader = reader.with_interval(interval);
        }
        let meter_provider = super::metrics::with_cardinality_limits(SdkMeterProvider::builder())
            .with_reader(reader.build())
            .with_resource(resource)
            .build();
        super::metrics::register(&opentelemetry::metrics::MeterProvider::meter(&meter_provider, "snapview"));

        Ok(Pipeline { tracer_provider, meter_provider, span_losses, timeout: config.timeout, runtime })
    }

    pub(super) fn dropped_spans(&self) -> u64 {
        self.span_losses.dropped()
    }

    pub(super) fn flush(&self) {
        let (traces, metrics) = (self.tracer_provider.clone(), self.meter_provider.clone());
        // Errors are already reported by the SDK's internal logs.
        run_bounded(
            self.timeout,
            [Box::new(move || drop(traces.force_flush())), Box::new(move || drop(metrics.force_flush()))],
        );
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        let (traces, metrics) = (self.tracer_provider.clone(), self.meter_provider.clone());
        let timeout = self.timeout;
        // Both shut down at once, each with a final export; errors are already
        // reported by the SDK's internal logs.
        run_bounded(
            timeout,
            [Box::new(move || drop(traces.shutdown_with_timeout(timeout))), Box::new(move || drop(metrics.shutdown()))],
        );
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
    config: &OtlpConfig,
    protocol: Protocol,
    runtime: Option<&Runtime>,
) -> Result<(SpanExporter, MetricExporter), TelemetryError> {
    let _entered = runtime.map(Runtime::enter);
    Ok((span_exporter(config, protocol)?, metric_exporter(config, protocol)?))
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

fn span_exporter(config: &OtlpConfig, protocol: Protocol) -> Result<SpanExporter, TelemetryError> {
    let endpoint = config.endpoint(protocol, "/v1/traces");
    let built = match protocol {
        Protocol::Grpc => with_common(SpanExporter::builder().with_tonic(), endpoint, config.timeout).build(),
        Protocol::HttpProtobuf => with_common(SpanExporter::builder().with_http(), endpoint, config.timeout)
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .build(),
    };
    built.map_err(|source| TelemetryError::Exporter { what: "trace exporter", source: source.into() })
}

fn metric_exporter(config: &OtlpConfig, protocol: Protocol) -> Result<MetricExporter, TelemetryError> {
    let endpoint = config.endpoint(protocol, "/v1/metrics");
    let built = match protocol {
        Protocol::Grpc => with_common(MetricExporter::builder().with_tonic(), endpoint, config.timeout).build(),
        Protocol::HttpProtobuf => with_common(MetricExporter::builder().with_http(), endpoint, config.timeout)
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .build(),
    };
    built.map_err(|source| TelemetryError::Exporter { what: "metric exporter", source: source.into() })
}

/// An explicit endpoint (else the SDK's environment and defaults) and the
/// export timeout, which also bounds the exporter's retries.
fn with_common<B: WithExportConfig>(builder: B, endpoint: Option<String>, timeout: Duration) -> B {
    let builder = builder.with_timeout(timeout);
    match endpoint {
        Some(endpoint) => builder.with_endpoint(endpoint),
        None => builder,
    }
}

/// Runs each task on a thread of its own and waits for them until `timeout`
/// has passed. A task still running then is left to finish on its own: the
/// SDK's flush and shutdown can block far longer than their timeouts (a
/// metrics flush has none), and the caller must not.
fn run_bounded<const N: usize>(timeout: Duration, tasks: [Box<dyn FnOnce() + Send>; N]) {
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
            return;
        }
    }
}
