//! The small examples run to the end and exit 0: each checks its own claim
//! as it goes (a scrape that adds up, a config edit that publishes one
//! version, sub-tasks that see one version), and a failed check panics.

#[path = "support/example_binary.rs"]
mod example_binary;

use std::process::Command;

/// Runs example `name` for one second; returns its stdout.
fn run(name: &str) -> String {
    let output = Command::new(example_binary::example_binary(name))
        .args(["--seconds", "1"])
        .output()
        .unwrap_or_else(|err| panic!("{name} runs: {err}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{name}: exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}", output.status);
    stdout
}

#[test]
fn config_reload() {
    let stdout = run("config_reload");
    assert!(stdout.contains("still version") && stdout.contains("nobody notified"), "{stdout}");
    assert!(stdout.contains("watcher: version "), "the watcher saw a diff:\n{stdout}");
}

#[test]
fn metrics_cache() {
    let stdout = run("metrics_cache");
    assert!(stdout.lines().count() > 1, "{stdout}");
}

#[test]
fn request_context() {
    let stdout = run("request_context");
    assert!(!stdout.is_empty(), "{stdout}");
}

#[test]
fn a_bad_flag_exits_2() {
    let output =
        Command::new(example_binary::example_binary("metrics_cache")).args(["--seconds", "0"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("usage: metrics_cache"));
}
