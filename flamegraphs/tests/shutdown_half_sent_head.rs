//! A connection that has sent only part of a request head when the shutdown
//! signal comes is closed, not served: hyper's graceful shutdown closes at
//! once only connections that have read nothing, and would serve the head
//! completed after it, a 300-second profile as readily as anything.

use std::net::SocketAddr;
use std::time::Duration;

use snapview_flame::DebugConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// Waits until the listener at `addr` is closed, which the server does once
/// it has seen its signal, just before it tells the connections.
async fn listener_closed(addr: SocketAddr) {
    while TcpStream::connect(addr).await.is_ok() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What the server sends on `stream` until it closes it (EOF or reset), if
/// it does within `within`.
async fn sent_before_closing(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut sent = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buf = [0u8; 1024];
        while let Ok(n @ 1..) = stream.read(&mut buf).await {
            sent.extend_from_slice(&buf[..n]);
        }
    });
    read.await.ok().map(|()| sent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_half_sent_at_the_signal_is_not_served() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let signal = async {
        let _ = stopped.await;
    };
    let served =
        tokio::spawn(snapview_flame::serve_with_shutdown(listener, DebugConfig::default().without_token(), signal));

    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /debug/pprof/profile?seconds=300 HTTP/1.1\r\n").await.unwrap();
    // Long enough for the server to have read it: a connection that has
    // read nothing is one hyper itself would close.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.send(()).unwrap();
    listener_closed(addr).await;
    // For the connection's task to run after the signal reached it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Refused, or reset, once the server has closed the connection.
    let _ = stream.write_all(b"Host: 127.0.0.1\r\n\r\n").await;

    let sent = sent_before_closing(&mut stream, Duration::from_secs(5)).await;
    let sent = sent.expect("the connection is closed, not kept for the request completed after the signal");
    assert!(sent.is_empty(), "the request was answered: {}", String::from_utf8_lossy(&sent));
    let served = tokio::time::timeout(Duration::from_secs(5), served).await;
    served.expect("the server returns promptly").unwrap().expect("it stops cleanly");
}
