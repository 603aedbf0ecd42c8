//! A client that goes away mid-profile does not leave the profiler running:
//! the next profile request is not refused.

mod common;

use std::time::{Duration, Instant};

use common::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_frees_the_profiler() {
    common::start_workload();
    let server = Server::open().await;
    for path in ["/debug/pprof/profile?seconds=30", "/debug/pprof/flamegraph?seconds=30"] {
        // Until it holds the profiler (a probe is then refused with 409):
        // aborted before, it would test nothing. A probe that finds the
        // profiler free holds it for its second, and refuses the request if
        // it comes meanwhile: that one is then sent again.
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut request = tokio::spawn(common::get_owned(server.url(path)));
        loop {
            assert!(Instant::now() < deadline, "the 30 s profile never took the profiler");
            tokio::time::sleep(Duration::from_millis(100)).await;
            if request.is_finished() {
                request = tokio::spawn(common::get_owned(server.url(path)));
            } else if server.get("/debug/pprof/profile?seconds=1").await.0 == 409 {
                break;
            }
        }
        request.abort();
        assert!(request.await.unwrap_err().is_cancelled());
        // The server learns of the closed connection when its read or write
        // fails, a moment later on a loaded machine: refusals for up to 5 s
        // are that moment; an abandoned profile would hold the profiler 30.
        let deadline = Instant::now() + Duration::from_secs(5);
        let (status, _, body) = loop {
            let answer = server.get("/debug/pprof/profile?seconds=1").await;
            if answer.0 != 409 || Instant::now() >= deadline {
                break answer;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(status, 200, "after abandoning {path}: {}", String::from_utf8_lossy(&body));
        assert!(!common::decode_profile(&body).sample.is_empty());
    }
}
