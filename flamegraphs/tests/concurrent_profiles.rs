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
    // refused. Asked until refused, not after one fixed wait: a loaded 2-core
    // machine may take seconds to start the profile (its first start loads
    // debug info). Each (re)started profile gets a second's head start; a
    // flamegraph that still found the profiler free held it, and the profile
    // that came meanwhile was refused: it is sent again.
    let within = |secs| Duration::from_secs(secs);
    let start_running = || tokio::spawn(common::get_owned(server.url("/debug/pprof/profile?seconds=5")));
    let mut running = start_running();
    let deadline = std::time::Instant::now() + within(30);
    let refused = loop {
        assert!(std::time::Instant::now() < deadline, "the 5 s profile never held the profiler");
        tokio::time::sleep(within(1)).await;
        if running.is_finished() {
            let (status, _, body) = (&mut running).await.expect("the profile's task");
            assert_eq!(status, 409, "a profile that ended this soon was refused: {}", String::from_utf8_lossy(&body));
            running = start_running();
            continue;
        }
        let probe = tokio::time::timeout(within(10), server.get("/debug/pprof/flamegraph?seconds=1"))
            .await
            .expect("the flamegraph is answered");
        if probe.0 == 409 {
            break probe;
        }
        assert_eq!(probe.0, 200, "{}", String::from_utf8_lossy(&probe.2));
    };
    check_refused(refused);
    let running = tokio::time::timeout(within(15), running).await.expect("the profile ends").expect("its task");
    assert_eq!(running.0, 200, "the running profile completes");

    // Once it ended, the next one may run.
    assert_eq!(server.get("/debug/pprof/flamegraph?seconds=1").await.0, 200);
}

fn check_refused((status, content_type, body): (u16, String, Vec<u8>)) {
    let message = String::from_utf8(body).unwrap();
    assert_eq!((status, content_type.as_str()), (409, "text/plain; charset=utf-8"), "{message}");
    assert!(message.contains("already running"), "{message}");
}
