//! `go tool pprof -top` reads both the CPU profile and the views profile and
//! names the workload's frames. Skipped when `go` is missing, unless
//! `SNAPVIEW_REQUIRE_TOOLS` is set (as in CI, which installs Debian's `golang-go`).

mod common;

use std::path::Path;
use std::process::Command;

use common::{SNAPSHOT_FRAME, SPIN_FN, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_tool_pprof_reads_both_profiles() {
    if !common::go_is_installed() {
        return;
    }
    common::start_workload();
    let server = Server::open().await;
    let (cpu, views) = tokio::join!(
        server.get("/debug/pprof/profile?seconds=2"),
        server.get("/debug/pprof/views?seconds=2&format=pprof"),
    );
    assert_eq!((cpu.0, views.0), (200, 200));

    let dir = std::env::temp_dir().join(format!("snapview-go-pprof-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cpu_top = pprof_top(&dir, "cpu.pb.gz", &cpu.2);
    assert!(cpu_top.contains(SPIN_FN), "go tool pprof -top of the CPU profile names {SPIN_FN}:\n{cpu_top}");
    let views_top = pprof_top(&dir, "views.pb.gz", &views.2);
    assert!(views_top.contains(SNAPSHOT_FRAME), "go tool pprof -top of the views names {SNAPSHOT_FRAME}:\n{views_top}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Writes `profile` to `dir/name` and returns what `go tool pprof -top` prints for it.
fn pprof_top(dir: &Path, name: &str, profile: &[u8]) -> String {
    let file = dir.join(name);
    std::fs::write(&file, profile).unwrap();
    // pprof keeps state under $HOME/pprof and PPROF_TMPDIR: not in the user's home.
    let output = Command::new("go")
        .args(["tool", "pprof", "-top", "-nodefraction=0"])
        .arg(&file)
        .env("HOME", dir)
        .env("PPROF_TMPDIR", dir)
        .env("GOCACHE", dir.join("gocache"))
        .output()
        .expect("go runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "go tool pprof failed: {}\n{stdout}", String::from_utf8_lossy(&output.stderr));
    stdout
}
