//! A collector that takes no metrics is told once, as a warning, and told
//! again if it takes an export and then refuses them again: a metrics
//! service that comes back and goes away for good (a collector redeployed
//! as a traces-only Jaeger) is not silent for the rest of the pipeline's
//! life. Before, the first refusal was the only one ever told.
#![cfg(feature = "otlp")]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use snapview_instrument::probe::MapProbe;
use snapview_instrument::{Op, Protocol, Telemetry};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// An OTLP gRPC collector whose metrics service answers `Unimplemented`, as
/// Jaeger's absent one does, until `taking` is set.
#[derive(Clone, Default)]
struct Collector {
    taking: Arc<AtomicBool>,
}

#[tonic::async_trait]
impl MetricsService for Collector {
    async fn export(
        &self,
        _: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        // Relaxed: the test's store comes before the flush that sends this
        // export, which reaches here through the socket and the runtime's
        // own synchronization.
        match self.taking.load(Ordering::Relaxed) {
            true => Ok(Response::new(ExportMetricsServiceResponse::default())),
            false => Err(Status::unimplemented("no metrics here")),
        }
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        _: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

/// Every WARN or ERROR event, as `LEVEL target: fields`.
#[derive(Clone, Default)]
struct Complaints(Arc<Mutex<Vec<String>>>);

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

impl Complaints {
    /// How many times the refusal was told so far; nothing else may have
    /// been complained of.
    fn told(&self) -> usize {
        let complaints = self.0.lock().unwrap();
        assert!(complaints.iter().all(|c| c.starts_with("WARN")), "no export errors: {complaints:#?}");
        complaints.iter().filter(|c| c.contains("takes no metrics")).count()
    }
}

#[test]
fn a_collector_refusing_metrics_again_after_taking_them_is_told_again() {
    // The metrics exporter's thread logs to the global subscriber.
    let complaints = Complaints::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(complaints.clone())).unwrap();

    let collector = Collector::default();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    runtime.spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .add_service(MetricsServiceServer::new(collector.clone()))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );

    // A series, or the SDK's reader would have nothing to export.
    MapProbe::new("refused.again").start(Op::Get).finish();
    let (_subscriber, guard) = Telemetry::builder()
        .fmt(false)
        .otlp(Protocol::Grpc)
        .otlp_endpoint(endpoint)
        // Exports only when flushed; each flush waits for its export.
        .metrics_interval(Duration::from_secs(3600))
        .otlp_timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    guard.flush();
    guard.flush();
    assert_eq!(complaints.told(), 1, "refused twice, told once");
    collector.taking.store(true, Ordering::Relaxed);
    guard.flush();
    assert_eq!(complaints.told(), 1, "taken: nothing to tell");
    collector.taking.store(false, Ordering::Relaxed);
    guard.flush();
    guard.flush();
    assert_eq!(complaints.told(), 2, "refused again after an export went through: told again, once");
    drop(guard);
}
