//! A CPU profile whose client leaves mid-window is stopped on tokio's
//! blocking pool, not on the runtime worker that drops the request:
//! stopping pprof-rs frees its sample collector and makes a new one with a
//! temporary file, tens of milliseconds in which a worker would answer
//! nothing else. And only once it has stopped is the profiler free again.
//!
//! Seen through pprof-rs's `SIGPROF` handler, which it installs as it
//! starts and replaces with `SIG_IGN` as it stops (`/proc/self/status`,
//! so Linux only), on a runtime whose one blocking thread the test holds.
#![cfg(target_os = "linux")]

mod common;

use std::time::{Duration, Instant};

use common::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Whether this process has a handler for `SIGPROF` (27 on Linux): whether
/// pprof-rs is running.
fn profiling() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let caught = status.lines().find_map(|line| line.strip_prefix("SigCgt:")).expect("a SigCgt line");
    let caught = u64::from_str_radix(caught.trim(), 16).expect("a hex mask");
    caught & (1 << (27 - 1)) != 0
}

/// Waits, at most `within`, for [`profiling`] to be `wanted`.
async fn until_profiling_is(wanted: bool, within: Duration) {
    let deadline = Instant::now() + within;
    while profiling() != wanted {
        assert!(Instant::now() < deadline, "pprof-rs running is still {} after {within:?}", !wanted);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn a_profile_abandoned_by_its_client_stops_on_the_blocking_pool() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let server = Server::open().await;
        let mut client = TcpStream::connect(server.base.strip_prefix("http://").unwrap()).await.unwrap();
        client.write_all(b"GET /debug/pprof/profile?seconds=60 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.unwrap();
        // Loading the debug info first takes seconds in a debug build.
        until_profiling_is(true, Duration::from_secs(60)).await;

        // Holds the one blocking thread, now that the profile has started.
        let (holding, held) = tokio::sync::oneshot::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let holder = tokio::task::spawn_blocking(move || {
            let _ = holding.send(());
            let _ = released.recv();
        });
        held.await.unwrap();

        // Leaves: hyper sees the end of the stream, closes the connection
        // and drops the request (and the running profile) right after.
        client.shutdown().await.unwrap();
        let mut rest = Vec::new();
        let _ = client.read_to_end(&mut rest).await;
        assert!(rest.is_empty(), "answered: {}", String::from_utf8_lossy(&rest));

        // Inline on the worker, the stop would have taken milliseconds.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(profiling(), "pprof-rs was stopped without the blocking pool, on the runtime's worker");

        release.send(()).unwrap();
        holder.await.unwrap();
        until_profiling_is(false, Duration::from_secs(10)).await;
        let (status, _, body) = server.get("/debug/pprof/profile?seconds=1").await;
        assert_eq!(status, 200, "the profiler is free once stopped: {}", String::from_utf8_lossy(&body));
    });
}
