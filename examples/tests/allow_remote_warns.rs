//! Remote clients allowed lift the debug routes' `Host` check, on a loopback
//! address too: without a token the start says so in the log, with one it
//! does not.

use snapview::debug::DebugConfig;
use snapview_examples::gateway::{Config, Service};

mod common;

const WARNING: &str = "remote clients allowed without a token";

async fn start(debug: DebugConfig, routes: &common::TempRoutes) -> Service {
    let config = Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        allow_remote: true,
        routes_path: routes.path.clone(),
        load: None,
        debug,
        ..Config::default()
    };
    Service::start(config).await.expect("the service starts")
}

#[tokio::test]
async fn remote_clients_without_a_token_are_warned_of() {
    let logs = common::Logs::capture();
    let routes = common::TempRoutes::new(common::ROUTES);

    let tokened = start(DebugConfig::default().token("s3cret"), &routes).await;
    let client = common::client();
    // Any `Host` is answered: with the token, only the token guards the route.
    let url = format!("http://{}/metrics", tokened.local_addr());
    let status = |request: reqwest::RequestBuilder| async { request.send().await.unwrap().status().as_u16() };
    assert_eq!(status(client.get(&url).header("Host", "rebound.example")).await, 401);
    assert_eq!(status(client.get(&url).header("Host", "rebound.example").bearer_auth("s3cret")).await, 200);
    tokened.shutdown().await;

    let open = start(DebugConfig::default().without_token(), &routes).await;
    let line = logs.line_with(WARNING).await;
    assert!(line.contains("WARN") && line.contains("addr=127.0.0.1:0"), "{line}");
    let url = format!("http://{}/metrics", open.local_addr());
    assert_eq!(status(client.get(&url).header("Host", "rebound.example")).await, 200);
    open.shutdown().await;
    assert_eq!(logs.text().matches(WARNING).count(), 1, "only the start without a token warns");
}
