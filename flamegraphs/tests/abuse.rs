//! The debug endpoint stays responsive under abusive clients: a burst of
//! concurrent requests, slowloris connections that never finish their
//! headers, a huge query string, huge or too many headers. Each abuse gets a
//! prompt answer (or none, for the never-finished requests), and a normal
//! request is answered quickly while and after it happens.
//!
//! The cases run one at a time (see [`one_at_a_time`]): they measure
//! response times, which cases running beside them would disturb.

mod common;

use std::time::{Duration, Instant};

use common::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, MutexGuard};

/// The longest a normal request may take while the server is abused.
const RESPONSIVE: Duration = Duration::from_secs(1);

/// Serialises the cases, which measure response times.
async fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::const_new(());
    LOCK.lock().await
}

/// `GET /debug/pprof/` from a normal client: it answers 200 within
/// [`RESPONSIVE`]; returns how long it took.
async fn answers_promptly(server: &Server, when: &str) -> Duration {
    let start = Instant::now();
    let (status, _, body) = tokio::time::timeout(RESPONSIVE, server.get("/debug/pprof/"))
        .await
        .unwrap_or_else(|_| panic!("{when}: /debug/pprof/ not answered within {RESPONSIVE:?}"));
    let took = start.elapsed();
    assert_eq!(status, 200, "{when}: {}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("/debug/pprof/profile"), "{when}: the index page");
    took
}

/// `host:port` of the server.
fn addr(server: &Server) -> &str {
    server.base.strip_prefix("http://").unwrap()
}

/// Sends `request` on a connection of its own and reads the answer until
/// the server closes; returns the status of the answer, if one came, and how
/// long that took. The server may answer and close before it has read
/// everything, so write errors are expected and ignored.
async fn raw_status(server: &Server, request: Vec<u8>) -> (Option<u16>, Duration) {
    let start = Instant::now();
    let stream = TcpStream::connect(addr(server)).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let writing = tokio::spawn(async move {
        let _ = writer.write_all(&request).await;
        writer
    });
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 4096];
        // Until EOF, or a reset once the server closed on unread data.
        while let Ok(n @ 1..) = reader.read(&mut buf).await {
            answer.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(read.is_ok(), "the server neither answered nor closed within 5 s");
    let took = start.elapsed();
    writing.abort();
    let head = String::from_utf8_lossy(&answer[..answer.len().min(64)]).into_owned();
    let status = head.strip_prefix("HTTP/1.1 ").and_then(|rest| rest.get(..3)).and_then(|code| code.parse().ok());
    (status, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_requests_are_all_answered() {
    let _serial = one_at_a_time().await;
    let server = Server::open().await;
    let start = Instant::now();
    let requests: Vec<_> = (0..200)
        .map(|i| {
            let path = if i % 2 == 0 { "/debug/pprof/histograms" } else { "/metrics" };
            let url = server.url(path);
            tokio::spawn(async move {
                let sent = Instant::now();
                let (status, _, _) = common::get_owned(url).await;
                (path, status, sent.elapsed())
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for request in requests {
        let (path, status, took) =
            tokio::time::timeout(Duration::from_secs(10), request).await.expect("answered within 10 s").unwrap();
        assert_eq!(status, 200, "{path}");
        slowest = slowest.max(took);
    }
    let all = start.elapsed();
    eprintln!("200 concurrent requests: all answered in {all:?}, slowest {slowest:?}");
    assert!(all < Duration::from_secs(5), "200 requests took {all:?}");
    let after = answers_promptly(&server, "after the burst").await;
    eprintln!("after the burst: /debug/pprof/ in {after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_do_not_starve_other_clients() {
    let _serial = one_at_a_time().await;
    let server = Server::open().await;
    // Half drip even the request line, half send it and drip a header that
    // never ends: no request is ever complete.
    let mut slow = Vec::new();
    for i in 0..50 {
        let mut stream = TcpStream::connect(addr(&server)).await.unwrap();
        stream.set_nodelay(true).unwrap();
        slow.push(tokio::spawn(async move {
            let head: &[u8] =
                if i % 2 == 0 { b"" } else { b"GET /debug/pprof/ HTTP/1.1\r\nHost: localhost\r\nX-Slow: " };
            stream.write_all(head).await.ok()?;
            let drip = if i % 2 == 0 { b"GET /debug/pprof/ HTTP/1.1\r\nX-Slow: ".iter() } else { b"".iter() };
            let mut sent = 0usize;
            for &byte in drip.chain(std::iter::repeat(&b'a')) {
                stream.write_all(&[byte]).await.ok()?;
                sent += 1;
                // An answer would mean the server took a partial request as whole.
                let mut buf = [0u8; 1];
                if let Ok(Ok(n @ 1..)) = tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await {
                    panic!("a slow connection got an answer ({n} byte) after {sent} bytes");
                }
            }
            Some(())
        }));
    }
    let mut times = Vec::new();
    for round in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        times.push(answers_promptly(&server, &format!("with 50 slow connections, round {round}")).await);
    }
    // The abuse lasted the whole time: every slow connection was still being
    // fed, none ended by an error or by the server closing it. (The server's
    // header timeout, 10 s by default, is longer than the abuse; that it
    // ends them is `connection_limits.rs`'s test.)
    for (i, connection) in slow.iter().enumerate() {
        assert!(!connection.is_finished(), "slow connection {i} ended early");
    }
    for connection in &slow {
        connection.abort();
    }
    eprintln!("/debug/pprof/ with 50 slowloris connections open: {times:?}");
}

/// More slowloris clients than the server's 256 connections, each opening
/// a new connection as soon as its last is closed: a normal client is still
/// answered promptly, in the place of the connection that has waited
/// longest for a request head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_clients_past_the_connection_limit_do_not_keep_others_out() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    // Measured: 5-266 ms. Before, a newcomer waited for a slow connection's
    // 10 s header timeout (7-10 s); the margin is for a noisy 2-core host
    // cycling ~1000 connections a second.
    const PROMPTLY: Duration = Duration::from_secs(3);
    let _serial = one_at_a_time().await;
    let server = Server::open().await;
    let (reconnects, answered) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut slow = Vec::new();
    for _ in 0..300 {
        let addr = addr(&server).to_owned();
        let (reconnects, answered) = (Arc::clone(&reconnects), Arc::clone(&answered));
        slow.push(tokio::spawn(async move {
            loop {
                let Ok(mut stream) = TcpStream::connect(&addr).await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = stream.write_all(b"GET /debug/pprof/ HTTP/1.1\r\nHost: localhost\r\nX-Slow: ").await;
                // Drips a byte every 200 ms until the server closes it.
                loop {
                    let mut buf = [0u8; 1];
                    match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await {
                        Ok(Ok(0) | Err(_)) => break,
                        // The server took a partial request as whole.
                        Ok(Ok(_)) => answered.fetch_add(1, Relaxed),
                        Err(_) if stream.write_all(b"a").await.is_err() => break,
                        Err(_) => continue,
                    };
                }
                reconnects.fetch_add(1, Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut times = Vec::new();
    for round in 0..6 {
        let start = Instant::now();
        let (status, ..) = tokio::time::timeout(PROMPTLY, server.get("/debug/pprof/"))
            .await
            .unwrap_or_else(|_| panic!("with 300 slow clients, round {round}: not answered within {PROMPTLY:?}"));
        assert_eq!(status, 200);
        times.push(start.elapsed());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for connection in &slow {
        connection.abort();
    }
    let reconnects = reconnects.load(Relaxed);
    eprintln!("/debug/pprof/ with 300 reconnecting slowloris clients: {times:?}; {reconnects} slow connections closed");
    assert_eq!(answered.load(Relaxed), 0, "slow connections got answers");
    // Those past the limit took the places of others, which came back.
    assert!(reconnects >= 300 - 256, "only {reconnects} slow connections were closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_query_strings_are_refused_quickly() {
    let _serial = one_at_a_time().await;
    let server = Server::open().await;
    let many = "x=1&".repeat(12_000); // 48 000 bytes, under hyper's URI limit
    // A parameter the profile takes, repeated with one value (which is that
    // value), so that its 400 is for `seconds`, not for an unknown name.
    let many_known = "frequency=99&".repeat(3_600); // 46 800 bytes
    let cases = [
        (format!("/debug/pprof/profile?seconds={}", "9".repeat(64 << 10)), &[414][..]),
        (format!("/debug/pprof/profile?seconds={}", "9".repeat(1 << 20)), &[414, 431][..]),
        (format!("/debug/pprof/histograms?{}", "x=1&".repeat(100_000)), &[414, 431][..]),
        // Under the limit: parsed, and the bad value among them is named.
        (format!("/debug/pprof/profile?{many_known}seconds=0"), &[400][..]),
        (format!("/debug/pprof/views?{many}format=bmp"), &[400][..]),
    ];
    for (path, expected) in cases {
        let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").into_bytes();
        let (status, took) = raw_status(&server, request).await;
        let what = format!("a {} KiB request line", path.len() >> 10);
        eprintln!("{what}: {status:?} in {took:?}");
        assert!(status.is_some_and(|s| expected.contains(&s)), "{what}: {status:?}, expected one of {expected:?}");
        assert!(took < RESPONSIVE, "{what}: answered in {took:?}");
        answers_promptly(&server, &format!("after {what}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_headers_are_refused_quickly() {
    let _serial = one_at_a_time().await;
    let server = Server::open().await;
    let big = |size: usize| format!("X-Big: {}\r\n", "a".repeat(size));
    let many: String = (0..500).map(|i| format!("X-H{i}: {i}\r\n")).collect();
    let cases = [
        ("a 1 MiB header", big(1 << 20)),
        ("a 16 MiB header", big(16 << 20)),
        ("500 headers", many),
        ("100 headers of 8 KiB", (0..100).map(|_| big(8 << 10)).collect()),
    ];
    for (what, headers) in cases {
        let request = format!("GET /debug/pprof/ HTTP/1.1\r\nHost: localhost\r\n{headers}Connection: close\r\n\r\n");
        let (status, took) = raw_status(&server, request.into_bytes()).await;
        eprintln!("{what}: {status:?} in {took:?}");
        assert_eq!(status, Some(431), "{what}");
        assert!(took < RESPONSIVE, "{what}: answered in {took:?}");
        answers_promptly(&server, &format!("after {what}")).await;
    }
}
