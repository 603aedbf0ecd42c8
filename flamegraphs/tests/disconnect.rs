//! A client that goes away mid-profile does not leave the profiler running:
//! the next profile request is not refused.

mod common;

use std::time::Duration;

use common::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_frees_the_profiler() {
    common::start_workload();
    let server = Server::open().await;
    for path in ["/debug/pprof/profile?seconds=30", "/debug/pprof/flamegraph?seconds=30"] {
        let request = tokio::spawn(common::get_owned(server.url(path)));
        tokio::time::sleep(Duration::from_millis(200)).await;
        request.abort();
        assert!(request.await.unwrap_err().is_cancelled());
        let (status, _, body) = server.get("/debug/pprof/profile?seconds=1").await;
        assert_eq!(status, 200, "after abandoning {path}: {}", String::from_utf8_lossy(&body));
        assert!(!common::decode_profile(&body).sample.is_empty());
    }
}
