//! `/metrics` renders one snapshot of `request_stats`: the per-route counters
//! add up to the requests made, and snapview's own families follow.

mod common;

fn value(line: &str) -> u64 {
    line.rsplit(' ').next().unwrap().parse().unwrap_or_else(|_| panic!("not a counter line: {line}"))
}

#[tokio::test]
async fn per_route_counters_add_up() {
    let (service, _file) = common::start(common::ROUTES).await;
    let client = common::client();
    let paths = ["/api/users/1", "/api/x", "/static/y", "/nope", "/api/users/2"];
    let rounds = 20;
    for _ in 0..rounds {
        for path in paths {
            common::route(&client, &service, path).await;
        }
    }
    let (status, text) = common::get(&client, &service, "/metrics").await;
    assert_eq!(status, 200);
    let per_route: Vec<(&str, u64)> = text
        .lines()
        .filter(|l| l.starts_with("gateway_requests_total{"))
        .map(|l| (l.split('"').nth(1).unwrap(), value(l)))
        .collect();
    let total: u64 = per_route.iter().map(|(_, n)| n).sum();
    assert_eq!(total, (rounds * paths.len()) as u64, "{text}");
    let count = |route: &str| per_route.iter().find(|(r, _)| *r == route).map(|(_, n)| *n);
    assert_eq!(count("/api/users"), Some(2 * rounds as u64));
    assert_eq!(count("/api"), Some(rounds as u64));
    assert_eq!(count("(none)"), Some(rounds as u64));
    let not_found = text.lines().find(|l| l.starts_with("gateway_not_found_total{route=\"(none)\"}")).map(value);
    assert_eq!(not_found, Some(rounds as u64));
    // One version of request_stats per request: the counters are those of that version.
    let version = text.lines().find(|l| l.starts_with("gateway_request_stats_version ")).map(value);
    assert_eq!(version, Some(total));
    assert!(text.contains("snapview_op_calls_total{map=\"request_stats\",op=\"iter\"}"), "{text}");
    assert!(text.contains("snapview_op_calls_total{map=\"routes\",op=\"snapshot\"}"), "{text}");
    service.shutdown().await;
}

/// Scrapes taken while requests keep updating `request_stats`: each one's
/// counters are those of the one version it names, so they add up to it
/// exactly (one version per request).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_during_requests_add_up_to_their_version() {
    let (service, _file) = common::start(common::ROUTES).await;
    let service = std::sync::Arc::new(service);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let senders: Vec<_> = ["/api/x", "/static/y", "/nope", "/api/users/3"]
        .into_iter()
        .map(|path| {
            let (service, stop) = (std::sync::Arc::clone(&service), std::sync::Arc::clone(&stop));
            tokio::spawn(async move {
                let client = common::client();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    common::route(&client, &service, path).await;
                }
            })
        })
        .collect();
    let client = common::client();
    let mut versions = Vec::new();
    for _ in 0..50 {
        let (status, text) = common::get(&client, &service, "/metrics").await;
        assert_eq!(status, 200);
        let total: u64 = text.lines().filter(|l| l.starts_with("gateway_requests_total{")).map(value).sum();
        let version = text.lines().find(|l| l.starts_with("gateway_request_stats_version ")).map(value);
        assert_eq!(version, Some(total), "counters and version from two versions:\n{text}");
        versions.push(total);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for sender in senders {
        sender.await.unwrap();
    }
    versions.dedup();
    assert!(versions.len() > 10, "the requests hardly overlapped the scrapes: versions {versions:?}");
    std::sync::Arc::into_inner(service).expect("the senders are done").shutdown().await;
}
