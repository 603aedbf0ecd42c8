//! The CPU profiler is process-wide: of two overlapping CPU profiles one is
//! refused with 409, and the other completes unharmed.

mod common;

use std::time::Duration;

use common::{SPIN_FN, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_cpu_profile_gets_409_and_the_first_completes() {
    common::start_workload();
    let server = Server::open().await;
    let (a, b) =
        tokio::join!(server.get("/debug/pprof/profile?seconds=2"), server.get("/debug/pprof/profile?seconds=2"));
    let (done, refused) = if a.0 == 200 { (a, b) } else { (b, a) };
    check_refused(refused);
    assert_eq!((done.0, done.1.as_str()), (200, "application/octet-stream"));
    let profile = common::decode_profile(&done.2);
    assert!(!profile.sample.is_empty());
    assert!(common::has_string(&profile, SPIN_FN));

    // The flamegraph shares the profiler. It asks 1.5 s into a 5 s profile
    // and waits for the profiler for half a second: refused, unless the
    // first request took more than 1.5 s to reach the profiler (with 700 ms
    // and a 2 s profile, a loaded 2-core machine could swap the two).
    let running = server.get("/debug/pprof/profile?seconds=5");
    let second = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        server.get("/debug/pprof/flamegraph?seconds=1").await
    };
    let (running, second) = tokio::join!(running, second);
    assert_eq!(running.0, 200);
    check_refused(second);

    // Once it ended, the next one may run.
    assert_eq!(server.get("/debug/pprof/flamegraph?seconds=1").await.0, 200);
}

fn check_refused((status, content_type, body): (u16, String, Vec<u8>)) {
    let message = String::from_utf8(body).unwrap();
    assert_eq!((status, content_type.as_str()), (409, "text/plain; charset=utf-8"), "{message}");
    assert!(message.contains("already running"), "{message}");
}
