//! A faulty OTLP collector never holds the application up: whether it is
//! absent, hangs on every connection or resets them, a burst of spans costs
//! the emitting thread no waiting, the spans that cannot be exported are
//! dropped and counted instead of piling up, memory stays bounded, and
//! dropping the guard returns in bounded time.
//!
//! The cases run one at a time (see [`one_at_a_time`]): they measure wall
//! time and the process's resident memory, which tests running beside them
//! would disturb.

#![cfg(feature = "otlp")]

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use snapview_instrument::{Protocol, Telemetry};

/// Spans the workload emits.
const SPANS: u64 = 20_000;
/// The pipeline's queue bound (`MAX_QUEUED_SPANS` in `telemetry/otlp.rs`):
/// spans admitted and not yet through an export never exceed it.
const QUEUE: u64 = 2048;
/// The export timeout given to the pipeline.
const EXPORT_TIMEOUT: Duration = Duration::from_millis(500);
/// The most the workload may take: 250 µs a span, where a debug build needs
/// 15 to 25 (room for a loaded 2-core machine), and where an emitting
/// thread that waited for its exports would need some 20 s (an export
/// timeout for each of ~40 batches of 512 spans).
const WORKLOAD_BOUND: Duration = Duration::from_secs(5);
/// The most resident memory may grow over the workload: a few MiB when the
/// queue holds, some 20 MiB when every span is kept.
const RSS_BOUND: u64 = 16 << 20;
/// The most dropping the guard may take: the export timeout, which bounds
/// the wait for the exporters, with room for a loaded machine. (Left to
/// itself the SDK's shutdown takes some 2 s here: a final export and retries.)
const SHUTDOWN_BOUND: Duration = Duration::from_millis(1500);

/// How a fake collector treats the connections it accepts.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Holds every connection open and never reads or writes.
    Hang,
    /// Reads the first bytes (the HTTP/2 preface or the HTTP request line),
    /// then closes the connection.
    Reset,
}

/// A fake collector on `127.0.0.1:0`, accepting on a thread of its own
/// until dropped.
struct FaultyCollector {
    endpoint: String,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FaultyCollector {
    fn start(fault: Fault) -> FaultyCollector {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = thread::spawn({
            let (accepted, stop) = (Arc::clone(&accepted), Arc::clone(&stop));
            move || {
                let mut held: Vec<TcpStream> = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            accepted.fetch_add(1, Ordering::Relaxed);
                            match fault {
                                Fault::Hang => held.push(stream),
                                Fault::Reset => reset(stream),
                            }
                        }
                        Err(_) => thread::sleep(Duration::from_millis(5)),
                    }
                }
            }
        });
        FaultyCollector { endpoint, accepted, stop, thread: Some(thread) }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for FaultyCollector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads what the client sends first, then drops the connection: with
/// unread data left, or data arriving after the close, the kernel answers
/// with a RST.
fn reset(mut stream: TcpStream) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut preface = [0u8; 24];
    let _ = stream.read(&mut preface);
}

/// A port nothing listens on: bound, then released.
fn dead_endpoint() -> String {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    format!("http://127.0.0.1:{port}")
}

/// The process's resident set size, from `/proc/self/statm` (pages; 4 KiB
/// on the platforms this runs on).
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// Serialises the cases: each measures time and the whole process's memory.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs the workload against `endpoint` over `protocol` and checks every
/// bound; returns the spans dropped, for the case's own checks.
fn survives(case: &str, protocol: Protocol, endpoint: &str) -> u64 {
    let (subscriber, guard) = Telemetry::builder()
        .fmt(false)
        .otlp(protocol)
        .otlp_endpoint(endpoint)
        .otlp_timeout(EXPORT_TIMEOUT)
        .build()
        .unwrap();
    let rss_before = rss_bytes();
    let start = Instant::now();
    tracing::subscriber::with_default(subscriber, || {
        for _ in 0..SPANS {
            tracing::debug_span!(target: "snapview", "snapview.snapshot", map = "m", version = 1u64).in_scope(|| {});
        }
    });
    let workload = start.elapsed();
    let growth = rss_bytes().saturating_sub(rss_before);
    let dropped = guard.dropped_spans();
    let dropping = Instant::now();
    drop(guard);
    let shutdown = dropping.elapsed();
    eprintln!(
        "{case}: {SPANS} spans in {workload:?}, {dropped} dropped, RSS +{} KiB, guard dropped in {shutdown:?}",
        growth >> 10
    );

    assert!(workload < WORKLOAD_BOUND, "{case}: emitting {SPANS} spans took {workload:?}");
    // Every span is admitted or dropped; the admitted ones are lost as the
    // collector takes none, unless still queued, and at most QUEUE are.
    assert!(dropped <= SPANS, "{case}: {dropped} dropped of {SPANS}");
    assert!(dropped >= SPANS - QUEUE, "{case}: only {dropped} of {SPANS} dropped, the queue is not bounded");
    assert!(growth < RSS_BOUND, "{case}: resident memory grew by {} MiB", growth >> 20);
    assert!(shutdown < SHUTDOWN_BOUND, "{case}: dropping the guard took {shutdown:?}");
    dropped
}

