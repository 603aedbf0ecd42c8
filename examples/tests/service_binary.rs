//! The README's first command, shortened: the `service` example runs with
//! its load generator for 2 s, prints the URLs and the latency report, and
//! exits 0; bad flags exit 2.

use std::path::PathBuf;
use std::process::{Command, Output};

/// The example's binary beside this test's (`target/<profile>/examples/service`),
/// built by `cargo test`; built here if this test was run alone.
fn service_binary() -> PathBuf {
    let test_exe = std::env::current_exe().unwrap();
    let profile_dir = test_exe.parent().and_then(|deps| deps.parent()).unwrap();
    let binary = profile_dir.join("examples").join(format!("service{}", std::env::consts::EXE_SUFFIX));
    if !binary.exists() {
        let mut cargo = Command::new(env!("CARGO"));
        cargo.args(["build", "-q", "-p", "snapview-examples", "--example", "service"]);
        if cfg!(feature = "console") {
            cargo.args(["--features", "console"]);
        }
        if !cfg!(debug_assertions) {
            cargo.arg("--release");
        }
        assert!(cargo.status().expect("cargo runs").success(), "cargo build --example service");
    }
    binary
}

fn run(args: &[&str]) -> Output {
    Command::new(service_binary())
        .args(args)
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env("RUST_LOG", "info")
        .output()
        .expect("the service example runs")
}

#[test]
fn runs_for_the_given_seconds_and_exits_0() {
    let output = run(&["--seconds", "2", "--addr", "127.0.0.1:0"]);
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}", output.status);
    assert!(stdout.contains("listening on http://127.0.0.1:"), "{stdout}");
    assert!(!stdout.contains("127.0.0.1:0/"), "the real port is printed: {stdout}");
    for wanted in ["/route/api/users", "/metrics", "/debug/pprof/histograms", "go tool pprof", "views?seconds=5"] {
        assert!(stdout.contains(wanted), "{wanted} missing:\n{stdout}");
    }
    // The load generator's requests show in the report, under both maps.
    assert!(stdout.contains("load generator: ") && stdout.contains(" answered, 0 failed"), "{stdout}");
    let report = stdout.split("latency of each view").nth(1).unwrap_or_else(|| panic!("no report:\n{stdout}"));
    assert!(report.lines().any(|l| l.starts_with("routes ") && l.contains("snapshot")), "{report}");
    assert!(report.lines().any(|l| l.starts_with("request_stats ") && l.contains("publish")), "{report}");
    assert!(stderr.contains("shutting down"), "{stderr}");
}

#[test]
fn bad_flags_exit_2_with_the_usage() {
    let output = run(&["--rate", "0"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--rate") && stderr.contains("usage: service"), "{stderr}");
}
