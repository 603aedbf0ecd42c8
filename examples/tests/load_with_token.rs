//! With `--token`, the load generator asks `/metrics` with the token: its
//! once-a-second scrape is what renders the histograms under load, and
//! without the token every one of them was a 401.

mod common;

use std::time::{Duration, Instant};

use snapview::debug::DebugConfig;
use snapview::instrument::{Op, report};
use snapview_examples::gateway::load::LoadConfig;
use snapview_examples::gateway::{Config, Service};

/// The scrapes `/metrics` has rendered: each iterates `request_stats` once.
fn request_stats_iterations() -> u64 {
    report().iter().filter(|s| s.map == "request_stats" && s.op == Op::Iter).map(|s| s.calls).sum()
}

#[tokio::test]
async fn the_load_generator_scrapes_metrics_with_the_token() {
    let file = common::TempRoutes::new(common::ROUTES);
    let config = Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        routes_path: file.path.clone(),
        load: Some(LoadConfig { rate: 50, duration: Duration::from_secs(60) }),
        debug: DebugConfig::default().token("s3cret"),
        ..Config::default()
    };
    let before = request_stats_iterations();
    let started = Instant::now();
    let service = Service::start(config).await.expect("the service starts");
    // The generator scrapes once a second, the first after a second: wait
    // for two scrapes' worth of time, or a slow machine's longer.
    let scraped = async {
        while started.elapsed() < Duration::from_millis(2500) || request_stats_iterations() == before {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(20), scraped).await;
    let load = service.shutdown().await.load.expect("the load generator ran");
    assert_eq!(load.unauthorized, 0, "{load:?}");
    assert!(request_stats_iterations() > before, "no /metrics scrape was rendered: {load:?}");
}
