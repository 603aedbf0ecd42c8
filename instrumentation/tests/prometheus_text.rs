//! The Prometheus exposition: well-formed by `promtool check metrics`
//! (Debian's `prometheus` package), and consistent with the report.

use std::io::Write;
use std::process::{Command, Stdio};

use snapview_instrument::probe::MapProbe;
use snapview_instrument::{Op, prometheus, report};

fn record_some(name: &str) {
    let probe = MapProbe::new(name).sample_every(1);
    for _ in 0..100 {
        let timer = probe.start(Op::Snapshot);
        std::hint::black_box(0u64);
        probe.snapshot_taken(timer, 1);
    }
    probe.start_publish().published(2, 5);
}

/// `promtool`'s verdict on `text`, or `None` when promtool is not installed
/// (CI sets `SNAPVIEW_REQUIRE_TOOLS=1`, which makes that a failure).
fn promtool_check(text: &str) -> Option<(bool, String)> {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if std::env::var_os("SNAPVIEW_REQUIRE_TOOLS").is_some() => panic!("promtool is required: {e}"),
        Err(e) => {
            eprintln!("promtool not found ({e}); skipping its check (install Debian's `prometheus`)");
            return None;
        }
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    Some((out.status.success(), said))
}

#[test]
fn exposition_passes_promtool() {
    record_some("prom.routes");
    record_some("prom.\"quoted\\name\"");
    let text = prometheus::render_current();
    assert!(text.contains("# TYPE snapview_op_duration_seconds histogram"), "{text}");
    if let Some((ok, said)) = promtool_check(&text) {
        assert!(ok, "promtool rejected the exposition: {said}\n{text}");
    }
}

#[test]
fn promtool_rejects_a_broken_exposition() {
    // The check above is only worth something if promtool does reject errors.
    let broken = "# TYPE x histogram\nx_bucket{le=\"1\"} 3\nx_count 1\n";
    if let Some((ok, _)) = promtool_check(broken) {
        assert!(!ok);
    }
}

#[test]
fn series_agree_with_the_report() {
    record_some("prom.agree");
    let report = report();
    let snap = report.get("prom.agree", Op::Snapshot).unwrap();
    let text = prometheus::render(&report);
    let line = |series: &str| {
        text.lines()
            .find(|l| l.starts_with(series))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .to_owned()
    };
    let labels = r#"{map="prom.agree",op="snapshot""#;
    assert_eq!(line(&format!("snapview_op_duration_seconds_count{labels}}}")), "100");
    assert_eq!(line(&format!("snapview_op_duration_seconds_bucket{labels},le=\"+Inf\"}}")), "100");
    assert_eq!(line(&format!("snapview_op_calls_total{labels}}}")), snap.calls.to_string());
    let sum: f64 = line(&format!("snapview_op_duration_seconds_sum{labels}}}")).parse().unwrap();
    assert!((sum - snap.sum as f64 / 1e9).abs() < 1e-12);
    assert_eq!(line(r#"snapview_op_calls_total{map="prom.agree",op="publish"}"#), "1");
}

/// Names a program may choose (quotes, backslashes, line breaks, control
/// characters, markup, noncharacters, 100 KB): each stays one label value, so
/// the exposition passes promtool with one `calls_total` line per (map, op),
/// and the JSON report keeps every name as it was given.
#[test]
fn unusual_map_names_stay_one_label_value_each() {
    let long = "x".repeat(100_000);
    let names = [
        "",
        "a\"b\\c",
        "line\nbreak",
        "cr\rtab\t",
        "<script>&",
        "semi;colon space",
        "é€😀\u{fffe}",
        "nul\0ctl\u{1b}[0m",
        "\\n literally",
        "trailing\\",
        &long,
    ];
    for name in names {
        record_some(name);
    }
    let snapshot = report();
    let text = prometheus::render(&snapshot);
    if let Some((ok, said)) = promtool_check(&text) {
        assert!(ok, "promtool rejected the exposition: {said}");
    }
    let calls = text.lines().filter(|l| l.starts_with("snapview_op_calls_total{")).count();
    assert_eq!(calls, snapshot.iter().count(), "a name broke a line");
    let json = serde_json::to_value(&snapshot).unwrap();
    let ops = json["ops"].as_array().unwrap();
    for name in names {
        assert!(ops.iter().any(|op| op["map"] == name), "{name:?} is not in the JSON report");
    }
}
