//! A view window in which no view was taken gives valid, empty answers: an
//! SVG that says so, empty folded text, a profile without samples.

mod common;

use common::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_window_gives_empty_but_valid_answers() {
    common::install_telemetry();
    let server = Server::open().await;
    let (svg, folded, pprof) = tokio::join!(
        server.get("/debug/pprof/views?seconds=1"),
        server.get("/debug/pprof/views?seconds=1&format=folded"),
        server.get("/debug/pprof/views?seconds=1&format=pprof"),
    );
    assert_eq!((svg.0, svg.1.as_str()), (200, "image/svg+xml"));
    assert!(common::svg_text(&svg.2).contains("no samples"));
    assert_eq!((folded.0, folded.2.len()), (200, 0));
    assert_eq!(pprof.0, 200);
    let profile = common::decode_profile(&pprof.2);
    assert!(profile.sample.is_empty());
    assert_eq!(profile.string_table[0], "");
}
