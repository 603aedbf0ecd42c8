//! `TelemetryGuard::flush` against a collector that never answers: each call
//! returns within the export timeout, and the flushes that outlast it do not
//! pile up, one waiting thread per call, when it is called back to back.
//! (A flush's threads outlive its wait only as long as the export they wait
//! for, which the same timeout bounds.)

#![cfg(feature = "otlp")]

use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use snapview_instrument::{Protocol, Telemetry};

/// The export timeout given to the pipeline.
const EXPORT_TIMEOUT: Duration = Duration::from_millis(200);
/// Flushes asked for, back to back.
const FLUSHES: usize = 10;
/// The threads that run a flush (`run_bounded` in `telemetry/otlp.rs`), as
/// `/proc` shows their names: cut to 15 bytes.
const FLUSH_THREAD: &str = "snapview-otlp-s";

/// Taken by each test: they count the same process's threads.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// How many of this process's threads run a flush or shutdown now.
fn flush_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim_end() == FLUSH_THREAD)
        .count()
}

#[test]
fn flushes_against_a_silent_collector_do_not_pile_up() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    // Accepts connections and never reads or answers them.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let held: std::thread::JoinHandle<Vec<TcpStream>> =
        std::thread::spawn(move || listener.incoming().take(64).filter_map(Result::ok).collect());

    for protocol in [Protocol::HttpProtobuf, Protocol::Grpc] {
        // The previous pass's shutdown threads (the same name) end first.
        let deadline = Instant::now() + Duration::from_secs(10);
        while flush_threads() > 0 {
            assert!(Instant::now() < deadline, "{} flush threads never ended", flush_threads());
            std::thread::sleep(Duration::from_millis(20));
        }
        let (subscriber, guard) = Telemetry::builder()
            .fmt(false)
            .otlp(protocol)
            .otlp_endpoint(&endpoint)
            .otlp_timeout(EXPORT_TIMEOUT)
            .metrics_interval(Duration::from_secs(3600))
            .build()
            .unwrap();
        let mut most = 0;
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..FLUSHES {
                tracing::debug_span!(target: "snapview", "snapview.snapshot", map = "m", version = 1u64)
                    .in_scope(|| {});
                let start = Instant::now();
                guard.flush();
                let took = start.elapsed();
                assert!(took < EXPORT_TIMEOUT * 5, "{protocol:?}: a flush took {took:?}");
                most = most.max(flush_threads());
            }
        });
        eprintln!("{protocol:?}: at most {most} flush threads over {FLUSHES} flushes");
        // Two a flush, both possibly still running when it returns; piling
        // up, they would number about one a call.
        assert!(most <= 4, "{protocol:?}: {most} flush threads at once over {FLUSHES} flushes");
        drop(guard);
    }
    drop(held);
}

/// Flushes from many threads at once: one runs, the others wait for it (as
/// bounded as it is) instead of each leaving its threads parked behind the
/// last, a pile that grows with every call while the collector is silent.
#[test]
fn concurrent_flushes_against_a_silent_collector_do_not_pile_up() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    // The other test's shutdown threads (the same name) end first.
    let deadline = Instant::now() + Duration::from_secs(10);
    while flush_threads() > 0 {
        assert!(Instant::now() < deadline, "{} flush threads never ended", flush_threads());
        std::thread::sleep(Duration::from_millis(20));
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let held: std::thread::JoinHandle<Vec<TcpStream>> =
        std::thread::spawn(move || listener.incoming().take(64).filter_map(Result::ok).collect());
    let (_subscriber, guard) = Telemetry::builder()
        .fmt(false)
        .otlp(Protocol::Grpc)
        .otlp_endpoint(&endpoint)
        .otlp_timeout(EXPORT_TIMEOUT)
        .metrics_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    let end = Instant::now() + EXPORT_TIMEOUT * 8;
    let most = std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                while Instant::now() < end {
                    let start = Instant::now();
                    guard.flush();
                    let took = start.elapsed();
                    assert!(took < EXPORT_TIMEOUT * 5, "a flush took {took:?}");
                }
            });
        }
        let mut most = 0;
        while Instant::now() < end {
            most = most.max(flush_threads());
            std::thread::sleep(Duration::from_millis(10));
        }
        most
    });
    eprintln!("at most {most} flush threads with 8 threads flushing");
    assert!(most <= 4, "{most} flush threads at once with 8 threads flushing");
    drop(guard);
    drop(held);
}
