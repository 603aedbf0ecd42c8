//! Every endpoint answers with its content type and content while a
//! workload runs; the view profile runs beside the CPU profile.

mod common;

use common::{ROUTE_FRAME, SNAPSHOT_FRAME, SPIN_FN, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_with_its_content() {
    common::start_workload();
    let server = Server::open().await;

    let (status, content_type, body) = server.get("/debug/pprof/").await;
    assert_eq!((status, content_type.as_str()), (200, "text/html; charset=utf-8"));
    let index = String::from_utf8(body).unwrap();
    for path in
        ["/debug/pprof/profile", "/debug/pprof/flamegraph", "/debug/pprof/views", "/debug/pprof/histograms", "/metrics"]
    {
        assert!(index.contains(path), "the index lists {path}: {index}");
    }

    // The view profile beside the CPU profile, then the other formats.
    let (cpu, views) = tokio::join!(
        server.get("/debug/pprof/profile?seconds=2&frequency=199"),
        server.get("/debug/pprof/views?seconds=2&format=pprof"),
    );
    check_cpu_profile(cpu);
    check_views_profile(views);
    let (flamegraph, views_svg, folded) = tokio::join!(
        server.get("/debug/pprof/flamegraph?seconds=1"),
        server.get("/debug/pprof/views?seconds=1"),
        server.get("/debug/pprof/views?seconds=1&format=folded"),
    );
    check_svg(flamegraph, SPIN_FN);
    check_svg(views_svg, SNAPSHOT_FRAME);
    check_folded(folded);

    let (status, content_type, body) = server.get("/debug/pprof/histograms").await;
    assert_eq!((status, content_type.as_str()), (200, "text/plain; charset=utf-8"));
    let table = String::from_utf8(body).unwrap();
    assert!(table.lines().any(|line| line.starts_with("routes") && line.contains("snapshot")), "{table}");

    let (status, content_type, body) = server.get("/debug/pprof/histograms?format=json").await;
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    let ops = json["ops"].as_array().expect("an ops array");
    assert!(ops.iter().any(|op| op["map"] == "routes" && op["op"] == "snapshot" && op["calls"].as_u64() > Some(0)));

    let (status, content_type, body) = server.get("/metrics").await;
    assert_eq!((status, content_type.as_str()), (200, snapview_instrument::prometheus::CONTENT_TYPE));
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains("# TYPE snapview_op_duration_seconds histogram"), "{text}");
    assert!(text.contains("snapview_op_calls_total{map=\"routes\",op=\"snapshot\"}"), "{text}");
}

fn check_cpu_profile((status, content_type, body): (u16, String, Vec<u8>)) {
    assert_eq!((status, content_type.as_str()), (200, "application/octet-stream"));
    let profile = common::decode_profile(&body);
    assert!(!profile.sample.is_empty(), "the CPU profile has samples");
    assert!(common::has_string(&profile, SPIN_FN), "the CPU profile names {SPIN_FN}");
}

fn check_views_profile((status, content_type, body): (u16, String, Vec<u8>)) {
    assert_eq!((status, content_type.as_str()), (200, "application/octet-stream"));
    let profile = common::decode_profile(&body);
    assert!(!profile.sample.is_empty(), "the views profile has samples");
    assert!(profile.sample.iter().all(|s| s.value.len() == 1 && s.value[0] >= 0));
    let types: Vec<&str> = profile
        .sample_type
        .iter()
        .flat_map(|t| [t.ty, t.unit])
        .map(|i| profile.string_table[i as usize].as_str())
        .collect();
    assert_eq!(types, ["wall", "nanoseconds"]);
    assert!(common::has_string(&profile, SNAPSHOT_FRAME), "the views profile names {SNAPSHOT_FRAME}");
    assert!(common::has_string(&profile, ROUTE_FRAME), "the views profile names {ROUTE_FRAME}");
    assert!(profile.duration_nanos >= 2_000_000_000);
}

fn check_svg((status, content_type, body): (u16, String, Vec<u8>), name: &str) {
    assert_eq!((status, content_type.as_str()), (200, "image/svg+xml"));
    let text = common::svg_text(&body);
    assert!(text.contains(name), "the SVG names {name}");
}

fn check_folded((status, content_type, body): (u16, String, Vec<u8>)) {
    assert_eq!((status, content_type.as_str()), (200, "text/plain; charset=utf-8"));
    let folded = String::from_utf8(body).unwrap();
    let stack = format!("{ROUTE_FRAME};{SNAPSHOT_FRAME} ");
    assert!(folded.lines().any(|line| line.starts_with(&stack)), "a line starts with {stack:?}: {folded}");
}
