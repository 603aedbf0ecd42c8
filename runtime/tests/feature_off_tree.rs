//! Without the `instrument` feature, `snapview` pulls in none of the
//! telemetry stack: checked on cargo's own view of the dependency graph.

use std::process::Command;

#[test]
fn default_features_have_no_telemetry_dependency() {
    let output = Command::new(env!("CARGO"))
        .args(["tree", "-p", "snapview", "-e", "normal", "--prefix", "none", "--format", "{p}"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let tree = String::from_utf8(output.stdout).unwrap();
    assert!(tree.lines().any(|l| l.starts_with("arc-swap")), "the tree is real:\n{tree}");
    for banned in ["tracing", "hdrhistogram", "opentelemetry", "snapview-instrument", "quanta", "tonic", "tokio"] {
        assert!(!tree.lines().any(|l| l.starts_with(banned)), "{banned} in the feature-off tree:\n{tree}");
    }
}

#[test]
fn the_instrument_feature_brings_the_histograms_and_spans() {
    let output = Command::new(env!("CARGO"))
        .args(["tree", "-p", "snapview", "-e", "normal", "--features", "instrument", "--prefix", "none"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    let tree = String::from_utf8(output.stdout).unwrap();
    for wanted in ["snapview-instrument", "hdrhistogram", "tracing "] {
        assert!(tree.lines().any(|l| l.starts_with(wanted)), "{wanted} missing:\n{tree}");
    }
}
