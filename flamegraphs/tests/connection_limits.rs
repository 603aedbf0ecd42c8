//! The standalone server bounds what each client can hold: a connection that
//! does not send a request's head within `header_timeout` is closed (a
//! slowloris client, an idle keep-alive one), and past `max_connections` a
//! new connection takes the place of the one that has waited longest for a
//! request head, or waits while every connection is answering.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use common::Server;
use snapview_flame::{ConnectionLimits, DebugConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

fn host(server: &Server) -> String {
    server.base.strip_prefix("http://").unwrap().to_owned()
}

/// Reads until the server closes the connection (EOF or reset), at most
/// `within`; returns how long that took, or `None` if it stayed open.
async fn closed_within(stream: &mut (impl AsyncRead + Unpin), within: Duration) -> Option<Duration> {
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
    let server = Server::start_within(DebugConfig::default().without_token(), limits).await;
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

/// Sends part of a request head, never the rest.
async fn slow_client(server: &Server) -> TcpStream {
    let mut stream = TcpStream::connect(host(server)).await.unwrap();
    stream.write_all(b"GET /debug/pprof/ HTTP/1.1\r\nHost: localhost\r\nX-Slow: a").await.unwrap();
    stream
}

/// Sends a whole request and reads the start of its answer, which shows the
/// server took the connection; keeps it open (kept alive, idle).
async fn idle_client(server: &Server) -> TcpStream {
    let mut stream = TcpStream::connect(host(server)).await.unwrap();
    stream.write_all(b"GET /debug/pprof/ HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    stream
}

/// Whether the server has closed `stream` (EOF or reset), looking for at
/// most `within`; what it sent before is skipped.
async fn is_closed(stream: &mut (impl AsyncRead + Unpin), within: Duration) -> bool {
    closed_within(stream, within).await.is_some()
}

/// The status of `GET /debug/pprof/` from a new client, which must come
/// within 3 s (at once, on a quiet host; the header timeout is 60 s).
async fn answered_promptly(server: &Server) -> u16 {
    let answer = tokio::time::timeout(Duration::from_secs(3), server.get("/debug/pprof/")).await;
    answer.expect("a newcomer past the limit is answered promptly").0
}

/// A full server: three clients that hold a connection each and never finish
/// a request, sending a byte of it every 50 ms. A fourth is answered at
/// once, in the place of the one that has waited longest; the two others
/// stay open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_limit_a_newcomer_takes_the_place_of_the_longest_waiting_connection() {
    let limits = ConnectionLimits { max_connections: 3, header_timeout: Duration::from_secs(60) };
    let server = Server::start_within(DebugConfig::default().without_token(), limits).await;
    let (mut readers, mut writers) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let (reader, writer) = slow_client(&server).await.into_split();
        readers.push(reader);
        writers.push(writer);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The drip must not count as activity (hyper reads each byte, and
    // flushes after it), or no slow connection would ever have waited long
    // enough to be closed.
    let dripping = tokio::spawn(async move {
        loop {
            for writer in &mut writers {
                let _ = writer.write_all(b"a").await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    tokio::time::sleep(snapview_flame::CLOSE_WAITING_AFTER).await;
    assert_eq!(answered_promptly(&server).await, 200);
    assert!(is_closed(&mut readers[0], Duration::from_secs(2)).await, "the longest-waiting connection was closed");
    for (i, reader) in readers.iter_mut().enumerate().skip(1) {
        assert!(!is_closed(reader, Duration::from_millis(200)).await, "slow connection {i} stays open");
    }
    dripping.abort();
}

/// Connections that never sent a whole request go before idle kept-alive
/// ones, which have been served and may ask again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_kept_alive_connections_are_closed_after_those_that_never_asked() {
    let limits = ConnectionLimits { max_connections: 3, header_timeout: Duration::from_secs(60) };
    let server = Server::start_within(DebugConfig::default().without_token(), limits).await;
    let mut first_idle = idle_client(&server).await;
    let mut slow = slow_client(&server).await;
    let mut second_idle = idle_client(&server).await;
    tokio::time::sleep(snapview_flame::CLOSE_WAITING_AFTER + Duration::from_millis(50)).await;
    assert_eq!(answered_promptly(&server).await, 200);
    assert!(is_closed(&mut slow, Duration::from_secs(2)).await, "the connection that never asked was closed");
    assert!(!is_closed(&mut first_idle, Duration::from_millis(200)).await, "the older idle connection stays");
    assert!(!is_closed(&mut second_idle, Duration::from_millis(200)).await, "the newer idle connection stays");
    // Full again, with idle connections only: the one idle the longest goes.
    let _third_idle = idle_client(&server).await;
    tokio::time::sleep(snapview_flame::CLOSE_WAITING_AFTER + Duration::from_millis(50)).await;
    assert_eq!(answered_promptly(&server).await, 200);
    assert!(is_closed(&mut first_idle, Duration::from_secs(2)).await, "then the longest idle connection");
    assert!(!is_closed(&mut second_idle, Duration::from_millis(200)).await, "not the next one");
}

/// A connection that is answering a request is never closed for a
/// newcomer: past the limit, with every connection answering, a newcomer
/// waits for one to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_every_connection_is_answering_a_newcomer_waits_for_a_free_slot() {
    let release = Arc::new(Semaphore::new(0));
    let held = Arc::clone(&release);
    let router = Router::new()
        .route(
            "/hold",
            get(move || {
                let held = Arc::clone(&held);
                async move { held.acquire().await.unwrap().forget() }
            }),
        )
        .route("/", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let limits = ConnectionLimits { max_connections: 3, header_timeout: Duration::from_secs(60) };
    tokio::spawn(snapview_flame::serve_router(listener, router, limits, std::future::pending()));

    let answering: Vec<_> = (0..3).map(|_| tokio::spawn(common::get_owned(format!("{base}/hold")))).collect();
    // Long past the wait after which an idle connection could be closed.
    tokio::time::sleep(snapview_flame::CLOSE_WAITING_AFTER * 3).await;
    let waiting = tokio::spawn(common::get_owned(format!("{base}/")));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "a fourth connection is served while three are answering");
    assert!(answering.iter().all(|a| !a.is_finished()), "no answering connection was closed");
    release.add_permits(1);
    let status = tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("served once a slot is free");
    assert_eq!(status.unwrap().0, 200);
    release.add_permits(2);
    for held in answering {
        assert_eq!(held.await.unwrap().0, 200, "every held request was answered");
    }
}

/// The size of `/big`'s answer: well past the kernel's socket buffers.
const BIG: usize = 24 << 20;

/// A server of one connection at a time, with `header_timeout`, answering
/// `/big` with [`BIG`] bytes and `/` with "ok"; its address.
async fn serve_one_connection_with_a_big_answer(header_timeout: Duration) -> std::net::SocketAddr {
    let router = Router::new().route("/big", get(|| async { vec![b'x'; BIG] })).route("/", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = ConnectionLimits { max_connections: 1, header_timeout };
    tokio::spawn(snapview_flame::serve_router(listener, router, limits, std::future::pending()));
    addr
}

/// A connection that has asked for `/big`, and to be closed after it.
async fn ask_for_the_big_answer(addr: std::net::SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /big HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    stream
}

/// An answer still being sent is not cut off for a newcomer: hyper drops a
/// response's body once it has queued it, long before a slow reader has it
/// all, so what is sent, and a write waiting for the client, count as the
/// connection's activity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_still_reading_its_answer_is_not_closed_for_a_newcomer() {
    let addr = serve_one_connection_with_a_big_answer(Duration::from_secs(60)).await;
    let mut reader = ask_for_the_big_answer(addr).await;
    let reading = tokio::spawn(async move {
        // ~10 MB/s: the answer takes over 2 s to read.
        let (mut got, mut buf) = (0usize, vec![0u8; 64 << 10]);
        let start = Instant::now();
        while let Ok(n @ 1..) = reader.read(&mut buf).await {
            got += n;
            tokio::time::sleep(Duration::from_millis(6)).await;
        }
        (got, start.elapsed())
    });
    tokio::time::sleep(snapview_flame::CLOSE_WAITING_AFTER * 2).await;
    let newcomer = tokio::spawn(common::get_owned(format!("http://{addr}/")));
    let (got, took) = reading.await.unwrap();
    assert!(got > BIG, "the slow reader got {got} bytes of a {BIG}-byte body in {took:?}");
    assert!(took > snapview_flame::CLOSE_WAITING_AFTER * 3, "the answer was not slow to read: {took:?}");
    let status = tokio::time::timeout(Duration::from_secs(5), newcomer).await.expect("served once a slot is free");
    assert_eq!(status.unwrap().0, 200);
}

/// A client that stops reading its answer holds its slot for the header
/// timeout since the server's last write to it, no longer, even on a
/// connection that asked to close after the answer (where hyper's own
/// header timer never starts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_for_a_newcomer_after_the_header_timeout() {
    let addr = serve_one_connection_with_a_big_answer(Duration::from_secs(1)).await;
    let mut stalled = ask_for_the_big_answer(addr).await;
    let asked = Instant::now();
    let status = tokio::time::timeout(Duration::from_secs(5), common::get_owned(format!("http://{addr}/")))
        .await
        .expect("the newcomer is served once the stalled connection has waited the header timeout");
    assert_eq!(status.0, 200);
    let took = asked.elapsed();
    assert!(took >= Duration::from_millis(900), "the stalled connection was closed after {took:?}, before 1 s");
    assert!(is_closed(&mut stalled, Duration::from_secs(2)).await, "the stalled connection was closed");
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
        // The debug server checks them the same way.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = snapview_flame::DebugConfig::default().without_token();
        let served = snapview_flame::serve_with_limits(listener, config, limits, std::future::pending());
        let err = tokio::time::timeout(Duration::from_secs(5), served).await.expect("refused at once").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{limits:?}");
    }
}

/// `usize::MAX` connections means as many as the process can open, and the
/// longest header timeout is served (both once panicked inside tokio or hyper).
#[tokio::test]
async fn the_largest_limits_are_served() {
    let limits = ConnectionLimits { max_connections: usize::MAX, header_timeout: ConnectionLimits::MAX_HEADER_TIMEOUT };
    let server = Server::start_within(DebugConfig::default().without_token(), limits).await;
    assert_eq!(server.get("/debug/pprof/").await.0, 200);
}
