//! An in-process OTLP gRPC receiver for tests: the collector's trace and
//! metrics services (`opentelemetry-proto`'s generated tonic servers) on
//! `127.0.0.1:0`, keeping everything they are sent.
//!
//! Shared by the test crates of `snapview-instrument` and `snapview`; include
//! it with
//! `#[path = "support/otlp_receiver.rs"] mod otlp_receiver;` (from
//! `instrumentation/tests/`) or
//! `#[path = "../../instrumentation/tests/support/otlp_receiver.rs"] mod otlp_receiver;`
//! (from `runtime/tests/`). The including crate needs the dev-dependencies
//! `opentelemetry-proto` (`gen-tonic`, `trace`, `metrics`), `tonic`
//! (`server`, `router`, `codegen`), `tokio` (`rt-multi-thread`, `net`) and
//! `tokio-stream` (`net`).
//!
//! ```ignore
//! let (endpoint, receiver) = otlp_receiver::start();
//! // ... export to `endpoint` ...
//! assert!(receiver.wait_until(Duration::from_secs(5), |r| !r.spans().is_empty()));
//! ```

// Each including test crate uses a part of this module.
#![allow(dead_code)]

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, HistogramDataPoint, Metric, NumberDataPoint, metric,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio::runtime::Runtime;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

/// Starts a receiver serving on its own one-thread tokio runtime; returns its
/// endpoint (`http://127.0.0.1:<port>`, for `otlp_endpoint`) and the handle
/// that reads what it received. The receiver stops when the handle is dropped.
pub fn start() -> (String, ReceiverHandle) {
    serve(true, tonic::transport::Server::builder(), "http")
}

/// Like [`start`], but serving only the trace service, as Jaeger does: a
/// metrics export gets gRPC's `Unimplemented`.
pub fn start_traces_only() -> (String, ReceiverHandle) {
    serve(false, tonic::transport::Server::builder(), "http")
}

/// Like [`start`], over TLS (the including crate's feature `otlp-tls`):
/// the server presents `certificate` with `key` (PEM), at
/// `https://127.0.0.1:<port>`, and if `client_ca` (PEM) is given, takes
/// only clients presenting a certificate it signed (mutual TLS).
#[cfg(feature = "otlp-tls")]
pub fn start_tls(certificate: &str, key: &str, client_ca: Option<&str>) -> (String, ReceiverHandle) {
    start_tls_on("127.0.0.1:0", certificate, key, client_ca)
}

/// [`start_tls`] listening on `address` (`[::1]:0`, say).
#[cfg(feature = "otlp-tls")]
pub fn start_tls_on(address: &str, certificate: &str, key: &str, client_ca: Option<&str>) -> (String, ReceiverHandle) {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let tls = ServerTlsConfig::new().identity(Identity::from_pem(certificate, key));
    let tls = match client_ca {
        Some(ca) => tls.client_ca_root(Certificate::from_pem(ca)),
        None => tls,
    };
    serve_on(address, true, tonic::transport::Server::builder().tls_config(tls).unwrap(), "https")
}

fn serve(with_metrics: bool, server: tonic::transport::Server, scheme: &str) -> (String, ReceiverHandle) {
    serve_on("127.0.0.1:0", with_metrics, server, scheme)
}

fn serve_on(
    address: &str,
    with_metrics: bool,
    mut server: tonic::transport::Server,
    scheme: &str,
) -> (String, ReceiverHandle) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let received = Received::default();
    let listener = runtime.block_on(tokio::net::TcpListener::bind(address)).unwrap();
    let endpoint = format!("{scheme}://{}", listener.local_addr().unwrap());
    let server = server
        .add_service(TraceServiceServer::new(received.clone()))
        .add_optional_service(with_metrics.then(|| MetricsServiceServer::new(received.clone())))
        .serve_with_incoming(TcpListenerStream::new(listener));
    runtime.spawn(server);
    (endpoint, ReceiverHandle { received, _runtime: runtime })
}

/// A running receiver: what it was sent so far, in arrival order.
pub struct ReceiverHandle {
    received: Received,
    _runtime: Runtime,
}

impl ReceiverHandle {
    /// Every span received, from every export request.
    pub fn spans(&self) -> Vec<Span> {
        lock(&self.received.spans).clone()
    }

