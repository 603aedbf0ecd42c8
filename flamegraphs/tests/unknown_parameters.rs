//! A parameter that looks like a misspelling of one the endpoint takes is a
//! 400 naming both, at once: Go's `net/http/pprof` ignores it, so a misspelt
//! `?second=5` ran a 30 s profile at the default, holding the profiler.
//! Other parameters are ignored as Go ignores them (the SVG pages' own
//! state, `x`, `y`, `s`, written into their address by the flamegraph's
//! script; a cache-buster), and a number is digits only.

mod common;

use std::time::{Duration, Instant};

use common::Server;

/// `method url`: (status, body, how long it took), with a bound well under
/// the 30 s default window so that a profile started by mistake fails here.
async fn send(method: reqwest::Method, url: &str) -> (u16, String, Duration) {
    let started = Instant::now();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("a client");
    let response = client.request(method, url).send().await.expect("answered within 10 s, not a profile's window");
    let status = response.status().as_u16();
    (status, response.text().await.expect("the body arrives"), started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misspelt_parameters_are_refused_by_name() {
    let server = Server::open().await;
    let cases = [
        ("/debug/pprof/profile?second=5", "\"second\" (did you mean seconds?)", "seconds, frequency"),
        ("/debug/pprof/profile?seconds=1&Seconds=5", "\"Seconds\" (did you mean seconds?)", "seconds, frequency"),
        ("/debug/pprof/flamegraph?seconds=1&freq=500", "\"freq\" (did you mean frequency?)", "seconds, frequency"),
        ("/debug/pprof/views?seconds=1&fromat=folded", "\"fromat\" (did you mean format?)", "seconds, format"),
        ("/debug/pprof/histograms?formats=json", "\"formats\" (did you mean format?)", "format"),
    ];
    for (path, name, takes) in cases {
        let (status, body, took) = send(reqwest::Method::GET, &server.url(path)).await;
        assert_eq!(body, format!("unknown parameter {name}; this endpoint takes {takes}\n"), "{path}");
        assert_eq!(status, 400, "{path}");
        assert!(took < Duration::from_secs(5), "{path}: took {took:?}");
    }
    let (status, body, _) = send(reqwest::Method::HEAD, &server.url("/debug/pprof/profile?second=5")).await;
    assert_eq!((status, body.as_str()), (400, ""), "a HEAD is checked as a GET is");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_parameters_are_ignored_as_go_ignores_them() {
    let server = Server::open().await;
    let (status, body, _) =
        send(reqwest::Method::GET, &server.url("/debug/pprof/histograms?format=json&_=1733&debug=1")).await;
    assert_eq!(status, 200, "{body}");
    assert!(serde_json::from_str::<serde_json::Value>(&body).is_ok(), "still JSON, as asked: {body}");
    let (status, _, _) = send(reqwest::Method::HEAD, &server.url("/debug/pprof/profile?seconds=1&x=3&gc=1")).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flamegraph_page_reloaded_after_zoom_and_search_is_served() {
    common::install_telemetry();
    let server = Server::open().await;
    for path in ["/debug/pprof/flamegraph?seconds=1&x=10.5&y=118&s=get", "/debug/pprof/views?seconds=1&s=snapview&x=1"]
    {
        let (status, body, _) = send(reqwest::Method::GET, &server.url(path)).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(body.contains("<svg"), "{path}: {}", &body[..body.len().min(200)]);
    }
    let (status, _, _) = send(reqwest::Method::GET, &server.url("/metrics?name[]=x")).await;
    assert_eq!(status, 200, "/metrics ignores its query");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_is_digits_only() {
    let server = Server::open().await;
    let hint = " (a '+' in a query string reads as a space; leave it out)";
    let cases = [
        ("/debug/pprof/profile?seconds=%2B5", "seconds must be a whole number in 1..=300, got \"+5\""),
        ("/debug/pprof/profile?seconds=+5", "seconds must be a whole number in 1..=300, got \" 5\""),
        (
            "/debug/pprof/flamegraph?seconds=1&frequency=%2B99",
            "frequency must be a whole number in 1..=1000, got \"+99\"",
        ),
    ];
    for (path, message) in cases {
        let (status, body, took) = send(reqwest::Method::GET, &server.url(path)).await;
        assert_eq!((status, body), (400, format!("{message}{hint}\n")), "{path}");
        assert!(took < Duration::from_secs(5), "{path}: took {took:?}");
    }
}
