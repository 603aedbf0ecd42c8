//! Map and thread names as a program may choose them (markup, `;`, line
//! breaks, control characters) in the flamegraph SVGs: the SVG stays XML and
//! each name stays one frame.

mod common;

use std::time::{Duration, Instant};

use common::Server;
use snapview::SnapMap;

/// Takes snapshots of a map called `name` inside a `request` span for `for_how_long`.
fn view_workload(name: &'static str, for_how_long: Duration) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let map = SnapMap::<u64, u64>::builder().name(name).sample_every(1).build();
        map.insert(1, 1);
        let deadline = Instant::now() + for_how_long;
        while Instant::now() < deadline {
            let _request = tracing::info_span!("request", otel.name = "GET /audit").entered();
            std::hint::black_box(map.snapshot().len());
            std::thread::sleep(Duration::from_micros(200));
        }
    })
}

fn svg_titles(body: &[u8]) -> Result<Vec<String>, String> {
    let text = std::str::from_utf8(body).map_err(|e| e.to_string())?;
    let options = roxmltree::ParsingOptions { allow_dtd: true, ..roxmltree::ParsingOptions::default() };
    let doc = roxmltree::Document::parse_with_options(text, options).map_err(|e| e.to_string())?;
    Ok(doc.descendants().filter(|n| n.has_tag_name("title")).filter_map(|n| n.text().map(str::to_owned)).collect())
}

/// XML-special characters in a map name are escaped: the SVG parses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_svg_of_a_map_named_like_markup_is_xml() {
    common::install_telemetry();
    let server = Server::open().await;
    let worker = view_workload("<script>&\"' x;y\nz", Duration::from_secs(3));
    let (status, _, body) = server.get("/debug/pprof/views?seconds=1").await;
    worker.join().unwrap();
    assert_eq!(status, 200);
    let titles = svg_titles(&body).expect("the SVG is XML");
    assert!(titles.iter().any(|t| t.starts_with("snapview.snapshot{map=<script>&\"' x:y\\u{a}z}")), "{titles:?}");
}

/// A control character in a map name (an ANSI colour escape, a form feed) is
/// not allowed in XML 1.0: the view-cost SVG must still parse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_svg_of_a_map_named_with_a_control_character_is_xml() {
    common::install_telemetry();
    let server = Server::open().await;
    let worker = view_workload("\u{1b}[31mred\u{c}", Duration::from_secs(3));
    let (status, _, body) = server.get("/debug/pprof/views?seconds=1").await;
    worker.join().unwrap();
    assert_eq!(status, 200);
    let svg = String::from_utf8_lossy(&body);
    assert!(svg.contains("map=\\u{1b}[31mred\\u{c}}"), "the map's frame, its control characters escaped");
    if let Err(err) = svg_titles(&body) {
        panic!("the view-cost SVG is not XML: {err}");
    }
}

#[inline(never)]
fn audit_thread_spin(deadline: Instant) -> u64 {
    let mut x = 1u64;
    while Instant::now() < deadline {
        for i in 0..10_000u64 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
        }
    }
    x
}

/// A thread's name is the root frame of its stacks in the CPU flamegraph;
/// a `;` in it (Linux keeps 15 bytes of it) must not split it into two
/// frames, as `frame_name` already ensures for symbols.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_flamegraph_keeps_a_thread_name_with_separators_in_one_frame() {
    let server = Server::open().await;
    let deadline = Instant::now() + Duration::from_secs(4);
    let spinner =
        std::thread::Builder::new().name("ab;cd\nef".into()).spawn(move || audit_thread_spin(deadline)).unwrap();
    // Whitespace at a root frame's start made inferno reject the whole
    // profile as unsorted (it trims each line after sorting them).
    let spaced = std::thread::Builder::new().name(" spaced".into()).spawn(move || audit_thread_spin(deadline)).unwrap();
    let (status, _, body) = server.get("/debug/pprof/flamegraph?seconds=2&frequency=199").await;
    spinner.join().unwrap();
    spaced.join().unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let titles = svg_titles(&body).expect("the SVG is XML");
    let spin: Vec<&String> = titles.iter().filter(|t| t.contains("audit_thread_spin")).collect();
    assert!(!spin.is_empty(), "the spinning thread was sampled: {titles:?}");
    assert!(titles.iter().any(|t| t.starts_with("\\u{20}spaced ")), "the spaced thread's frame: {titles:?}");
    let roots: Vec<&String> =
        titles.iter().filter(|t| t.starts_with("ab") || t.starts_with("cd") || t.starts_with("ef")).collect();
    assert!(
        roots.iter().any(|t| t.contains("ab") && t.contains("cd") && t.contains("ef")),
        "the thread \"ab;cd\\nef\" is not one frame; frames named after parts of it: {roots:?}"
    );
}
