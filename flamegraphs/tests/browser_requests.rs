//! What a web page can make a browser send is refused: requests a browser
//! marks as made for another site (`Sec-Fetch-Site`), and, without a token,
//! requests addressed to a name that is not loopback's (DNS rebinding).
//! Everything else (curl, `go tool pprof`, Prometheus, an address typed in
//! the browser) is answered as before.

mod common;

use common::Server;
use snapview_flame::DebugConfig;

/// `GET url` with `headers`: (status, body as text).
async fn get_with(url: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut request = reqwest::Client::new().get(url);
    for &(name, value) in headers {
        request = request.header(name, value);
    }
    let response = request.send().await.expect("the server answers");
    (response.status().as_u16(), response.text().await.expect("a text body"))
}

#[tokio::test]
async fn without_a_token_only_loopback_names_are_answered() {
    let server = Server::open().await;
    let port = server.base.rsplit(':').next().unwrap().to_owned();
    for path in ["/metrics", "/debug/pprof/histograms", "/debug/pprof/"] {
        let (status, body) = get_with(&server.url(path), &[("host", &format!("attacker.example:{port}"))]).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert!(body.contains("\"attacker.example:") && body.contains("DNS rebinding"), "{body}");
        // What some browsers send for an `http://0.0.0.0:port/` link on any page.
        for host in [format!("0.0.0.0:{port}"), format!("[::]:{port}")] {
            assert_eq!(get_with(&server.url(path), &[("host", &host)]).await.0, 403, "{path} with Host {host}");
        }
        for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}"), "app.localhost".to_owned()] {
            assert_eq!(get_with(&server.url(path), &[("host", &host)]).await.0, 200, "{path} with Host {host}");
        }
    }
    // The standalone server's 404 for other paths tells nothing either way.
    assert_eq!(get_with(&server.url("/nothing"), &[("host", "attacker.example")]).await.0, 404);
}

#[tokio::test]
async fn with_a_token_or_remote_clients_allowed_names_are_not_checked() {
    let with_token = Server::start(DebugConfig::default().token("s3cret")).await;
    let headers = [("host", "collector.internal:6060"), ("authorization", "Bearer s3cret")];
    assert_eq!(get_with(&with_token.url("/metrics"), &headers).await.0, 200);
    assert_eq!(get_with(&with_token.url("/metrics"), &headers[..1]).await.0, 401, "the token is still needed");

    let remote = Server::start(DebugConfig::default().without_token().allow_remote(true)).await;
    assert_eq!(get_with(&remote.url("/metrics"), &[("host", "debug.example:6060")]).await.0, 200);
}

#[tokio::test]
async fn requests_made_for_another_site_are_refused_even_with_the_token() {
    let server = Server::start(DebugConfig::default().token("s3cret")).await;
    let bearer = ("authorization", "Bearer s3cret");
    for site in ["cross-site", "same-site"] {
        let (status, body) = get_with(&server.url("/metrics"), &[bearer, ("sec-fetch-site", site)]).await;
        assert_eq!(status, 403, "{site}: {body}");
        assert!(body.contains(&format!("Sec-Fetch-Site: \"{site}\"")), "{body}");
    }
    for site in ["same-origin", "none"] {
        assert_eq!(get_with(&server.url("/metrics"), &[bearer, ("sec-fetch-site", site)]).await.0, 200, "{site}");
    }
}

/// An `<img src=".../profile?seconds=300">` on any page would otherwise
/// hold the profiler for five minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_site_profile_request_never_takes_the_profiler() {
    common::start_workload();
    let server = Server::open().await;
    let refused = get_with(&server.url("/debug/pprof/profile?seconds=300"), &[("sec-fetch-site", "cross-site")]).await;
    assert_eq!(refused.0, 403, "{}", refused.1);
    let (status, _, _) = server.get("/debug/pprof/profile?seconds=1").await;
    assert_eq!(status, 200, "the profiler is free");
}

/// Merged into an application, the guard covers the debug routes only.
#[tokio::test]
async fn an_application_s_own_routes_are_left_alone() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/hello", axum::routing::get(|| async { "hello" }))
        .merge(snapview_flame::router_with(&DebugConfig::default().without_token()));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let elsewhere = [("host", "shop.example"), ("sec-fetch-site", "cross-site")];
    assert_eq!(get_with(&format!("{base}/hello"), &elsewhere).await.0, 200);
    assert_eq!(get_with(&format!("{base}/metrics"), &elsewhere).await.0, 403);
}
