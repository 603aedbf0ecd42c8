//! Runs one ignored test of the current test binary in a child process,
//! for the cases that need an environment of their own (the environment is
//! process-wide). Every `OTEL_*` variable of the parent is removed first,
//! so that the machine's own cannot decide a case.
//!
//! Include it with `#[path = "support/child.rs"] mod child;`.

use std::ffi::OsStr;
use std::process::Command;

/// Set in the child only: the ignored case, run by hand (`--ignored`)
/// without its environment, returns at once instead of failing on it.
const CHILD: &str = "SNAPVIEW_TEST_CHILD";

/// Runs the ignored test `child` with `vars` and no other `OTEL_*`
/// variable, and asserts that it ran and passed (a name that matches no
/// test runs none, and exits 0).
pub fn run_child(child: &str, vars: &[(&str, &str)]) {
    let vars: Vec<(&str, &OsStr)> = vars.iter().map(|&(var, value)| (var, OsStr::new(value))).collect();
    run_child_os(child, &vars);
}

/// [`run_child`] with values that need not be Unicode.
#[allow(dead_code)] // Not every including test file sets such a value.
pub fn run_child_os(child: &str, vars: &[(&str, &OsStr)]) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args(["--ignored", "--exact", child, "--nocapture"]).env(CHILD, "1");
    for (var, _) in std::env::vars_os() {
        if var.to_string_lossy().starts_with("OTEL_") {
            command.env_remove(var);
        }
    }
    let output = command.envs(vars.iter().copied()).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{child} failed with {vars:?}:\n{stdout}\n{stderr}");
    assert!(stdout.contains("test result: ok. 1 passed"), "{child} did not run:\n{stdout}\n{stderr}");
}

/// Whether this process is a child [`run_child`] started: every child case
/// returns at once without it.
pub fn in_child() -> bool {
    std::env::var_os(CHILD).is_some()
}
