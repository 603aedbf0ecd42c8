//! View windows are bounded: with `MAX_WINDOWS` open, a request gets 409 at
//! once, instead of holding one of the server's connections (and slowing
//! every snapview span) for its whole window; once one ends, a request may
//! open a window again. The windows are held here through the profiler the
//! server uses (the same process), so that no request races another for a
//! slot.

mod common;

use std::time::{Duration, Instant};

use common::Server;
use snapview_instrument::views::{self, MAX_WINDOWS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_max_windows_open_a_request_gets_409_at_once() {
    common::install_telemetry();
    let server = Server::open().await;
    let mut open: Vec<_> = (0..MAX_WINDOWS).map(|_| views::profiler().start().unwrap()).collect();

    let asked = Instant::now();
    let (status, content_type, body) = server.get("/debug/pprof/views?seconds=5").await;
    let message = String::from_utf8(body).unwrap();
    assert_eq!((status, content_type.as_str()), (409, "text/plain; charset=utf-8"), "{message}");
    assert!(message.contains("retry when one ends"), "{message}");
    assert!(asked.elapsed() < Duration::from_secs(2), "refused at once: {:?}", asked.elapsed());
    assert_eq!(server.get("/debug/pprof/").await.0, 200, "the server answers meanwhile");

    drop(open.pop());
    assert_eq!(server.get("/debug/pprof/views?seconds=1&format=folded").await.0, 200, "room again");
    drop(open);
}
