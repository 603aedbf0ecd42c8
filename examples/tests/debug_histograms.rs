//! `/debug/pprof` is mounted on the service's port, and its histograms show the maps `routes` and `request_stats`.

mod common;

#[tokio::test]
async fn histograms_show_both_maps() {
    let (service, _file) = common::start(common::ROUTES).await;
    let client = common::client();
    common::route(&client, &service, "/api/users/1").await;
    common::get(&client, &service, "/metrics").await;

    let (status, body) = common::get(&client, &service, "/debug/pprof/histograms?format=json").await;
    assert_eq!(status, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    let ops = report["ops"].as_array().expect("an ops array");
    let has =
        |map: &str, op: &str| ops.iter().any(|o| o["map"] == map && o["op"] == op && o["calls"].as_u64() > Some(0));
    assert!(has("routes", "snapshot"), "{body}");
    assert!(has("routes", "publish"), "{body}");
    assert!(has("request_stats", "publish"), "{body}");
    assert!(has("request_stats", "iter"), "{body}");

    let (status, index) = common::get(&client, &service, "/debug/pprof/").await;
    assert_eq!(status, 200);
    assert!(index.contains("/debug/pprof/views"), "{index}");
    service.shutdown().await;
}