    /// Every metric received: one entry per metric per export request, so a
    /// metric exported periodically appears once per export (the latest last).
    pub fn metrics(&self) -> Vec<Metric> {
        lock(&self.received.metrics).iter().map(|(_, metric)| metric.clone()).collect()
    }

    /// [`metrics`](Self::metrics) of the resources whose `service.name` is
    /// `service`.
    pub fn metrics_of_service(&self, service: &str) -> Vec<Metric> {
        let metrics = lock(&self.received.metrics);
        metrics.iter().filter(|(name, _)| name.as_deref() == Some(service)).map(|(_, m)| m.clone()).collect()
    }

    /// The `service.name` resource attribute of every span export's resources.
    pub fn service_names(&self) -> Vec<String> {
        lock(&self.received.service_names).clone()
    }

    /// Polls `done` every 10 ms until it holds or `timeout` has passed;
    /// returns whether it held.
    pub fn wait_until(&self, timeout: Duration, mut done: impl FnMut(&Self) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if done(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The spans named `name`.
pub fn spans_named<'a>(spans: &'a [Span], name: &str) -> Vec<&'a Span> {
    spans.iter().filter(|span| span.name == name).collect()
}

/// The value of attribute `key`, if present and set.
pub fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?.value.as_ref()
}

/// The value of string attribute `key`.
pub fn string_attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attribute(attributes, key)? {
        any_value::Value::StringValue(s) => Some(s),
        _ => None,
    }
}

/// Integer attribute `key` as text; `None` if it is absent or was sent as
/// anything but an OTLP integer (tracing-opentelemetry 0.34 sends `u64`
/// fields as strings, which is why snapview records its numbers as `i64`).
pub fn integer_attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    match attribute(attributes, key)? {
        any_value::Value::IntValue(i) => Some(i.to_string()),
        _ => None,
    }
}

/// The data points of a monotonic sum (an OTLP counter); panics if `metric`
/// is anything else.
pub fn counter_points(metric: &Metric) -> &[NumberDataPoint] {
    match &metric.data {
        Some(metric::Data::Sum(sum)) => {
            assert!(sum.is_monotonic, "{} is a counter", metric.name);
            &sum.data_points
        }
        other => panic!("{} is a sum: {other:?}", metric.name),
    }
}

/// What the services were sent.
#[derive(Clone, Default)]
struct Received {
    spans: Arc<Mutex<Vec<Span>>>,
    service_names: Arc<Mutex<Vec<String>>>,
    metrics: Arc<Mutex<Vec<ServiceMetric>>>,
}

/// A metric received, with the `service.name` of its resource.
type ServiceMetric = (Option<String>, Metric);

/// A lock that outlives a test thread's panic.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        for resource_spans in request.into_inner().resource_spans {
            let resource_attributes = resource_spans.resource.map(|r| r.attributes).unwrap_or_default();
            if let Some(name) = string_attribute(&resource_attributes, "service.name") {
                lock(&self.service_names).push(name.to_owned());
            }
            let spans = resource_spans.scope_spans.into_iter().flat_map(|scope| scope.spans);
            lock(&self.spans).extend(spans);
        }
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Received {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        for resource_metrics in request.into_inner().resource_metrics {
            let resource_attributes = resource_metrics.resource.map(|r| r.attributes).unwrap_or_default();
            let service = string_attribute(&resource_attributes, "service.name").map(str::to_owned);
            let metrics = resource_metrics.scope_metrics.into_iter().flat_map(|scope| scope.metrics);
            lock(&self.metrics).extend(metrics.map(|metric| (service.clone(), metric)));
        }
        Ok(Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// The data points of a cumulative OTLP histogram; panics if `metric` is
/// anything else.
pub fn histogram_points(metric: &Metric) -> &[HistogramDataPoint] {
    match &metric.data {
        Some(metric::Data::Histogram(histogram)) => {
            let cumulative = AggregationTemporality::Cumulative as i32;
            assert_eq!(histogram.aggregation_temporality, cumulative, "{} is cumulative", metric.name);
            &histogram.data_points
        }
        other => panic!("{} is a histogram: {other:?}", metric.name),
    }
}

/// The data points of a gauge; panics if `metric` is anything else.
pub fn gauge_points(metric: &Metric) -> &[NumberDataPoint] {
    match &metric.data {
        Some(metric::Data::Gauge(gauge)) => &gauge.data_points,
        other => panic!("{} is a gauge: {other:?}", metric.name),
    }
}
