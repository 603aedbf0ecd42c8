//! A request with a body is refused before anything runs: none of the
//! routes reads one, and an unread body would keep hyper from seeing the
//! client leave, so a profile would outlive its client, holding the
//! profiler for its whole window.

mod common;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `request` as is and returns the status line of the answer.
async fn status_line(base: &str, request: &str) -> String {
    let mut stream = TcpStream::connect(base.trim_start_matches("http://")).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = vec![0; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer)).await.unwrap().unwrap();
    String::from_utf8_lossy(&answer[..n]).lines().next().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_is_refused_and_the_profiler_stays_free() {
    common::start_workload();
    let server = common::Server::open().await;
    let with_length = "GET /debug/pprof/profile?seconds=300 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\n";
    assert!(status_line(&server.base, with_length).await.starts_with("HTTP/1.1 400"));
    let chunked =
        "GET /debug/pprof/views?seconds=300 HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert!(status_line(&server.base, chunked).await.starts_with("HTTP/1.1 400"));
    let empty = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    assert!(status_line(&server.base, empty).await.starts_with("HTTP/1.1 200"), "an empty body is no body");
    let (status, body) = {
        let (status, _, body) = server.get("/debug/pprof/profile?seconds=1").await;
        (status, String::from_utf8_lossy(&body).into_owned())
    };
    assert_eq!(status, 200, "the profiler is free: {body}");
}
