//! The first CPU profile of a process loads debug info before it starts
//! (about a second in a debug build). Profiles asked for during that load
//! are refused with 409, as during the window: the request that came first
//! is the one served. A test binary of its own, so that its first request
//! is the process's first profile.

mod common;

use std::time::Duration;

use common::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_request_keeps_the_profiler_while_debug_info_loads() {
    let server = Server::open().await;
    let first = tokio::spawn(common::get_owned(server.url("/debug/pprof/profile?seconds=1")));
    // Within the load: the later requests wait on it too. Had they raced the
    // first for the profiler once it ended, one of the four would win at
    // random.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let later = (0..3).map(|_| tokio::spawn(common::get_owned(server.url("/debug/pprof/profile?seconds=1"))));
    for (n, request) in later.collect::<Vec<_>>().into_iter().enumerate() {
        let (status, _, body) = request.await.expect("a later request's task");
        assert_eq!(status, 409, "later request {n} was served: {}", String::from_utf8_lossy(&body));
    }
    let (status, content_type, body) = first.await.expect("the first request's task");
    assert_eq!(
        (status, content_type.as_str()),
        (200, "application/octet-stream"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let profile = common::decode_profile(&body);
    assert!(profile.duration_nanos >= 1_000_000_000, "a profile of {} ns", profile.duration_nanos);
}
