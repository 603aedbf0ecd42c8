//! View windows are bounded: beyond `MAX_WINDOWS` open at once a request gets
//! 409 at once, instead of holding one of the server's connections (and
//! slowing every snapview span) for its whole window; the server answers
//! other requests meanwhile, and a window may open again once one ends.

mod common;

use std::time::{Duration, Instant};

use common::Server;
use snapview_instrument::views::MAX_WINDOWS;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_beyond_the_bound_get_409_at_once() {
    common::start_workload();
    let server = Server::open().await;
    let long: Vec<_> = (0..MAX_WINDOWS)
        .map(|_| tokio::spawn(common::get_owned(server.url("/debug/pprof/views?seconds=6&format=folded"))))
        .collect();

    // Until all the long windows are open, a probe may be let in: it then
    // takes its one second, and the next probe goes.
    let deadline = Instant::now() + Duration::from_secs(4);
    let refused = loop {
        let asked = Instant::now();
        let (status, content_type, body) = server.get("/debug/pprof/views?seconds=1").await;
        if status == 409 {
            assert!(asked.elapsed() < Duration::from_millis(900), "refused at once: {:?}", asked.elapsed());
            assert_eq!(content_type, "text/plain; charset=utf-8");
            break String::from_utf8(body).unwrap();
        }
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        assert!(Instant::now() < deadline, "no view window was refused while {MAX_WINDOWS} were open");
    };
    assert!(refused.contains("retry when one ends"), "{refused}");
    assert_eq!(server.get("/debug/pprof/").await.0, 200, "the index answers meanwhile");

    for window in long {
        let (status, _, body) = window.await.unwrap();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }
    assert_eq!(server.get("/debug/pprof/views?seconds=1").await.0, 200, "room again once they ended");
}
