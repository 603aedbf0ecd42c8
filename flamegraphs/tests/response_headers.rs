//! Every answer of the debug routes, refusals included, says not to cache
//! it (a profile is stale when it ends, and a flamegraph opened in a browser
//! would leave the process's symbols in its disk cache) and not to sniff it
//! (an error that echoes a query stays plain text); every refusal is marked
//! as the pprof endpoint's own, for `go tool pprof` to print.

mod common;

use common::Server;
use snapview_flame::DebugConfig;

async fn headers_of(
    method: reqwest::Method,
    url: &str,
    authorization: Option<&str>,
) -> (u16, reqwest::header::HeaderMap) {
    let mut request = reqwest::Client::new().request(method, url);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = request.send().await.expect("the server answers");
    (response.status().as_u16(), response.headers().clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_is_private_and_unsniffed() {
    let server = Server::start(DebugConfig::default().token("s3cret")).await;
    let bearer = Some("Bearer s3cret");
    let cases = [
        (reqwest::Method::GET, "/debug/pprof/", bearer, 200),
        (reqwest::Method::GET, "/debug/pprof/histograms?format=json", bearer, 200),
        (reqwest::Method::GET, "/metrics", bearer, 200),
        (reqwest::Method::HEAD, "/debug/pprof/profile?seconds=1", bearer, 200),
        (reqwest::Method::GET, "/debug/pprof/profile?seconds=0", bearer, 400),
        (reqwest::Method::POST, "/metrics", bearer, 405),
        (reqwest::Method::GET, "/metrics", None, 401),
        (reqwest::Method::GET, "/metrics", Some("Bearer wrong"), 401),
    ];
    for (method, path, authorization, expected) in cases {
        let (status, headers) = headers_of(method.clone(), &server.url(path), authorization).await;
        assert_eq!(status, expected, "{method} {path}");
        assert_eq!(headers.get("cache-control").map(|v| v.as_bytes()), Some(&b"no-store"[..]), "{method} {path}");
        let sniff = headers.get("x-content-type-options").map(|v| v.as_bytes());
        assert_eq!(sniff, Some(&b"nosniff"[..]), "{method} {path}");
        // `go tool pprof` prints the message of an error so marked.
        let marked = headers.get("x-go-pprof").map(|v| v.as_bytes());
        assert_eq!(marked, (expected >= 400).then_some(&b"1"[..]), "{method} {path}");
    }
}
