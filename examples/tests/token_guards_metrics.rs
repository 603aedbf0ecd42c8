//! With `--token`, the gateway's `/metrics` (which carries snapview's latency
//! histograms, as the debug router's `/metrics` it stands in for) needs the
//! token like `/debug/pprof/*`; the gateway's own routes never do.

mod common;

use std::time::Duration;

use snapview::debug::DebugConfig;
use snapview_examples::gateway::{Config, Service};

#[tokio::test]
async fn metrics_and_debug_need_the_token_and_routes_do_not() {
    let file = common::TempRoutes::new(common::ROUTES);
    let config = Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        routes_path: file.path.clone(),
        reload_every: Duration::from_millis(50),
        load: None,
        debug: DebugConfig::default().token("s3cret"),
        ..Config::default()
    };
    let service = Service::start(config).await.expect("the service starts");
    let client = common::client();
    let url = |path: &str| format!("http://{}{path}", service.local_addr());

    for path in ["/metrics", "/debug/pprof/histograms"] {
        let refused = client.get(url(path)).send().await.unwrap();
        assert_eq!(refused.status(), 401, "{path} without the token");
        let answered = client.get(url(path)).bearer_auth("s3cret").send().await.unwrap();
        assert_eq!(answered.status(), 200, "{path} with the token");
    }
    let metrics = client.get(url("/metrics")).bearer_auth("s3cret").send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("gateway_requests_total"), "{metrics}");
    assert_eq!(client.get(url("/route/api/users/1")).send().await.unwrap().status(), 200, "routes need no token");

    // A wrong method must not tell, without the token, that `/metrics`
    // exists (axum's own 405 carries `Allow`).
    let post = client.post(url("/metrics")).send().await.unwrap();
    assert_eq!(post.status(), 401, "POST /metrics without the token");
    assert!(post.headers().get("allow").is_none(), "{:?}", post.headers());
    let post = client.post(url("/metrics")).bearer_auth("s3cret").send().await.unwrap();
    assert_eq!(post.status(), 405, "POST /metrics with the token");
    assert_eq!(post.headers()["allow"], "GET,HEAD");
    let head = client.head(url("/metrics")).bearer_auth("s3cret").send().await.unwrap();
    assert_eq!(head.status(), 200, "HEAD /metrics with the token");
    service.shutdown().await;
}
