//! Runs one ignored test of the current test binary in a child process,
//! for the cases that need an environment of their own (the environment is
//! process-wide). Every `OTEL_*` variable of the parent is removed first,
//! so that the machine's own cannot decide a case.
//!
//! Include it with `#[path = "support/child.rs"] mod child;`.

use std::process::Command;

/// Runs the ignored test `child` with `vars` and no other `OTEL_*`
/// variable, and asserts that it passed.
pub fn run_child(child: &str, vars: &[(&str, &str)]) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args(["--ignored", "--exact", child, "--nocapture"]);
    for (var, _) in std::env::vars_os() {
        if var.to_string_lossy().starts_with("OTEL_") {
            command.env_remove(var);
        }
    }
    let status = command.envs(vars.iter().copied()).status().unwrap();
    assert!(status.success(), "{child} failed with {vars:?}");
}
