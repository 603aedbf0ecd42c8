//! A collector that takes no metrics is told once, as a warning, and told
//! again if it takes an export and then refuses them again: a metrics
//! service that comes back and goes away for good (a collector redeployed
//! as a traces-only Jaeger) is not silent for the rest of the pipeline's
//! life. Before, the first refusal was the only one ever told.
//!
//! It sets the global subscriber, and `build()` would read the developer's
//! `OTEL_*` variables (headers, a temporality preference): the case runs in
//! a child process of its own (this test binary running only the ignored
//! `child_*` test, `tests/support/child.rs`), which starts without them.
#![cfg(feature = "otlp")]

#[path = "support/child.rs"]
mod child;
#[path = "support/complaints.rs"]
mod complaints;
#[path = "support/otlp_pipeline.rs"]
mod otlp_pipeline;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use complaints::Complaints;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use snapview_instrument::probe::MapProbe;
use snapview_instrument::{Op, Protocol};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

/// An OTLP gRPC collector whose metrics service answers `Unimplemented`, as
/// Jaeger's absent one does, until `taking` is set.
#[derive(Clone, Default)]
struct Collector {
    taking: Arc<AtomicBool>,
    /// The metrics exports it has answered.
    answered: Arc<AtomicUsize>,
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
        let taking = self.taking.load(Ordering::Relaxed);
        // Release: pairs with the Acquire load in `flush_and_wait`, so that
        // the test's next store to `taking`, made after it saw this count,
        // comes after the load above, which cannot read it.
        self.answered.fetch_add(1, Ordering::Release);
        match taking {
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

impl Complaints {
    /// How many times the refusal was told so far; nothing else may have
    /// been complained of.
    fn told(&self) -> usize {
        let complaints = self.all();
        assert!(complaints.iter().all(|c| c.starts_with("WARN")), "no export errors: {complaints:#?}");
        complaints.iter().filter(|c| c.contains("takes no metrics")).count()
    }
}

#[test]
fn a_collector_refusing_metrics_again_after_taking_them_is_told_again() {
    child::run_child("child_tells_a_refusal_again", &[]);
}

#[test]
#[ignore = "run by a_collector_refusing_metrics_again_after_taking_them_is_told_again, in a process of its own"]
fn child_tells_a_refusal_again() {
    if !child::in_child() {
        return;
    }
    let complaints = Complaints::collect();

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
    let (_subscriber, guard) = otlp_pipeline::pipeline(Protocol::Grpc, &endpoint, otlp_pipeline::ONLY_WHEN_FLUSHED);

    let flush = |exports: usize, told: usize| {
        guard.flush();
        flush_and_wait(&collector, exports, &complaints, told);
    };
    flush(1, 1);
    flush(2, 1);
    assert_eq!(complaints.told(), 1, "refused twice, told once");
    collector.taking.store(true, Ordering::Relaxed);
    flush(3, 1);
    assert_eq!(complaints.told(), 1, "taken: nothing to tell");
    collector.taking.store(false, Ordering::Relaxed);
    flush(4, 2);
    flush(5, 2);
    assert_eq!(complaints.told(), 2, "refused again after an export went through: told again, once");
    drop(guard);
}

/// After a flush: waits until `collector` has answered `exports` exports
/// and the refusal was told `told` times (a flush returns when its export
/// is done, or after its timeout all the same). Panics if that takes long.
fn flush_and_wait(collector: &Collector, exports: usize, complaints: &Complaints, told: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // Acquire: pairs with the Release increment in `export`.
        let answered = collector.answered.load(Ordering::Acquire);
        if answered >= exports && complaints.told() >= told {
            assert_eq!(answered, exports, "one export per flush");
            return;
        }
        assert!(Instant::now() < deadline, "export {exports} answered and told {told} times");
        std::thread::sleep(Duration::from_millis(10));
    }
}
