//! Requests resolve to the longest matching prefix of one `routes` snapshot; no route is a 404.

mod common;

#[tokio::test]
async fn requests_resolve_to_the_longest_prefix() {
    let (service, _file) = common::start(common::ROUTES).await;
    let client = common::client();
    for (path, route, upstream) in [
        ("/api/users/42", "/api/users", "http://10.0.0.2:8080"),
        ("/api/users", "/api/users", "http://10.0.0.2:8080"),
        ("/api/orders/7", "/api", "http://10.0.0.1:8080"),
        ("/static/app.js", "/static", "http://10.0.1.1:80"),
    ] {
        let (status, json) = common::route(&client, &service, path).await;
        assert_eq!(status, 200, "{path}: {json}");
        assert_eq!(json["route"], route, "{path}: {json}");
        assert_eq!(json["upstream"], upstream, "{path}: {json}");
        assert_eq!(json["path"], path);
        assert_eq!(json["version"], 1, "the initial load is version 1");
    }
    for path in ["/apix", "/nothing", "/"] {
        let (status, json) = common::route(&client, &service, path).await;
        assert_eq!(status, 404, "{path}: {json}");
        assert_eq!(json["error"], "no route");
    }
    service.shutdown().await;
}

/// A HEAD request is resolved and counted, but its answer has no body, so it
/// adds no response bytes.
#[tokio::test]
async fn head_requests_count_no_response_bytes() {
    let (service, _file) = common::start(common::ROUTES).await;
    let client = common::client();
    let url = format!("http://{}/route/api/users/1", service.local_addr());
    for _ in 0..3 {
        let head = client.head(&url).send().await.unwrap();
        assert_eq!(head.status(), 200);
        assert!(head.bytes().await.unwrap().is_empty());
    }
    let (status, metrics) = common::get(&client, &service, "/metrics").await;
    assert_eq!(status, 200);
    let line = |name: &str| {
        metrics.lines().find(|l| l.starts_with(&format!("{name}{{route=\"/api/users\"}}"))).map(str::to_owned)
    };
    assert_eq!(
        line("gateway_requests_total").as_deref(),
        Some("gateway_requests_total{route=\"/api/users\"} 3"),
        "{metrics}"
    );
    assert_eq!(
        line("gateway_response_bytes_total").as_deref(),
        Some("gateway_response_bytes_total{route=\"/api/users\"} 0"),
        "{metrics}"
    );
    service.shutdown().await;
}
