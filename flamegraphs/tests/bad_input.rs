//! Out-of-range, non-numeric and unknown parameters get 400 naming the
//! parameter (before any profiling starts); unknown paths get 404.

mod common;

use common::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_are_rejected_by_name() {
    let server = Server::open().await;
    let huge = "99999999999999999999";
    let mut cases: Vec<(String, &str)> = Vec::new();
    for endpoint in ["profile", "flamegraph", "views"] {
        for seconds in ["0", "-1", "abc", "301", huge, "", "1.5"] {
            cases.push((format!("/debug/pprof/{endpoint}?seconds={seconds}"), "seconds"));
        }
    }
    for endpoint in ["profile", "flamegraph"] {
        for frequency in ["0", "-5", "1001", "fast", huge] {
            cases.push((format!("/debug/pprof/{endpoint}?seconds=1&frequency={frequency}"), "frequency"));
        }
    }
    cases.push(("/debug/pprof/views?seconds=1&format=bmp".into(), "format"));
    cases.push(("/debug/pprof/histograms?format=xml".into(), "format"));

    for (path, parameter) in cases {
        let (status, content_type, body) = server.get(&path).await;
        let message = String::from_utf8(body).unwrap();
        assert_eq!(status, 400, "{path}: {message}");
        assert_eq!(content_type, "text/plain; charset=utf-8", "{path}");
        assert!(message.starts_with(&format!("{parameter} must be")), "{path}: {message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_message_shows_what_was_wrong() {
    let server = Server::open().await;
    let (status, _, body) = server.get("/debug/pprof/profile?seconds=abc").await;
    assert_eq!(status, 400);
    assert_eq!(String::from_utf8(body).unwrap(), "seconds must be a whole number in 1..=300, got \"abc\"\n");
    let (_, _, body) = server.get("/debug/pprof/views?format=bmp").await;
    assert_eq!(String::from_utf8(body).unwrap(), "format must be one of svg, folded, pprof, got \"bmp\"\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_are_not_found() {
    let server = Server::open().await;
    for path in ["/debug/pprof/nope", "/debug/pprof/profile/extra", "/", "/metrics/x"] {
        let (status, _, body) = server.get(path).await;
        assert_eq!(status, 404, "{path}: {}", String::from_utf8_lossy(&body));
    }
}
