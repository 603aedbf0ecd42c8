//! A `HEAD` of a profile answers its headers at once, without profiling: a
//! monitor's probe held the process-wide CPU profiler for the whole window
//! (a real request meanwhile got 409), and each probe of `/views` one of the
//! four view windows. Its parameters are checked as a `GET`'s are.

mod common;

use std::time::{Duration, Instant};

use common::Server;

/// `HEAD url`: (status, content type, body length, how long it took). A
/// 200 carries no `Content-Length`: it would have to be the `GET`'s.
async fn head(url: &str) -> (u16, String, usize, Duration) {
    let started = Instant::now();
    let response = reqwest::Client::new().head(url).send().await.expect("the server answers");
    let status = response.status().as_u16();
    if status == 200 {
        assert_eq!(response.headers().get("content-length"), None, "{url}");
    }
    let content_type =
        response.headers().get("content-type").map(|v| v.to_str().expect("ascii").to_owned()).unwrap_or_default();
    let body = response.bytes().await.expect("the body arrives").len();
    (status, content_type, body, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_of_a_cpu_profile_does_not_take_the_profiler() {
    common::start_workload();
    let server = Server::open().await;
    for (path, content_type) in [
        ("/debug/pprof/profile?seconds=30", "application/octet-stream"),
        ("/debug/pprof/flamegraph?seconds=30", "image/svg+xml"),
    ] {
        let (status, got_type, body, took) = head(&server.url(path)).await;
        assert_eq!((status, got_type.as_str(), body), (200, content_type, 0), "{path}");
        assert!(took < Duration::from_secs(5), "{path}: HEAD took {took:?}, as long as a profile");
    }
    // The profiler is free: a GET right after profiles, not 409.
    let (status, _, body) = server.get("/debug/pprof/profile?seconds=1").await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(!common::decode_profile(&body).sample.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_of_view_profiles_open_no_window() {
    common::start_workload();
    let server = Server::open().await;
    // More probes than there are windows, each of a long window.
    for _ in 0..snapview_instrument::views::MAX_WINDOWS + 2 {
        let (status, content_type, _, took) = head(&server.url("/debug/pprof/views?seconds=30&format=folded")).await;
        assert_eq!((status, content_type.as_str()), (200, "text/plain; charset=utf-8"));
        assert!(took < Duration::from_secs(5), "HEAD took {took:?}, as long as a window");
    }
    let (_, pprof_type, _, _) = head(&server.url("/debug/pprof/views?seconds=1&format=pprof")).await;
    assert_eq!(pprof_type, "application/octet-stream");
    let (status, content_type, body) = server.get("/debug/pprof/views?seconds=1&format=folded").await;
    assert_eq!(
        (status, content_type.as_str()),
        (200, "text/plain; charset=utf-8"),
        "{}",
        String::from_utf8_lossy(&body)
    );
}

#[tokio::test]
async fn a_head_with_a_bad_parameter_gets_400() {
    let server = Server::open().await;
    for path in [
        "/debug/pprof/profile?seconds=0",
        "/debug/pprof/flamegraph?frequency=abc",
        "/debug/pprof/views?format=png",
        "/debug/pprof/views?seconds=-1",
    ] {
        let (status, content_type, body, _) = head(&server.url(path)).await;
        assert_eq!((status, content_type.as_str(), body), (400, "text/plain; charset=utf-8", 0), "{path}");
    }
}
