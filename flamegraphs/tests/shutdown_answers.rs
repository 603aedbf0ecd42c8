//! At the shutdown signal, answers under way are finished: a request still
//! being worked on (nothing written yet), and an answer its client is
//! reading. Only a client that has stopped reading is cut, once the server's
//! writes to it have waited `header_timeout`: hyper flushes an answer
//! before it closes, and has no write timeout, so such a client would
//! otherwise keep the server from ever returning.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use snapview_flame::ConnectionLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// The size of `/big`'s answer: well past the kernel's socket buffers.
const BIG: usize = 24 << 20;

/// Small, so that a stalled client is cut soon; long enough that one
/// reading at a steady pace never waits it between two of the server's
/// writes.
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// How much longer than its bound a test waits for the server to return.
const SLACK: Duration = Duration::from_secs(5);

/// A running `serve_router`, with its shutdown signal.
struct Served {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    served: JoinHandle<io::Result<()>>,
    /// Receives a message as each `/slow` request begins.
    slow_began: mpsc::UnboundedReceiver<()>,
}

/// Serves `/big` ([`BIG`] bytes) and `/slow` ("done", after three header
/// timeouts of work).
async fn serve() -> Served {
    let (began, slow_began) = mpsc::unbounded_channel();
    let slow = move || {
        let _ = began.send(());
        async {
            tokio::time::sleep(HEADER_TIMEOUT * 3).await;
            "done"
        }
    };
    let router = Router::new().route("/big", get(|| async { vec![b'x'; BIG] })).route("/slow", get(slow));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let limits = ConnectionLimits { header_timeout: HEADER_TIMEOUT, ..ConnectionLimits::default() };
    let signal = async {
        let _ = stopped.await;
    };
    let served = tokio::spawn(snapview_flame::serve_router(listener, router, limits, signal));
    Served { addr, stop, served, slow_began }
}

impl Served {
    /// Fires the signal; waits at most `within` for the server to return,
    /// and how long it took.
    async fn stop_within(self, within: Duration) -> Duration {
        let signalled = Instant::now();
        self.stop.send(()).unwrap();
        let served = tokio::time::timeout(within, self.served).await;
        let served = served.unwrap_or_else(|_| panic!("the server has not returned {within:?} after its signal"));
        served.unwrap().expect("it stops cleanly");
        signalled.elapsed()
    }
}

/// A connection that has asked for `path`, to be closed after it, and
/// read the start of its answer: the server is answering it. Its receive
/// buffer is small and fixed (the kernel would grow it for a client that
/// reads, to tens of megabytes), so the answer waits in the server's.
async fn answer_begun(addr: SocketAddr, path: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(64 << 10).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut status = [0u8; 12];
    stream.read_exact(&mut status).await.unwrap();
    assert_eq!(&status, b"HTTP/1.1 200");
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_its_answer_does_not_keep_shutdown_from_returning() {
    let served = serve().await;
    // Reads no more: the rest of the answer fills the socket buffers, and
    // the server's next write waits for a client that never takes it.
    let _stalled = answer_begun(served.addr, "/big").await;
    let took = served.stop_within(HEADER_TIMEOUT + SLACK).await;
    // Cut for its stalled write, not at once for the signal.
    assert!(took >= HEADER_TIMEOUT / 2, "the stalled connection was cut {took:?} after the signal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_its_answer_during_shutdown_gets_it_whole() {
    let served = serve().await;
    let mut reader = answer_begun(served.addr, "/big").await;
    let reading = tokio::spawn(async move {
        // ~5 MB/s: the answer takes longer than the header timeout to read,
        // yet the server's writes never wait half as long for it.
        let (mut got, mut buf) = (Vec::new(), vec![0u8; 64 << 10]);
        loop {
            match reader.read(&mut buf).await {
                Ok(0) => return Ok(got),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(err) => return Err(err),
            }
            tokio::time::sleep(Duration::from_millis(12)).await;
        }
    });
    let took = served.stop_within(HEADER_TIMEOUT * 10 + SLACK).await;
    let got = reading.await.unwrap().expect("the answer is read to its end");
    let body_at = got.windows(4).position(|w| w == b"\r\n\r\n").expect("the head ends") + 4;
    assert_eq!(got.len() - body_at, BIG, "the whole body arrived");
    assert!(took > HEADER_TIMEOUT, "the answer was read in {took:?}, not slowly enough to test anything");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_still_being_worked_on_is_let_finish() {
    let mut served = serve().await;
    let mut stream = TcpStream::connect(served.addr).await.unwrap();
    stream.write_all(b"GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    served.slow_began.recv().await.unwrap();
    let answer = tokio::spawn(async move {
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.map(|_| answer)
    });
    // Its handler writes nothing for three header timeouts.
    served.stop_within(HEADER_TIMEOUT * 3 + SLACK).await;
    let answer = String::from_utf8(answer.await.unwrap().unwrap()).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("\r\n\r\ndone"), "{answer}");
}
