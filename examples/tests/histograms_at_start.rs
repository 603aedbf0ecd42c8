//! Before any request or scrape (no load generator), the latency report at
//! `/debug/pprof/histograms` already lists both of the service's maps,
//! `routes` and `request_stats`: a report skips what was never used, and
//! nothing used `request_stats` until the first request.

mod common;

#[tokio::test]
async fn histograms_list_both_maps_before_any_request() {
    let (service, _file) = common::start(common::ROUTES).await;
    let client = common::client();
    let (status, body) = common::get(&client, &service, "/debug/pprof/histograms?format=json").await;
    assert_eq!(status, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    let maps: Vec<&str> =
        report["ops"].as_array().expect("an ops array").iter().filter_map(|o| o["map"].as_str()).collect();
    assert!(maps.contains(&"routes"), "{body}");
    assert!(maps.contains(&"request_stats"), "{body}");
    service.shutdown().await;
}
