//! `shutdown` completes promptly, even with a client's idle keep-alive
//! connection open, and the port is closed afterwards.

use std::time::Duration;

mod common;

#[tokio::test]
async fn shutdown_is_prompt_and_closes_the_port() {
    let (service, _file) = common::start(common::ROUTES).await;
    let client = common::client();
    // Leaves a keep-alive connection open.
    assert_eq!(common::route(&client, &service, "/api").await.0, 200);
    let addr = service.local_addr();
    let report = tokio::time::timeout(Duration::from_secs(3), service.shutdown()).await.expect("shutdown within 3 s");
    assert!(!report.forced, "no request had to be cut off");
    assert_eq!(report.load, None);
    let refused = tokio::net::TcpStream::connect(addr).await;
    assert!(refused.is_err(), "the port is closed after shutdown");
}

#[tokio::test]
async fn the_load_generator_stops_with_the_service() {
    let file = common::TempRoutes::new(common::ROUTES);
    let config = snapview_examples::gateway::Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        routes_path: file.path.clone(),
        load: Some(snapview_examples::gateway::load::LoadConfig { rate: 500, duration: Duration::from_secs(60) }),
        // Not `SNAPVIEW_DEBUG_TOKEN`'s: a token exported by whoever runs the
        // test (an invalid one stops the start) is not what it checks.
        debug: snapview::debug::DebugConfig::default().without_token(),
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let service = snapview_examples::gateway::Service::start(config).await.unwrap();
    // Until 50 requests are answered (each publishes one `request_stats`
    // version), not for a fixed time, which a loaded machine may spend
    // with the generator barely scheduled.
    let answered_50 = async {
        while service.request_stats().version() <= 50 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), answered_50).await.expect("50 requests answered within 20 s");
    let report = tokio::time::timeout(Duration::from_secs(5), service.shutdown()).await.expect("shutdown within 5 s");
    let ran = started.elapsed().as_secs_f64();
    let load = report.load.expect("the load generator ran");
    assert!(load.answered > 50, "{load:?}");
    // The rate over the whole run, plus the first tick's requests (sent at
    // once) and the generator's one `/metrics` request a second.
    let bound = 500.0 * ran + 5.0 + (ran + 1.0);
    assert!(load.sent as f64 <= bound, "at most 500 requests/s over {ran:.2} s: {load:?}");
    assert_eq!(load.failed, 0, "{load:?}");
}

/// A request still running after the grace period is cut off with its
/// connection: a 30 s CPU profile then lets go of the process's one profiler
/// at once, and the next service in the process can take a profile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_cut_off_at_shutdown_end_with_it() {
    let (service, _file) = common::start(common::ROUTES).await;
    let url = format!("http://{}/debug/pprof/profile?seconds=30", service.local_addr());
    let start_long = || {
        let url = url.clone();
        tokio::spawn(async move { common::client().get(url).send().await.map(|r| r.status()) })
    };
    // Until the long profile holds the profiler (a probe is then refused with
    // 409), not for a fixed time: its first start loads debug info, which a
    // loaded machine may spend seconds on. A probe that finds the profiler
    // free holds it for its second, and refuses the long one if it comes
    // meanwhile: that one is then sent again.
    let probe = format!("http://{}/debug/pprof/profile?seconds=1", service.local_addr());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut long = start_long();
    loop {
        assert!(std::time::Instant::now() < deadline, "the 30 s profile never took the profiler");
        tokio::time::sleep(Duration::from_millis(100)).await;
        if long.is_finished() {
            long = start_long();
        } else if matches!(common::client().get(&probe).send().await.map(|r| r.status().as_u16()), Ok(409)) {
            break;
        }
    }
    let report = tokio::time::timeout(Duration::from_secs(10), service.shutdown()).await.expect("shutdown within 10 s");
    assert!(report.forced, "the profile was still running after the grace period");
    let ended = tokio::time::timeout(Duration::from_secs(2), long).await.expect("the cut-off request ended");
    // Cut off, not answered: a profile answers only when it is over.
    let cut_off = ended.expect("the request's task");
    assert!(cut_off.is_err(), "the cut-off request got an answer: {cut_off:?}");

    let (next, _next_file) = common::start(common::ROUTES).await;
    let url = format!("http://{}/debug/pprof/profile?seconds=1", next.local_addr());
    let status = common::client().get(url).send().await.unwrap().status();
    assert_eq!(status, 200, "the profiler is free again");
    next.shutdown().await;
}
