//! The standalone server bounds what each client can hold: a connection that
//! does not send a request's head within `header_timeout` is closed (a
//! slowloris client, an idle keep-alive one), and past `max_connections` new
//! connections wait until one closes.

mod common;

use std::time::{Duration, Instant};

use common::Server;
use snapview_flame::{ConnectionLimits, DebugConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn host(server: &Server) -> String {
    server.base.strip_prefix("http://").unwrap().to_owned()
}

/// Reads until the server closes the connection (EOF or reset), at most
/// `within`; returns how long that took, or `None` if it stayed open.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(within, async { while let Ok(1..) = stream.read(&mut buf).await {} })
        .await
        .ok()
        .map(|()| start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_are_closed_after_the_header_timeout() {
    let limits = ConnectionLimits { header_timeout: Duration::from_millis(500), ..ConnectionLimits::default() };
    let server = Server::start(DebugConfig::default().without_token().limits(limits)).await;
    let connected = Instant::now();

    // Sends part of a head, then nothing more.
    let mut slow = TcpStream::connect(host(&server)).await.unwrap();
    slow.write_all(b"GET /debug/pprof/ HTTP/1.1\r\nHost: localhost\r\nX-Slow: a").await.unwrap();
    // Sends nothing at all.
    let mut silent = TcpStream::connect(host(&server)).await.unwrap();
    // Asks once, keeps the connection, then asks nothing more.
    let mut idle = TcpStream::connect(host(&server)).await.unwrap();
    idle.write_all(b"GET /debug/pprof/ HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();

    for (what, stream) in [("slow", &mut slow), ("silent", &mut silent), ("idle", &mut idle)] {
        let took = closed_within(stream, Duration::from_secs(5)).await;
        assert!(took.is_some(), "the {what} connection is still open after 5 s");
        // Closed by the timeout, not at once: each was opened after
        // `connected`, so its 500 ms run out no sooner than that.
        let since = connected.elapsed();
        assert!(since >= Duration::from_millis(450), "the {what} connection was closed after {since:?}");
    }
    assert_eq!(server.get("/debug/pprof/").await.0, 200, "a prompt client is served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_limit_a_client_waits_for_a_free_slot() {
    let limits = ConnectionLimits { max_connections: 3, header_timeout: Duration::from_secs(60) };
    let server = Server::start(DebugConfig::default().without_token().limits(limits)).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(host(&server)).await.unwrap();
        // A whole request: the answer shows that the server took the
        // connection (a slot), which it then keeps open.
        stream.write_all(b"GET /debug/pprof/ HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"HTTP/1.1 200");
        held.push(stream);
    }
    let url = server.url("/debug/pprof/");
    let waiting = tokio::spawn(async move { common::get_owned(url).await.0 });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "a fourth connection is served while three are open");
    drop(held.pop());
    let status = tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("served once a slot is free");
    assert_eq!(status.unwrap(), 200);
}

#[tokio::test]
async fn limits_that_cannot_be_served_are_an_error_before_serving() {
    let bad = [
        ConnectionLimits { header_timeout: Duration::ZERO, ..ConnectionLimits::default() },
        ConnectionLimits { header_timeout: Duration::MAX, ..ConnectionLimits::default() },
        ConnectionLimits { max_connections: 0, ..ConnectionLimits::default() },
    ];
    for limits in bad {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let served = snapview_flame::serve_router(listener, axum::Router::new(), limits, std::future::pending());
        let err = tokio::time::timeout(Duration::from_secs(5), served).await.expect("refused at once").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{limits:?}");
        assert!(err.to_string().starts_with("ConnectionLimits::"), "{err}");
    }
}

/// `usize::MAX` connections means as many as the process can open, and the
/// longest header timeout is served (both once panicked inside tokio or hyper).
#[tokio::test]
async fn the_largest_limits_are_served() {
    let limits = ConnectionLimits { max_connections: usize::MAX, header_timeout: ConnectionLimits::MAX_HEADER_TIMEOUT };
    let server = Server::start(DebugConfig::default().without_token().limits(limits)).await;
    assert_eq!(server.get("/debug/pprof/").await.0, 200);
}
