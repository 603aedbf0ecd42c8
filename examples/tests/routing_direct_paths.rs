//! A gateway resolves any path it is sent: `GET /api/users/42` resolves as
//! `GET /route/api/users/42` does, while `/`, `/metrics` and the debug
//! endpoints keep their own answers, and a path with no route is a JSON 404
//! counted as unmatched.

mod common;

#[tokio::test]
async fn any_other_path_resolves_as_under_route() {
    let (service, _file) = common::start(common::ROUTES).await;
    let client = common::client();
    for (path, route) in [("/api/users/42", "/api/users"), ("/api/orders/7", "/api"), ("/static/app.js", "/static")] {
        let (status, body) = common::get(&client, &service, path).await;
        let direct: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
        assert_eq!((status, &direct["route"]), (200, &serde_json::json!(route)), "{path}: {direct}");
        assert_eq!(direct, common::route(&client, &service, path).await.1, "{path}: the same answer as /route{path}");
    }
    // `/route/...` once normalized, though the router, matching the path as
    // sent, does not see it as one: resolved as `/route/...` is.
    let (status, body) = common::get(&client, &service, "/%72oute/api/users/42").await;
    let escaped: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(status, 200, "{escaped}");
    assert_eq!(escaped, common::route(&client, &service, "/api/users/42").await.1, "/%72oute/api/users/42");
    let (status, body) = common::get(&client, &service, "/nothing/here").await;
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((status, &json["error"]), (404, &serde_json::json!("no route")), "{json}");

    // The application's own paths are not routes.
    let (status, index) = common::get(&client, &service, "/").await;
    assert_eq!(status, 200);
    assert!(index.starts_with("snapview demo gateway"), "{index}");
    let (status, metrics) = common::get(&client, &service, "/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("gateway_requests_total{route=\"(none)\"} 1"), "{metrics}");
    let (status, histograms) = common::get(&client, &service, "/debug/pprof/histograms").await;
    assert_eq!(status, 200);
    assert!(histograms.contains("routes"), "{histograms}");
    // Only GET and HEAD are resolved.
    let post = client.post(format!("http://{}/api/users/42", service.local_addr())).send().await.unwrap();
    assert_eq!(post.status(), 405);
    service.shutdown().await;
}
