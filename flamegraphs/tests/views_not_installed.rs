//! Without the view profiler's layer in any subscriber, `/views` answers 503
//! with the reason, and the rest of the server works.

mod common;

use common::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_without_the_layer_are_unavailable() {
    let server = Server::open().await;
    let (status, _, body) = server.get("/debug/pprof/views?seconds=1").await;
    let message = String::from_utf8(body).unwrap();
    assert_eq!(status, 503, "{message}");
    assert!(message.contains("view profiling is not installed"), "{message}");
    assert_eq!(server.get("/metrics").await.0, 200);
}
