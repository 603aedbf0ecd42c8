//! With a token every endpoint, unknown paths and wrong methods included,
//! answers 401 unless the request carries it; without one, no header is needed.

mod common;

use common::Server;
use snapview_flame::DebugConfig;

const PATHS: [&str; 5] =
    ["/debug/pprof/", "/debug/pprof/histograms", "/metrics", "/debug/pprof/nope", "/debug/pprof/profile?seconds=0"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_guards_every_path() {
    let server = Server::start(DebugConfig::default().token("s3cret")).await;
    // Every refusal alike, headers and body, known path or not: a difference
    // would tell which paths exist.
    let mut first_refusal: Option<(Vec<(String, String)>, String)> = None;
    for path in PATHS {
        for authorization in [None, Some("Bearer wrong"), Some("Bearer s3cre"), Some("s3cret"), Some("Basic s3cret")] {
            let response = send(&server.url(path), authorization).await;
            assert_eq!(response.status(), 401, "{path} with {authorization:?}");
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
            let mut headers: Vec<(String, String)> = response
                .headers()
                .iter()
                .filter(|(name, _)| *name != "date")
                .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
                .collect();
            headers.sort();
            let refusal = (headers, response.text().await.unwrap());
            match &first_refusal {
                None => first_refusal = Some(refusal),
                Some(first) => assert_eq!(&refusal, first, "{path} with {authorization:?} is refused differently"),
            }
        }
    }
    let expected = [200, 200, 200, 404, 400];
    for (path, status) in PATHS.into_iter().zip(expected) {
        let (got, _, _) = common::get(&server.url(path), Some("Bearer s3cret")).await;
        assert_eq!(got, status, "{path} with the token");
    }
}

/// A wrong method's 405 (with its `Allow` header) would tell which paths
/// exist: without the token it is a 401 too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_guards_every_method() {
    let server = Server::start(DebugConfig::default().token("s3cret")).await;
    let client = reqwest::Client::new();
    // The router is built from `ROUTES`: a route dropped from it would
    // leave this loop with nothing to check for it.
    let routes = [
        "/debug/pprof",
        "/debug/pprof/",
        "/debug/pprof/profile",
        "/debug/pprof/flamegraph",
        "/debug/pprof/views",
        "/debug/pprof/histograms",
        "/metrics",
    ];
    assert_eq!(snapview_flame::ROUTES, routes);
    for path in routes {
        for method in [reqwest::Method::POST, reqwest::Method::DELETE, reqwest::Method::PUT] {
            let response = client.request(method.clone(), server.url(path)).send().await.unwrap();
            assert_eq!(response.status(), 401, "{method} {path} without the token");
            assert!(!response.headers().contains_key("allow"), "{method} {path} tells its methods");
            let response = client.request(method.clone(), server.url(path)).bearer_auth("s3cret").send().await.unwrap();
            assert_eq!(response.status(), 405, "{method} {path} with the token");
            assert_eq!(response.headers()["allow"], "GET,HEAD");
        }
    }
    let head = client.head(server.url("/metrics")).bearer_auth("s3cret").send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert!(head.bytes().await.unwrap().is_empty(), "HEAD has no body");
    assert_eq!(client.head(server.url("/metrics")).send().await.unwrap().status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_no_header_is_needed() {
    let server = Server::open().await;
    let expected = [200, 200, 200, 404, 400];
    for (path, status) in PATHS.into_iter().zip(expected) {
        assert_eq!(server.get(path).await.0, status, "{path}");
    }
}

async fn send(url: &str, authorization: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(url);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    request.send().await.unwrap()
}
