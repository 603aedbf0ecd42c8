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

/// A path is matched in its normal form, as the prefixes are stored: dot
/// segments resolved (a client that does not resolve them, `curl
/// --path-as-is`, reached `/static` for `/static/../api/...`), escapes in
/// either case and escaped unreserved characters alike. Sent raw over TCP,
/// as an HTTP client would normalize them first.
#[tokio::test]
async fn paths_are_matched_in_normal_form() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (service, _file) = common::start(common::ROUTES).await;
    for (sent, route, path) in [
        ("/route/static/../api/users/1", "/api/users", "/api/users/1"),
        ("/route/%61pi/orders", "/api", "/api/orders"),
        ("/route/static/./app.js", "/static", "/static/app.js"),
    ] {
        let mut stream = tokio::net::TcpStream::connect(service.local_addr()).await.unwrap();
        let request = format!("GET {sent} HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{sent}: {answer}");
        let body: serde_json::Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!((body["route"].as_str(), body["path"].as_str()), (Some(route), Some(path)), "{sent}: {body}");
    }
    service.shutdown().await;
}
