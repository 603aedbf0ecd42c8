//! A gRPC OTLP collector made of a bare HTTP/2 server (hyper) on
//! `127.0.0.1:0`, for what tonic's generated servers cannot do: while told
//! to stall, it answers each export with the response's headers (`200`,
//! `application/grpc`) and then sends nothing more, neither a message nor
//! the trailers that end a gRPC call, while still acknowledging pings, as a
//! wedged collector or proxy does. Otherwise it answers an empty success
//! (`grpc-status: 0`), which both OTLP services take. It keeps every
//! request's path, headers and message, and when each stalled answer was
//! given up on (the client reset its stream).
//!
//! Include it with `#[path = "support/h2_collector.rs"] mod h2_collector;`;
//! the including crate needs the dev-dependencies `hyper` (`server`,
//! `http2`), `hyper-util` (`tokio`), `tokio` (`rt-multi-thread`, `net`),
//! `prost` and `opentelemetry-proto` (`gen-tonic`, `trace`).

// Each including test crate uses a part of this module.
#![allow(dead_code)]

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::{Body, Frame, Incoming};
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio::runtime::Runtime;

/// The path of the trace service's `Export`.
pub const TRACES: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
/// The path of the metrics service's `Export`.
pub const METRICS: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

/// One export as it arrived.
#[derive(Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    /// The request's message, without gRPC's 5-byte frame header.
    pub message: Vec<u8>,
    /// Whether it was answered with a stall.
    pub stalled: bool,
}

/// Without the message, which would fill a failing test's output.
impl std::fmt::Debug for Received {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Received { path, headers, message, stalled } = self;
        f.debug_struct("Received")
            .field("path", path)
            .field("headers", headers)
            .field("message_bytes", &message.len())
            .field("stalled", stalled)
            .finish()
    }
}

#[derive(Default)]
struct State {
    stall: AtomicBool,
    received: Mutex<Vec<Received>>,
    /// How long each stalled answer lasted before the client gave it up.
    given_up: Mutex<Vec<Duration>>,
}

/// A running collector; it stops when dropped.
pub struct H2Collector {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    state: Arc<State>,
    _runtime: Runtime,
}

/// Starts a collector on its own one-thread tokio runtime, answering.
pub fn start() -> H2Collector {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let state = Arc::new(State::default());
    let serving = Arc::clone(&state);
    runtime.spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let state = Arc::clone(&serving);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| answer(Arc::clone(&state), request));
                let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                let _ = connection.serve_connection(TokioIo::new(tcp), service).await;
            });
        }
    });
    H2Collector { endpoint, state, _runtime: runtime }
}

impl H2Collector {
    /// Whether exports from now on get a stalled answer.
    pub fn stall(&self, on: bool) {
        self.state.stall.store(on, Ordering::SeqCst);
    }

    /// Every export received so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.state.received).clone()
    }

    /// The exports to `path` ([`TRACES`], [`METRICS`]), `stalled` or answered.
    pub fn count(&self, path: &str, stalled: bool) -> usize {
        lock(&self.state.received).iter().filter(|r| r.path == path && r.stalled == stalled).count()
    }

    /// Every span of the trace exports that were answered.
    pub fn answered_spans(&self) -> Vec<Span> {
        let decode = |r: &Received| -> ExportTraceServiceRequest {
            prost::Message::decode(r.message.as_slice()).expect("an OTLP trace request")
        };
        let answered = self.received().into_iter().filter(|r| r.path == TRACES && !r.stalled);
        let requests: Vec<_> = answered.map(|r| decode(&r)).collect();
        requests.into_iter().flat_map(|r| r.resource_spans).flat_map(|r| r.scope_spans).flat_map(|s| s.spans).collect()
    }

    /// How long each stalled answer lasted before the client gave it up,
    /// in the order they were given up.
    pub fn given_up(&self) -> Vec<Duration> {
        lock(&self.state.given_up).clone()
    }

    /// Polls `done` every 10 ms until it holds or `timeout` has passed;
    /// returns whether it held.
    pub fn wait_until(&self, timeout: Duration, mut done: impl FnMut(&Self) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while !done(self) {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn answer(state: Arc<State>, request: Request<Incoming>) -> Result<Response<GrpcAnswer>, Infallible> {
    let (parts, body) = request.into_parts();
    let framed = read_all(body).await;
    let stalled = state.stall.load(Ordering::SeqCst);
    let message = framed.get(5..).unwrap_or_default().to_vec();
    lock(&state.received).push(Received {
        path: parts.uri.path().to_owned(),
        headers: parts.headers,
        message,
        stalled,
    });
    let body = match stalled {
        true => GrpcAnswer::Stalled { since: Instant::now(), state },
        false => GrpcAnswer::Message,
    };
    let response = Response::builder().header("content-type", "application/grpc").body(body).unwrap();
    Ok(response)
}

async fn read_all(mut body: Incoming) -> Vec<u8> {
    let mut bytes = Vec::new();
    while let Some(Ok(frame)) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        if let Ok(data) = frame.into_data() {
            bytes.extend_from_slice(&data);
        }
    }
    bytes
}

/// The body of an answer: an empty message then `grpc-status: 0`, or
/// nothing ever.
enum GrpcAnswer {
    /// Never ready; dropped when the client resets the stream (or the
    /// connection goes), which is when the client gave up.
    Stalled {
        since: Instant,
        state: Arc<State>,
    },
    Message,
    Trailers,
    Done,
}

impl Body for GrpcAnswer {
    type Data = &'static [u8];
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Infallible>>> {
        let this = self.get_mut();
        match this {
            GrpcAnswer::Stalled { .. } => Poll::Pending,
            GrpcAnswer::Message => {
                *this = GrpcAnswer::Trailers;
                // Uncompressed, zero bytes long: an empty response message.
                Poll::Ready(Some(Ok(Frame::data(&[0, 0, 0, 0, 0][..]))))
            }
            GrpcAnswer::Trailers => {
                *this = GrpcAnswer::Done;
                let mut trailers = HeaderMap::new();
                trailers.insert("grpc-status", HeaderValue::from_static("0"));
                Poll::Ready(Some(Ok(Frame::trailers(trailers))))
            }
            GrpcAnswer::Done => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, GrpcAnswer::Done)
    }
}

impl Drop for GrpcAnswer {
    fn drop(&mut self) {
        if let GrpcAnswer::Stalled { since, state } = self {
            lock(&state.given_up).push(since.elapsed());
        }
    }
}
