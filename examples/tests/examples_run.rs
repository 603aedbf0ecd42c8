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
    assert_eq!(stdout.matches("refused ").count(), 2, "an empty and a cut text are refused:\n{stdout}");
}

/// The first number after `before` in `text`.
fn number_after(text: &str, before: &str) -> Option<u64> {
    let rest = &text[text.find(before)? + before.len()..];
    let digits: String = rest.trim_start().chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[test]
fn metrics_cache() {
    let stdout = run("metrics_cache");
    assert!(stdout.contains("all consistent"), "{stdout}");
    assert!(number_after(&stdout, "counted").is_some_and(|n| n > 0), "the writers counted requests:\n{stdout}");
    assert!(number_after(&stdout, "the scraper checked").is_some_and(|n| n > 0), "scrapes were checked:\n{stdout}");
}

#[test]
fn request_context() {
    let stdout = run("request_context");
    let summary =
        stdout.lines().find(|l| l.contains("requests, each fanned out")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(summary.contains("every task saw its request's version"), "{summary}");
    let requests = summary.split_whitespace().next().and_then(|n| n.parse::<u64>().ok());
    assert!(requests.is_some_and(|n| n > 0), "requests were served: {summary}");
}

#[test]
fn a_bad_flag_exits_2() {
    let output =
        Command::new(example_binary::example_binary("metrics_cache")).args(["--seconds", "0"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("usage: metrics_cache"));
}