#[test]
fn absent_collector_grpc() {
    let _serial = one_at_a_time();
    survives("absent, gRPC", Protocol::Grpc, &dead_endpoint());
}

#[test]
fn absent_collector_http() {
    let _serial = one_at_a_time();
    survives("absent, HTTP", Protocol::HttpProtobuf, &dead_endpoint());
}

#[test]
fn hanging_collector_grpc() {
    let _serial = one_at_a_time();
    let collector = FaultyCollector::start(Fault::Hang);
    survives("hanging, gRPC", Protocol::Grpc, &collector.endpoint);
    assert!(collector.accepted() > 0, "the exporter never connected: the hang was not exercised");
}

#[test]
fn hanging_collector_http() {
    let _serial = one_at_a_time();
    let collector = FaultyCollector::start(Fault::Hang);
    survives("hanging, HTTP", Protocol::HttpProtobuf, &collector.endpoint);
    assert!(collector.accepted() > 0, "the exporter never connected: the hang was not exercised");
}

#[test]
fn resetting_collector_grpc() {
    let _serial = one_at_a_time();
    let collector = FaultyCollector::start(Fault::Reset);
    survives("resetting, gRPC", Protocol::Grpc, &collector.endpoint);
    assert!(collector.accepted() > 0, "the exporter never connected: the resets were not exercised");
}

#[test]
fn resetting_collector_http() {
    let _serial = one_at_a_time();
    let collector = FaultyCollector::start(Fault::Reset);
    survives("resetting, HTTP", Protocol::HttpProtobuf, &collector.endpoint);
    assert!(collector.accepted() > 0, "the exporter never connected: the resets were not exercised");
}

/// A listener whose accept queue is full and never drained: the kernel
/// drops further connection attempts without an answer, as a firewall or an
/// overloaded collector host does, so a client's connect hangs until its
/// own timeout (the system's is some two minutes).
struct Blackhole {
    endpoint: String,
    _listener: std::net::TcpListener,
    _queued: Vec<TcpStream>,
}

impl Blackhole {
    fn start() -> Blackhole {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap();
        // std's listener has a backlog of 128; this one holds one connection.
        let listener = runtime.block_on(async {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
            socket.listen(0).unwrap().into_std().unwrap()
        });
        let addr = listener.local_addr().unwrap();
        let mut queued = Vec::new();
        for _ in 0..16 {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
                Ok(stream) => queued.push(stream),
                // Only if the machine stalled 300 ms could a first attempt
                // fail: nothing would be queued, and the test would check a
                // plain listener instead of a black hole.
                Err(_) if !queued.is_empty() => {
                    return Blackhole { endpoint: format!("http://{addr}"), _listener: listener, _queued: queued };
                }
                Err(err) => panic!("connecting to a listener with room in its queue failed: {err}"),
            }
        }
        panic!("the accept queue of a listener with backlog 0 took 16 connections: no black hole to test against");
    }
}

/// The SDK's gRPC channel bounds each request but not the connection under
/// it: toward a host that never answers, every export waited for the
/// system's connect timeout, holding the spans behind it unexported and
/// uncounted. The export timeout now bounds the connection too.
#[test]
fn unanswered_connection_attempts_grpc() {
    gives_up_connecting(Protocol::Grpc);
}

/// HTTP's blocking client bounds its connection by the export timeout too.
#[test]
fn unanswered_connection_attempts_http() {
    gives_up_connecting(Protocol::HttpProtobuf);
}

/// A few spans toward a [`Blackhole`]: their export fails, and is counted,
/// within the export timeout and a retry, not the system's connect timeout.
fn gives_up_connecting(protocol: Protocol) {
    let _serial = one_at_a_time();
    let blackhole = Blackhole::start();
    let (subscriber, guard) = Telemetry::builder()
        .fmt(false)
        .otlp(protocol)
        .otlp_endpoint(blackhole.endpoint.as_str())
        .otlp_timeout(EXPORT_TIMEOUT)
        .build()
        .unwrap();
    const FEW: u64 = 10;
    tracing::subscriber::with_default(subscriber, || {
        for _ in 0..FEW {
            tracing::debug_span!(target: "snapview", "snapview.snapshot", map = "m", version = 1u64).in_scope(|| {});
        }
    });
    let flushing = Instant::now();
    guard.flush();
    assert!(flushing.elapsed() < SHUTDOWN_BOUND, "{protocol:?}: flush took {:?}", flushing.elapsed());
    // The failed export is counted once it gives up: after the export
    // timeout, give or take a retry, where it used to take minutes.
    let deadline = Instant::now() + Duration::from_secs(10);
    while guard.dropped_spans() < FEW && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(guard.dropped_spans(), FEW, "{protocol:?}: the export toward the black hole did not give up in 10 s");
    let dropping = Instant::now();
    drop(guard);
    assert!(dropping.elapsed() < SHUTDOWN_BOUND, "dropping the guard took {:?}", dropping.elapsed());
}
