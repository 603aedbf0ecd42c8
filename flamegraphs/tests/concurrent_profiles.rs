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

    // The flamegraph shares the profiler: while a 5 s profile runs, it is
    // refused. Asked until refused, not after a fixed wait: a loaded 2-core
    // machine may take seconds to start the profile (its first start loads
    // debug info). A flamegraph that found the profiler free held it for its
    // second, and may have made the profile be refused: that one is sent
    // again.
    let start_running = || tokio::spawn(common::get_owned(server.url("/debug/pprof/profile?seconds=5")));
    let mut running = start_running();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let refused = loop {
        assert!(std::time::Instant::now() < deadline, "the 5 s profile never held the profiler");
        tokio::time::sleep(Duration::from_millis(100)).await;
        if running.is_finished() {
            running = start_running();
            continue;
        }
        let probe = server.get("/debug/pprof/flamegraph?seconds=1").await;
        if probe.0 == 409 {
            break probe;
        }
    };
    check_refused(refused);
    assert_eq!(running.await.expect("the profile's task").0, 200, "the running profile completes");

    // Once it ended, the next one may run.
    assert_eq!(server.get("/debug/pprof/flamegraph?seconds=1").await.0, 200);
}

fn check_refused((status, content_type, body): (u16, String, Vec<u8>)) {
    let message = String::from_utf8(body).unwrap();
    assert_eq!((status, content_type.as_str()), (409, "text/plain; charset=utf-8"), "{message}");
    assert!(message.contains("already running"), "{message}");
}
