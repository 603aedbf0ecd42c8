//! Finding an example's executable from an integration test.
//!
//! Include it with `#[path = "support/example_binary.rs"] mod example_binary;`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The example `name`'s binary beside this test's, in
/// `target/<profile>/examples/`. `cargo test` builds it there as
/// `<name>-<hash>` (only `cargo build` links it as `<name>`), so the newest
/// of those is this build's: after an edit to the example, the package's
/// tests run the new one. Built here if there is none (this test run alone
/// on a fresh tree; this build's features are not the outer one's, so the
/// workspace's crates build again).
pub fn example_binary(name: &str) -> PathBuf {
    let test_exe = std::env::current_exe().unwrap();
    let examples = test_exe.parent().and_then(|deps| deps.parent()).unwrap().join("examples");
    if let Some(newest) = newest_binary(&examples, name) {
        return newest;
    }
    let mut cargo = Command::new(env!("CARGO"));
    cargo.args(["build", "-q", "-p", "snapview-examples", "--example", name]);
    if cfg!(feature = "console") {
        cargo.args(["--features", "console"]);
    }
    if !cfg!(debug_assertions) {
        cargo.arg("--release");
    }
    assert!(cargo.status().expect("cargo runs").success(), "cargo build --example {name}");
    examples.join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// The most recently built `<name>` or `<name>-<hash>` executable in `examples`.
fn newest_binary(examples: &Path, name: &str) -> Option<PathBuf> {
    let is_binary = |file: &str| {
        let stem = file.strip_suffix(std::env::consts::EXE_SUFFIX).unwrap_or(file);
        stem == name || stem.strip_prefix(name).and_then(|rest| rest.strip_prefix('-')).is_some_and(is_hash)
    };
    std::fs::read_dir(examples)
        .ok()?
        .filter_map(Result::ok)
        .filter(|entry| is_binary(&entry.file_name().to_string_lossy()))
        .filter_map(|entry| Some((entry.metadata().ok()?.modified().ok()?, entry.path())))
        .max_by_key(|(modified, _)| *modified)
        .map(|(_, path)| path)
}

/// Cargo's hash suffix: hex digits only (so `<name>-<hash>.d` and another
/// example whose name starts with `<name>-` are not taken).
fn is_hash(suffix: &str) -> bool {
    !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_hexdigit())
}
